"""Verification of rewritten transformers modeling files, model by model.

For each model: the original module is imported from the installed transformers; the rewritten
file is imported as a sibling module of the same package (so its relative imports resolve). The
original model decides what is compared: a model class of the file (the bare model first), a tiny
config derived from its default config (hf_inputs.ladder: the most aggressive shrink first, milder
ones after), inputs built from its forward signature and config (hf_inputs.make_inputs) and the
dtype (float64, float32 where the model cannot run in float64). The first choice the original
runs with, reproducibly, in eval and train mode, is kept; the original failing is a harness or
config problem, never the rewrite's. The rewritten model is then built once with the same seed
and config, loads the original state dict strictly, and its outputs and every parameter gradient
are compared in eval mode and in train mode with dropout off. Anything it does differently from
the original there, failing included, is a mismatch.

Usage: python -m adopt_harness.hf_verify OUT.jsonl MODEL=REWRITTEN_FILE [...]
Writes one JSON line per model as soon as it is done (nothing measured is lost), with
status verified / mismatch / not_runnable and the reason.
"""
import importlib
import importlib.util
import json
import os
import signal
import sys
import time
import traceback

import torch
from torch import nn

from adopt_harness.hf_inputs import DROPOUT_WORDS, RUNGS, SMALL, NoInputs, candidate_classes, ladder, make_inputs

TIMEOUT_S = 60
# Errors are measured relative to the tensor's largest magnitude: deep random-init models have
# gradients in the thousands, where fp32 reassociation (threaded reductions, folded BatchNorm)
# moves the last digits. A wrong rewrite moves them by orders of magnitude more.
TOL = 1e-3
# A model this large at the chosen shrink would take minutes and gigabytes: not built.
MAX_PARAMS = 60_000_000


class Timeout(Exception):
    pass


class NotRunnable(Exception):
    pass


class OriginalFailed(Exception):
    """The original model cannot run with this class, config and inputs: a harness problem, never the rewrite's."""


class MissingLibrary(OriginalFailed):
    pass


def _alarm(_signum, _frame):
    raise Timeout(f"timed out after {TIMEOUT_S}s")


def _set(config, key, value):
    try:
        setattr(config, key, value)
    except (AttributeError, NotImplementedError, ValueError):
        pass  # some configs refuse a size (a read-only alias): keep theirs


def shrink(config, depth=0):
    for key, value in SMALL.items():
        if hasattr(config, key) and isinstance(getattr(config, key), int) and not isinstance(getattr(config, key), bool):
            _set(config, key, value)
    for key in list(vars(config)):
        v = getattr(config, key)
        if any(w in key for w in DROPOUT_WORDS) and isinstance(v, float):
            _set(config, key, 0.0)
        elif depth < 2 and hasattr(v, "to_dict") and hasattr(v, "model_type"):
            shrink(v, depth + 1)  # text_config, vision_config, encoder, decoder
    if hasattr(config, "head_dim") and isinstance(getattr(config, "head_dim"), int):
        _set(config, "head_dim", 8)
    return config


def no_dropout(model):
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        for attr in ("dropout", "attention_dropout", "activation_dropout", "attn_dropout", "p"):
            if isinstance(getattr(m, attr, None), float) and not isinstance(m, nn.Dropout):
                setattr(m, attr, 0.0)


# Differences below this are rounding of values that are zero in exact arithmetic (the gradient of
# a key bias under softmax's shift invariance, a bias followed by a normalisation).
# Measured against the largest gradient anywhere in the model, so a tensor whose true gradient is
# zero is not judged by its own rounding noise.
ABS_FLOOR = {torch.float64: 1e-12, torch.float32: 1e-5}


def scaled_error(a, b, scale=None):
    floor = ABS_FLOOR.get(b.dtype, 1e-5) * (scale if scale is not None else 1.0)
    a, b = a.double(), b.double()
    if not b.numel():
        return 0.0
    diff = (a - b).abs().max()
    return 0.0 if diff.item() <= floor else (diff / b.abs().max().clamp_min(1e-12)).item()


def first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "to_tuple"):
        out = out.to_tuple()
    if isinstance(out, (tuple, list)):
        for o in out:
            t = first_tensor(o)
            if t is not None and t.is_floating_point():
                return t
    return None


def import_rewritten(package, path):
    name = f"{package}.adopt_rewritten_{abs(hash(path))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = package
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# float64 first: folding BatchNorm or reassociating a reduction then changes the last digits only,
# where in fp32 deep random-init models amplify them past any fixed tolerance. Some models cannot
# run in float64 (masking constants like finfo(float32).min overflow, finfo(float64).min times a
# float32 mask is -inf and then NaN, buffers or inputs made in float32 inside the model): those
# are compared in float32, with the same scaled tolerance.
DTYPE_TROUBLE = ("overflow", "dtype", "Double", "Float", "scalar type", "not finite")
# (dtype, default dtype while the model is built and run): with float64 the default, a model makes
# its own masks and buffers in float64 too; some only build with float32 the default (a float32
# buffer they fill from a float64 one)
DTYPES = ((torch.float64, torch.float64), (torch.float64, torch.float32), (torch.float32, torch.float32))
# The compiled kernels take float32 and bfloat16, never float64: ADOPT_VERIFY_DTYPE=float32 checks
# every model in float32, so that a verified model is one whose compiled kernels ran (compiled_calls).
if os.environ.get("ADOPT_VERIFY_DTYPE") == "float32":
    DTYPES = ((torch.float32, torch.float32),)
MAX_CLASSES = 4
LADDER_S = TIMEOUT_S / 2


def _reason(e):
    if isinstance(e, (OriginalFailed, NoInputs)):
        return str(e)
    tb = traceback.extract_tb(e.__traceback__)
    # where the model code failed, rather than where torch noticed
    frame = next((f for f in reversed(tb) if "/torch/" not in f.filename and "adopt_harness" not in f.filename), tb[-1] if tb else None)
    where = f" ({frame.filename.split('/')[-1]}:{frame.lineno})" if frame else ""
    return f"{type(e).__name__}: {str(e)[:200]}{where}"


def verify(model, rewritten_path):
    package = f"transformers.models.{model}"
    original = importlib.import_module(f"{package}.modeling_{model}")
    try:
        rewritten = import_rewritten(package, rewritten_path)
    except Exception as e:  # the original module imports (above): the rewrite broke it
        return {"status": "mismatch", "problems": [f"the rewritten file does not import: {_reason(e)}"]}
    classes = candidate_classes(original)
    if not classes:
        raise NotRunnable("no model class with a config_class in the file")
    failures = []
    found = choose(model, classes, failures)
    if found is None:
        # nothing the original runs with: why the first class the harness could feed failed at its tiniest config
        fed = [f for f in failures if f[3]]
        name, rung, why, _ = (fed or failures)[0]
        others = len(fed or failures) - 1
        raise NotRunnable(why + (f" [{name}, {rung}; {others} milder configs or other classes failed too]" if others else ""))
    cls_a, rung, config, inputs, dtype, default, state, reference, original_s = found
    cls_b = getattr(rewritten, cls_a.__name__, None)
    if cls_b is None:
        return {"status": "mismatch", "class": cls_a.__name__, "problems": [f"the rewritten file has no class {cls_a.__name__}"]}
    # the rewritten model runs half the original's passes: this much time is plenty, whatever the
    # ladder spent, and a rewrite that needs more is reported, not hidden as not runnable
    budget = max(TIMEOUT_S // 2, int(3 * original_s) + 1)
    signal.alarm(budget)
    torch.set_default_dtype(default)
    try:
        result = compare(cls_b, config, inputs, dtype, state, reference, rewritten)
    except Timeout:
        result = {"status": "mismatch", "problems": [
            f"the rewritten model did not finish within {budget}s; the original's runs took {original_s:.1f}s"]}
    finally:
        torch.set_default_dtype(torch.float32)
    result["class"] = cls_a.__name__
    if rung != RUNGS[0]:
        result["config"] = rung
    if dtype is torch.float32:
        result["dtype"] = f"float32 (the original fails in float64: {failures[-1][2][:120]})"
    return result


def choose(model, classes, failures):
    """The first class, shrink and dtype the original runs with: a failure of the original is a harness
    or config problem, so the next, milder choice is tried. Failures are appended to `failures`."""
    started = time.monotonic()

    def failed(cls, rung, why, fed=True):
        failures.append((cls.__name__, rung, why, fed))
        if os.environ.get("ADOPT_HF_DEBUG"):
            print(f"[{model}] {cls.__name__}, {rung}: {why}", file=sys.stderr)

    for cls in classes[:MAX_CLASSES]:
        for rung, config, err in ladder(cls.config_class):
            if time.monotonic() - started > LADDER_S:
                failed(cls, rung, f"not tried: the search for a config stops after {LADDER_S:.0f}s")
                return None  # the rest of the time is a comparison's
            if config is None:
                failed(cls, rung, f"the shrunk config is refused: {_reason(err)}")
                continue
            try:
                torch.manual_seed(2)
                inputs = make_inputs(cls, config)
            except NoInputs as e:
                failed(cls, rung, str(e), fed=False)
                break  # the next class
            missing = False
            for dtype, default in DTYPES:
                torch.set_default_dtype(default)
                t0 = time.monotonic()
                try:
                    state, reference = run_original(cls, config, inputs, dtype)
                    return cls, rung, config, inputs, dtype, default, state, reference, time.monotonic() - t0
                except Timeout:
                    raise
                except Exception as e:
                    failed(cls, rung, _reason(e))
                    missing = isinstance(e, MissingLibrary)
                    if missing or not any(w in str(e) for w in DTYPE_TROUBLE):
                        break
                finally:
                    torch.set_default_dtype(torch.float32)
            if missing:
                break  # no milder config brings a library back
    return None


def _cast(inputs, dtype):
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}


def run_original(cls, config, inputs, dtype):
    """Outputs, output weights and parameter gradients of the original in eval and train mode."""
    torch.manual_seed(0)
    try:
        a = cls(config)
    except ImportError as e:  # a library this environment lacks: no config will do
        raise MissingLibrary(f"cannot build {cls.__name__}: {type(e).__name__}: {str(e)[:200]}")
    except Exception as e:
        raise OriginalFailed(f"cannot build {cls.__name__} from a shrunk config: {type(e).__name__}: {str(e)[:200]}")
    n = sum(p.numel() for p in a.parameters())
    if n > MAX_PARAMS:
        raise OriginalFailed(f"{cls.__name__} has {n / 1e6:.0f}M parameters at this size")
    state = {k: v.clone() for k, v in a.state_dict().items()}  # before any forward moves BatchNorm statistics
    a = a.to(dtype)
    inputs = _cast(inputs, dtype)
    reference = {}
    for mode in ("eval", "train"):
        a.train(mode == "train")
        no_dropout(a)
        # the noise floor: the original against itself, outputs and gradients
        runs = []
        for _ in range(2):
            torch.manual_seed(1)
            t0 = time.perf_counter()
            out = first_tensor(a(**inputs))
            seconds = time.perf_counter() - t0
            if out is None:
                raise OriginalFailed("the model returned no floating-point tensor")
            w = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(out.dtype)
            try:
                # the graph is kept: a model may cache a tensor computed with grad in eval mode (LeViT's
                # attention biases) that the repeat's backward goes through again
                (out * w).sum().backward(retain_graph=True)
            except Timeout:
                raise
            except Exception as e:
                # reversible layers (Reformer) recompute activations in backward and allow it in training
                # only: such a model has no eval-mode gradients to compare
                if mode == "train":
                    raise
                grads = _reason(e)
            else:
                grads = {name: None if p.grad is None else p.grad.detach().clone() for name, p in a.named_parameters()}
            a.zero_grad(set_to_none=True)
            runs.append((out.detach(), w, grads, seconds))
        (o0, _, g0, _), (o1, _, g1, _) = runs
        if not torch.isfinite(o1).all():
            raise OriginalFailed(f"the original model's {mode} output is not finite at this size")
        if o0.shape != o1.shape or scaled_error(o0, o1) > TOL:
            raise OriginalFailed(f"the original model is not deterministic at this size ({mode}: a repeat differs by {scaled_error(o0, o1):.2g} of its largest value)")
        if isinstance(g0, dict) != isinstance(g1, dict):
            raise OriginalFailed(f"the original model's {mode} backward fails on a repeat only")
        if isinstance(g1, dict):
            if not all(torch.isfinite(g).all() for g in g1.values() if g is not None):
                raise OriginalFailed(f"the original model's {mode} gradients are not finite at this size")
            scale = max([g.abs().max().item() for g in g1.values() if g is not None and g.numel()] or [1.0])
            for name, g in g1.items():
                if (g is None) != (g0[name] is None) or g is not None and scaled_error(g0[name], g, scale) > TOL:
                    raise OriginalFailed(f"the original model's gradients are not reproducible at this size ({mode}: {name})")
        reference[mode] = runs[1]
    return state, reference


# The kernels a rewrite's fast path calls, from the kernel registry: counting them shows the
# fast path ran; the registry's compiled-call counter shows a compiled kernel ran in it.
try:
    from adopt_kernels.registry import compiled_calls, fast_path_api

    FAST_PATH_KERNELS = fast_path_api()
except ImportError:
    FAST_PATH_KERNELS = ()

    def compiled_calls():
        return 0


def count_fast_path_calls(rewritten):
    try:
        import adopt_kernels
    except ImportError:
        return {"n": -1, "sdpa": 0}
    calls = {"n": 0, "sdpa": 0}
    for kname in FAST_PATH_KERNELS:
        fn = getattr(adopt_kernels, kname)

        def counting(*a, _fn=fn, **k):
            calls["n"] += 1
            return _fn(*a, **k)

        setattr(rewritten._adopt if getattr(rewritten, "_adopt", None) else adopt_kernels, kname, counting)
    # where torch has SDPA, how many attention calls reached it rather than the reference path
    from adopt_kernels._impl import attention as attention_impl

    sdpa = getattr(attention_impl, "_adopt_real_sdpa", attention_impl._sdpa)
    if sdpa is not None:
        attention_impl._adopt_real_sdpa = sdpa

        def counting_sdpa(*a, **k):
            calls["sdpa"] += 1
            return sdpa(*a, **k)

        attention_impl._sdpa = counting_sdpa
    return calls


def compare(cls_b, config, inputs, dtype, state, reference, rewritten):
    calls = count_fast_path_calls(rewritten)
    compiled_before = compiled_calls()
    problems, notes, worst, timings = [], [], {"max_abs": 0.0, "max_rel": 0.0}, {}

    def done():
        result = {"status": "mismatch" if problems else "verified", "problems": problems[:10], "fast_path_calls": calls["n"], "sdpa_calls": calls["sdpa"],
                  "compiled_calls": compiled_calls() - compiled_before, "strict_load": True, **worst, "timings": timings}
        if notes:
            result["notes"] = notes
        return result

    torch.manual_seed(0)
    try:
        b = cls_b(config)
    except Timeout:
        raise
    except Exception as e:
        problems.append(f"the rewritten model cannot be built from the config the original is built from: {_reason(e)}")
        return done()
    try:
        b.load_state_dict(state, strict=True)
    except RuntimeError as e:
        problems.append(f"load_state_dict: {str(e)[:300]}")
        result = done()
        result["strict_load"] = False
        return result
    b = b.to(dtype)
    inputs = _cast(inputs, dtype)
    for mode in ("eval", "train"):
        oa, w, grads, original_s = reference[mode]
        b.train(mode == "train")
        no_dropout(b)
        torch.manual_seed(1)
        t0 = time.perf_counter()
        try:
            ob = first_tensor(b(**inputs))
        except Timeout:
            raise
        except Exception as e:
            problems.append(f"{mode}: the rewritten model fails where the original runs: {_reason(e)}")
            return done()
        timings[mode] = {"original_s": original_s, "rewritten_s": time.perf_counter() - t0}
        if ob is None or ob.shape != oa.shape:
            problems.append(f"{mode} output: shape {None if ob is None else tuple(ob.shape)}, the original's is {tuple(oa.shape)}")
            return done()
        if not torch.isfinite(ob).all():
            problems.append(f"{mode} output: non-finite values where the original's are finite")
            return done()
        err = scaled_error(oa, ob)
        worst["max_abs"] = max(worst["max_abs"], (oa.double() - ob.double()).abs().max().item())
        worst["max_rel"] = max(worst["max_rel"], err)
        if err > TOL:
            problems.append(f"{mode} output: max abs error {(oa.double() - ob.double()).abs().max().item():.3g} ({err:.2g} of its largest value)")
        if not isinstance(grads, dict):
            notes.append(f"{mode} gradients not compared: the original's backward fails in {mode} mode ({grads[:150]})")
            continue
        try:
            (ob * w).sum().backward(retain_graph=True)
        except Timeout:
            raise
        except Exception as e:
            problems.append(f"{mode}: the rewritten model's backward fails where the original's runs: {_reason(e)}")
            return done()
        pb = dict(b.named_parameters())
        scale = max([g.abs().max().item() for g in grads.values() if g is not None and g.numel()] or [1.0])
        for name, g in grads.items():
            q = pb[name].grad
            if (g is None) != (q is None):
                problems.append(f"{mode} grad of {name}: present on one side only")
            elif g is not None and not torch.isfinite(q).all():
                problems.append(f"{mode} grad of {name}: non-finite values where the original's are finite")
            elif g is not None and scaled_error(g, q, scale) > TOL:
                problems.append(f"{mode} grad of {name}: max abs error {(g - q).abs().max().item():.3g} ({scaled_error(g, q, scale):.2g} of its largest value)")
        b.zero_grad(set_to_none=True)
    return done()


def main():
    out_path = sys.argv[1]
    # oneDNN's float32 convolution backward returns garbage for a non-contiguous output gradient in
    # this torch (a Conv1d whose output is permuted, as in speech encoders); the native kernels do not
    torch.backends.mkldnn.enabled = False
    # tiny models gain nothing from threads, and one busy core stalls every parallel region
    # (a depthwise convolution runs one per channel group: seconds instead of milliseconds)
    torch.set_num_threads(1)
    signal.signal(signal.SIGALRM, _alarm)
    with open(out_path, "a") as out:
        for arg in sys.argv[2:]:
            model, path = arg.split("=", 1)
            started = time.time()
            signal.alarm(TIMEOUT_S)
            try:
                result = verify(model, path)
            except (Timeout, NotRunnable) as e:
                result = {"status": "not_runnable", "reason": " ".join(str(e).split())[:400]}
            except Exception as e:  # any failure of the model code is a per-model result
                tb = traceback.extract_tb(e.__traceback__)
                where = f"{tb[-1].filename.split('/')[-1]}:{tb[-1].lineno}" if tb else ""
                result = {"status": "not_runnable", "reason": f"{type(e).__name__}: {str(e)[:200]} ({where})"}
            finally:
                signal.alarm(0)
            result.update({"model": model, "seconds": round(time.time() - started, 2)})
            out.write(json.dumps(result) + "\n")
            out.flush()
            print(json.dumps({"model": model, "status": result["status"]}), flush=True)


if __name__ == "__main__":
    main()
