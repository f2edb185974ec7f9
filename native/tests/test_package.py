import inspect

import torch
from torch import nn

import adopt_kernels as ak

SIGNATURES = {
    "softmax": ["x", "dim", "dtype"],
    "dropout_add_layer_norm": ["x", "residual", "layer_norm", "dropout", "training"],
    "gelu_kind": ["act"],
    "linear_gelu": ["x", "linear", "approximate"],
    "conv_bn": ["x", "conv", "bn"],
    "conv_bn_act": ["x", "conv", "bn"],
    "linear_bn": ["x", "linear", "bn"],
    "fused_qkv": ["x", "q_proj", "k_proj", "v_proj"],
    "attention": ["q", "k", "v", "mask", "scale", "dropout_p", "training", "is_causal", "mask_heads", "mask_added", "softmax_dtype", "cast_dtype", "bias", "keep", "keep_fill", "fill_mask", "fill_value"],
    "attention_supported": ["q", "k", "v", "mask", "head_mask", "output_attentions"],
    "rms_norm": ["x", "weight", "eps", "offset", "cast_to_fp32", "keep_fp32"],
    "rms_norm_variance_fp32": ["x", "weight", "eps"],
    "gated_mlp": ["x", "gate_proj", "up_proj", "down_proj", "act"],
    "gated_act": ["gate", "up", "act"],
    "built_as": ["mod", "qualname"],
    "apply_rope": ["q", "k", "cos", "sin", "position_ids", "unsqueeze_dim", "k_cos", "k_sin"],
    "apply_rope_interleaved": ["q", "k", "cos", "sin", "position_ids", "unsqueeze_dim"],
    "linear_cross_entropy": ["hidden", "lm_head", "labels", "ignore_index", "shift", "reduction", "return_logits", "logits_dtype", "loss_dtype", "divide_by"],
    "causal_lm_loss": ["loss_function", "lm_head", "vocab_size", "kwargs"],
    "optimizer_kwargs": ["optimizer_cls", "params"],
    "enabled": ["name"],
    "outputs_recorded": ["kind"],
}

DEFAULTS = {
    ("softmax", "dim"): -1,
    ("softmax", "dtype"): None,
    ("linear_gelu", "approximate"): "none",
    ("attention", "mask"): None,
    ("attention", "scale"): None,
    ("attention", "dropout_p"): 0.0,
    ("attention", "training"): False,
    ("attention", "is_causal"): False,
    ("attention", "mask_heads"): None,
    ("attention", "mask_added"): False,
    ("attention", "softmax_dtype"): None,
    ("attention", "cast_dtype"): None,
    ("attention", "bias"): None,
    ("attention", "keep"): None,
    ("attention", "keep_fill"): None,
    ("attention", "fill_mask"): None,
    ("attention", "fill_value"): None,
    ("attention_supported", "mask"): None,
    ("attention_supported", "head_mask"): None,
    ("attention_supported", "output_attentions"): False,
    ("rms_norm", "offset"): 0.0,
    ("rms_norm", "cast_to_fp32"): True,
    ("rms_norm", "keep_fp32"): False,
    ("apply_rope", "position_ids"): None,
    ("apply_rope", "unsqueeze_dim"): 1,
    ("apply_rope", "k_cos"): None,
    ("apply_rope", "k_sin"): None,
    ("apply_rope_interleaved", "position_ids"): None,
    ("apply_rope_interleaved", "unsqueeze_dim"): 1,
    ("linear_cross_entropy", "ignore_index"): -100,
    ("linear_cross_entropy", "shift"): True,
    ("linear_cross_entropy", "reduction"): "mean",
    ("linear_cross_entropy", "return_logits"): False,
    ("linear_cross_entropy", "logits_dtype"): None,
    ("linear_cross_entropy", "loss_dtype"): None,
    ("linear_cross_entropy", "divide_by"): None,
}


def test_flags():
    assert ak.AVAILABLE is True
    assert isinstance(ak.__version__, str) and ak.__version__.count(".") == 2


def test_signatures_are_fixed():
    for name, params in SIGNATURES.items():
        signature = inspect.signature(getattr(ak, name))
        assert list(signature.parameters) == params, name
        for param in params:
            default = signature.parameters[param].default
            expected = DEFAULTS.get((name, param), inspect.Parameter.empty)
            assert default == expected or (default is expected), (name, param, default)


def test_every_switch_names_public_functions_in_the_registry():
    from adopt_kernels import registry

    assert "native" in ak.KERNELS and "fused_optimizer" in ak.KERNELS
    for name in ak.KERNELS:
        if name == "native":
            continue
        apis = registry.FORMULATIONS.get(name) or next(k.api for k in registry.KERNELS.values() if k.switch == name)
        assert all(hasattr(ak, api) for api in apis), name
    for name in ak.__all__:
        assert hasattr(ak, name), name


def test_fused_sequential_is_a_sequential():
    assert issubclass(ak.FusedSequential, nn.Sequential)
    seq = ak.FusedSequential(nn.Linear(3, 4), nn.ReLU())
    assert len(seq) == 2 and isinstance(seq[0], nn.Linear)
    assert isinstance(seq[0:1], ak.FusedSequential)
    assert seq(torch.randn(2, 3)).shape == (2, 4)
