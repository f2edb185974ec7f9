"""The Triton linear + cross entropy through the public ``linear_cross_entropy`` on the kernel's
device (CUDA, or the CPU under Triton's interpreter), against the float64 eager code: float32,
bfloat16 and float16, bias or none, shifted labels with ignored rows, each reduction, chunks of
a few rows, an upstream gradient that differs between rows (the logits projected again), the
variant returning the logits with a gradient reaching them, and every label ignored."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from test_gpu_kernels import DEVICE, _triton_path  # noqa: F401  (the interpreter set-up)

import adopt_kernels as ak  # noqa: E402
from adopt_kernels import _dispatch  # noqa: E402
from adopt_kernels._impl import cross_entropy as ce_impl  # noqa: E402
from adopt_kernels.kernels import _common  # noqa: E402

VOCAB, HIDDEN = 301, 24
KERNEL = "linear_cross_entropy"
# torch 1.x on a CPU has no float16 matmul: float16 is checked on a CUDA device only
FLOAT16 = pytest.param(torch.float16, marks=pytest.mark.skipif(DEVICE == "cpu", reason="no float16 matmul on this CPU"))


def _case(dtype, bias, seed=0, batch=3, seq=7):
    g = torch.Generator().manual_seed(seed)
    head = nn.Linear(HIDDEN, VOCAB, bias=bias)
    with torch.no_grad():
        head.weight.copy_(2 * torch.randn(VOCAB, HIDDEN, generator=g) / HIDDEN ** 0.5)
        if bias:
            head.bias.copy_(torch.randn(VOCAB, generator=g))
    hidden = torch.randn(batch, seq, HIDDEN, generator=g)
    labels = torch.randint(0, VOCAB, (batch, seq), generator=g)
    labels[torch.rand(batch, seq, generator=g) < 0.25] = -100
    z = torch.randn(batch, seq, VOCAB, generator=g)
    return head.to(DEVICE, dtype), hidden.to(DEVICE, dtype), labels.to(DEVICE), z


def _run(fn, head, hidden, weigh):
    """Loss (and logits) of ``fn`` and the gradients of ``weigh(outputs)``."""
    head.zero_grad()
    x = hidden.detach().clone().requires_grad_(True)
    out = fn(x, head)
    out = out if isinstance(out, tuple) else (out,)
    weigh(out).backward()
    grads = [x.grad, head.weight.grad] + ([head.bias.grad] if head.bias is not None else [])
    return list(out) + grads


def _compare(got, want, dtype):
    name = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]
    assert len(got) == len(want)
    for i, (a, e) in enumerate(zip(got, want)):
        # gradients are O(1/tokens) per element: compare them relative to their largest
        s = max(e.abs().max().item(), 1e-30) if e.numel() else 1.0
        _common.assert_matches(a.detach().double().cpu() / s, e.detach().double().cpu() / s, name, f"output {i}")


def _both(dtype, bias, fn, eager, weigh, compare_as=None):
    head, hidden, labels, z = _case(dtype, bias)
    head64 = nn.Linear(HIDDEN, VOCAB, bias=bias).double()
    head64.load_state_dict({k: v.double().cpu() for k, v in head.state_dict().items()})
    before = _dispatch.CALLS[KERNEL]
    got = _run(lambda x, h: fn(x, h, labels), head, hidden, lambda out: weigh(out, z.to(DEVICE)))
    assert _dispatch.CALLS[KERNEL] > before, "the Triton kernel did not run"
    want = _run(lambda x, h: eager(x, h, labels.cpu()), head64, hidden.double().cpu(), lambda out: weigh(out, z.double()))
    _compare(got, want, compare_as or dtype)


def _eager_loss(x, head, labels, reduction="mean", shift=True):
    logits = head(x)
    if shift:
        logits, labels = logits[..., :-1, :], labels[..., 1:]
    return F.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1), reduction=reduction)


@pytest.fixture(params=["one_chunk", "chunks_of_4"])
def chunking(request, monkeypatch):
    if request.param == "chunks_of_4":
        monkeypatch.setattr(ce_impl, "CHUNK_ELEMENTS", 4 * VOCAB)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, FLOAT16])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_and_gradients(dtype, bias, reduction, chunking):
    # an upstream gradient of 2.5, not the 1 the forward assumed: its gradients are scaled
    _both(dtype, bias, lambda x, h, y: ak.linear_cross_entropy(x, h, y, reduction=reduction),
          lambda x, h, y: _eager_loss(x, h, y, reduction), lambda out, z: 2.5 * out[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rows_weighted_differently_recompute(dtype, chunking):
    """reduction='none' weighted per row: the upstream gradient differs between rows."""
    w = torch.rand(3 * 6, generator=torch.Generator().manual_seed(5))
    _both(dtype, True, lambda x, h, y: ak.linear_cross_entropy(x, h, y, reduction="none"),
          lambda x, h, y: _eager_loss(x, h, y, "none"), lambda out, z: (out[0] * w.to(out[0])).sum())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("cast", [None, torch.float32])
@pytest.mark.parametrize("loss_weight", [1.0, 0.0])
def test_returned_logits(dtype, cast, loss_weight, chunking):
    """The logits returned as well, a z-like term on them back-propagated with the loss."""
    def eager(x, h, y):
        logits = h(x)
        logits = logits if cast is None else logits.to(cast)
        loss = F.cross_entropy(logits[..., :-1, :].reshape(-1, VOCAB), y[..., 1:].reshape(-1))
        return loss, logits

    def weigh(out, z):
        return loss_weight * out[0] + 1e-2 * (out[1].to(z.dtype) * z).sum()

    _both(dtype, True, lambda x, h, y: ak.linear_cross_entropy(x, h, y, return_logits=True, logits_dtype=cast), eager, weigh)


def test_every_label_ignored():
    head, hidden, labels, _ = _case(torch.float32, True)
    x = hidden.detach().requires_grad_(True)
    loss = ak.linear_cross_entropy(x, head, torch.full_like(labels, -100), reduction="sum")
    loss.backward()
    assert loss.item() == 0.0 and not x.grad.abs().any() and not head.weight.grad.abs().any()


@pytest.mark.parametrize("return_logits", [False, True])
def test_chunks_bound_the_logits(return_logits, monkeypatch):
    """No projection is larger than the caller's chunk: the logits are never held whole."""
    from adopt_kernels.kernels import linear_ce

    shapes, real = [], linear_ce._project
    monkeypatch.setattr(linear_ce, "_project", lambda h, w, b, out: shapes.append(tuple(out.shape)) or real(h, w, b, out))
    monkeypatch.setattr(ce_impl, "CHUNK_ELEMENTS", 4 * VOCAB)
    head, hidden, labels, _ = _case(torch.float32, True)
    x = hidden.detach().requires_grad_(True)
    out = ak.linear_cross_entropy(x, head, labels, reduction="none", return_logits=return_logits)
    loss = out[0] if return_logits else out
    (loss * torch.arange(loss.numel()).to(loss)).sum().backward()  # rows weighted apart: projected again
    assert len(shapes) > 2 and all(r <= 4 and v == VOCAB for r, v in shapes)


def test_autocast_takes_the_kernel():
    """A float32 head under autocast: the kernel runs in autocast's dtype, as F.linear would,
    and the float32 weight gets its gradient through the cast."""
    dtype = torch.bfloat16
    with torch.autocast(DEVICE, dtype=dtype):
        _both(torch.float32, True, lambda x, h, y: ak.linear_cross_entropy(x, h, y),
              lambda x, h, y: _eager_loss(x.to(dtype).double(), _rounded(h, dtype), y), lambda out, z: out[0], dtype)


def _rounded(head, dtype):
    """``head`` with its parameters rounded to ``dtype`` (what autocast multiplies) in float64."""
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(p.to(dtype).double())
    return head


def test_masked_vocabulary():
    """Logits of -inf (a bias masking part of the vocabulary) over whole blocks of the sweep,
    the first ones included: the running sum stays finite and those logits get no gradient."""
    from adopt_kernels.kernels import linear_ce

    g = torch.Generator().manual_seed(3)
    vocab, masked = 5000, 2100
    hidden = torch.randn(9, HIDDEN, generator=g)
    weight = torch.randn(vocab, HIDDEN, generator=g) / HIDDEN ** 0.5
    bias = torch.zeros(vocab)
    bias[:masked] = float("-inf")
    labels = torch.randint(masked, vocab, (9,), generator=g)
    schedule = {"chunk_rows": 256, "block_v": 1024, "num_warps": 4}
    got, want = [], []
    for out, dtype, dev in ((got, torch.float32, DEVICE), (want, torch.float64, "cpu")):
        h, w, b = (t.to(dev, dtype, copy=True).requires_grad_(True) for t in (hidden, weight, bias))
        y = labels.to(dev)
        if dev == "cpu" and dtype == torch.float64:
            loss = F.cross_entropy(F.linear(h, w, b), y, reduction="sum")
        else:
            loss = linear_ce.linear_cross_entropy_rows(h, w, b, y, schedule=schedule).sum()
        loss.backward()
        out.extend([loss, h.grad, w.grad, b.grad])
    assert torch.isfinite(got[0]) and not got[3][:masked].abs().any()
    _compare(got, want, torch.float32)
