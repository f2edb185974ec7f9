"""Labels for a language model's forward, so that verification runs its loss path too.

Without labels a causal or masked LM's forward skips the loss, and a rewrite of the head and
the loss (lm_head_ce) would be verified on the original code only. The labels are the input
ids with one position set to the ignore index (-100), so the ignored-token path runs as well.
"""
import re

LM_CLASS = re.compile(r"(ForCausalLM|LMHeadModel|ForMaskedLM)$")


def add_lm_labels(cls, params, inputs):
    """Adds ``labels`` to ``inputs`` where ``cls`` is a causal or masked LM taking them."""
    ids = inputs.get("input_ids")
    if "labels" not in params or ids is None or ids.dim() != 2 or not LM_CLASS.search(cls.__name__):
        return inputs
    labels = ids.clone()
    labels[0, min(1, labels.size(1) - 1)] = -100
    inputs["labels"] = labels
    return inputs
