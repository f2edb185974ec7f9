"""The blocked attention's path for a few query rows (a decoded token against its key cache):
keys and values read where they lie, split in chunks when the (batch, head) pairs are too few for
the threads, merged as the online softmax merges blocks. Outputs and gradients against float64,
every mask kind, the same dropout mask as the blocked path, the chunks' merge, and negative
controls showing the checks fail for a deliberate error in this path."""

import math

import pytest
import torch

from adopt_kernels import _dispatch
from adopt_kernels.kernels import flash_attention as K
from test_kernel_flash_attention import _compare, _grads, _inputs, _masks, check_case, check_dropout_replay

CASES = [  # batch, heads, q_len, k_len, head_dim, value head_dim
    (1, 8, 1, 300, 64, 64),  # one decoded token
    (2, 3, 3, 517, 80, 80),  # a few draft tokens, a head dim no vector length divides
    (1, 2, K.DIRECT_ROWS, 33, 13, 9),  # the most rows the path takes; value width apart
    (3, 1, 1, 1, 16, 16),  # the first token: one key
]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("kind", [None, "additive", "padding", "bool", "causal", "bias+keep+causal"])
def test_forward_and_gradients_match_float64(dtype, case, kind):
    check_case(dtype, case, kind)


@pytest.mark.parametrize("threads", [1, 4])
def test_keys_split_in_chunks_merge_as_one_softmax(threads):
    """One (batch, head): 4099 keys in one chunk at one thread, in 16 at four (the last of 19 or
    139 keys), the last eighth padded out with the dtype's minimum, merged into each row's
    softmax. Chunks masked whole: the test below."""
    torch.set_num_threads(threads)  # conftest restores the count
    run, _, check = K.make_case({"batch": 1, "heads": 1, "q_len": 2, "k_len": 4099, "head_dim": 64, "dtype": "float32"}, seed=3)
    check(run(None))


def test_the_few_rows_agree_with_the_blocked_path(monkeypatch):
    (q, k, v, _), g = _inputs(2, 4, K.DIRECT_ROWS, 700, 32, 32, "float32", seed=11)
    bias, mask, keep, causal = _masks("bias+keep+causal", 2, 4, K.DIRECT_ROWS, 700, g)
    few = K.flash_attention(q, k, v, 0.2, bias, mask, keep, causal)
    monkeypatch.setattr(K, "DIRECT_ROWS", 0)
    blocked = K.flash_attention(q, k, v, 0.2, bias, mask, keep, causal)
    torch.testing.assert_close(few, blocked, rtol=1e-5, atol=1e-6)


def test_dropout_takes_the_blocked_paths_mask():
    """The hash of (seed, batch * heads + head, row, key) decides each key whichever path runs,
    so the backward (always blocked) replays the forward's mask."""
    check_dropout_replay(3)


def test_a_fully_masked_row_is_nan_as_in_eager_code():
    q, k, v = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 600, 8), torch.randn(1, 2, 600, 8)
    keep = torch.ones(1, 1, 3, 600, dtype=torch.bool)
    keep[..., 1, :] = False
    torch.set_num_threads(4)  # chunks, every one of them masked for that row
    out = K.flash_attention(q, k, v, mask=keep)
    ref = K.reference(q, k, v, 1 / math.sqrt(8), mask=keep)
    assert torch.isnan(out[..., 1, :]).all() and torch.isnan(ref[..., 1, :]).all()
    torch.testing.assert_close(out[..., [0, 2], :], ref[..., [0, 2], :])


@pytest.mark.parametrize("old,new,threads", [
    # a score of the few-row path halved: shows that these calls take that path
    ("s[r * ns + j] = x;", "s[r * ns + j] = x * 0.5f;", 1),
    # a value row's last elements (past whole vectors) left out of the output
    ("part.o[r * Dvp + d] += s[r * ns + j] * x;", "(void)x;", 1),
    # chunks merged without rescaling their sums to the common maximum
    ("l += p.l[r] * a;", "l += p.l[r];", 4),
])
def test_negative_control_a_wrong_few_row_path_fails_the_check(monkeypatch, old, new, threads):
    assert old in K.FORWARD
    monkeypatch.setattr(K, "FORWARD", K.FORWARD.replace(old, new))
    _dispatch.forget()
    torch.set_num_threads(threads)
    try:
        run, _, check = K.make_case({"batch": 1, "heads": 1, "q_len": 2, "k_len": 1500, "head_dim": 20, "dtype": "float32"}, seed=4)
        with pytest.raises(AssertionError):
            check(run(None))
        # the same error where the rows take the blocked path instead: the check passes
        monkeypatch.setattr(K, "DIRECT_ROWS", 0)
        check(run(None))
    finally:
        monkeypatch.undo()
        _dispatch.forget()


def test_chunks_masked_whole_leave_the_merge_to_the_others():
    """Four threads, one (batch, head): 16 chunks of keys. The first row sees only keys from
    3000 (its first eleven chunks are all -inf, the first of them the one the merge starts
    from), the second only keys below 300 (the later chunks are all -inf)."""
    torch.set_num_threads(4)
    (q, k, v, _), _ = _inputs(1, 1, 2, 4099, 64, 64, "float32", seed=12)
    keep = torch.zeros(1, 1, 2, 4099, dtype=torch.bool)
    keep[..., 0, 3000:] = True
    keep[..., 1, :300] = True
    got = K.flash_attention(q, k, v, 0.125, mask=keep)
    want = K.reference(q.double(), k.double(), v.double(), 0.125, mask=keep)
    K.assert_matches(got, want, "float32", "output")


@pytest.mark.parametrize("kv_lead", [(1, 3), (2, 1), (1, 1)], ids=str)
def test_keys_and_values_shared_by_the_batch_or_the_heads(kv_lead):
    (q, k, v, dout), _ = _inputs(2, 3, 3, 50, 16, 16, "float32", seed=5, kv_lead=kv_lead)
    got = _grads(lambda q, k, v: K.flash_attention(q, k, v, 0.3, is_causal=True), q, k, v, dout)
    want = _grads(lambda q, k, v: K.reference(q, k, v, 0.3, is_causal=True), q, k, v, dout, torch.float64)
    _compare(got, want, "float32")


def test_strided_queries_keys_and_values_are_read_in_place():
    """(batch, length, heads, dim) tensors transposed to (batch, heads, length, dim), as models
    hold them; a head dim under one vector (7)."""
    q = torch.randn(2, 2, 3, 7).transpose(1, 2)
    k, v = (torch.randn(2, 300, 3, 7).transpose(1, 2) for _ in range(2))
    assert not k.is_contiguous()
    K.assert_matches(K.flash_attention(q, k, v, 0.4), K.reference(q.double(), k.double(), v.double(), 0.4), "float32", "output")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("kind", ["padding", "bias+keep+causal"])
def test_the_path_takes_as_many_rows_as_its_template_holds(dtype, kind, monkeypatch):
    """The dispatcher sends it up to DIRECT_ROWS rows; the template holds DIRECT_MAX_ROWS."""
    monkeypatch.setattr(K, "DIRECT_ROWS", K.DIRECT_MAX_ROWS)
    check_case(dtype, (1, 3, K.DIRECT_MAX_ROWS, 77, 24, 24), kind)
