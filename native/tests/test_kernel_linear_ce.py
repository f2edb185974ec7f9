"""The compiled linear + cross entropy against float64 references: losses, hidden, weight and
bias gradients in float32 and bfloat16, odd shapes, several chunks, upstream gradients that
differ per row, masked logits, schedules sampled from its space, and a negative control."""


import pytest
import torch
import torch.nn.functional as F
from torch import nn

import adopt_kernels as ak
from adopt_kernels import _dispatch
from adopt_kernels.kernels import linear_ce as K
from checks import sampled_schedules

# (tokens, hidden, vocab): vocabularies that are multiples of no block or vector width
SHAPES = [(15, 80, 123), (7, 33, 1000), (37, 64, 4099)]


def inputs(tokens, hidden, vocab, dtype, bias=False, seed=0, ignored=0.2):
    g = torch.Generator().manual_seed(seed)
    t = K.TORCH_DTYPE[dtype]
    h = torch.randn(tokens, hidden, generator=g).to(t)
    w = (2 * torch.randn(vocab, hidden, generator=g) / hidden ** 0.5).to(t)
    b = torch.randn(vocab, generator=g).to(t) if bias else None
    labels = torch.randint(0, vocab, (tokens,), generator=g)
    labels[torch.rand(tokens, generator=g) < ignored] = -100
    return h, w, b, labels


def leaves(*tensors):
    return [None if t is None else t.detach().clone().requires_grad_(True) for t in tensors]


def compiled_mean(h, w, b, labels, max_rows=None, schedule=None):
    count = max(1, int((labels != -100).sum()))
    losses = K.linear_cross_entropy_rows(h, w, b, labels, -100, 1.0 / count, max_rows=max_rows, schedule=schedule)
    return losses.sum() / count


def reference_mean(h, w, b, labels):
    return K.reference(h, w, b, labels)


def run_both(h, w, b, labels, dtype, **kw):
    """(compiled, float64) loss and gradients of the mean loss."""
    got = leaves(h, w, b)
    loss = compiled_mean(*got, labels, **kw)
    loss.backward()
    want = leaves(*(None if t is None else t.double() for t in (h, w, b)))
    ref = reference_mean(*want, labels)
    ref.backward()
    pairs = [("loss", loss, ref)] + [(n, a.grad, e.grad) for n, a, e in zip(("grad hidden", "grad weight", "grad bias"), got, want) if a is not None]
    return pairs


def assert_pairs(pairs, dtype):
    for name, a, e in pairs:
        s = 1.0 if name == "loss" else max(e.abs().max().item(), 1e-30)  # gradients relative to their largest
        K.assert_matches(a.double() / s, e / s, dtype, name)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("bias", [False, True])
def test_loss_and_gradients_match_float64(dtype, shape, bias):
    h, w, b, labels = inputs(*shape, dtype, bias=bias, seed=sum(shape))
    before = _dispatch.CALLS["linear_cross_entropy"]
    pairs = run_both(h, w, b, labels, dtype)
    # forward only: its chunks already formed the gradients, the backward scaled them
    assert _dispatch.CALLS["linear_cross_entropy"] == before + 1
    assert pairs[0][1].dtype == torch.float32
    for name, a, _ in pairs[1:]:
        assert a.dtype == K.TORCH_DTYPE[dtype], name
    assert_pairs(pairs, dtype)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_many_chunks_match_one(dtype):
    h, w, b, labels = inputs(37, 64, 4099, dtype, bias=True, seed=5)
    assert_pairs(run_both(h, w, b, labels, dtype, max_rows=5), dtype)
    seen = []
    real = K._project
    try:
        K._project = lambda x, *a: seen.append(x.shape[0]) or real(x, *a)
        compiled_mean(*leaves(h, w, b), labels, max_rows=5).backward()
    finally:
        K._project = real
    counted = int((labels != -100).sum())  # rows without a label are never projected
    assert seen == [5] * (counted // 5) + ([counted % 5] if counted % 5 else [])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_an_upstream_gradient_per_row_recomputes_the_logits(dtype):
    h, w, b, labels = inputs(23, 48, 777, dtype, bias=True, seed=9)
    weights = torch.rand(23, generator=torch.Generator().manual_seed(1))
    got = leaves(h, w, b)
    before = _dispatch.CALLS["linear_cross_entropy"]
    losses = K.linear_cross_entropy_rows(*got, labels, -100, 1.0, max_rows=6)
    (losses * weights).sum().backward()
    assert _dispatch.CALLS["linear_cross_entropy"] == before + 2
    want = leaves(*(t.double() for t in (h, w, b)))
    ref = K.reference(*want, labels, reduction="none")
    (ref * weights.double()).sum().backward()
    pairs = [("losses", losses, ref)] + [(n, a.grad, e.grad) for n, a, e in zip(("grad hidden", "grad weight", "grad bias"), got, want)]
    assert_pairs(pairs, dtype)


def test_a_scaled_loss_and_a_second_backward():
    h, w, b, labels = inputs(15, 80, 123, "float32", seed=2)
    got = leaves(h, w)
    loss = compiled_mean(*got, None, labels)
    (3 * loss).backward(retain_graph=True)
    first = [t.grad.clone() for t in got]
    loss.backward()  # the gradients formed in the forward are gone: this one recomputes
    want = leaves(h.double(), w.double())
    reference_mean(*want, None, labels).backward()
    for a, f, e in zip(got, first, want):
        K.assert_matches(f / 3, e.grad, "float32", "scaled")
        K.assert_matches(a.grad / 4, e.grad, "float32", "accumulated")


def test_public_api_with_shift_and_reductions():
    g = torch.Generator().manual_seed(4)
    hidden = torch.randn(3, 5, 80, generator=g)
    head = nn.Linear(80, 123)
    labels = torch.randint(0, 123, (3, 5), generator=g)
    labels[1, 2] = -100
    for reduction in ("mean", "sum", "none"):
        before = _dispatch.CALLS["linear_cross_entropy"]
        h1, h2 = leaves(hidden, hidden)
        out = ak.linear_cross_entropy(h1, head, labels, reduction=reduction)
        assert _dispatch.CALLS["linear_cross_entropy"] > before
        logits = head(h2)[:, :-1].reshape(-1, 123)
        ref = F.cross_entropy(logits, labels[:, 1:].reshape(-1), reduction=reduction)
        torch.testing.assert_close(out, ref, rtol=2e-5, atol=2e-6)
        out.sum().backward()
        ref.sum().backward()
        torch.testing.assert_close(h1.grad, h2.grad, rtol=2e-5, atol=2e-6)


def test_masked_logits_ignored_rows_and_nan():
    h, w, b, labels = inputs(9, 16, 300, "float32", bias=True, seed=3, ignored=0.0)
    b[:150] = float("-inf")  # a vocabulary half masked out, the first blocks entirely
    labels = labels % 150 + 150
    labels[0] = -100
    assert_pairs(run_both(h, w, b, labels, "float32"), "float32")
    h[3, 0] = float("nan")
    losses = K.linear_cross_entropy_rows(h, w, b, labels, -100)
    assert torch.isnan(losses[3]) and torch.isfinite(losses[4:]).all() and losses[0] == 0
    every = torch.full((9,), -100)
    out = K.linear_cross_entropy_rows(*leaves(h, w), None, every, -100)
    assert (out == 0).all()


def test_out_of_range_labels_raise():
    h, w, _, labels = inputs(4, 8, 10, "float32")
    labels[2] = 10
    with pytest.raises(RuntimeError, match="out of bounds"):
        K.linear_cross_entropy_rows(h, w, None, labels)



@pytest.mark.parametrize("schedule", sampled_schedules(K.SPACE, 4), ids=str)
def test_every_sampled_schedule_gives_the_same_result(schedule):
    run, _, check = K.make_case({"tokens": 150, "hidden": 40, "vocab": 2111, "dtype": "float32"}, seed=3)
    check(run(schedule))


def test_unsupported_inputs_take_the_reference_path(monkeypatch):
    h, w, b, labels = inputs(6, 8, 20, "float32", bias=True)
    assert K.linear_cross_entropy_rows(h.double(), w.double(), None, labels) is None
    assert K.linear_cross_entropy_rows(h, w.bfloat16(), None, labels) is None
    assert K.linear_cross_entropy_rows(h, w, b[:-1], labels) is None
    assert K.linear_cross_entropy_rows(h[None], w, None, labels) is None
    assert K.linear_cross_entropy_rows(h, w[:, :-1], None, labels) is None
    for name in ("native", "linear_cross_entropy"):
        monkeypatch.setenv("ADOPT_DISABLE", name)
        assert K.linear_cross_entropy_rows(h, w, b, labels) is None
        before = _dispatch.CALLS["linear_cross_entropy"]
        head = nn.Linear(8, 20)
        ak.linear_cross_entropy(h[None], head, labels[None])
        assert _dispatch.CALLS["linear_cross_entropy"] == before


def test_negative_control_a_wrong_template_fails_the_check(monkeypatch):
    # the target's gradient with the one-hot added instead of subtracted
    wrong = K.TEMPLATE.replace("fexp(xt - lse) * scale - scale", "fexp(xt - lse) * scale + scale")
    assert wrong != K.TEMPLATE
    monkeypatch.setattr(K, "TEMPLATE", wrong)
    _dispatch.forget()
    try:
        run, _, check = K.make_case({"tokens": 20, "hidden": 16, "vocab": 300, "dtype": "float32"}, seed=1)
        with pytest.raises(AssertionError):
            check(run(None))
    finally:
        monkeypatch.undo()
        _dispatch.forget()
