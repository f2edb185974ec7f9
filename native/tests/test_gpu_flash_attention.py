"""The Triton attention beyond the generic kernel tests: float16, value head dims unlike the
keys', keys and values shared by the batch or the heads, strided queries, a fully masked row,
every legal schedule of one shape, dropout's keep rate and its replay, the backward's fallback
from a schedule the device cannot take, a learned bias's and mask's gradients (T5's position
bias), the public ``attention`` route, and backward negative controls. On a CUDA device where there is one, else in Triton's interpreter."""

import math

import pytest
import torch

from test_gpu_kernels import DEVICE, _module, _triton_path  # noqa: F401 (the fixture routes CPU tensors to Triton)
from test_kernel_flash_attention import _inputs

import adopt_kernels as ak  # noqa: E402
from adopt_kernels import _dispatch, registry  # noqa: E402
from adopt_kernels.kernels import flash_attention as K  # noqa: E402

KERNEL = registry.KERNELS["flash_attention"]
SMALL = {"batch": 1, "heads": 2, "q_len": 21, "k_len": 35, "head_dim": 16, "dtype": "float32"}


@pytest.fixture
def G():
    return _module(KERNEL)


def _grads(fn, tensors, dout, dtype=None):
    leaves = [t.detach().to(dtype or t.dtype).requires_grad_(True) for t in tensors]
    out = fn(*leaves)
    out.backward(dout.to(out.dtype))
    return [out] + [t.grad for t in leaves]


def _compare(got, want, dtype):
    for name, a, e in zip(("output", "grad q", "grad k", "grad v"), got, want):
        K.assert_matches(a, e, dtype, name)


def _close(got, want):
    """float32 results within the kernels' float32 tolerance (a GPU's three-pass TF32 products
    are near, not equal to, torch's float32 ones)."""
    K.assert_matches(got, want, "float32", "attention")


def _ran(before):
    assert _dispatch.on_gpu(torch.empty(1, device=DEVICE)), "these tensors go to the C++ kernel"
    assert _dispatch.CALLS["flash_attention"] > before, "the Triton kernel did not run"


@pytest.mark.parametrize("mask", ["padding", "bool", "bias+keep+causal"])
def test_float16(mask):
    run, _, check = KERNEL.make_case(dict(SMALL, dtype="float16", mask=mask), seed=2, device=DEVICE)
    before = _dispatch.CALLS["flash_attention"]
    check(run(None))
    _ran(before)


@pytest.mark.parametrize("head_dim,dtype", [(64, "bfloat16"), (128, "float32"), (128, "bfloat16")])
def test_model_head_dims(head_dim, dtype):
    workload = {"batch": 1, "heads": 1, "q_len": 17, "k_len": 33, "head_dim": head_dim, "dtype": dtype, "mask": "bias+keep+causal"}
    run, _, check = KERNEL.make_case(workload, seed=3, device=DEVICE)
    check(run(None))


@pytest.mark.parametrize("kv_lead", [(1, 2), (2, 1), (1, 1)], ids=str)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_shared_keys_and_values_with_their_own_head_dim(kv_lead, dtype):
    g = torch.Generator().manual_seed(4)
    t = K.TORCH_DTYPE[dtype]
    q, dout = torch.randn(2, 2, 19, 24, generator=g), torch.randn(2, 2, 19, 40, generator=g)
    k, v = torch.randn(*kv_lead, 37, 24, generator=g), torch.randn(*kv_lead, 37, 40, generator=g)
    q, k, v, dout = (x.to(DEVICE, t) for x in (q, k, v, dout))
    before = _dispatch.CALLS["flash_attention"]
    got = _grads(lambda q, k, v: K.flash_attention(q, k, v, 0.3, is_causal=True), (q, k, v), dout)
    _ran(before)
    want = _grads(lambda q, k, v: K.reference(q, k, v, 0.3, is_causal=True), (q, k, v), dout, torch.float64)
    assert got[2].shape == k.shape and got[3].shape == v.shape and got[2].dtype == t
    _compare(got, want, dtype)


def test_strided_queries_and_a_float_mask_of_another_dtype():
    # (batch, length, heads, dim) transposed to (batch, heads, length, dim), as models do
    g = torch.Generator().manual_seed(6)
    q = torch.randn(2, 30, 2, 16, generator=g).to(DEVICE).transpose(1, 2)
    k, v = (torch.randn(2, 2, 30, 16, generator=g).to(DEVICE) for _ in range(2))
    mask = torch.randn(2, 1, 30, 30, generator=g).to(DEVICE, torch.bfloat16)
    out = K.flash_attention(q, k, v, mask=mask)
    K.assert_matches(out, K.reference(q.double(), k.double(), v.double(), 0.25, mask=mask.double()), "float32", "output")


def test_a_fully_masked_row_is_nan_as_in_eager_code():
    q, k, v = (torch.randn(1, 2, n, 16).to(DEVICE) for n in (5, 6, 6))
    keep = torch.ones(1, 1, 5, 6, dtype=torch.bool, device=DEVICE)
    keep[..., 2, :] = False
    out = K.flash_attention(q, k, v, mask=keep)
    ref = K.reference(q, k, v, 0.25, mask=keep)
    assert torch.isnan(out[..., 2, :]).all() and torch.isnan(ref[..., 2, :]).all()
    _close(out[..., [0, 1, 3, 4], :], ref[..., [0, 1, 3, 4], :])


def _covering(schedules):
    """The default and enough others that every value of every parameter is taken once."""
    default = KERNEL.cuda_space.default
    chosen, missing = [dict(default)], {kv for s in schedules for kv in s.items()} - set(default.items())
    for s in schedules:
        if missing & set(s.items()):
            chosen.append(s)
            missing -= set(s.items())
    return chosen


@pytest.mark.parametrize("extra", [{"mask": "bias+keep+causal"}, {"mask": "padding", "dropout": 0.2}], ids=["masks", "dropout"])
def test_every_legal_schedule_gives_the_same_result(extra):
    """Every one in the interpreter; on a GPU, where each compiles, a set covering each value.
    With dropout every block size draws its keys' mask from its own first key."""
    workload = dict(SMALL, **extra)
    schedules = list(KERNEL.cuda_space.enumerate(workload))
    assert KERNEL.cuda_space.default in schedules and 20 <= len(schedules) <= 60
    if DEVICE == "cuda":
        schedules = _covering(schedules)
    run, _, check = KERNEL.make_case(workload, seed=5, device=DEVICE)
    for schedule in schedules:
        check(run(schedule))


def test_the_dropout_words_interleave_with_join_and_column_by_column_alike(G, monkeypatch):
    from adopt_kernels.gpu import _philox

    joined = G.dropout_keep(7, 2, 3, 21, 35, 0.3, DEVICE)
    assert _philox._join, "tl.join did not compile here: the kernels draw their words column by column"
    monkeypatch.setattr(_philox, "_join", False)
    assert torch.equal(G.dropout_keep(7, 2, 3, 21, 35, 0.3, DEVICE), joined)
    run, _, check = KERNEL.make_case(dict(SMALL, mask="padding", dropout=0.3), seed=2, device=DEVICE)
    check(run(dict(KERNEL.cuda_space.default)))


def test_dropout_keeps_its_rate_and_each_seed_its_own_mask(G):
    p = 0.3
    kept = G.dropout_keep(11, 2, 3, 37, 70, p, DEVICE)
    assert abs(kept.float().mean().item() - (1 - p)) < 0.02
    assert torch.equal(kept, G.dropout_keep(11, 2, 3, 37, 70, p, DEVICE))
    assert not torch.equal(kept, G.dropout_keep(12, 2, 3, 37, 70, p, DEVICE))
    q, k, v = (torch.randn(1, 2, 20, 16).to(DEVICE) for _ in range(3))
    # unseeded calls draw from torch's generator: two calls, two masks
    assert not torch.allclose(K.flash_attention(q, k, v, dropout_p=p), K.flash_attention(q, k, v, dropout_p=p))


class OutOfResources(Exception):
    """Stands in for Triton's error of that name (shared memory the device lacks)."""


def test_a_backward_schedule_the_device_cannot_take_falls_back_to_the_default(monkeypatch):
    from adopt_kernels.gpu import _flash_attention_bwd as B

    real, seen = B._grads, []

    def grads(run, out, lse, dout, schedule, learned):
        seen.append(schedule)
        if schedule != KERNEL.cuda_space.default:
            raise OutOfResources("out of resource: shared memory")
        return real(run, out, lse, dout, schedule, learned)

    monkeypatch.setattr(B, "_grads", grads)
    monkeypatch.setattr(_dispatch, "_FAILED_SCHEDULES", set())  # what the fallback remembers stays here
    other = dict(KERNEL.cuda_space.default, bwd_block=128, bwd_warps=8)
    assert KERNEL.cuda_space.legal(other, SMALL)
    run, _, check = KERNEL.make_case(SMALL, seed=1, device=DEVICE)
    check(run(other))
    assert seen == [other, KERNEL.cuda_space.default]


def test_negative_control_a_wrong_delta_fails_the_check(monkeypatch):
    """dS = P * (dP - delta) with delta zeroed: the gradients of q and k must fail."""
    from adopt_kernels.gpu import _flash_attention_bwd as B

    class Zeroed:
        def __getitem__(self, grid):
            return lambda out, dout, delta, *args, **kwargs: delta.zero_()

    monkeypatch.setattr(B, "_delta", Zeroed())
    run, _, check = KERNEL.make_case(SMALL, seed=1, device=DEVICE)
    with pytest.raises(AssertionError, match="grad q"):
        check(run(None))


def test_attention_reaches_the_triton_kernel():
    q, k, v = (torch.randn(2, 3, n, 16).to(DEVICE) for n in (9, 11, 11))
    before = _dispatch.CALLS["flash_attention"]
    _close(ak.attention(q, k, v, is_causal=True), K.reference(q, k, v, 0.25, is_causal=True))
    # (batch * heads, L, D) with the mask on the 4-D view
    mask = torch.randn(2, 1, 9, 11).to(DEVICE)
    qf, kf, vf = (t.reshape(6, t.size(2), 16) for t in (q, k, v))
    want = (torch.softmax((qf @ kf.transpose(1, 2)).view(2, 3, 9, 11) + mask, dim=-1).view(6, 9, 11) @ vf)
    _close(ak.attention(qf, kf, vf, mask=mask, scale=1.0, mask_heads=3), want)
    # GPT-2's causal buffer through torch.where with float32's minimum
    buf = torch.tril(torch.ones(11, 11, dtype=torch.bool, device=DEVICE))[2:].view(1, 1, 9, 11)
    fill = torch.tensor(torch.finfo(torch.float32).min)
    want = torch.softmax(torch.where(buf, q @ k.transpose(-2, -1) / 4, fill.to(DEVICE)), dim=-1) @ v
    _close(ak.attention(q, k, v, keep=buf, keep_fill=fill), want)
    # float16, and dropout in training
    h = [t.half() for t in (q, k, v)]
    K.assert_matches(ak.attention(*h, is_causal=True), K.reference(*(t.double() for t in h), 0.25, is_causal=True), "float16", "float16")
    torch.manual_seed(3)
    out = ak.attention(q, k, v, dropout_p=0.25, training=True)
    torch.manual_seed(3)
    kept = _module(KERNEL).dropout_keep(K.dropout_seed(), 2, 3, 9, 11, 0.25, DEVICE)
    _close(out, K.reference(q, k, v, 0.25, dropout=kept, dropout_p=0.25))
    # on a GPU with SDPA only the dropout call must take the Triton kernel (SDPA goes first)
    sdpa_first = DEVICE == "cuda" and hasattr(torch.nn.functional, "scaled_dot_product_attention")
    assert _dispatch.CALLS["flash_attention"] >= before + 1 if sdpa_first else _dispatch.CALLS["flash_attention"] == before + 5
    _ran(before)


def test_masks_and_inputs_the_kernel_cannot_take_go_back_to_the_caller():
    q, k, v = (torch.randn(2, 3, n, 8).to(DEVICE) for n in (9, 11, 11))
    assert K.flash_attention(q.double(), k.double(), v.double()) is None
    assert K.flash_attention(q, torch.randn(2, 2, 11, 8).to(DEVICE), torch.randn(2, 2, 11, 8).to(DEVICE)) is None
    assert K.flash_attention(q, k, v, mask=torch.zeros(3, 1, 9, 11).to(DEVICE)) is None
    assert K.flash_attention(q, k, v, dropout_p=1.0) is None
    wide = torch.randn(2, 3, 9, 160).to(DEVICE)
    assert K.flash_attention(wide, wide, wide) is None  # head dims past 128 are left to SDPA
    assert math.isfinite(K.flash_attention(q, k, v).sum().item())


def _learned_case(dtype, pad, causal, dropout_p=0.0):
    """T5's position bias (one per head, heads innermost as its embedding's permutation leaves
    it) plus a padding mask, and a learned per-batch mask beside it: every output and gradient,
    from the Triton kernel and from the float64 reference (with the kernel's dropout mask)."""
    b, h, lq, lk, d = 2, 3, 37, 70, 16
    (q, k, v, dout), g = _inputs(b, h, lq, lk, d, d, dtype, seed=11)
    bias = torch.randn(lq, lk, h, generator=g).permute(2, 0, 1).unsqueeze(0)
    learned = torch.randn(b, 1, lq, lk, generator=g)
    padding = torch.zeros(b, 1, 1, lk)
    if pad:
        padding[..., lk - 40:] = torch.finfo(torch.float32).min  # whole key blocks underflow
    q, k, v, dout, bias, learned, padding = (t.to(DEVICE) for t in (q, k, v, dout, bias, learned, padding))

    def run(fn, dt):
        leaves = [t.detach().to(dt).requires_grad_(True) for t in (q, k, v, bias, learned)]
        out = fn(*leaves[:3], leaves[3], leaves[4] + padding.to(dt))
        out.backward(dout.to(dt))
        return [out] + [t.grad for t in leaves]

    seed = 1234
    before = _dispatch.CALLS["flash_attention"]
    got = run(lambda q, k, v, bias, mask: K.flash_attention(q, k, v, 0.5, bias, mask, is_causal=causal, dropout_p=dropout_p, seed=seed),
              K.TORCH_DTYPE[dtype])
    _ran(before)
    kept = _module(KERNEL).dropout_keep(seed, b, h, lq, lk, dropout_p, DEVICE) if dropout_p else None
    want = run(lambda q, k, v, bias, mask: K.reference(q, k, v, 0.5, bias, mask, is_causal=causal, dropout=kept, dropout_p=dropout_p),
               torch.float64)
    assert got[4].shape == bias.shape and got[5].shape == learned.shape and got[4].dtype == q.dtype
    return got, want


def _compare_learned(got, want, dtype):
    for name, a, e in zip(("output", "grad q", "grad k", "grad v", "grad bias", "grad mask"), got, want):
        K.assert_matches(a, e, dtype, name)


@pytest.mark.parametrize("dtype,pad,causal", [("float32", True, False), ("float32", False, True), ("bfloat16", True, True)])
def test_a_learned_bias_and_mask_get_their_gradients(dtype, pad, causal):
    """Causal query blocks skip key blocks past their limit: their scores' gradient is 0, written."""
    got, want = _learned_case(dtype, pad, causal)
    _compare_learned(got, want, dtype)


def test_a_learned_bias_takes_the_kernels_dropout_mask_in_its_gradient():
    got, want = _learned_case("float32", True, True, dropout_p=0.2)
    _compare_learned(got, want, "float32")


def test_negative_control_a_learned_bias_gradient_one_key_off_fails_the_check(monkeypatch):
    from adopt_kernels.gpu import _flash_attention_bwd as B

    real = B._grads

    def shifted(*args):
        grads = real(*args)
        return grads[:3] + tuple(None if g is None else torch.roll(g, 1, dims=-1) for g in grads[3:])

    monkeypatch.setattr(B, "_grads", shifted)
    got, want = _learned_case("float32", True, False)
    _compare_learned(got[:4], want[:4], "float32")  # the rest is untouched
    with pytest.raises(AssertionError, match="grad bias"):
        _compare_learned(got, want, "float32")


def test_t5_style_attention_with_dropout_in_training_reaches_the_triton_kernel():
    """On a GPU SDPA takes calls without dropout; with dropout a learned bias used to send the
    call to the eager composite, and now runs the Triton kernel with its gradient."""
    g = torch.Generator().manual_seed(8)
    q, k, v = (torch.randn(2, 3, 13, 16, generator=g).to(DEVICE) for _ in range(3))
    bias = torch.randn(1, 3, 13, 13, generator=g).to(DEVICE).requires_grad_(True)
    before = _dispatch.CALLS["flash_attention"]
    out = ak.attention(q, k, v, mask=bias, scale=1.0, dropout_p=0.1, training=True)
    _ran(before)
    out.sum().backward()
    assert bias.grad is not None and bias.grad.shape == bias.shape and torch.isfinite(bias.grad).all()


@pytest.mark.parametrize("fill", [torch.finfo(torch.float32).min, -1e9])
def test_a_row_masked_throughout_by_a_huge_value_keeps_its_gradients(fill):
    """The backward rebuilds each probability from its row's maximum and log-sum kept apart
    (their float32 sum loses the log next to a huge mask value)."""
    from test_kernel_flash_attention import masked_row_gradients

    assert masked_row_gradients(fill, 9, device=DEVICE) < 1e-3  # three-pass TF32 products on a GPU; the fault gave 1-8
