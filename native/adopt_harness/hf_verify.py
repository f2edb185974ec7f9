"""Verification of rewritten transformers modeling files, model by model.

For each model: the original module is imported from the installed transformers; the rewritten
file is imported as a sibling module of the same package (so its relative imports resolve); a
tiny config is derived from the model's default config; the base model class of both is built
with the same seed; the rewritten model loads the original state dict strictly; outputs and every
parameter gradient are compared in eval mode and in train mode with dropout off.

Usage: python -m adopt_harness.hf_verify OUT.jsonl MODEL=REWRITTEN_FILE [...]
Writes one JSON line per model as soon as it is done (nothing measured is lost), with
status verified / mismatch / not_runnable and the reason.
"""
import importlib
import importlib.util
import inspect
import json
import signal
import sys
import time
import traceback

import torch
from torch import nn

from adopt_harness.hf_inputs import DROPOUT_WORDS, SMALL, NoInputs, candidate_classes, ladder
from adopt_harness.hf_inputs import make_inputs as _make_inputs

TIMEOUT_S = 60
# Errors are measured relative to the tensor's largest magnitude: deep random-init models have
# gradients in the thousands, where fp32 reassociation (threaded reductions, folded BatchNorm)
# moves the last digits. A wrong rewrite moves them by orders of magnitude more.
TOL = 1e-3
# A model this large at the chosen shrink would take minutes and gigabytes: not built.
MAX_PARAMS = 60_000_000


class Timeout(Exception):
    pass


class OriginalFailed(Exception):
    """The original model cannot run with this class, config and inputs: a harness problem, never the rewrite's."""


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


def base_model_class(module):
    candidates = []
    for name, obj in vars(module).items():
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__:
            if not name.endswith("PreTrainedModel") and getattr(obj, "config_class", None) is not None:
                # prefer the bare model: *Model, then *Encoder/*Decoder, then the shortest name
                rank = 0 if name.endswith("Model") else 1 if name.endswith(("Encoder", "Decoder")) else 2
                candidates.append((rank, len(name), name, obj))
    if not candidates:
        raise RuntimeError("no model class with a config_class in the file")
    return sorted(candidates)[0][3]


def make_inputs(cls, config):
    params = inspect.signature(cls.forward).parameters
    batch, seq = 2, 7
    inputs = {}
    vision = getattr(config, "vision_config", None) or config
    text = getattr(config, "text_config", None) or config
    if "input_ids" in params:
        inputs["input_ids"] = torch.randint(1, min(getattr(text, "vocab_size", 99) or 99, 99), (batch, seq))
    if "pixel_values" in params and ("input_ids" not in params or params["pixel_values"].default is inspect.Parameter.empty or getattr(config, "vision_config", None) is not None):
        size = getattr(vision, "image_size", 224)
        size = size[0] if isinstance(size, (list, tuple)) else size
        channels = getattr(vision, "num_channels", 3)
        inputs["pixel_values"] = torch.randn(batch, channels, size, size)
    if inputs:
        pass
    elif "input_values" in params:
        inputs["input_values"] = torch.randn(batch, 4000)
    elif "input_features" in params:
        inputs["input_features"] = torch.randn(batch, getattr(config, "num_mel_bins", 80), 3000 if "whisper" in cls.__module__ else 64)
    else:
        raise RuntimeError(f"unknown input kind for {cls.__name__}.forward({', '.join(list(params)[1:4])}, ...)")
    if "decoder_input_ids" in params and "input_ids" in inputs:
        inputs["decoder_input_ids"] = torch.randint(0, min(getattr(config, "vocab_size", 99) or 99, 99), (batch, 5))
    return inputs


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


def verify(model, rewritten_path):
    try:
        return verify_in(model, rewritten_path, torch.float64)
    except RuntimeError as e:
        # some models fill masks with finfo(float32).min-style constants that overflow when the
        # model runs in float64: those are compared in float32, with the same scaled tolerance
        if "overflow" not in str(e):
            raise
        result = verify_in(model, rewritten_path, torch.float32)
        result["dtype"] = "float32 (float64 overflows in the model's masking constants)"
        return result


def verify_in(model, rewritten_path, dtype):
    package = f"transformers.models.{model}"
    original = importlib.import_module(f"{package}.modeling_{model}")
    rewritten = import_rewritten(package, rewritten_path)
    cls_a = base_model_class(original)
    cls_b = getattr(rewritten, cls_a.__name__)
    config = shrink(cls_a.config_class())
    try:
        import adopt_kernels
        calls = {"n": 0}
        for kname in ("softmax", "dropout_add_layer_norm", "linear_gelu", "conv_bn", "linear_bn", "fused_qkv", "attention", "rms_norm", "gated_mlp"):
            fn = getattr(adopt_kernels, kname)

            def counting(*a, _fn=fn, **k):
                calls["n"] += 1
                return _fn(*a, **k)

            setattr(rewritten._adopt if getattr(rewritten, "_adopt", None) else adopt_kernels, kname, counting)
    except ImportError:
        calls = {"n": -1}
    torch.manual_seed(0)
    try:
        a = cls_a(config)
    except Exception as e:
        raise RuntimeError(f"cannot build {cls_a.__name__} from a shrunk config: {type(e).__name__}: {str(e)[:200]}")
    torch.manual_seed(0)
    b = cls_b(config)
    b.load_state_dict(a.state_dict(), strict=True)
    # float64: folding BatchNorm or reassociating a reduction then changes the last digits only,
    # where in fp32 deep random-init models amplify them past any fixed tolerance
    a, b = a.to(dtype), b.to(dtype)
    inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in make_inputs(cls_a, config).items()}
    problems, worst = [], {"max_abs": 0.0, "max_rel": 0.0}
    timings = {}
    for mode in ("eval", "train"):
        for m in (a, b):
            m.train(mode == "train")
            no_dropout(m)
        # the noise floor: the original against itself
        torch.manual_seed(1)
        o0 = first_tensor(a(**inputs))
        torch.manual_seed(1)
        o1 = first_tensor(a(**inputs))
        if o0 is not None and o1 is not None and scaled_error(o0, o1) > TOL:
            raise RuntimeError(f"the original model is not deterministic at this size ({mode}: a repeat differs by {scaled_error(o0, o1):.2g} of its largest value)")
        del o0, o1
        torch.manual_seed(1)
        t0 = time.perf_counter()
        oa = first_tensor(a(**inputs))
        t1 = time.perf_counter()
        torch.manual_seed(1)
        ob = first_tensor(b(**inputs))
        t2 = time.perf_counter()
        timings[mode] = {"original_s": t1 - t0, "rewritten_s": t2 - t1}
        if oa is None or ob is None:
            raise RuntimeError("the model returned no floating-point tensor")
        err = scaled_error(oa, ob)
        worst["max_abs"] = max(worst["max_abs"], (oa.double() - ob.double()).abs().max().item())
        worst["max_rel"] = max(worst["max_rel"], err)
        if err > TOL:
            problems.append(f"{mode} output: max abs error {(oa.double() - ob.double()).abs().max().item():.3g} ({err:.2g} of its largest value)")
        w = torch.randn_like(oa)
        (oa * w).sum().backward()
        (ob * w).sum().backward()
        pb = dict(b.named_parameters())
        scale = max([p.grad.abs().max().item() for p in a.parameters() if p.grad is not None and p.grad.numel()] or [1.0])
        for name, p in a.named_parameters():
            q = pb[name]
            if (p.grad is None) != (q.grad is None):
                problems.append(f"{mode} grad of {name}: present on one side only")
            elif p.grad is not None and scaled_error(p.grad, q.grad, scale) > TOL:
                problems.append(f"{mode} grad of {name}: max abs error {(p.grad - q.grad).abs().max().item():.3g} ({scaled_error(p.grad, q.grad, scale):.2g} of its largest value)")
        a.zero_grad()
        b.zero_grad()
    return {
        "status": "mismatch" if problems else "verified", "class": cls_a.__name__, "problems": problems[:10],
        "fast_path_calls": calls["n"], "strict_load": True, **worst, "timings": timings,
    }


def main():
    out_path = sys.argv[1]
    signal.signal(signal.SIGALRM, _alarm)
    with open(out_path, "a") as out:
        for arg in sys.argv[2:]:
            model, path = arg.split("=", 1)
            started = time.time()
            signal.alarm(TIMEOUT_S)
            try:
                result = verify(model, path)
            except Timeout as e:
                result = {"status": "not_runnable", "reason": str(e)}
            except RuntimeError as e:
                msg = str(e)
                result = {"status": "mismatch" if "load_state_dict" in msg or "Error(s) in loading" in msg else "not_runnable", "reason": msg[:300]}
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
