"""Verification of rewritten transformers modeling files on their language-model classes.

hf_verify compares the bare model of each file (GPT2Model), which has no LM head and no loss.
This compares the file's causal or masked LM class instead (GPT2LMHeadModel, LlamaForCausalLM,
BertForMaskedLM), fed labels with one ignored position (lm_labels), so the head, the loss and
their gradients run: the code the lm_head_ce rewrite replaces. Everything else (tiny config,
strict load, eval and train comparison, fast-path and compiled-kernel counts) is hf_verify's.

The comparison runs in float32 only: the compiled fused linear + cross-entropy kernel takes no
float64, and in float64 the rewrite would be checked on its chunked torch fallback instead. Its
calls are counted (``compiled_kernels["linear_cross_entropy"]``); a verified result where it did
not run says so in ``notes``, and bench:hf does not count it as verified.

Usage: python -m adopt_harness.hf_lm_verify MODEL[:CLASS,...]=REWRITTEN_FILE [...]
Writes one result line per model (harness "hf_lm", schema.py: Check, with "model" and "class").
"""
import importlib
import sys

import torch

from adopt_harness import hf_verify
from adopt_harness.hf_inputs import candidate_classes
from adopt_harness.lm_labels import LABELLED, LM_CLASS
from adopt_harness.protocol import Channel
from adopt_harness.text import clip

FUSED_KERNEL = "linear_cross_entropy"


def verify_lm(model, path, classes=()):
    """hf_verify's result for ``model``'s rewritten file, in float32, on each of ``classes`` (the
    classes whose code was rewritten) or, without them, on the first LM class the original runs
    with. Several classes give one result: a mismatch if any mismatches, verified if one verified."""
    classes = model_classes(model, classes)
    LABELLED.update(classes)
    picks = [(lambda name, c=c: name == c) for c in classes] or [LM_CLASS.search]
    results = [hf_verify.verify_one(model, path, pick=pick) for pick in picks]
    for r, c in zip(results, classes or ("",)):
        if r["status"] == "verified" and not r.get("compiled_kernels", {}).get(FUSED_KERNEL):
            r.setdefault("notes", []).append(f"{r.get('class', c)}: the compiled {FUSED_KERNEL} kernel did not run")
    return merged(results, classes)


def model_classes(model, classes):
    """Those of ``classes`` that are model classes of the original file (a site's owner may be a
    helper module, which has no config to build it from)."""
    if not classes:
        return ()
    try:
        original = importlib.import_module(f"transformers.models.{model}.modeling_{model}")
    except Exception:  # hf_verify reports the import failure itself
        return ()
    names = {c.__name__ for c in candidate_classes(original)}
    return tuple(c for c in classes if c in names)


def merged(results, classes):
    """One result of the per-class ``results``: counts summed, problems and reasons kept with
    the class they belong to."""
    if len(results) == 1:
        return results[0]
    status = next((s for s in ("mismatch", "verified") if any(r["status"] == s for r in results)), "not_runnable")
    out = {"status": status, "model": results[0]["model"], "seconds": round(sum(r["seconds"] for r in results), 2)}
    out["class"] = ", ".join(r.get("class", c) for r, c in zip(results, classes))
    problems = [f"{r.get('class', c)}: {p}" for r, c in zip(results, classes) for p in r.get("problems", [])]
    skipped = [f"{c}: not runnable: {r['reason']}" for r, c in zip(results, classes) if r["status"] == "not_runnable"]
    if status == "not_runnable":
        out["reason"] = clip("; ".join(skipped), 400)
    notes = [n for r in results for n in r.get("notes", [])] + ([] if status == "not_runnable" else skipped)
    if notes:
        out["notes"] = notes[:10]
    if problems:
        out["problems"] = problems[:10]
    kernels = {}
    for r in results:
        for k, n in r.get("compiled_kernels", {}).items():
            kernels[k] = kernels.get(k, 0) + n
    for field in ("fast_path_calls", "sdpa_calls", "compiled_calls"):
        if any(field in r for r in results):
            out[field] = sum(max(0, r.get(field, 0)) for r in results)
    if any("compiled_kernels" in r for r in results):
        out["compiled_kernels"] = kernels
    errors = [r["max_abs"] for r in results if "max_abs" in r]
    if errors:
        out["max_abs"] = max(errors)
    return out


def parse_target(arg):
    """``MODEL=PATH`` or ``MODEL:ClassA,ClassB=PATH`` -> (model, path, classes)."""
    head, path = arg.split("=", 1)
    model, _, names = head.partition(":")
    return model, path, tuple(n for n in names.split(",") if n)


def main():
    channel = Channel("hf_lm")
    torch.backends.mkldnn.enabled = False  # as hf_verify: oneDNN's float32 conv backward
    torch.set_num_threads(1)
    hf_verify.DTYPES = ((torch.float32, torch.float32),)
    for arg in sys.argv[1:]:
        model, path, classes = parse_target(arg)
        result = verify_lm(model, path, classes)
        channel.result(result)
        channel.progress(model=model, status=result["status"])


if __name__ == "__main__":
    main()
