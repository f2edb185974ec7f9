"""Pair run (`adopt rules test`, `adopt verify --class --shape`): one model class of an original
file and of its rewrite, built with the same seed at the sizes the file gives (the input shape is
the caller's), the rewrite loaded strictly with the original's state dict, outputs and all
gradients compared in eval and in train mode (dropout off) under the dtype's policy. With
--kernel, the rewrite must have called that adopt_kernels function (the fast path ran).

Writes one result line (schema.py: Check).
"""
import argparse
import json
import os
import traceback

import torch

from adopt_harness.build import constructor_kwargs, load_as
from adopt_harness.compare import TORCH_DTYPES, policy_for
from adopt_harness.counting import FastPathCounter, compiled_kernel_of
from adopt_harness.inputs import shaped
from adopt_harness.protocol import Channel
from adopt_harness.sidebyside import RewrittenRaised, compare_rewrite, load_strict, reference
from adopt_harness.text import clip


def short(e):
    """One line naming the exception, never a traceback."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {clip(text, 200)}" if text else type(e).__name__


def build(module, name, overrides):
    torch.manual_seed(0)
    return getattr(module, name)(**constructor_kwargs(module, name, overrides, tiny=False))


def run(args):
    dtype = TORCH_DTYPES[args.dtype]
    policy = policy_for(args.dtype)
    overrides = json.loads(args.config)
    shape = [int(s) for s in args.shape.split(",") if s]
    inputs = ([shaped(shape, dtype)], {})
    try:
        # the original must build and run on this input; if it does not, nothing can be compared
        a = build(load_as(args.before, None, "adopt_check"), args.model, overrides).to(dtype)
        with torch.no_grad():
            a.eval()
            a(*inputs[0])
    except Exception as e:
        return {"status": "not_runnable", "reason": f"the original {args.model} does not build or run on shape ({args.shape}): {short(e)}", "problems": []}
    after = load_as(args.after, None, "adopt_check")
    # counting from the build on: a rewrite may call its kernel in the constructor (an optimizer)
    with FastPathCounter(args.kernel or None) as counter:
        try:
            b = build(after, args.model, overrides).to(dtype)
        except Exception as e:  # the original builds: a rewrite that does not is wrong
            return {"status": "mismatch", "problems": [f"the rewritten {args.model} raises when built: {short(e)}"]}
        wrong = load_strict(b, a.state_dict())
        if wrong:
            return {"status": "mismatch", "problems": [wrong], "strict_load": False}
        refs = reference(a, inputs)
        try:
            cmp, notes, _ = compare_rewrite(b, inputs, refs, policy, original=a)
        except RewrittenRaised as e:
            return {"status": "mismatch", "problems": [str(e)], **counter.result()}
    counts = counter.result()
    if args.kernel and counts["fast_path_calls"] <= 0:
        cmp.problems.append(f"the rewritten code never called {args.kernel} (the fast path was not taken)")
    compiled = compiled_kernel_of(args.kernel) if args.kernel and dtype in (torch.float32, torch.bfloat16) else None
    if compiled and counts["fast_path_calls"] > 0 and compiled not in counts["compiled_kernels"]:
        # the registry lists a compiled kernel for this function: say when it did not run
        notes.append(f"{args.kernel} ran without its compiled kernel {compiled} (no compiler, a switch off, or a reference formulation)")
    result = {"status": "mismatch" if cmp.problems else "verified", "problems": cmp.problems[:10], "strict_load": True, **cmp.summary(), **counts}
    if notes:
        result["notes"] = notes
    return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--model", required=True)
    p.add_argument("--shape", required=True)
    p.add_argument("--dtype", default="fp32", choices=sorted(TORCH_DTYPES))
    p.add_argument("--kernel", default="")
    p.add_argument("--config", default="{}", help="JSON of constructor arguments or config attributes")
    args = p.parse_args()
    channel = Channel("pair")
    try:
        result = run(args)
    except Exception as e:  # reported, not raised: the caller reads one result line
        tb = traceback.extract_tb(e.__traceback__)
        where = f" ({os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
        result = {"status": "mismatch", "problems": [f"the rewritten model raises: {short(e)}{where}"]}
    channel.result({"class": args.model, **result})


if __name__ == "__main__":
    main()
