"""Labels for a language model's forward, so that verification runs its loss path too.

Without labels a causal, masked or sequence-to-sequence LM's forward skips the loss, and a
rewrite of the head and the loss (lm_head_ce) would be verified on the original code only. The
labels are the ids the head predicts over (the decoder's input ids where the model has a decoder,
else the input ids) with one position set to the ignore index (-100), so the ignored-token path
runs as well.
"""
import re

LM_CLASS = re.compile(r"(ForCausalLM|LMHeadModel|ForMaskedLM|ForConditionalGeneration|ForCausalImageModeling)$")
# Classes labelled whatever their name (GPT2DoubleHeadsModel): those a verification of the LM
# head compares because the head and loss rewritten are theirs.
LABELLED = set()


def add_lm_labels(cls, params, inputs):
    """Adds ``labels`` to ``inputs`` where ``cls`` is a language model taking them."""
    ids = inputs.get("decoder_input_ids", inputs.get("input_ids"))
    if "labels" not in params or ids is None or ids.dim() != 2 or not (LM_CLASS.search(cls.__name__) or cls.__name__ in LABELLED):
        return inputs
    labels = ids.clone()
    labels[0, min(1, labels.size(1) - 1)] = -100
    inputs["labels"] = labels
    return inputs
