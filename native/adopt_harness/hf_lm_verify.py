"""Verification of rewritten transformers modeling files on their language-model classes.

hf_verify compares the bare model of each file (GPT2Model), which has no LM head and no loss.
This compares the file's causal or masked LM class instead (GPT2LMHeadModel, LlamaForCausalLM,
BertForMaskedLM), fed labels with one ignored position (lm_labels), so the head, the loss and
their gradients run: the code the lm_head_ce rewrite replaces. Everything else (tiny config,
strict load, eval and train comparison, fast-path and compiled-kernel counts) is hf_verify's.

Usage: python -m adopt_harness.hf_lm_verify MODEL=REWRITTEN_FILE [...]
Prints one JSON line per model (hf_verify's result, with "class" the LM class compared).
"""
import json
import sys

import torch

from adopt_harness.hf_verify import verify_one
from adopt_harness.lm_labels import LM_CLASS


def main():
    torch.backends.mkldnn.enabled = False  # as hf_verify: oneDNN's float32 conv backward
    torch.set_num_threads(1)
    for arg in sys.argv[1:]:
        model, path = arg.split("=", 1)
        print(json.dumps(verify_one(model, path, pick=LM_CLASS.search)), flush=True)


if __name__ == "__main__":
    main()
