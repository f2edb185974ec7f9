"""File run (`adopt verify ORIGINAL REWRITTEN` without --shape, `adopt rewrite --verify`): every
model class asked for (by default every nn.Module class the two files define) is built tiny from
the size table in both files with the same seed, the rewrite loaded strictly with the original's
state dict, fed inputs the input finder picks, and compared side by side (sidebyside.py) in eval
and train mode under the dtype's policy. Verified classes are then timed: forward (eval, no grad)
and a training step of both, interleaved, after warm-up.

A transformers modeling module (one defining a *PreTrainedModel) has its model classes checked
as `bench --hf --verify` checks them (hf_verify.verify_modules: the bare model from the family's
shrunk default config, inputs from its forward signature), and its other classes as above: so a
modeling file of any transformers version verifies the same way as HF-199's.

Several rewritten variants of one original can be checked in one run (`--variant NAME=PATH`), so
a caller can time each rule's rewrite on its own and learn which ones make the model slower.

Writes a progress line per class and one result line (schema.py: FileResult).
"""
import argparse
import inspect
import json
import os
import statistics
import time
import traceback
import types

import torch

from adopt_harness import hf_verify
from adopt_harness.build import config_of, constructor_kwargs, load, module_classes
from adopt_harness.compare import TORCH_DTYPES, policy_for, tensors
from adopt_harness.counting import FastPathCounter
from adopt_harness.deadline import Timeout, deadline
from adopt_harness.dropout import no_dropout
from adopt_harness.inputs import find_inputs
from adopt_harness.protocol import Channel
from adopt_harness.sidebyside import RewrittenRaised, compare_rewrite, load_strict, reference

TIMEOUT_S = int(os.environ.get("ADOPT_VERIFY_TIMEOUT", "60"))


def elapsed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _forward(m, inputs):
    with torch.no_grad():
        m(*inputs)


def _step(m, inputs):
    m.train()
    no_dropout(m)
    loss = sum(t.float().sum() for t in tensors(m(*inputs)))
    loss.backward()
    m.zero_grad(set_to_none=True)


def timings(a, b, inputs, repeats):
    out = {}
    for m in (a, b):
        m.eval()  # the training step sets train mode itself
    for kind, fn in (("forward", _forward), ("train", _step)):
        for _ in range(2):  # warm-up
            fn(a, inputs)
            fn(b, inputs)
        ta, tb = [], []
        for _ in range(repeats):  # interleaved, so drift hits both alike
            ta.append(elapsed(lambda: fn(a, inputs)))
            tb.append(elapsed(lambda: fn(b, inputs)))
        oa, ob = statistics.median(ta), statistics.median(tb)
        # the lower quartile of the interleaved pairs' ratios: a rewrite is called slower only when
        # three pairs in four show it slower, never on one noisy median
        pairs = sorted(y / x for x, y in zip(ta, tb) if x > 0)
        best = pairs[len(pairs) // 4] if pairs else None
        out[kind] = {"original_s": oa, "rewritten_s": ob, "ratio": ob / oa if oa > 0 else None, "ratio_best": best}
    return out


def _float32(x):
    """An input in float32 (a tuple of tensors, such as a rotary table, element by element)."""
    if isinstance(x, tuple):
        return tuple(_float32(t) for t in x)
    return x.float() if isinstance(x, torch.Tensor) and x.is_floating_point() else x


def _sizes_of(kwargs):
    """The sizes a class built without a config was given (hidden_size=32), read by the input
    finder as it reads a config's: a LayerNorm without weights has no other width to go by."""
    ints = {k: v for k, v in kwargs.items() if isinstance(v, int) and not isinstance(v, bool)}
    return types.SimpleNamespace(**ints) if ints else None


def _build_pair(original, rewritten, name, overrides, dtype):
    """(original model, rewritten model, config) or a mismatch result for the rewrite."""
    kwargs = constructor_kwargs(original, name, overrides)
    torch.manual_seed(0)
    a = getattr(original, name)(**kwargs)
    try:
        kwargs_b = constructor_kwargs(rewritten, name, overrides)
        torch.manual_seed(0)
        b = getattr(rewritten, name)(**kwargs_b)
    except Timeout:
        raise
    except Exception as e:  # the original builds: a rewrite that does not is wrong
        return None, {"status": "mismatch", "problems": [f"the rewritten class raises when built: {type(e).__name__}: {str(e)[:200]}"]}
    wrong = load_strict(b, a.state_dict())
    if wrong:
        return None, {"status": "mismatch", "problems": [wrong], "strict_load": False}
    return (a.to(dtype), b.to(dtype), config_of(kwargs) or _sizes_of(kwargs)), None


def check_class(original, rewritten, name, overrides, dtype, repeats):
    if not hasattr(rewritten, name):
        return {"class": name, "status": "mismatch", "problems": [f"the rewritten file has no class {name}"]}
    built, failed = _build_pair(original, rewritten, name, overrides, dtype)
    if failed:
        return {"class": name, **failed}
    a, b, config = built
    args, label = find_inputs(a, config, dtype)
    inputs = (args, {})
    with FastPathCounter() as counter:
        refs = reference(a, inputs)
        try:
            cmp, notes, _ = compare_rewrite(b, inputs, refs, policy_for(dtype), original=a)
            problems = cmp.problems
        except RewrittenRaised as e:
            cmp, notes, problems = None, [], [str(e)]
    result = {"class": name, "status": "mismatch" if problems else "verified", "problems": problems[:10], "inputs": label, "strict_load": True,
              **(cmp.summary() if cmp else {}), **counter.result()}
    if notes:
        result["notes"] = notes
    if repeats and not problems:
        # timed in float32, the dtype models run in
        result["timings"] = timings(a.float(), b.float(), [_float32(x) for x in args], repeats)
    return result


def not_runnable(name, e):
    if isinstance(e, (Timeout, RuntimeError)):
        return {"class": name, "status": "not_runnable", "reason": str(e)[:300]}
    tb = traceback.extract_tb(e.__traceback__)
    where = f" ({os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
    return {"class": name, "status": "not_runnable", "reason": f"{type(e).__name__}: {str(e)[:300]}{where}"}


def transformers_models(module):
    """The module's transformers model classes (those with a config_class, which take keyword
    inputs the size table cannot guess), when it defines a *PreTrainedModel; else none."""
    if not any(n.endswith("PreTrainedModel") and getattr(o, "config_class", None) for n, o in vars(module).items() if inspect.isclass(o)):
        return set()
    return {n for n in module_classes(module) if getattr(getattr(module, n), "config_class", None) is not None}


def check_model(original, rewritten, label):
    """A transformers modeling module checked as hf_verify checks HF-199: its bare model built from
    the family's shrunk default config, fed from its forward signature."""
    started = time.time()
    try:
        with deadline(TIMEOUT_S):
            r = hf_verify.verify_modules(label, original, rewritten)
    except (Timeout, hf_verify.NotRunnable) as e:
        r = {"status": "not_runnable", "reason": " ".join(str(e).split())[:300]}
    except Exception as e:  # the model code failed where the harness could not tell whose fault it is
        r = not_runnable("", e)
    r.pop("timings", None)  # timed per class below, never per model
    r.update({"model": label, "inputs": "the model's forward signature (transformers config)", "seconds": round(time.time() - started, 3)})
    r.setdefault("class", label)
    return r


def check_variant(args, channel, original, names, vname, path, dtype, overrides):
    try:
        rewritten = load(path, False, package_from=None if args.own_package else args.original)
    except Exception as e:
        return [{"variant": vname, "status": "mismatch", "problems": [f"the rewritten file does not import: {type(e).__name__}: {e}"]}]
    results = []
    models = transformers_models(original) & set(names)
    if models:
        r = check_model(original, rewritten, os.path.splitext(os.path.basename(args.original))[0])
        r["variant"] = vname
        channel.progress(model=r["class"], status=r["status"], message=vname)
        results.append(r)
    for name in [n for n in names if n not in models]:
        started = time.time()
        try:
            with deadline(TIMEOUT_S):
                r = check_class(original, rewritten, name, overrides, dtype, args.repeats)
        except Exception as e:  # a model we cannot build or feed is reported, not raised
            r = not_runnable(name, e)
        r.update({"variant": vname, "seconds": round(time.time() - started, 3)})
        channel.progress(model=name, status=r["status"], message=vname)
        results.append(r)
    return results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("original")
    p.add_argument("--variant", action="append", default=[], help="NAME=PATH of a rewritten file")
    p.add_argument("--classes", default="", help="comma-separated; default: every nn.Module class")
    p.add_argument("--config", default="{}", help="JSON of constructor arguments or config attributes")
    p.add_argument("--dtype", default="fp64", choices=["fp32", "fp64"])
    p.add_argument("--repeats", type=int, default=0, help="time forward and training step (median of N)")
    p.add_argument("--own-package", action="store_true", help="load each variant in the package its own path is in (a rewritten copy of the package)")
    args = p.parse_args()
    channel = Channel("file")
    dtype = TORCH_DTYPES[args.dtype]
    overrides = json.loads(args.config)
    try:
        original = load(args.original, True)
    except Exception as e:
        channel.result({"results": [], "torch": torch.__version__, "error": f"cannot import {args.original}: {type(e).__name__}: {e}"})
        return
    names = [c for c in args.classes.split(",") if c] or module_classes(original)
    results = []
    for variant in args.variant:
        vname, path = variant.split("=", 1)
        results += check_variant(args, channel, original, names, vname, path, dtype, overrides)
    channel.result({"results": results, "torch": torch.__version__})


if __name__ == "__main__":
    main()
