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

Building, dropout-off, the side-by-side comparison, its tolerance and the fast-path counter are
the harness library's (build.py, dropout.py, sidebyside.py, compare.py, counting.py), shared
with the pair and file runs.

Usage: python -m adopt_harness.hf_verify MODEL=REWRITTEN_FILE [...]
Writes one result line per model as soon as it is done (schema.py: Check, with "model"), with
status verified / mismatch / not_runnable and the reason.
"""
import importlib
import os
import sys
import time
import traceback

import torch

from adopt_harness.build import load_as
from adopt_harness.compare import policy_for, scaled_error
from adopt_harness.counting import FastPathCounter
from adopt_harness.deadline import Timeout, deadline, extend
from adopt_harness.hf_inputs import RUNGS, NoInputs, candidate_classes, ladder
from adopt_harness.inputs import for_transformers
from adopt_harness.protocol import Channel
from adopt_harness.sidebyside import MODES, RewrittenRaised, cast, compare_rewrite, load_strict, run_model
from adopt_harness.text import clip

TIMEOUT_S = 60
# A model this large at the chosen shrink would take minutes and gigabytes: not built.
MAX_PARAMS = 60_000_000


class NotRunnable(Exception):
    pass


class OriginalFailed(Exception):
    """The original model cannot run with this class, config and inputs: a harness problem, never the rewrite's."""


class MissingLibrary(OriginalFailed):
    pass


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
    return f"{type(e).__name__}: {clip(str(e), 200)}{where}"


def verify(model, rewritten_path, pick=None):
    """``pick``: which of the file's model classes may be compared (a predicate on the name)."""
    package = f"transformers.models.{model}"
    original = importlib.import_module(f"{package}.modeling_{model}")
    try:
        rewritten = load_as(rewritten_path, package, "adopt_rewritten")
    except Exception as e:  # the original module imports (above): the rewrite broke it
        return {"status": "mismatch", "problems": [f"the rewritten file does not import: {_reason(e)}"]}
    return verify_modules(model, original, rewritten, pick)


def verify_modules(model, original, rewritten, pick=None):
    """The model-level check of a transformers modeling module against its rewrite, both imported;
    `model` names it in debug output; ``pick``: which of the file's model classes may be compared (a
    predicate on the name). Raises NotRunnable where the original cannot be run."""
    classes = [c for c in candidate_classes(original) if pick is None or pick(c.__name__)]
    if not classes:
        raise NotRunnable("no model class with a config_class in the file" + (" that is picked" if pick else ""))
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
    extend(budget)
    torch.set_default_dtype(default)
    try:
        result = compare(cls_b, config, inputs, dtype, state, reference)
    except Timeout:
        result = {"status": "mismatch", "problems": [
            f"the rewritten model did not finish within {budget}s; the original's runs took {original_s:.1f}s"]}
    finally:
        torch.set_default_dtype(torch.float32)
    result["class"] = cls_a.__name__
    if rung != RUNGS[0]:
        result["config"] = rung
    if dtype is torch.float32:
        # with ADOPT_VERIFY_DTYPE=float32 nothing was tried in float64
        result["dtype"] = f"float32 (the original fails in float64: {failures[-1][2][:120]})" if len(DTYPES) > 1 else "float32"
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
                inputs = for_transformers(cls, config)
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


def _build_original(cls, config):
    torch.manual_seed(0)
    try:
        a = cls(config)
    except ImportError as e:  # a library this environment lacks: no config will do
        raise MissingLibrary(f"cannot build {cls.__name__}: {type(e).__name__}: {clip(str(e), 200)}")
    except Exception as e:
        raise OriginalFailed(f"cannot build {cls.__name__} from a shrunk config: {type(e).__name__}: {clip(str(e), 200)}")
    n = sum(p.numel() for p in a.parameters())
    if n > MAX_PARAMS:
        raise OriginalFailed(f"{cls.__name__} has {n / 1e6:.0f}M parameters at this size")
    return a


def _reproducible(mode, first, repeat, policy):
    """Raises OriginalFailed unless the original's repeat gives what its first run gave: the noise
    floor of the comparison is the original against itself."""
    if not first.outputs:
        raise OriginalFailed("the model returned no floating-point tensor")
    o0, o1 = first.outputs[0], repeat.outputs[0]
    if not torch.isfinite(o1).all():
        raise OriginalFailed(f"the original model's {mode} output is not finite at this size")
    if o0.shape != o1.shape or scaled_error(o0, o1, policy) > policy.tol:
        raise OriginalFailed(f"the original model is not deterministic at this size ({mode}: a repeat differs by {scaled_error(o0, o1, policy):.2g} of its largest value)")
    g0, g1 = first.grads, repeat.grads
    if isinstance(g0, dict) != isinstance(g1, dict):
        raise OriginalFailed(f"the original model's {mode} backward fails on a repeat only")
    if isinstance(g1, dict):
        if not all(torch.isfinite(g).all() for g in g1.values() if g is not None):
            raise OriginalFailed(f"the original model's {mode} gradients are not finite at this size")
        scale = max([g.abs().max().item() for g in g1.values() if g is not None and g.numel()] or [1.0])
        for name, g in g1.items():
            if (g is None) != (g0[name] is None) or g is not None and scaled_error(g0[name], g, policy, scale) > policy.tol:
                raise OriginalFailed(f"the original model's gradients are not reproducible at this size ({mode}: {name})")


def run_original(cls, config, inputs, dtype):
    """The original's state dict (taken before any forward moves BatchNorm statistics) and its
    runs per mode, each checked to be reproducible; with the seconds of the slower mode's run."""
    a = _build_original(cls, config)
    state = {k: v.clone() for k, v in a.state_dict().items()}
    a = a.to(dtype)
    policy = policy_for(dtype)
    data = cast(([], inputs), dtype)
    reference = {}
    for mode in MODES:
        first = run_model(a, data, mode)
        repeat = run_model(a, data, mode)
        _reproducible(mode, first, repeat, policy)
        reference[mode] = repeat
    return state, reference


def compare(cls_b, config, inputs, dtype, state, reference):
    """The rewritten class, built from the original's config and weights, against the original's runs."""
    with FastPathCounter() as counter:
        result = _compare(cls_b, config, inputs, dtype, state, reference)
    result.update(counter.result())
    return result


def _compare(cls_b, config, inputs, dtype, state, reference):
    torch.manual_seed(0)
    try:
        b = cls_b(config)
    except Timeout:
        raise
    except Exception as e:
        return {"status": "mismatch", "problems": [f"the rewritten model cannot be built from the config the original is built from: {_reason(e)}"]}
    wrong = load_strict(b, state)
    if wrong:
        return {"status": "mismatch", "problems": [wrong], "strict_load": False}
    b = b.to(dtype)
    try:
        cmp, notes, timings = compare_rewrite(b, cast(([], inputs), dtype), reference, policy_for(dtype))
    except RewrittenRaised as e:
        return {"status": "mismatch", "problems": [str(e)], "strict_load": True}
    result = {"status": "mismatch" if cmp.problems else "verified", "problems": cmp.problems[:10], "strict_load": True, **cmp.summary(), "timings": timings}
    if notes:
        result["notes"] = notes
    return result


def verify_one(model, path, pick=None):
    started = time.time()
    try:
        with deadline(TIMEOUT_S):
            result = verify(model, path, pick)
    except (Timeout, NotRunnable) as e:
        result = {"status": "not_runnable", "reason": clip(" ".join(str(e).split()), 400)}
    except Exception as e:  # any failure of the model code is a per-model result
        tb = traceback.extract_tb(e.__traceback__)
        where = f"{tb[-1].filename.split('/')[-1]}:{tb[-1].lineno}" if tb else ""
        result = {"status": "not_runnable", "reason": f"{type(e).__name__}: {clip(str(e), 200)} ({where})"}
    result.update({"model": model, "seconds": round(time.time() - started, 2)})
    return result


def main():
    channel = Channel("hf")
    # oneDNN's float32 convolution backward returns garbage for a non-contiguous output gradient in
    # this torch (a Conv1d whose output is permuted, as in speech encoders); the native kernels do not
    torch.backends.mkldnn.enabled = False
    # tiny models gain nothing from threads, and one busy core stalls every parallel region
    # (a depthwise convolution runs one per channel group: seconds instead of milliseconds)
    torch.set_num_threads(1)
    for arg in sys.argv[1:]:
        model, path = arg.split("=", 1)
        result = verify_one(model, path)
        channel.result(result)
        channel.progress(model=model, status=result["status"])


if __name__ == "__main__":
    main()
