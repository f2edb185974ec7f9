"""conv + batch norm folded in bfloat16: the fold is computed in float32 and rounded once, so the
folded convolution stays near the accuracy of the two ops it replaces (against float64)."""
import pytest
import torch
from torch import nn

import adopt_kernels as ak

BOUND = 1.3  # the folded weight still rounds once to bfloat16 (measured 1.23x eager's mean error)


def _case(seed):
    g = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(64, 128, 3, padding=1, bias=seed % 2 == 0)
    bn = nn.BatchNorm2d(128)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) / 24)
        bn.running_mean.copy_(0.5 * torch.randn(128, generator=g))
        bn.running_var.copy_(0.05 + 3 * torch.rand(128, generator=g))
        bn.weight.copy_(1 + 0.3 * torch.randn(128, generator=g))
        bn.bias.copy_(0.3 * torch.randn(128, generator=g))
    conv, bn = conv.eval().to(torch.bfloat16), bn.eval().to(torch.bfloat16)
    x = torch.randn(2, 64, 20, 28, generator=g).to(torch.bfloat16)
    return conv, bn, x


def _mean_errors(fold):
    """Mean absolute error against float64 of eager bn(conv(x)) and of ``fold``, over four cases."""
    eager = ours = 0.0
    for seed in range(4):
        conv, bn, x = _case(seed)
        c64, b64 = conv.double(), bn.double()
        with torch.no_grad():
            ref = b64(c64(x.double()))
            conv, bn = conv.to(torch.bfloat16), bn.to(torch.bfloat16)
            eager += (bn(conv(x)).double() - ref).abs().mean().item()
            ours += (fold(x, conv, bn).double() - ref).abs().mean().item()
    return eager, ours


def _within_bound(fold):
    eager, ours = _mean_errors(fold)
    assert ours <= BOUND * eager, f"folded error {ours / eager:.2f}x eager's"


def test_bfloat16_fold_near_eager_accuracy():
    _within_bound(ak.conv_bn)


def _fold_in_bfloat16(x, conv, bn):
    # the fold computed step by step in the parameters' own dtype, as it was
    scale = torch.rsqrt(bn.running_var + bn.eps) * bn.weight
    shift = (conv.bias - bn.running_mean) * scale + bn.bias if conv.bias is not None else bn.bias - bn.running_mean * scale
    return conv._conv_forward(x, conv.weight * scale.reshape(-1, 1, 1, 1), shift)


def test_negative_control_fold_in_bfloat16():
    with pytest.raises(AssertionError, match="folded error"):
        _within_bound(_fold_in_bfloat16)
