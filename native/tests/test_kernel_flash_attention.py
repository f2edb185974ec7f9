"""The compiled blocked attention against the float64 reference: outputs and the gradients of
q, k and v, odd lengths and head dims, every mask kind, keys shared by the batch or heads,
the counter-based dropout replayed exactly, schedules sampled from its space, the wiring into
``attention``, and negative controls."""

import math

import pytest
import torch

import adopt_kernels as ak
from adopt_kernels import _dispatch
from adopt_kernels.kernels import flash_attention as K

# the kernel's dropout mask as the package computes it in torch (for create_graph's backward):
# the compiled kernel's mask must be this one, which the replays below check
dropout_keep = K.dropout_keep


def _leaves(tensors, dtype=None):
    return [t.detach().to(dtype or t.dtype).requires_grad_(True) for t in tensors]


def _grads(fn, q, k, v, dout, dtype=None):
    q, k, v = _leaves((q, k, v), dtype)
    out = fn(q, k, v)
    out.backward(dout.to(out.dtype))
    return out, q.grad, k.grad, v.grad


def _inputs(b, h, lq, lk, d, dv, dtype, seed, kv_lead=None):
    g = torch.Generator().manual_seed(seed)
    kv_lead = kv_lead or (b, h)
    q = torch.randn(b, h, lq, d, generator=g)
    k = torch.randn(*kv_lead, lk, d, generator=g)
    v = torch.randn(*kv_lead, lk, dv, generator=g)
    dout = torch.randn(b, h, lq, dv, generator=g)
    return [t.to(K.TORCH_DTYPE[dtype]) for t in (q, k, v, dout)], g


def _masks(kind, b, h, lq, lk, g):
    """(bias, mask, keep, is_causal) for a mask kind; no row is left fully masked."""
    if kind == "additive":
        return None, torch.randn(b, 1, lq, lk, generator=g), None, False
    if kind == "padding":
        return None, torch.zeros(b, 1, 1, lk).masked_fill_(torch.arange(lk) >= lk - lk // 5, torch.finfo(torch.float32).min), None, False
    if kind == "bool":
        keep = torch.rand(b, h, lq, lk, generator=g) > 0.3
        keep[..., -1] = True
        return None, keep, None, False
    if kind == "bias+keep+causal":
        return torch.randn(h, lq, lk, generator=g), None, torch.rand(1, 1, 1, lk, generator=g) > 0.1, True
    if kind == "causal":
        return None, None, None, True
    return None, None, None, False


def _compare(got, want, dtype):
    for name, a, e in zip(("output", "grad q", "grad k", "grad v"), got, want):
        K.assert_matches(a, e, dtype, name)


CASES = [  # batch, heads, q_len, k_len, head_dim, value head_dim
    (2, 3, 20, 150, 80, 80),  # one query block a head: its key and value blocks packed in the task
    (1, 2, 37, 45, 16, 16),
    (2, 3, 100, 130, 80, 80),
    (1, 2, 129, 257, 64, 32),
    (2, 1, 33, 65, 7, 9),
]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("kind", [None, "additive", "padding", "bool", "causal", "bias+keep+causal"])
def test_forward_and_gradients_match_float64(dtype, case, kind):
    check_case(dtype, case, kind)


def check_case(dtype, case, kind):
    """One compiled call's output and q, k, v gradients against float64, the call counted."""
    b, h, lq, lk, d, dv = case
    (q, k, v, dout), g = _inputs(b, h, lq, lk, d, dv, dtype, seed=sum(case))
    bias, mask, keep, causal = _masks(kind, b, h, lq, lk, g)
    scale = 1 / math.sqrt(d)
    before = _dispatch.CALLS["flash_attention"]
    got = _grads(lambda q, k, v: K.flash_attention(q, k, v, scale, bias, mask, keep, causal), q, k, v, dout)
    assert _dispatch.CALLS["flash_attention"] == before + 1
    wide = [t.double() if t is not None and t.is_floating_point() else t for t in (bias, mask)]
    want = _grads(lambda q, k, v: K.reference(q, k, v, scale, wide[0], wide[1], keep, causal), q, k, v, dout, torch.float64)
    assert got[0].dtype == q.dtype and all(a.dtype == q.dtype for a in got[1:])
    _compare(got, want, dtype)


@pytest.mark.parametrize("kv_lead", [(1, 3), (2, 1), (1, 1)], ids=str)
def test_keys_and_values_shared_by_the_batch_or_the_heads(kv_lead):
    (q, k, v, dout), _ = _inputs(2, 3, 21, 50, 16, 16, "float32", seed=5, kv_lead=kv_lead)
    got = _grads(lambda q, k, v: K.flash_attention(q, k, v, 0.3, is_causal=True), q, k, v, dout)
    want = _grads(lambda q, k, v: K.reference(q, k, v, 0.3, is_causal=True), q, k, v, dout, torch.float64)
    assert got[2].shape == k.shape and got[3].shape == v.shape
    _compare(got, want, "float32")


def test_strided_queries_are_read_in_place():
    # (batch, length, heads, dim) transposed to (batch, heads, length, dim), as models do
    q = torch.randn(2, 40, 3, 16).transpose(1, 2)
    k, v = torch.randn(2, 3, 40, 16), torch.randn(2, 3, 40, 16)
    torch.testing.assert_close(K.flash_attention(q, k, v), K.reference(q, k, v, 0.25))


def test_dropout_is_replayed_from_the_seed_in_the_backward():
    q, k, v, p, kept = check_dropout_replay(37)
    assert abs(kept.float().mean().item() - (1 - p)) < 0.02
    # another draw, another mask
    assert not torch.allclose(K.flash_attention(q, k, v, 0.25, dropout_p=p), K.flash_attention(q, k, v, 0.25, dropout_p=p))


def check_dropout_replay(q_len, p=0.3):
    """``q_len`` causal rows with dropout against the float64 reference given the kernel's own
    mask, which its backward must replay; (q, k, v, p, the mask)."""
    (q, k, v, dout), _ = _inputs(2, 3, q_len, 70, 16, 16, "float32", seed=7)
    torch.manual_seed(5)
    got = _grads(lambda q, k, v: K.flash_attention(q, k, v, 0.25, is_causal=True, dropout_p=p), q, k, v, dout)
    # the kernel draws its seed once from torch's generator
    torch.manual_seed(5)
    seed = int(torch.empty((), dtype=torch.int64).random_().item())
    kept = dropout_keep(seed, 2, 3, q_len, 70, p)
    want = _grads(lambda q, k, v: K.reference(q, k, v, 0.25, is_causal=True, dropout=kept, dropout_p=p), q, k, v, dout, torch.float64)
    _compare(got, want, "float32")
    return q, k, v, p, kept


def test_a_fully_masked_row_is_nan_as_in_eager_code():
    q, k, v = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)
    keep = torch.ones(1, 1, 5, 6, dtype=torch.bool)
    keep[..., 2, :] = False
    out = K.flash_attention(q, k, v, mask=keep)
    ref = K.reference(q, k, v, 1 / math.sqrt(8), mask=keep)
    assert torch.isnan(out[..., 2, :]).all() and torch.isnan(ref[..., 2, :]).all()
    torch.testing.assert_close(out[..., [0, 1, 3, 4], :], ref[..., [0, 1, 3, 4], :])


# schedules of the space that between them take every value of every parameter (512-bit vectors
# too: on a CPU without AVX-512 the compiler splits them)
SCHEDULES = [
    dict(K.SPACE.portable_default),
    dict(K.SPACE.default_for("avx512")),
    {"block_q": 32, "block_k": 32, "vec_bits": 512, "loop": "dot", "tile_rows": 8, "tile_vecs": 4, "omp_kind": "static"},
    {"block_q": 16, "block_k": 128, "vec_bits": 128, "loop": "dot", "tile_rows": 4, "tile_vecs": 1, "omp_kind": "static"},
    {"block_q": 64, "block_k": 32, "vec_bits": 128, "loop": "axpy", "tile_rows": 8, "tile_vecs": 4, "omp_kind": "static"},
    {"block_q": 64, "block_k": 128, "vec_bits": 256, "loop": "dot", "tile_rows": 4, "tile_vecs": 4, "omp_kind": "dynamic"},
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=str)
def test_every_sampled_schedule_gives_the_same_result(schedule):
    assert K.SPACE.legal(schedule)
    case = {"batch": 1, "heads": 2, "q_len": 75, "k_len": 139, "head_dim": 24, "dtype": "float32"}
    run, _, check = K.make_case(case, seed=3)
    check(run(schedule))


def test_attention_runs_the_kernel_for_every_layout_it_fits():
    q, k, v = torch.randn(2, 3, 9, 8), torch.randn(2, 3, 11, 8), torch.randn(2, 3, 11, 8)
    before = _dispatch.CALLS["flash_attention"]
    torch.testing.assert_close(ak.attention(q, k, v, is_causal=True), K.reference(q, k, v, 8 ** -0.5, is_causal=True))
    # (batch * heads, L, D) with the mask on the 4-D view; a key memory shared by the batch
    mask = torch.randn(2, 1, 9, 11)
    qf, kf, vf = (t.reshape(6, t.size(2), 8) for t in (q, k, v))
    want = torch.softmax((qf @ kf.transpose(1, 2)).view(2, 3, 9, 11) + mask, dim=-1).view(6, 9, 11) @ vf
    torch.testing.assert_close(ak.attention(qf, kf, vf, mask=mask, scale=1.0, mask_heads=3), want)
    torch.testing.assert_close(ak.attention(qf, kf[0], vf[0], scale=0.5), torch.softmax(qf @ kf[0].t() * 0.5, dim=-1) @ vf[0])
    # GPT-2's causal buffer through torch.where with float32's minimum, and nanoGPT's -inf fill
    buf = torch.tril(torch.ones(11, 11, dtype=torch.bool))[2:].view(1, 1, 9, 11)
    fill = torch.tensor(torch.finfo(torch.float32).min)
    want = torch.softmax(torch.where(buf, q @ k.transpose(-2, -1) / math.sqrt(8), fill), dim=-1) @ v
    torch.testing.assert_close(ak.attention(q, k, v, keep=buf, keep_fill=fill), want)
    torch.testing.assert_close(ak.attention(q, k, v, fill_mask=~buf, fill_value=-math.inf), want)
    assert _dispatch.CALLS["flash_attention"] == before + 5


def test_attention_applies_the_kernels_dropout_in_training():
    q, k, v = torch.randn(2, 3, 9, 8), torch.randn(2, 3, 11, 8), torch.randn(2, 3, 11, 8)
    before = _dispatch.CALLS["flash_attention"]
    torch.manual_seed(2)
    out = ak.attention(q, k, v, dropout_p=0.25, training=True)
    torch.manual_seed(2)
    kept = dropout_keep(int(torch.empty((), dtype=torch.int64).random_().item()), 2, 3, 9, 11, 0.25)
    torch.testing.assert_close(out, K.reference(q, k, v, 8 ** -0.5, dropout=kept, dropout_p=0.25))
    assert _dispatch.CALLS["flash_attention"] == before + 1


def test_unsupported_inputs_take_the_reference_path(monkeypatch):
    q, k, v = torch.randn(2, 3, 9, 8), torch.randn(2, 3, 11, 8), torch.randn(2, 3, 11, 8)
    assert K.flash_attention(q.double(), k.double(), v.double()) is None
    assert K.flash_attention(q, k, v.double()) is None
    assert K.flash_attention(q, torch.randn(2, 2, 11, 8), torch.randn(2, 2, 11, 8)) is None  # heads do not broadcast
    assert K.flash_attention(q, k, v, dropout_p=1.0) is None
    assert K.flash_attention(q, k, v, mask=torch.zeros(2, 1, 9, 11, dtype=torch.float64)) is None
    assert K.flash_attention(q, k, v, mask=torch.zeros(3, 1, 9, 11)) is None
    before = _dispatch.CALLS["flash_attention"]
    ak.attention(q, k, v, fill_mask=torch.rand(9, 11) > 0.5, fill_value=-1e4)  # a fill that cannot be folded exactly
    ak.attention(q, k, v, softmax_dtype=torch.bfloat16)
    monkeypatch.setenv("ADOPT_DISABLE", "native")
    assert K.flash_attention(q, k, v) is None
    ak.attention(q, k, v)
    assert _dispatch.CALLS["flash_attention"] == before


@pytest.mark.parametrize("where,old,new", [
    # the running sum not rescaled when a later key block raises the row's maximum
    ("FORWARD", "w.l[r] * alpha + sum", "w.l[r] + sum"),
    # dS = P * (dP + delta): the backward's sign slip
    ("BACKWARD", "vload(ds + jj) - dl", "vload(ds + jj) + dl"),
    # a learned bias's gradient written one key to the left
    ("BACKWARD", "S + j0, ds, nk * 4", "S + j0, ds + 1, nk * 4"),
])
def test_negative_control_a_wrong_template_fails_the_check(monkeypatch, where, old, new):
    assert old in getattr(K, where)
    monkeypatch.setattr(K, where, getattr(K, where).replace(old, new))
    _dispatch.forget()
    try:
        if "j0, ds," in old:
            with pytest.raises(AssertionError):
                test_a_learned_bias_and_mask_get_their_gradients("float32", "padding", False)
            return
        run, _, check = K.make_case({"batch": 1, "heads": 2, "q_len": 40, "k_len": 200, "head_dim": 16, "dtype": "float32"}, seed=1)
        with pytest.raises(AssertionError):
            check(run(None))
    finally:
        monkeypatch.undo()
        _dispatch.forget()


def test_the_last_key_blocks_short_width_covers_every_key(monkeypatch):
    """A length short of a whole key block computes whole vectors of scores, not the whole block:
    41 keys leave 9 in the last 32-key block, a width that no vector length divides. No mask, so
    every key of that block takes part."""
    run, _, check = K.make_case({"batch": 1, "heads": 2, "q_len": 19, "k_len": 41, "head_dim": 16, "dtype": "float32", "mask": "none"}, seed=2)
    for loop in ("axpy", "dot"):
        for vec_bits in (128, 256, 512):
            check(run(dict(K.SPACE.portable_default, block_k=32, vec_bits=vec_bits, loop=loop)))
    # negative control: a width rounded down leaves the block's last key out of the scores
    assert "return rup(nk, VL); }" in K.TEMPLATE
    monkeypatch.setattr(K, "TEMPLATE", K.TEMPLATE.replace("return rup(nk, VL); }", "return nk / VL * VL; }"))
    _dispatch.forget()
    try:
        with pytest.raises(AssertionError):
            check(run(dict(K.SPACE.portable_default, block_k=32)))
    finally:
        monkeypatch.undo()
        _dispatch.forget()


@pytest.mark.parametrize("mask", [0.5, torch.tensor(0.25), torch.tensor(True)], ids=["number", "0-d float", "0-d bool"])
def test_a_mask_of_one_value_broadcasts_over_every_score(mask, monkeypatch):
    """`scores + 0.5` (a number, or a 0-d tensor) reaches the kernel as a 0-d mask."""
    import adopt_kernels as ak
    from adopt_kernels import _dispatch

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 5, 8) for _ in range(3))
    before = _dispatch.CALLS["flash_attention"]
    got = ak.attention(q, k, v, mask=mask)
    assert _dispatch.CALLS["flash_attention"] == before + 1
    monkeypatch.setenv("ADOPT_DISABLE", "native")
    torch.testing.assert_close(got, ak.attention(q, k, v, mask=mask), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("pad", ["padding", None])
@pytest.mark.parametrize("causal", [False, True])
def test_a_learned_bias_and_mask_get_their_gradients(dtype, pad, causal):
    """T5's position bias (one per head, learned, laid out heads-innermost as its embedding's
    permutation leaves it) plus a padding mask, and a learned per-batch mask beside it. Padded
    keys make whole key blocks underflow, and a causal mask skips query blocks: their gradient
    is 0, written, not left unset."""
    b, h, lq, lk, d = 2, 3, 70, 150, 16
    (q, k, v, dout), g = _inputs(b, h, lq, lk, d, d, dtype, seed=11)
    bias = torch.randn(lq, lk, h, generator=g).permute(2, 0, 1).unsqueeze(0)  # (1, heads, L, S), heads innermost
    learned = torch.randn(b, 1, lq, lk, generator=g)
    padding = torch.zeros(b, 1, 1, lk)
    if pad:
        padding[..., lk - 90:] = torch.finfo(torch.float32).min

    def run(fn, dt):
        leaves = _leaves((q, k, v, bias, learned), dt)
        out = fn(*leaves[:3], leaves[3], leaves[4] + padding.to(dt))
        out.backward(dout.to(dt))
        return [out] + [t.grad for t in leaves]

    before = _dispatch.CALLS["flash_attention"]
    got = run(lambda q, k, v, bias, mask: K.flash_attention(q, k, v, 0.5, bias, mask, is_causal=causal), K.TORCH_DTYPE[dtype])
    assert _dispatch.CALLS["flash_attention"] == before + 1
    want = run(lambda q, k, v, bias, mask: K.reference(q, k, v, 0.5, bias, mask, is_causal=causal), torch.float64)
    assert got[4].shape == bias.shape and got[5].shape == learned.shape and got[4].dtype == q.dtype
    for name, a, e in zip(("output", "grad q", "grad k", "grad v", "grad bias", "grad mask"), got, want):
        K.assert_matches(a, e, dtype, name)


def test_a_learned_bias_takes_the_kernels_dropout_mask_in_its_gradient():
    (q, k, v, dout), g = _inputs(2, 3, 37, 70, 16, 16, "float32", seed=9)
    bias = torch.randn(1, 3, 37, 70, generator=g)
    p = 0.2

    def run(fn, dt):
        leaves = _leaves((q, k, v, bias), dt)
        out = fn(*leaves)
        out.backward(dout.to(dt))
        return [out] + [t.grad for t in leaves]

    torch.manual_seed(4)
    got = run(lambda q, k, v, bias: K.flash_attention(q, k, v, 0.25, bias, is_causal=True, dropout_p=p), torch.float32)
    torch.manual_seed(4)
    kept = dropout_keep(int(torch.empty((), dtype=torch.int64).random_().item()), 2, 3, 37, 70, p)
    want = run(lambda q, k, v, bias: K.reference(q, k, v, 0.25, bias, is_causal=True, dropout=kept, dropout_p=p), torch.float64)
    for name, a, e in zip(("output", "grad q", "grad k", "grad v", "grad bias"), got, want):
        K.assert_matches(a, e, "float32", name)


def test_a_mask_shared_by_every_layer_is_copied_once(monkeypatch):
    """A mask the kernel cannot read in place (heads innermost) is copied once for all the calls
    that pass the same tensor, and again once it changes in place."""
    q, k, v = (torch.randn(2, 3, 20, 8, requires_grad=True) for _ in range(3))
    mask = torch.randn(20, 20, 3).permute(2, 0, 1).unsqueeze(0).requires_grad_()
    copies = []
    real = torch.Tensor.contiguous
    monkeypatch.setattr(torch.Tensor, "contiguous", lambda t, *a, **kw: copies.append(t.shape) or real(t, *a, **kw))
    outs = [K.flash_attention(q, k, v, mask=mask) for _ in range(3)]
    assert copies.count(mask.shape) == 1
    with torch.no_grad():
        mask.mul_(2)
    outs.append(K.flash_attention(q, k, v, mask=mask))
    assert copies.count(mask.shape) == 2
    monkeypatch.undo()
    torch.testing.assert_close(outs[-1], K.reference(q, k, v, 8 ** -0.5, mask=mask))
    sum(o.sum() for o in outs).backward()
    assert mask.grad is not None and q.grad is not None


def test_a_strided_mask_under_inference_mode_is_copied_each_call():
    """Inference tensors keep no version counter: nothing is reused, the result is still right."""
    with torch.inference_mode():
        q, k, v = (torch.randn(2, 3, 20, 8) for _ in range(3))
        mask = torch.randn(20, 20, 3).permute(2, 0, 1).unsqueeze(0)
        for _ in range(2):
            torch.testing.assert_close(K.flash_attention(q, k, v, mask=mask), K.reference(q, k, v, 8 ** -0.5, mask=mask))


@pytest.mark.parametrize("loop", ["axpy", "dot"])
def test_blocks_packed_in_the_task_agree_with_blocks_packed_ahead(loop, monkeypatch):
    """20 query rows: with 32-row query blocks each head has one, and its tasks pack the key and
    value blocks they reach; with 16-row blocks (two a head) every block is packed ahead. A short
    last key block (150 = 2 x 64 + 22) reuses the task's buffer. A negative control that leaves
    the task's value block unpacked fails the first and not the second."""
    run, _, check = K.make_case({"batch": 2, "heads": 2, "q_len": 20, "k_len": 150, "head_dim": 24, "dtype": "float32",
                                 "mask": "bias+keep+causal"}, seed=9)
    one = dict(K.SPACE.portable_default, loop=loop, block_q=32)
    two = dict(one, block_q=16)
    check(run(one))
    check(run(two))
    old = "if (!vh) pack_v_block(v, w.vb, meta, vx, kb);"
    assert old in K.FORWARD
    monkeypatch.setattr(K, "FORWARD", K.FORWARD.replace(old, ""))
    _dispatch.forget()
    try:
        with pytest.raises(AssertionError):
            check(run(one))
        check(run(two))
    finally:
        monkeypatch.undo()
        _dispatch.forget()


def test_a_few_query_blocks_against_a_long_cache_pack_in_the_task():
    """80 query rows against 4100 keys of 16 heads: the packed copies would take 32.5 MiB, so with
    two or three query blocks a head (64- and 32-row blocks) each task packs the blocks it
    reaches, and with five (16-row blocks) they are packed ahead; each against float64."""
    run, _, check = K.make_case({"batch": 1, "heads": 16, "q_len": 80, "k_len": 4100, "head_dim": 64, "dtype": "float32"}, seed=10)
    for block_q in (64, 32, 16):
        check(run(dict(K.SPACE.portable_default, block_q=block_q), backward=False))


def masked_row_gradients(fill, q_len, fn=None, device="cpu"):
    """Gradients of a float32 attention whose query row 0 has every key masked by the additive
    ``fill`` (a fully padded row of an eager extended mask), against eager float32 code, which
    rounds those scores the same way: max |difference| of q, k, v's gradients over max |eager|."""
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 2, n, 16, generator=g).to(device) for n in (q_len, 8, 8))
    mask = torch.randn(1, 1, q_len, 8, generator=g).to(device)
    mask[..., 0, :] = fill
    dout = torch.randn(1, 2, q_len, 16, generator=g).to(device)
    fn = fn or (lambda q, k, v: K.flash_attention(q, k, v, 0.25, mask=mask))
    before = _dispatch.CALLS["flash_attention"]
    got = _grads(fn, q, k, v, dout)
    assert _dispatch.CALLS["flash_attention"] == before + 1, "the compiled kernel did not run"
    want = _grads(lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) * 0.25 + mask, -1) @ v, q, k, v, dout)
    return max(float((a - e).abs().max() / e.abs().max()) for a, e in zip(got, want))


@pytest.mark.parametrize("fill", [torch.finfo(torch.float32).min, -1e9, -1e4])
@pytest.mark.parametrize("q_len", [2, 9], ids=["few-rows", "blocked"])
def test_a_row_masked_throughout_by_a_huge_value_keeps_its_gradients(fill, q_len):
    """The backward rebuilds each probability from its row's maximum and log-sum, kept apart: their
    sum in one float32 rounds the log away next to float32's minimum or -1e9 (every probability
    of the row then came back as 1, not 1/S) and loses 1e-3 of it next to -1e4."""
    assert masked_row_gradients(fill, q_len) < 1e-5


def test_negative_control_a_log_sum_folded_into_the_maximum_fails_the_masked_row_check(monkeypatch):
    old = "lse[bh * L + i], std::exp(-lse[meta[B_] * H * L + bh * L + i])"
    assert old in K.BACKWARD
    monkeypatch.setattr(K, "BACKWARD", K.BACKWARD.replace(old, "lse[bh * L + i] + lse[meta[B_] * H * L + bh * L + i], 1.f"))
    _dispatch.forget()
    try:
        assert masked_row_gradients(-1e9, 9) > 1.0
        assert masked_row_gradients(-1e4, 9) > 1e-5
    finally:
        monkeypatch.undo()
        _dispatch.forget()


def gpt2_left_padded_gradients(bias=None):
    """GPT-2's ``torch.where(causal, w + bias, finfo.min) + padding`` with three left-padded keys, so
    that rows 0-2 see only padded keys: the filled scores tie with the kept ones there, and eager's
    ``where`` passes them (and the bias under them) no gradient. (compiled calls, max |difference|
    of every gradient)."""
    g = torch.Generator().manual_seed(0)
    q, k, v, dout = (torch.randn(1, 2, 7, 16, generator=g) for _ in range(4))
    causal = torch.tril(torch.ones(7, 7, dtype=torch.bool)).view(1, 1, 7, 7)
    pad = torch.zeros(1, 1, 1, 7)
    pad[..., :3] = torch.finfo(torch.float32).min
    fill = torch.tensor(torch.finfo(torch.float32).min)

    def grads(fn):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v) + (() if bias is None else (bias,))]
        fn(*leaves).backward(dout)
        return [t.grad for t in leaves]

    def eager(q, k, v, b=None):
        w = q @ k.transpose(-2, -1) * 0.25 + (0 if b is None else b)
        return torch.softmax(torch.where(causal, w, fill) + pad, -1) @ v

    before = _dispatch.CALLS["flash_attention"]
    got = grads(lambda q, k, v, b=None: ak.attention(q, k, v, mask=pad, scale=0.25, bias=b, keep=causal, keep_fill=fill))
    calls = _dispatch.CALLS["flash_attention"] - before
    return calls, max(float((a - e).abs().max()) for a, e in zip(got, grads(eager)))


def test_a_left_padded_row_under_a_causal_fill_takes_eagers_gradients():
    calls, diff = gpt2_left_padded_gradients()
    assert diff < 1e-6
    assert calls == 0  # such rows go to the reference path; without them the kernel runs:
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 7, 16, generator=g, requires_grad=True) for _ in range(3))
    before = _dispatch.CALLS["flash_attention"]
    ak.attention(q, k, v, mask=torch.zeros(1, 1, 1, 7), keep=torch.tril(torch.ones(7, 7, dtype=torch.bool)),
                 keep_fill=torch.tensor(torch.finfo(torch.float32).min)).sum().backward()
    assert _dispatch.CALLS["flash_attention"] == before + 1


def test_negative_control_folding_the_fill_of_a_left_padded_row_fails(monkeypatch):
    from adopt_kernels._impl import attention as api

    monkeypatch.setattr(api, "_every_row_keeps_a_key", lambda mask, fills: True)
    calls, diff = gpt2_left_padded_gradients()
    assert calls == 1 and diff > 1e-2
