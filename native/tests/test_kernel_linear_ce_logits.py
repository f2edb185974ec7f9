"""Linear + cross entropy returning the logits as well, against the float64 eager code: the loss,
the returned logits, and the hidden, weight and bias gradients of the loss plus a term on the
logits (a z-loss), in float32 and bfloat16, with the logits cast up or not, shifted labels,
ignore_index and each reduction; the loss or the logits alone back-propagated; no gradient work
without grad; and a negative control."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import adopt_kernels as ak
from adopt_kernels import _dispatch
from adopt_kernels.kernels import linear_ce as K
from adopt_kernels.kernels import linear_ce_logits as KL


def eager(hidden, head, labels, ignore_index=-100, shift=True, reduction="mean", cast=None):
    """The code the rule replaces: the head's logits, maybe `.float()`, shifted, flattened, loss."""
    logits = head(hidden)
    if cast is not None:
        logits = logits.to(cast)
    vocab = logits.size(-1)
    flat, flat_labels = logits, labels
    if shift:
        flat = logits[..., :-1, :].contiguous()
        flat_labels = labels[..., 1:].contiguous()
    loss = F.cross_entropy(flat.view(-1, vocab), flat_labels.view(-1), ignore_index=ignore_index, reduction=reduction)
    return loss, logits


def case(dtype, batch=3, seq=7, hidden=40, vocab=301, bias=True, seed=0, ignore_index=-100):
    g = torch.Generator().manual_seed(seed)
    t = K.TORCH_DTYPE[dtype]
    head = nn.Linear(hidden, vocab, bias=bias)
    with torch.no_grad():
        head.weight.copy_(2 * torch.randn(vocab, hidden, generator=g) / hidden ** 0.5)
    head = head.to(t)
    h = torch.randn(batch, seq, hidden, generator=g).to(t)
    labels = torch.randint(0, vocab, (batch, seq), generator=g)
    labels[torch.rand(batch, seq, generator=g) < 0.25] = ignore_index
    z = torch.randn(batch, seq, vocab, generator=g)
    return head, h, labels, z


def run(fn, head, h, z, loss_weight=1.0, logits_weight=1e-2):
    """Outputs and gradients of ``loss_weight * loss.sum() + logits_weight * <logits, z>``."""
    head.zero_grad()
    x = h.detach().clone().requires_grad_(True)
    loss, logits = fn(x)
    total = 0
    if loss_weight:
        total = total + loss_weight * loss.sum()
    if logits_weight:
        total = total + logits_weight * (logits.to(z.dtype).reshape(z.shape) * z).sum()
    total.backward()
    grads = [x.grad, head.weight.grad] + ([head.bias.grad] if head.bias is not None else [])
    return [loss, logits] + [None if g is None else g.clone() for g in grads]


def reference64(head, h, labels, z, **kw):
    head64 = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None).double()
    head64.load_state_dict({k: v.double() for k, v in head.state_dict().items()})
    cast = kw.pop("cast", None)
    kw.pop("lw", None)
    return head64, h.double(), (lambda x: eager(x, head64, labels, cast=None if cast is None else torch.float64, **kw))


def compare(got, want, dtype):
    names = ("loss", "logits", "grad hidden", "grad weight", "grad bias")
    for name, a, e in zip(names, got, want):
        assert a is not None and e is not None, name
        s = 1.0 if name in ("loss", "logits") else max(e.abs().max().item(), 1e-30)
        K.assert_matches(a.double() / s, e.double() / s, dtype, f"with logits: {name}")


def check(dtype, cast=None, loss_weight=1.0, logits_weight=1e-2, **kw):
    head, h, labels, z = case(dtype, bias=kw.pop("bias", True), ignore_index=kw.get("ignore_index", -100))
    before = _dispatch.CALLS["linear_cross_entropy"]
    got = run(lambda x: ak.linear_cross_entropy(x, head, labels, return_logits=True, logits_dtype=cast, **kw), head, h, z, loss_weight, logits_weight)
    assert _dispatch.CALLS["linear_cross_entropy"] > before, "the compiled kernel did not run"
    head64, h64, fn64 = reference64(head, h, labels, z, cast=cast, **kw)
    want = run(fn64, head64, h64, z.double(), loss_weight, logits_weight)
    eager_out = eager(h, head, labels, cast=cast, **kw)
    assert got[0].dtype == eager_out[0].dtype and got[1].dtype == eager_out[1].dtype
    assert got[1].shape == eager_out[1].shape
    compare(got, want, dtype)
    return got, want


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("cast", [None, torch.float32], ids=["as_head", "float"])
@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_logits_and_gradients_match_float64(dtype, cast, shift, reduction):
    check(dtype, cast, shift=shift, reduction=reduction)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_custom_ignore_index_and_no_bias(dtype):
    check(dtype, ignore_index=7, bias=False)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_loss_alone_and_the_logits_alone(dtype):
    check(dtype, logits_weight=0.0)
    check(dtype, loss_weight=0.0)


def test_many_chunks_each_projected_once(monkeypatch):
    head, h, labels, z = case("float32", batch=4, seq=9)
    seen = []
    real = K._project
    monkeypatch.setattr(K, "_project", lambda x, *a: seen.append(x.shape[0]) or real(x, *a))
    chunked = run(lambda x: KL.linear_cross_entropy_logits_rows(x.reshape(-1, 40), head.weight, head.bias, labels.reshape(-1), scale=1.0, max_rows=5), head, h, z)
    # every row is projected once (its logits are returned), in chunks of 5: no recomputation
    assert seen == [5] * 7 + [1]
    whole = run(lambda x: KL.linear_cross_entropy_logits_rows(x.reshape(-1, 40), head.weight, head.bias, labels.reshape(-1), scale=1.0), head, h, z)
    for a, b in zip(chunked, whole):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_per_row_upstream_gradient_recomputes(monkeypatch):
    head, h, labels, z = case("float32")
    weights = torch.rand(3 * 7, generator=torch.Generator().manual_seed(2))
    fn = lambda x: KL.linear_cross_entropy_logits_rows(x.reshape(-1, 40), head.weight, head.bias, labels.reshape(-1))  # noqa: E731
    got = run(lambda x: ((lambda o: (o[0] * weights, o[1]))(fn(x))), head, h, z)
    head64, h64, _ = reference64(head, h, labels, z)
    ref = lambda x: (F.cross_entropy(head64(x).reshape(-1, 301), labels.reshape(-1), reduction="none") * weights.double(), head64(x).reshape(-1, 301))  # noqa: E731
    want = run(ref, head64, h64, z.double())
    compare(got, want, "float32")


def test_no_gradient_work_without_grad(monkeypatch):
    head, h, labels, _ = case("float32")
    accumulated = []
    real = K._Chunks.accumulate
    monkeypatch.setattr(K._Chunks, "accumulate", lambda self, *a: accumulated.append(1) or real(self, *a))
    with torch.no_grad():
        loss, logits = ak.linear_cross_entropy(h, head, labels, return_logits=True)
    assert not accumulated and not logits.requires_grad
    ref_loss, ref_logits = eager(h, head, labels)
    torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, ref_logits.detach())
    ak.linear_cross_entropy(h.requires_grad_(True), head, labels, return_logits=True)
    assert accumulated, "with grad on, the forward forms the gradients"


def test_unsupported_inputs_run_the_eager_code(monkeypatch):
    head, h, labels, _ = case("float32")
    before = _dispatch.CALLS["linear_cross_entropy"]
    for hh, hd, cast in ((h.double(), copy.deepcopy(head).double(), None), (h, head, torch.float64)):
        loss, logits = ak.linear_cross_entropy(hh, hd, labels, return_logits=True, logits_dtype=cast)
        ref_loss, ref_logits = eager(hh, hd, labels, cast=cast)
        torch.testing.assert_close(loss, ref_loss)
        torch.testing.assert_close(logits, ref_logits)
    monkeypatch.setenv("ADOPT_DISABLE", "linear_cross_entropy")
    ak.linear_cross_entropy(h, head, labels, return_logits=True)
    assert _dispatch.CALLS["linear_cross_entropy"] == before


def test_negative_control_a_wrong_gradient_fails(monkeypatch):
    # the logits' own gradient GEMM for the hidden states left out
    monkeypatch.setattr(KL, "_add_logits_grad", lambda h, w, g, grads: None)
    with pytest.raises(AssertionError, match="grad"):
        check("float32")
    monkeypatch.undo()
    wrong = K.TEMPLATE.replace("fexp(xt - lse) * scale - scale", "fexp(xt - lse) * scale + scale")
    monkeypatch.setattr(K, "TEMPLATE", wrong)
    _dispatch.forget()
    try:
        with pytest.raises(AssertionError, match="grad"):
            check("float32", logits_weight=0.0)
    finally:
        monkeypatch.undo()
        _dispatch.forget()
