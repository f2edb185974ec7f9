"""Optimizers a model builds for itself, stepped side by side.

A rewrite of an optimizer's construction (`torch.optim.AdamW(...)` to the fused step) changes
nothing a forward or backward computes: only `step()` shows it. Where the built model holds
optimizers (`self.optimizer = self.configure_optimizers()`), both sides take a few training
steps on copies, with the same inputs, output weights and gradients, and every parameter is
compared after each step under the pass's policy.
"""
import copy

import torch

from adopt_harness.compare import Comparison
from adopt_harness.dropout import no_dropout
from adopt_harness.sidebyside import _leaves, select_outputs

STEPS = 3


def optimizers(model):
    """`{"path.attr": optimizer}` for every optimizer held by the model or one of its submodules."""
    found = {}
    for prefix, module in model.named_modules():
        for name, value in vars(module).items():
            if isinstance(value, torch.optim.Optimizer):
                found[f"{prefix}.{name}" if prefix else name] = value
    return found


def _step(model, opts, inputs, step):
    model.train()
    no_dropout(model)
    args, kwargs = _leaves(inputs)
    torch.manual_seed(1)
    outputs = [o for o in select_outputs(model, model(*args, **kwargs)) if o.requires_grad]
    g = torch.Generator().manual_seed(7 + step)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype)).sum() for o in outputs)
    if torch.is_tensor(loss):
        loss.backward()
    for opt in opts.values():
        opt.step()
        opt.zero_grad(set_to_none=True)


def optimizer_problems(a, b, inputs, policy):
    """(problems, steps compared): nothing where the original holds no optimizer. Runs on copies,
    so the models (and their optimizers' state) stay as they were."""
    if not optimizers(a):
        return [], 0
    a, b = copy.deepcopy(a), copy.deepcopy(b)
    oa, ob = optimizers(a), optimizers(b)
    if oa.keys() != ob.keys():
        return [f"the rewritten model holds optimizers {sorted(ob)}, the original {sorted(oa)}"], 0
    cmp = Comparison(policy)
    params_b = dict(b.named_parameters())
    for step in range(STEPS):
        _step(a, oa, inputs, step)
        _step(b, ob, inputs, step)
        for name, p in a.named_parameters():
            q = params_b.get(name)
            if q is None:
                cmp.problems.append(f"parameter {name} missing in the rewritten model")
                continue
            cmp.tensor(f"after optimizer step {step + 1}: {name}", p.detach(), q.detach())
        if cmp.problems:
            break
    return cmp.problems, STEPS
