"""A rewritten copy of current transformers' modeling_llama.py (its lm_head_ce site through
`self.loss_function`) against the installed original: a tiny LlamaForCausalLM of each, the
same weights, in float32 and bfloat16, with and without `num_items_in_batch`; the loss, the
logits, their dtypes and the gradients agree, and the fused kernel ran. Run by
test/lm-loss-function.test.ts in the torch-2 environment: `python hf_causal_lm_check.py FILE`."""
import importlib.util
import sys

import torch
from transformers import LlamaConfig
from transformers.models.llama import modeling_llama as original

import adopt_kernels as ak


def load(path):
    # a module of the llama package, so that its relative imports resolve
    spec = importlib.util.spec_from_file_location("transformers.models.llama.modeling_llama_adopt", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def run(model, ids, labels, kwargs):
    model.zero_grad()
    out = model(input_ids=ids, labels=labels, **kwargs)
    out.loss.backward()
    return [out.loss.detach(), out.logits.detach(), model.lm_head.weight.grad, model.model.embed_tokens.weight.grad]


def main(path):
    rewritten = load(path)
    calls = []
    kernel = ak.linear_cross_entropy
    rewritten._adopt.linear_cross_entropy = lambda *a, **k: calls.append(k) or kernel(*a, **k)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        a = original.LlamaForCausalLM(cfg).to(dtype)
        b = rewritten.LlamaForCausalLM(cfg).to(dtype)
        b.load_state_dict(a.state_dict(), strict=True)
        ids = torch.randint(0, 64, (2, 9))
        labels = ids.clone()
        labels[0, :3] = -100
        for kwargs in ({}, {"num_items_in_batch": torch.tensor(11)}):
            want, got = run(a, ids, labels, kwargs), run(b, ids, labels, kwargs)
            for name, x, y in zip(("loss", "logits", "grad lm_head", "grad embeddings"), got, want):
                assert x.dtype == y.dtype, (dtype, kwargs, name, x.dtype, y.dtype)
                scale = max(y.abs().max().item(), 1.0)
                assert (x.float() - y.float()).abs().max().item() <= tol * scale, (dtype, kwargs, name)
    assert len(calls) == 4 and calls[-1]["divide_by"] == 11, calls
    print("transformers LlamaForCausalLM rewritten: ok")


if __name__ == "__main__":
    main(sys.argv[1])
