"""The one side-by-side check of an original model and its rewrite, used by every entry point.

The original is run first (`reference`): in eval mode and in train mode with dropout off, its
outputs, fixed random output weights, and the gradients of every parameter and input under the
weighted sum. The rewrite, loaded strictly with the original's state dict, is run the same way
and compared tensor by tensor under the dtype's policy (compare.py). Anything the rewrite does
differently where the original runs, raising included, is a mismatch.
"""
import contextlib
import inspect
import time
from dataclasses import dataclass, field

import torch

from adopt_harness.compare import Comparison, grad_scale, slots, tensors
from adopt_harness.deadline import Timeout
from adopt_harness.dropout import no_dropout
from adopt_harness.text import clip, first_line

MODES = ("eval", "train")


class RewrittenRaised(Exception):
    """The original ran and the rewrite did not: a mismatch, not an unrunnable model."""


@dataclass
class Run:
    outputs: list
    weights: list
    # parameter name → gradient (None where it gets none), or why backward failed (a string)
    grads: object
    input_grads: list = field(default_factory=list)
    seconds: float = 0.0
    # per tensor or None returned: whether a tensor (see compare.slots)
    layout: list = field(default_factory=list)


def select_outputs(model, out):
    """What is compared of a model's output: a transformers model (one with a config_class) by its
    main (first) tensor, since the tensors after it are caches and extras its config flags switch
    on; any other module by every floating-point tensor it returns."""
    found = tensors(out)
    return found[:1] if getattr(model, "config_class", None) is not None else found


def _leaves(inputs):
    """Positional inputs are activations (what a module inside a model is called with): their
    gradients are compared too. Keyword inputs are data (ids, pixels, masks) and get none."""
    args, kwargs = inputs
    lift = lambda t: t.detach().clone().requires_grad_(t.is_floating_point()) if isinstance(t, torch.Tensor) else t  # noqa: E731
    return [lift(a) for a in args], dict(kwargs)


def cast(inputs, dtype):
    args, kwargs = inputs
    to = lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t  # noqa: E731
    return [to(a) for a in args], {k: to(v) for k, v in kwargs.items()}


def run_model(model, inputs, mode):
    """One forward and backward of `model` in `mode`; raises what the model raises in forward.

    oneDNN (mkldnn) is off for both sides of every comparison: the build of it in Debian's torch
    1.13 gives Conv1d's weight gradients that change from run to run in float32 (read from
    memory it never wrote; a Whisper-style encoder's conv1 gradient read 0.17, then 1944, then
    NaN for the same instance and inputs), which would be charged to the rewrite. Float64 never
    takes that path, and the rewrite's own kernels are not oneDNN's."""
    with torch.backends.mkldnn.flags(enabled=False):
        return _run_model(model, inputs, mode)


def _run_model(model, inputs, mode):
    model.train(mode == "train")
    no_dropout(model)
    args, kwargs = _leaves(inputs)
    torch.manual_seed(1)
    t0 = time.perf_counter()
    raw = model(*args, **kwargs)
    outputs = select_outputs(model, raw)
    seconds = time.perf_counter() - t0
    weights = [torch.randn(o.shape, generator=torch.Generator().manual_seed(3 + i), dtype=torch.float64).to(o.dtype) for i, o in enumerate(outputs)]
    differentiable = [(o * w).sum() for o, w in zip(outputs, weights) if o.requires_grad]
    grads = {name: None for name, _ in model.named_parameters()}
    if differentiable:
        try:
            # the graph is kept: a model may cache a tensor computed with grad in eval mode (LeViT's
            # attention biases) that a repeat's backward goes through again
            sum(differentiable).backward(retain_graph=True)
        except Timeout:
            raise
        except Exception as e:
            # reversible layers (Reformer) recompute activations in backward and allow it in training only
            if mode == "train":
                raise
            grads = first_line(e, 150)
        else:
            grads = {name: None if p.grad is None else p.grad.detach().clone() for name, p in model.named_parameters()}
    input_grads = [t.grad for t in args if isinstance(t, torch.Tensor) and t.is_floating_point()]
    model.zero_grad(set_to_none=True)
    return Run([o.detach() for o in outputs], weights, grads, input_grads, seconds, slots(raw))


def reference(model, inputs):
    """The original's runs, per mode."""
    return {mode: run_model(model, inputs, mode) for mode in MODES}


def load_strict(rewritten, state):
    """None, or why the rewrite does not take the original's weights."""
    try:
        rewritten.load_state_dict(state, strict=True)
        return None
    except RuntimeError as e:
        return f"the rewritten model does not load the original state dict strictly: {clip(' '.join(str(e).split()), 300)}"


WEIGHTS_FLAG = "output_attentions"


def _weights_left_out(ref, run):
    """Whether the rewrite returns None exactly where the original returns some of its tensors,
    and nothing else differs in what is returned (attention weights nobody asked for)."""
    if len(ref.layout) != len(run.layout) or len(ref.outputs) != sum(ref.layout) or len(run.outputs) != sum(run.layout):
        return False
    if len(ref.outputs) <= len(run.outputs):
        return False
    return all(a == b or (a and not b) for a, b in zip(ref.layout, run.layout))


def _takes_flag(model):
    params = inspect.signature(model.forward).parameters.values()
    return any(p.kind is p.VAR_KEYWORD or p.name == WEIGHTS_FLAG for p in params)


def _compare_weights_left_out(cmp, mode, ref, run, original, rewritten, inputs):
    """A rewrite that leaves out weights nobody asked for: its outputs are compared where it
    returns them, and the whole run (every output, every gradient) again with the weights asked for
    (`output_attentions=True`), where it must give what the original gives."""
    i = j = 0
    for a_slot, b_slot in zip(ref.layout, run.layout):
        if a_slot and b_slot:
            cmp.tensor(f"{mode} output {i}", ref.outputs[i], run.outputs[j])
        i, j = i + a_slot, j + b_slot
    args, kwargs = inputs
    asked = (args, {**kwargs, WEIGHTS_FLAG: True})
    ref2 = run_model(original, asked, mode)
    try:
        run2 = run_model(rewritten, asked, mode)
    except Exception as e:
        raise RewrittenRaised(f"{mode} with {WEIGHTS_FLAG}: the rewritten model raises where the original runs: {first_line(e, 200)}")
    if len(ref2.outputs) != len(run2.outputs):
        cmp.problems.append(f"{mode} with {WEIGHTS_FLAG}: {len(ref2.outputs)} output tensors, the rewrite returns {len(run2.outputs)}")
        return
    if all([cmp.tensor(f"{mode} with {WEIGHTS_FLAG} output {i}", a, b) for i, (a, b) in enumerate(zip(ref2.outputs, run2.outputs))]) and not isinstance(ref2.grads, str):
        _compare_grads(cmp, f"{mode} with {WEIGHTS_FLAG}", ref2, run2)


def compare_rewrite(rewritten, inputs, references, policy, original=None, exact=None):
    """The rewrite against the original's runs: (Comparison, notes, per-mode timings). Given the
    original model, a rewrite that returns None in place of attention weights nobody asked for is
    checked with the weights asked for too. `exact`, a function giving the original's runs in
    float64 on the same inputs (called only where a tensor is over the tolerance), lets a tensor
    the original itself computes far from float64 pass where the rewrite is as close
    (compare.OWN_ERROR_FACTOR). The compiled kernels run at any size here (the
    instance is tiny; the size floor would hand its calls to the torch code)."""
    with _kernels_at_any_size():
        return _compare_rewrite(rewritten, inputs, references, policy, original, exact)


def _tagged(run, mode):
    """A run's tensors by the tags the comparison gives them."""
    out = {f"{mode} output {i}": o for i, o in enumerate(run.outputs)}
    if not isinstance(run.grads, str):
        out.update({f"{mode} grad of {name}": g for name, g in run.grads.items() if g is not None})
    out.update({f"{mode} grad of input {i}": g for i, g in enumerate(run.input_grads) if g is not None})
    return out


def _kernels_at_any_size():
    try:
        from adopt_kernels import _dispatch
    except ImportError:  # a rewrite whose guards found no adopt_kernels runs the original code
        return contextlib.nullcontext()
    return _dispatch.at_any_size()


def _compare_rewrite(rewritten, inputs, references, policy, original, exact=None):
    cmp, notes, timings = Comparison(policy), [], {}
    for mode in MODES:
        ref = references[mode]
        cmp.exact = (lambda tag, m=mode: _tagged(exact()[m], m).get(tag)) if exact else None
        try:
            run = run_model(rewritten, inputs, mode)
        except Timeout:
            raise
        except Exception as e:  # the original ran on these inputs
            raise RewrittenRaised(f"{mode}: the rewritten model raises where the original runs: {first_line(e, 200)}")
        timings[mode] = {"original_s": ref.seconds, "rewritten_s": run.seconds}
        if not ref.outputs:
            raise RuntimeError("the model returned no floating-point tensor")
        if original is not None and _weights_left_out(ref, run) and _takes_flag(rewritten):
            notes.append(f"{mode}: the rewrite leaves out attention weights nobody asked for; compared again with {WEIGHTS_FLAG}=True")
            _compare_weights_left_out(cmp, mode, ref, run, original, rewritten, inputs)
            continue
        if len(ref.outputs) != len(run.outputs):
            cmp.problems.append(f"{mode}: {len(ref.outputs)} output tensors, the rewrite returns {len(run.outputs)}")
            continue
        shapes_ok = all([cmp.tensor(f"{mode} output {i}", a, b) for i, (a, b) in enumerate(zip(ref.outputs, run.outputs))])
        if not shapes_ok:
            continue
        if isinstance(ref.grads, str):
            notes.append(f"{mode} gradients not compared: the original's backward fails in {mode} mode ({ref.grads})")
            continue
        if isinstance(run.grads, str):
            cmp.problems.append(f"{mode}: the rewritten model's backward fails where the original's runs: {run.grads}")
            continue
        _compare_grads(cmp, mode, ref, run)
    if cmp.within_own_error:
        notes.append(f"over the tolerance but no further from float64 than the original's own result: {', '.join(cmp.within_own_error[:5])}")
    return cmp, notes, timings


def _compare_grads(cmp, mode, ref, run):
    scale = grad_scale(ref.grads.values())
    for name, g in ref.grads.items():
        if name not in run.grads:
            cmp.problems.append(f"{mode}: parameter {name} missing in the rewritten model")
        else:
            cmp.tensor(f"{mode} grad of {name}", g, run.grads[name], scale)
    for i, (g, q) in enumerate(zip(ref.input_grads, run.input_grads)):
        if g is not None and q is not None:
            cmp.tensor(f"{mode} grad of input {i}", g, q, scale)
