import pytest
import torch
from torch import nn

import adopt_kernels as ak
from checks import DTYPES, compare


class Block(nn.Module):
    """The original code: ``self.ln(self.dropout(x) + residual)``."""

    def __init__(self, shape, p, affine, dtype):
        super().__init__()
        self.dropout = nn.Dropout(p)
        self.ln = nn.LayerNorm(shape, eps=1e-6, elementwise_affine=affine).to(dtype)
        if affine:
            with torch.no_grad():
                self.ln.weight.uniform_(0.5, 1.5)
                self.ln.bias.uniform_(-0.5, 0.5)

    def forward(self, x, residual):
        return self.ln(self.dropout(x) + residual)


def reference(x, r, block):
    return block(x, r)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,norm_shape", [((3, 5, 7), 7), ((1, 1, 13), 13), ((3, 5, 7), (5, 7))])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dropout_as", ["module", "float"])
@pytest.mark.parametrize("training", [False, True])
def test_matches_module_code(dtype, shape, norm_shape, affine, dropout_as, training, monkeypatch):
    if training:
        # Bit-identical masks and RNG use hold for the F.dropout path; the compiled kernel draws
        # its own mask (tested in test_kernel_layer_norm.py).
        monkeypatch.setenv("ADOPT_DISABLE", "native")
    p = 0.3
    block = Block(norm_shape, p, affine, dtype).train(training)

    def fused(x, r, b):
        dropout = b.dropout if dropout_as == "module" else p
        return ak.dropout_add_layer_norm(x, r, b.ln, dropout, b.training)

    x = torch.randn(shape, dtype=dtype)
    r = torch.randn(shape, dtype=dtype)
    ref_out, fused_out = compare(reference, fused, [x, r], [block], dtype=dtype, seed=7)
    no_dropout = block.eval()(x, r)
    if training:
        # The seeded masks match exactly, and they really dropped something.
        assert torch.equal(ref_out[0], fused_out[0])
        assert not torch.allclose(ref_out[0], no_dropout)
    else:
        torch.testing.assert_close(fused_out[0], no_dropout)


@pytest.mark.parametrize("dtype", DTYPES)
def test_training_with_zero_p(dtype):
    block = Block(7, 0.0, True, dtype).train()
    x, r = torch.randn(3, 5, 7, dtype=dtype), torch.randn(3, 5, 7, dtype=dtype)
    compare(
        reference,
        lambda x, r, b: ak.dropout_add_layer_norm(x, r, b.ln, b.dropout, True),
        [x, r],
        [block],
        dtype=dtype,
        seed=3,
    )


def test_a_dropout_module_in_eval_mode_drops_nothing():
    # The rewritten call passes the parent's ``self.training``; the module's own mode decides.
    block = Block(7, 0.5, True, torch.float32)
    block.dropout.eval()
    x, r = torch.randn(3, 5, 7), torch.randn(3, 5, 7)
    out = ak.dropout_add_layer_norm(x, r, block.ln, block.dropout, training=False)
    torch.testing.assert_close(out, block.ln(x + r))


def test_layer_norm_with_hook_is_called():
    ln = nn.LayerNorm(7)
    ln.register_forward_hook(lambda mod, args, out: out + 1.0)
    x, r = torch.randn(3, 5, 7), torch.randn(3, 5, 7)
    out = ak.dropout_add_layer_norm(x, r, ln, 0.5, False)
    torch.testing.assert_close(out, ln(x + r))
    torch.testing.assert_close(out.mean(-1), torch.ones(3, 5), atol=1e-5, rtol=0)


def test_custom_dropout_module_is_called():
    class ScaleDropout(nn.Dropout):
        def forward(self, x):
            return x * 2.0

    x, r = torch.randn(3, 5, 7), torch.randn(3, 5, 7)
    ln = nn.LayerNorm(7)
    out = ak.dropout_add_layer_norm(x, r, ln, ScaleDropout(0.1), False)
    torch.testing.assert_close(out, ln(2.0 * x + r))


def test_rejects_other_dropout_types():
    with pytest.raises(TypeError):
        ak.dropout_add_layer_norm(torch.randn(2, 3), torch.randn(2, 3), nn.LayerNorm(3), "0.1", True)


@pytest.mark.parametrize("native", [True, False], ids=["compiled", "torch path"])
def test_the_dropout_modules_own_mode_decides_not_the_flag_passed(native, monkeypatch):
    """The rewrite passes its method's ``self.training``; the original calls the dropout module,
    whose own mode decides. MC dropout (model in eval, dropout modules in train) must drop, and
    dropout switched off during training (``.eval()`` on the module) must not."""
    if not native:
        monkeypatch.setenv("ADOPT_DISABLE", "native")
    torch.manual_seed(0)
    block = Block(64, 0.5, True, torch.float32)
    x, r = torch.randn(4, 256, 64), torch.randn(4, 256, 64)
    clean = block.eval()(x, r)
    block.dropout.train()  # MC dropout
    assert (ak.dropout_add_layer_norm(x, r, block.ln, block.dropout, False) - clean).abs().max() > 0.1
    block.train()
    block.dropout.eval()  # switched off while training
    assert (ak.dropout_add_layer_norm(x, r, block.ln, block.dropout, True) - clean).abs().max() < 1e-5
