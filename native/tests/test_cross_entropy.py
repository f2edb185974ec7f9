import pytest
import torch
import torch.nn.functional as F
from torch import nn

import adopt_kernels as ak
from adopt_kernels._impl import cross_entropy as ce_impl
from adopt_kernels.kernels import linear_ce
from checks import DTYPES, compare


def causal_lm_loss(hidden, lm_head, labels, ignore_index=-100, shift=True, reduction="mean"):
    """The original code of a causal LM's forward."""
    logits = lm_head(hidden)
    vocab = logits.size(-1)
    if shift:
        logits = logits[..., :-1, :].contiguous()
        labels = labels[..., 1:].contiguous()
    return F.cross_entropy(
        logits.view(-1, vocab), labels.view(-1), ignore_index=ignore_index, reduction=reduction
    )


@pytest.fixture(params=["one_chunk", "many_chunks"])
def chunking(request, monkeypatch):
    """Default chunking, and chunks of 2 rows so every case spans several chunks."""
    rows_per_call = []
    if request.param == "many_chunks":
        monkeypatch.setattr(ce_impl, "CHUNK_ELEMENTS", 2 * VOCAB)
        real_linear = ce_impl._linear

        def spy(x, w, b=None):
            rows_per_call.append(x.shape[0])
            return real_linear(x, w, b)

        monkeypatch.setattr(ce_impl, "_linear", spy)
        watch_compiled_chunks(monkeypatch, lambda x: rows_per_call.append(x.shape[0]))
    return request.param, rows_per_call


def watch_compiled_chunks(monkeypatch, record):
    """The compiled kernel (float32 on the CPU) projects its chunks into a reused buffer
    through its own hook instead of ``_linear``."""
    real_project = linear_ce._project

    def spy(x, w, b, out):
        record(x)
        return real_project(x, w, b, out)

    monkeypatch.setattr(linear_ce, "_project", spy)


VOCAB = 11


def labels_for(shape, ignore_index, fraction_ignored=0.3):
    labels = torch.randint(0, VOCAB, shape)
    labels[torch.rand(shape) < fraction_ignored] = ignore_index
    return labels


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5), (1, 6), (2, 1), (7,)])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_causal_lm_loss(dtype, shape, bias, shift, reduction, chunking):
    hidden = torch.randn(shape + (13,), dtype=dtype)
    lm_head = nn.Linear(13, VOCAB, bias=bias).to(dtype)
    labels = labels_for(shape, -100)
    compare(
        lambda h, m: causal_lm_loss(h, m, labels, shift=shift, reduction=reduction),
        lambda h, m: ak.linear_cross_entropy(h, m, labels, shift=shift, reduction=reduction),
        [hidden],
        [lm_head],
        dtype=dtype,
    )
    name, rows = chunking
    if name == "many_chunks":
        assert max(rows, default=0) <= 2
        # the compiled kernel projects only rows that have a label, none when all are ignored
        counted = (labels[..., 1:] if shift else labels) != -100
        assert rows or (dtype == torch.float32 and not counted.any())


@pytest.mark.parametrize("dtype", DTYPES)
def test_custom_ignore_index(dtype, chunking):
    hidden = torch.randn(3, 5, 7, dtype=dtype)
    lm_head = nn.Linear(7, VOCAB).to(dtype)
    labels = labels_for((3, 5), 0)
    compare(
        lambda h, m: causal_lm_loss(h, m, labels, ignore_index=0),
        lambda h, m: ak.linear_cross_entropy(h, m, labels, ignore_index=0),
        [hidden],
        [lm_head],
        dtype=dtype,
    )


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_all_labels_ignored(reduction, chunking):
    hidden = torch.randn(2, 4, 7, dtype=torch.float64)
    lm_head = nn.Linear(7, VOCAB).double()
    labels = torch.full((2, 4), -100)
    ref, out = compare(
        lambda h, m: causal_lm_loss(h, m, labels, reduction=reduction),
        lambda h, m: ak.linear_cross_entropy(h, m, labels, reduction=reduction),
        [hidden],
        [lm_head],
        dtype=torch.float64,
    )
    assert torch.isnan(out[0]) == (reduction == "mean")


def test_gradients_do_not_depend_on_chunking(monkeypatch):
    hidden = torch.randn(4, 9, 7, dtype=torch.float64, requires_grad=True)
    lm_head = nn.Linear(7, VOCAB).double()
    labels = labels_for((4, 9), -100)
    grads = []
    for elements in (VOCAB, 3 * VOCAB, 1 << 24):
        monkeypatch.setattr(ce_impl, "CHUNK_ELEMENTS", elements)
        hidden.grad = None
        lm_head.zero_grad()
        ak.linear_cross_entropy(hidden, lm_head, labels).backward()
        grads.append((hidden.grad.clone(), lm_head.weight.grad.clone(), lm_head.bias.grad.clone()))
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logits_never_held_whole(dtype, monkeypatch):
    monkeypatch.setattr(ce_impl, "CHUNK_ELEMENTS", 4 * VOCAB)
    shapes = []
    real_linear = ce_impl._linear
    monkeypatch.setattr(ce_impl, "_linear", lambda x, w, b=None: shapes.append(x.shape) or real_linear(x, w, b))
    watch_compiled_chunks(monkeypatch, lambda x: shapes.append(x.shape))
    hidden = torch.randn(3, 8, 7, dtype=dtype, requires_grad=True)
    lm_head = nn.Linear(7, VOCAB).to(dtype)
    labels = labels_for((3, 8), -100)
    loss = ak.linear_cross_entropy(hidden, lm_head, labels)
    loss.backward()
    if dtype == torch.float64:
        # 24 rows in chunks of 4, once in forward and once recomputed in backward.
        assert shapes == [(4, 7)] * 12
    else:
        # The compiled kernel projects only the rows that have a label (after the shift), in
        # chunks of at most 4, once: it forms the gradients from the forward's chunks.
        counted = int((labels[:, 1:] != -100).sum())
        assert all(s[0] <= 4 for s in shapes) and sum(s[0] for s in shapes) == counted
        assert len(shapes) == (counted + 3) // 4


def test_loss_only_without_grad():
    hidden = torch.randn(3, 5, 7)
    lm_head = nn.Linear(7, VOCAB)
    labels = labels_for((3, 5), -100)
    with torch.no_grad():
        torch.testing.assert_close(ak.linear_cross_entropy(hidden, lm_head, labels), causal_lm_loss(hidden, lm_head, labels))


def test_frozen_head_gets_no_gradient():
    hidden = torch.randn(3, 5, 7, requires_grad=True)
    lm_head = nn.Linear(7, VOCAB).requires_grad_(False)
    labels = labels_for((3, 5), -100)
    ak.linear_cross_entropy(hidden, lm_head, labels).backward()
    assert lm_head.weight.grad is None and hidden.grad is not None
    expected = hidden.detach().clone().requires_grad_()
    causal_lm_loss(expected, lm_head, labels).backward()
    torch.testing.assert_close(hidden.grad, expected.grad)


def test_out_of_range_label_raises():
    hidden = torch.randn(2, 3, 7)
    labels = torch.tensor([[0, 1, VOCAB], [1, 2, 3]])
    with pytest.raises(RuntimeError):
        ak.linear_cross_entropy(hidden, nn.Linear(7, VOCAB), labels)


def test_bad_reduction():
    with pytest.raises(ValueError):
        ak.linear_cross_entropy(torch.randn(2, 3, 7), nn.Linear(7, VOCAB), torch.zeros(2, 3, dtype=torch.long), reduction="avg")


@pytest.mark.parametrize("case", ["disabled", "hook"])
def test_fallback_to_reference(case, monkeypatch):
    monkeypatch.setattr(ce_impl._LinearCrossEntropy, "apply", lambda *a: pytest.fail("kernel used"))
    hidden = torch.randn(3, 5, 7)
    lm_head = nn.Linear(7, VOCAB)
    if case == "disabled":
        monkeypatch.setenv("ADOPT_DISABLE", "linear_cross_entropy")
    else:
        lm_head.register_forward_hook(lambda mod, args, out: out * 2.0)
    labels = labels_for((3, 5), -100)
    torch.testing.assert_close(ak.linear_cross_entropy(hidden, lm_head, labels), causal_lm_loss(hidden, lm_head, labels))
