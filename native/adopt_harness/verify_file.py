"""Verification of a rewritten file against its original when nobody says how to build the model.

`adopt verify ORIGINAL REWRITTEN` without --class/--shape, and `adopt rewrite --verify`, land here.
For each class asked for (by default: every nn.Module class the two files define), the harness
builds a tiny instance in both files with the same seed, loads the original state dict into the
rewritten one strictly, finds inputs the model accepts, and compares every output tensor, every
parameter gradient and every input gradient, in eval mode and in train mode with dropout off.
It then times forward (eval, no grad) and a training step (forward + backward) of both,
interleaved, median of repeats after warm-up.

Several rewritten variants of one original can be checked in one run (`--variant NAME=PATH`), so
a caller can time each rule's rewrite on its own and learn which ones make the model slower.

Prints one JSON object as its last line: {"results": [{variant, class, status, ...}], ...}.
"""
import argparse
import importlib
import importlib.util
import inspect
import json
import os
import signal
import statistics
import sys
import time
import traceback
import uuid

import torch
from torch import nn

from adopt_harness.hf_verify import FAST_PATH_KERNELS, compiled_calls, no_dropout, scaled_error, shrink

TOL = 1e-3
TIMEOUT_S = int(os.environ.get("ADOPT_VERIFY_TIMEOUT", "60"))

# Sizes for constructor parameters that are plain numbers, by name.
PARAM_SIZES = {
    "hidden_size": 32, "dim": 32, "d_model": 32, "embed_dim": 32, "n_embd": 32, "hidden_dim": 32, "emb_dim": 32,
    "in_features": 32, "out_features": 32, "in_dim": 32, "out_dim": 32, "features": 32, "width": 32,
    "num_heads": 4, "n_head": 4, "n_heads": 4, "heads": 4, "num_attention_heads": 4, "nhead": 4,
    "num_layers": 2, "n_layer": 2, "depth": 2, "layers": 2,
    "intermediate_size": 64, "ffn_dim": 64, "mlp_dim": 64, "hidden_features": 64, "dim_feedforward": 64,
    "in_channels": 8, "out_channels": 8, "inplanes": 8, "planes": 8, "channels": 8, "in_chans": 3, "inp": 8, "oup": 8,
    "expand_ratio": 2, "ndim": 32, "normalized_shape": 32,
    "num_channels": 3, "vocab_size": 99, "num_embeddings": 99, "max_position_embeddings": 64,
    "block_size": 64, "seq_len": 64, "max_seq_len": 64, "kernel_size": 3, "stride": 1, "eps": 1e-5,
    "num_classes": 10, "num_labels": 3, "head_dim": 8, "n_kv_heads": 2, "num_key_value_heads": 2,
    "num_groups": 4, "temb_channels": 8,
}


class Timeout(Exception):
    pass


class RewrittenRaised(Exception):
    """The original ran and the rewrite did not: a mismatch, not an unrunnable model."""


def _alarm(_signum, _frame):
    raise Timeout(f"timed out after {TIMEOUT_S}s")


def package_of(path):
    """(package name, directory to put on sys.path) when the file sits in a package."""
    parts = []
    d = os.path.dirname(os.path.abspath(path))
    while os.path.exists(os.path.join(d, "__init__.py")):
        parts.insert(0, os.path.basename(d))
        d = os.path.dirname(d)
    return (".".join(parts), d) if parts else (None, os.path.dirname(os.path.abspath(path)))


def load(path, as_original, package_from=None):
    package, top = package_of(package_from or path)
    if top not in sys.path:
        sys.path.insert(0, top)
    stem = os.path.splitext(os.path.basename(package_from or path))[0]
    if as_original and package:
        try:
            return importlib.import_module(f"{package}.{stem}")
        except ModuleNotFoundError as e:
            if e.name != f"{package}.{stem}":
                raise
    # a rewritten file (or an original outside its package tree) is loaded as a sibling of the
    # original module, so its relative imports resolve the same way
    name = f"{package + '.' if package else ''}adopt_{stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = package or ""
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def module_classes(module):
    return [n for n, o in vars(module).items() if inspect.isclass(o) and issubclass(o, nn.Module) and o.__module__ == module.__name__]


def config_for(module, cls, param, overrides):
    want = param.annotation.__name__ if inspect.isclass(param.annotation) else None
    config_class = getattr(cls, "config_class", None)
    candidates = [config_class] if inspect.isclass(config_class) else []
    candidates += [o for n, o in vars(module).items() if inspect.isclass(o) and (n == want or n.endswith("Config"))]
    if want:
        candidates.sort(key=lambda c: c.__name__ != want)
    for c in candidates:
        try:
            config = c()
        except TypeError:
            continue
        if hasattr(config, "to_dict"):
            shrink(config)
        else:  # a dataclass or plain class: shrink the sizes it has
            for k, v in PARAM_SIZES.items():
                if isinstance(getattr(config, k, None), int) and not isinstance(getattr(config, k), bool):
                    setattr(config, k, v)
            for k, v in list(vars(config).items()):
                if "drop" in k and isinstance(v, float):
                    setattr(config, k, 0.0)
        for k, v in overrides.items():
            setattr(config, k, v)
        return config
    raise RuntimeError(f"cannot build {cls.__name__}: its parameter '{param.name}' needs a config and the file defines none that builds without arguments")


def build(module, name, overrides):
    cls = getattr(module, name)
    kwargs = {}
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name in overrides:
            kwargs[p.name] = overrides[p.name]
        elif "config" in p.name or (inspect.isclass(p.annotation) and p.annotation.__name__.endswith("Config")):
            kwargs[p.name] = config_for(module, cls, p, {k: v for k, v in overrides.items() if k not in kwargs})
        elif p.default is not inspect.Parameter.empty:
            if p.name in PARAM_SIZES and isinstance(p.default, int) and not isinstance(p.default, bool):
                kwargs[p.name] = PARAM_SIZES[p.name]
        elif p.name in PARAM_SIZES:
            kwargs[p.name] = PARAM_SIZES[p.name]
        else:
            raise RuntimeError(f"cannot build {name}: no value for its parameter '{p.name}' (give one with --config '{{\"{p.name}\": ...}}')")
    return kwargs


def first_leaf(model):
    for m in model.modules():
        if isinstance(m, (nn.Embedding, nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)):
            return m
        if type(m).__name__ == "Conv1D" and hasattr(m, "weight"):  # transformers' transposed Linear
            return m
    return None


def input_candidates(model, config):
    """Input tensors to try, most likely first, from the module the model starts with."""
    leaf = first_leaf(model)
    sizes = []
    if isinstance(leaf, nn.Embedding):
        yield "ids", lambda: torch.randint(0, min(leaf.num_embeddings, 99), (2, 7))
    if isinstance(leaf, (nn.Conv2d, nn.BatchNorm2d)):
        c = leaf.in_channels if isinstance(leaf, nn.Conv2d) else leaf.num_features
        yield "image", lambda: torch.randn(2, c, 16, 16)
        yield "image32", lambda: torch.randn(2, c, 32, 32)
    if isinstance(leaf, nn.Conv1d):
        yield "signal", lambda: torch.randn(2, leaf.in_channels, 16)
    if isinstance(leaf, nn.Conv3d):
        yield "video", lambda: torch.randn(2, leaf.in_channels, 4, 16, 16)
    if isinstance(leaf, nn.Linear):
        sizes.append(leaf.in_features)
    if type(leaf).__name__ == "Conv1D":
        sizes.append(leaf.weight.shape[0])
    if isinstance(leaf, nn.LayerNorm):
        sizes.append(leaf.normalized_shape[-1])
    for key in ("hidden_size", "d_model", "n_embd", "dim", "embed_dim"):
        if isinstance(getattr(config, key, None), int):
            sizes.append(getattr(config, key))
    for m in model.modules():
        if isinstance(m, nn.Linear):
            sizes.append(m.in_features)
    seen = set()
    for d in sizes:
        if d not in seen:
            seen.add(d)
            yield f"float(2,7,{d})", (lambda d=d: torch.randn(2, 7, d))
    if config is not None and isinstance(getattr(config, "vocab_size", None), int):
        yield "ids", lambda: torch.randint(0, min(config.vocab_size, 99), (2, 7))


def required_inputs(model):
    params = list(inspect.signature(model.forward).parameters.values())
    return [p for p in params if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def find_inputs(model, config, dtype):
    """The first candidate the original accepts. Further required tensor arguments get the same
    kind, or a float tensor of another size the model's layers take (a residual of another width)."""
    req = required_inputs(model)
    if not req:
        raise RuntimeError(f"{type(model).__name__}.forward takes no required input")
    candidates = list(input_candidates(model, config))
    floats = [(label, make) for label, make in candidates if label.startswith("float")]
    tried = []
    for label, make in candidates:
        torch.manual_seed(3)
        x = make()
        if x.is_floating_point():
            x = x.to(dtype)
        rests = [[x.clone() if x.is_floating_point() else x for _ in req[1:]]]
        if len(req) > 1:
            for _, other in floats:
                y = other().to(dtype)
                if y.shape != x.shape:
                    rests.append([y.clone() for _ in req[1:]])
        for rest in rests[:4]:
            inputs = [x] + rest
            try:
                with torch.no_grad():
                    model.eval()
                    model(*inputs)
                return inputs, label + ("" if rest is rests[0] else f" + {tuple(rest[0].shape)}")
            except Timeout:
                raise
            except Exception as e:  # the next candidate may fit
                tried.append(f"{label}: {type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}")
    raise RuntimeError(f"no input the model accepts ({'; '.join(tried[:4]) or 'no candidate'})")


def tensors(out):
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if hasattr(out, "to_tuple"):
        out = out.to_tuple()
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in tensors(o)]
    return []


def scaled(a, b, scale=1.0):
    """The harness's relative error (hf_verify.scaled_error); a shape change is infinitely wrong."""
    return float("inf") if a.shape != b.shape else scaled_error(a, b, scale)


CALLS = {"n": 0}


def count_fast_path():
    """Counts calls into adopt_kernels, so a verified rewrite is known to have taken its fast path."""
    CALLS["n"] = 0
    try:
        import adopt_kernels
    except ImportError:
        return {"n": -1}
    for name in FAST_PATH_KERNELS:
        fn = getattr(adopt_kernels, name, None)
        if fn is None or getattr(fn, "_adopt_counted", False):
            continue

        def counting(*a, _fn=fn, **k):
            CALLS["n"] += 1
            return _fn(*a, **k)

        counting._adopt_counted = True
        setattr(adopt_kernels, name, counting)
    return CALLS


def elapsed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def compare_pair(a, b, inputs, problems, worst):
    for mode in ("eval", "train"):
        for m in (a, b):
            m.train(mode == "train")
            no_dropout(m)
        xa = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
        xb = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
        torch.manual_seed(1)
        oa = tensors(a(*xa))
        torch.manual_seed(1)
        try:
            ob = tensors(b(*xb))
        except Timeout:
            raise
        except Exception as e:  # the original ran on these inputs
            raise RewrittenRaised(f"{mode}: the rewritten model raises where the original runs: {type(e).__name__}: {str(e)[:200]}")
        if not oa:
            raise RuntimeError("the model returned no floating-point tensor")
        if len(oa) != len(ob):
            problems.append(f"{mode}: {len(oa)} output tensors vs {len(ob)}")
            continue
        for i, (p, q) in enumerate(zip(oa, ob)):
            err = scaled(p, q)
            if p.shape == q.shape:
                worst["max_abs"] = max(worst["max_abs"], (p.double() - q.double()).abs().max().item() if p.numel() else 0.0)
            worst["max_rel"] = max(worst["max_rel"], err)
            if err > TOL:
                problems.append(f"{mode} output {i}: {err:.2g} of its largest value")
        loss = sum((p * torch.randn(p.shape, generator=torch.Generator().manual_seed(2 + i), dtype=p.dtype)).sum() for i, p in enumerate(oa) if p.requires_grad)
        loss_b = sum((q * torch.randn(q.shape, generator=torch.Generator().manual_seed(2 + i), dtype=q.dtype)).sum() for i, q in enumerate(ob) if q.requires_grad)
        if not isinstance(loss, torch.Tensor):
            continue  # nothing differentiable (integer outputs only)
        loss.backward()
        try:
            loss_b.backward()
        except Exception as e:
            raise RewrittenRaised(f"{mode}: the rewritten model's backward raises: {type(e).__name__}: {str(e)[:200]}")
        grads = [p.grad for p in a.parameters() if p.grad is not None and p.grad.numel()]
        scale = max([g.abs().max().item() for g in grads] or [1.0])
        pb = dict(b.named_parameters())
        for name, p in a.named_parameters():
            q = pb.get(name)
            if q is None:
                problems.append(f"{mode}: parameter {name} missing in the rewritten model")
            elif (p.grad is None) != (q.grad is None):
                problems.append(f"{mode} grad of {name}: present on one side only")
            elif p.grad is not None and (err := scaled(p.grad, q.grad, scale)) > TOL:
                problems.append(f"{mode} grad of {name}: {err:.2g} of its largest value")
        for i, (p, q) in enumerate(zip(xa, xb)):
            if p.grad is not None and q.grad is not None and (err := scaled(p.grad, q.grad, scale)) > TOL:
                problems.append(f"{mode} grad of input {i}: {err:.2g} of its largest value")
        a.zero_grad()
        b.zero_grad()


def timings(a, b, inputs, repeats):
    out = {}
    for m in (a, b):
        m.eval()

    def fwd(m):
        with torch.no_grad():
            m(*inputs)

    def step(m):
        m.train()
        no_dropout(m)
        loss = sum(t.float().sum() for t in tensors(m(*inputs)))
        loss.backward()
        m.zero_grad(set_to_none=True)

    for kind, fn in (("forward", fwd), ("train", step)):
        for _ in range(2):  # warm-up
            fn(a)
            fn(b)
        ta, tb = [], []
        for _ in range(repeats):  # interleaved, so drift hits both alike
            ta.append(elapsed(lambda: fn(a)))
            tb.append(elapsed(lambda: fn(b)))
        oa, ob = statistics.median(ta), statistics.median(tb)
        # the lower quartile of the interleaved pairs' ratios: a rewrite is called slower only when
        # three pairs in four show it slower, never on one noisy median
        pairs = sorted(y / x for x, y in zip(ta, tb) if x > 0)
        best = pairs[len(pairs) // 4] if pairs else None
        out[kind] = {"original_s": oa, "rewritten_s": ob, "ratio": ob / oa if oa > 0 else None, "ratio_best": best}
    return out


def check_class(original, rewritten, name, overrides, dtype, repeats):
    result = {"class": name}
    if not hasattr(rewritten, name):
        return {**result, "status": "mismatch", "problems": [f"the rewritten file has no class {name}"]}
    kwargs = build(original, name, overrides)
    torch.manual_seed(0)
    a = getattr(original, name)(**kwargs)
    try:
        kwargs_b = build(rewritten, name, overrides)
        torch.manual_seed(0)
        b = getattr(rewritten, name)(**kwargs_b)
    except Timeout:
        raise
    except Exception as e:  # the original builds: a rewrite that does not is wrong
        return {**result, "status": "mismatch", "problems": [f"the rewritten class raises when built: {type(e).__name__}: {str(e)[:200]}"]}
    try:
        b.load_state_dict(a.state_dict(), strict=True)
    except RuntimeError as e:
        return {**result, "status": "mismatch", "problems": [f"the rewritten model does not load the original state dict strictly: {str(e)[:300]}"]}
    a, b = a.to(dtype), b.to(dtype)
    config = next((v for v in kwargs.values() if hasattr(v, "__dict__") and not isinstance(v, (nn.Module, torch.Tensor))), None)
    inputs, label = find_inputs(a, config, dtype)
    calls = count_fast_path()
    compiled_before = compiled_calls()
    problems, worst = [], {"max_abs": 0.0, "max_rel": 0.0}
    try:
        compare_pair(a, b, inputs, problems, worst)
    except RewrittenRaised as e:
        problems.append(str(e))
    result.update({"status": "mismatch" if problems else "verified", "problems": problems[:10], "inputs": label, "strict_load": True, "fast_path_calls": calls["n"], "compiled_calls": compiled_calls() - compiled_before, **worst})
    if repeats and not problems:
        # timed in float32, the dtype models run in
        a32, b32 = a.float(), b.float()
        result["timings"] = timings(a32, b32, [x.float() if x.is_floating_point() else x for x in inputs], repeats)
    return result


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
    dtype = torch.float64 if args.dtype == "fp64" else torch.float32
    overrides = json.loads(args.config)
    signal.signal(signal.SIGALRM, _alarm)
    results = []
    try:
        original = load(args.original, True)
    except Exception as e:
        print(json.dumps({"error": f"cannot import {args.original}: {type(e).__name__}: {e}"}))
        return
    names = [c for c in args.classes.split(",") if c] or module_classes(original)
    for variant in args.variant:
        vname, path = variant.split("=", 1)
        try:
            rewritten = load(path, False, package_from=None if args.own_package else args.original)
        except Exception as e:
            results.append({"variant": vname, "status": "mismatch", "problems": [f"the rewritten file does not import: {type(e).__name__}: {e}"]})
            continue
        for name in names:
            started = time.time()
            signal.alarm(TIMEOUT_S)
            try:
                r = check_class(original, rewritten, name, overrides, dtype, args.repeats)
            except Timeout as e:
                r = {"class": name, "status": "not_runnable", "reason": str(e)}
            except Exception as e:  # a model we cannot build or feed is reported, not raised
                tb = traceback.extract_tb(e.__traceback__)
                where = f" ({os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb and not isinstance(e, RuntimeError) else ""
                r = {"class": name, "status": "not_runnable", "reason": f"{type(e).__name__ + ': ' if not isinstance(e, RuntimeError) else ''}{str(e)[:300]}{where}"}
            finally:
                signal.alarm(0)
            r.update({"variant": vname, "seconds": round(time.time() - started, 3)})
            results.append(r)
    print(json.dumps({"results": results, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
