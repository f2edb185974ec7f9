"""Numerical check of one rewrite: the original and rewritten files are imported side by side,
the model class is built in each with the same seed, the rewritten model loads the original's
state dict strictly, and forward outputs and all gradients are compared in eval mode and in
train mode (dropout off). It also checks that the rewritten code took the fast path: the
kernel named by the rule must have been called.

Prints one JSON object: {"verified": bool, "problems": [...], "max_abs": float, ...}.
"""
import argparse
import importlib.util
import inspect
import json
import os
import sys
import traceback
import uuid

import torch
from torch import nn

from adopt_harness.hf_verify import FAST_PATH_KERNELS

DTYPES = {"fp32": torch.float32, "fp64": torch.float64, "fp16": torch.float16, "bf16": torch.bfloat16}


def load_module(path):
    name = f"adopt_check_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def build(module, cls_name, overrides=None):
    cls = getattr(module, cls_name)
    if overrides:
        # constructor arguments or config attributes given by the user, as `adopt verify` takes them
        from adopt_harness.verify_file import build as constructor_kwargs

        return cls(**constructor_kwargs(module, cls_name, overrides))
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    needs_config = params and params[0].default is inspect.Parameter.empty
    if needs_config:
        configs = [v for k, v in vars(module).items() if isinstance(v, type) and k.endswith("Config")]
        if not configs:
            raise RuntimeError(f"{cls_name} needs a config and the file defines no *Config class")
        return cls(configs[0]())
    return cls()


def dropout_off(model):
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0


def count_calls(kernel):
    """Wraps adopt_kernels.<name> so the check can tell the fast path ran."""
    calls = {"n": 0}
    try:
        import adopt_kernels
    except ImportError:
        return calls
    # no kernel named: any of the kernels a rewrite can call counts as the fast path
    names = [kernel.split(".")[-1]] if kernel else list(FAST_PATH_KERNELS)
    for name in names:
        original = getattr(adopt_kernels, name, None)
        if original is None:
            continue

        def wrapper(*args, _original=original, **kwargs):
            calls["n"] += 1
            return _original(*args, **kwargs)

        setattr(adopt_kernels, name, wrapper)
    return calls


def compare(tag, a, b, atol, rtol, problems, worst):
    if isinstance(a, (tuple, list)):
        for i, (x, y) in enumerate(zip(a, b)):
            compare(f"{tag}[{i}]", x, y, atol, rtol, problems, worst)
        return
    if a is None or b is None:
        if (a is None) != (b is None):
            problems.append(f"{tag}: one side is None")
        return
    if a.shape != b.shape:
        problems.append(f"{tag}: shape {tuple(a.shape)} vs {tuple(b.shape)}")
        return
    diff = (a.double() - b.double()).abs()
    max_abs = diff.max().item() if diff.numel() else 0.0
    rel = (diff / b.double().abs().clamp_min(1e-12)).max().item() if diff.numel() else 0.0
    worst["max_abs"] = max(worst["max_abs"], max_abs)
    worst["max_rel"] = max(worst["max_rel"], rel)
    if not torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol):
        problems.append(f"{tag}: max abs error {max_abs:.3g}, max rel error {rel:.3g} (atol {atol}, rtol {rtol})")


def first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for o in out:
            t = first_tensor(o)
            if t is not None:
                return t
    return None


def short(e):
    """One line naming the exception, never a traceback."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def run(args):
    problems = []
    worst = {"max_abs": 0.0, "max_rel": 0.0}
    dtype = DTYPES[args.dtype]
    calls = count_calls(args.kernel)
    overrides = json.loads(args.config)
    shape = [int(s) for s in args.shape.split(",") if s]
    try:
        # the original must build and run on this input; if it does not, nothing can be compared
        before = load_module(args.before)
        torch.manual_seed(0)
        a = build(before, args.model, overrides).to(dtype)
        with torch.no_grad():
            a.eval()
            a(torch.randn(*shape, dtype=dtype))
    except Exception as e:
        return {"verified": False, "not_runnable": True, "reason": f"the original {args.model} does not build or run on shape ({args.shape}): {short(e)}", "problems": []}
    after = load_module(args.after)
    torch.manual_seed(0)
    try:
        b = build(after, args.model, overrides).to(dtype)
    except Exception as e:  # the original builds: a rewrite that does not is wrong
        return {"verified": False, "problems": [f"the rewritten {args.model} raises when built: {short(e)}"], **worst, "fast_path_calls": calls["n"]}
    try:
        b.load_state_dict(a.state_dict(), strict=True)
    except RuntimeError as e:
        problems.append(f"the rewritten model does not load the original state dict strictly: {e}")
        return {"verified": False, "problems": problems, **worst, "fast_path_calls": calls["n"]}
    for mode in ("eval", "train"):
        torch.manual_seed(1)
        x = torch.randn(*shape, dtype=dtype)
        xa = x.clone().requires_grad_(True)
        xb = x.clone().requires_grad_(True)
        for m in (a, b):
            m.train(mode == "train")
            dropout_off(m)
        oa = a(xa)
        ob = b(xb)
        compare(f"{mode} output", first_tensor(oa), first_tensor(ob), args.atol, args.rtol, problems, worst)
        ta, tb = first_tensor(oa), first_tensor(ob)
        torch.manual_seed(2)
        w = torch.randn_like(ta)
        (ta * w).sum().backward()
        (tb * w).sum().backward()
        compare(f"{mode} input grad", xa.grad, xb.grad, args.atol, args.rtol, problems, worst)
        pb = dict(b.named_parameters())
        for name, p in a.named_parameters():
            compare(f"{mode} grad of {name}", p.grad, pb[name].grad, args.atol, args.rtol, problems, worst)
        a.zero_grad()
        b.zero_grad()
    if args.kernel and calls["n"] == 0:
        problems.append(f"the rewritten code never called {args.kernel} (the fast path was not taken)")
    return {"verified": not problems, "problems": problems, **worst, "fast_path_calls": calls["n"]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--model", required=True)
    p.add_argument("--shape", required=True)
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--kernel", default="")
    p.add_argument("--config", default="{}", help="JSON of constructor arguments or config attributes")
    args = p.parse_args()
    try:
        result = run(args)
    except Exception as e:  # reported, not raised: the caller reads one JSON line
        tb = traceback.extract_tb(e.__traceback__)
        where = f" ({os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
        result = {"verified": False, "problems": [f"the rewritten model raises: {short(e)}{where}"]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
