"""GPT-2's MLP (transformers' Conv1D, weight stored (in, out), then gelu_new) through the fused
bias + GELU kernel: outputs and every gradient against the original module, the kernel counted;
a look-alike Conv1D class of another module runs the original code."""
import pytest
import torch
from torch import nn

import adopt_kernels as ak
from adopt_kernels import _dispatch
from checks import compare

pytorch_utils = pytest.importorskip("transformers.pytorch_utils", reason="transformers is installed by scripts/setup-python.sh --hf")
activations = pytest.importorskip("transformers.activations")


class Mlp(nn.Module):
    """The original ``GPT2MLP.forward`` without its dropout, and its rewritten form."""

    def __init__(self, conv_cls, width=48, dim=20, act="gelu_new"):
        super().__init__()
        self.c_fc = conv_cls(width, dim)
        self.c_proj = conv_cls(dim, width)
        self.act = activations.ACT2FN[act]
        nn.init.normal_(self.c_fc.bias)

    def forward(self, x, rewritten=False):
        if rewritten:
            h = ak.linear_gelu(x, self.c_fc, ak.gelu_kind(self.act))
        else:
            h = self.act(self.c_fc(x))
        return self.c_proj(h)


@pytest.mark.parametrize("act", ["gelu_new", "gelu"])
@pytest.mark.parametrize("shape", [(2, 7, 20), (3, 5, 20)], ids=str)
def test_gpt2_mlp_runs_the_kernel_and_matches(act, shape):
    torch.manual_seed(0)
    mlp = Mlp(pytorch_utils.Conv1D, act=act)
    before = _dispatch.CALLS["bias_gelu"]
    compare(lambda x, m: m(x), lambda x, m: m(x, rewritten=True), [torch.randn(*shape)], modules=[mlp])
    assert _dispatch.CALLS["bias_gelu"] == before + 1


def test_negative_control_the_weight_read_untransposed_fails(monkeypatch):
    """Reading Conv1D's (in, out) weight as if it were (out, in), on a square layer where the
    shapes cannot tell: the check catches it."""
    from adopt_kernels._impl import gelu

    torch.manual_seed(1)
    mlp = Mlp(pytorch_utils.Conv1D, width=20)
    monkeypatch.setattr(gelu, "_weight_out_in", lambda linear: linear.weight)
    before = _dispatch.CALLS["bias_gelu"]
    with pytest.raises(AssertionError):
        compare(lambda x, m: m(x), lambda x, m: m(x, rewritten=True), [torch.randn(2, 7, 20)], modules=[mlp])
    assert _dispatch.CALLS["bias_gelu"] == before + 1


def _example_conv1d():
    """The look-alike of the rule's own example: a Conv1D class of the same name and
    parameters, defined outside transformers."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "rules" / "conv1d_gelu" / "before.py"
    spec = importlib.util.spec_from_file_location("conv1d_gelu_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Conv1D


def test_a_look_alike_conv1d_and_a_hooked_one_run_the_original_code():
    torch.manual_seed(2)
    x = torch.randn(2, 7, 20)
    for mlp in (Mlp(_example_conv1d()), Mlp(pytorch_utils.Conv1D)):
        if isinstance(mlp.c_fc, pytorch_utils.Conv1D):
            mlp.c_fc.register_forward_hook(lambda m, i, o: o * 2)
        before = _dispatch.CALLS["bias_gelu"]
        torch.testing.assert_close(mlp(x, rewritten=True), mlp(x))
        assert _dispatch.CALLS["bias_gelu"] == before
