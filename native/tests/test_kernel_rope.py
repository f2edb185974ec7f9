import random

import pytest
import torch

import adopt_kernels as ak
from adopt_kernels import _dispatch
from adopt_kernels._impl import rope as eager
from adopt_kernels.kernels import _common
from adopt_kernels.kernels import rope as kernel
from adopt_kernels.kernels._common import assert_matches

DTYPES = ["float32", "bfloat16"]
TORCH = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def tables(positions, dim, dtype, half=False, batch=None):
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    freqs = torch.outer(torch.arange(positions, dtype=torch.float64), inv_freq)
    emb = freqs if half else torch.cat((freqs, freqs), dim=-1)
    if batch is not None:
        emb = emb.expand(batch, *emb.shape).contiguous()
    return emb.cos().to(dtype), emb.sin().to(dtype)


def eager64(q, k, cos, sin, interleaved, position_ids=None, unsqueeze_dim=1, k_cos=None, k_sin=None):
    """The composite the kernel replaces, in float64."""
    if interleaved:
        return eager.eager_rope_interleaved(q, k, cos.double(), sin.double(), position_ids, unsqueeze_dim)
    k_cos, k_sin = (None, None) if k_cos is None else (k_cos.double(), k_sin.double())
    return eager.eager_rope(q, k, cos.double(), sin.double(), position_ids, unsqueeze_dim, k_cos, k_sin)


def run_both(q, k, cos, sin, interleaved=False, schedule=None, **kw):
    """The compiled path (the public function, or the kernel at ``schedule``) against the
    eager composite in float64: outputs and the gradients of q and k."""
    dtype = "bfloat16" if q.dtype == torch.bfloat16 else "float32"
    g = torch.Generator().manual_seed(11)
    leaves = [t.detach().requires_grad_() for t in (q, k) if t is not None]
    k_leaf = leaves[1] if k is not None else None
    calls = _dispatch.CALLS[kernel.KERNEL.name]
    if schedule is None:
        api = ak.apply_rope_interleaved if interleaved else ak.apply_rope
        out = api(leaves[0], k_leaf, cos, sin, **kw)
    else:
        out = kernel.rope(leaves[0], k_leaf, cos, sin, interleaved=interleaved, schedule=schedule, **kw)
    assert _dispatch.CALLS[kernel.KERNEL.name] == calls + 1, "the compiled path did not run"
    outs = out if isinstance(out, tuple) else (out,)
    dys = [torch.randn(o.shape, generator=g).to(o.dtype) for o in outs]
    torch.autograd.backward(outs, dys)

    ref_leaves = [t.detach().double().requires_grad_() for t in (q, k) if t is not None]
    ref = eager64(ref_leaves[0], ref_leaves[1] if k is not None else None, cos, sin, interleaved, **kw)
    refs = ref if isinstance(ref, tuple) else (ref,)
    torch.autograd.backward(refs, [d.double() for d in dys])
    assert len(outs) == len(refs)
    for o, r, x in zip(outs, refs, leaves):
        assert o.dtype == x.dtype
        assert_matches(o, r, dtype, "rope output")
    for x, r in zip(leaves, ref_leaves):
        assert_matches(x.grad, r.grad, dtype, "rope grad")
    return outs


def qk(shape, kshape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(TORCH[dtype]), torch.randn(kshape, generator=g).to(TORCH[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,h,kvh,t,d", [(3, 5, 5, 7, 6), (1, 2, 1, 1, 10), (2, 4, 2, 13, 80)])
def test_half_split_position_ids(dtype, b, h, kvh, t, d):
    q, k = qk((b, h, t, d), (b, kvh, t, d), dtype)
    cos, sin = tables(20, d, TORCH[dtype])
    position_ids = torch.stack([torch.randperm(20)[:t] for _ in range(b)])
    run_both(q, k, cos, sin, position_ids=position_ids)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["bhtd", "bthd"])
def test_half_split_per_batch_tables(dtype, layout):
    # LLaMA's current form: cos/sin (B, L, D) from the rotary module, unsqueezed by the callee
    b, h, t, d = 3, 5, 7, 80
    shape = (b, h, t, d) if layout == "bhtd" else (b, t, h, d)
    q, k = qk(shape, shape, dtype)
    cos, sin = tables(t, d, TORCH[dtype], batch=b)
    run_both(q, k, cos, sin, unsqueeze_dim=1 if layout == "bhtd" else 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_transposed_projections_and_shared_positions(dtype):
    # q and k as views of the projections, (1, L) position ids shared by the batch
    b, h, kvh, t, d = 2, 4, 2, 9, 16
    q = torch.randn(b, t, h, d).to(TORCH[dtype]).transpose(1, 2)
    k = torch.randn(b, t, kvh, d).to(TORCH[dtype]).transpose(1, 2)
    cos, sin = tables(t + 3, d, TORCH[dtype])
    outs = run_both(q, k, cos, sin, position_ids=torch.arange(3, 3 + t)[None])
    assert all(o.is_contiguous() for o in outs)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tables_already_broadcastable(dtype):
    b, h, t, d = 2, 3, 5, 10
    q, k = qk((b, h, t, d), (b, h, t, d), dtype)
    cos, sin = tables(t, d, TORCH[dtype])
    run_both(q, k, cos[None, None], sin[None, None], unsqueeze_dim=None)
    run_both(q, k, cos, sin, unsqueeze_dim=None)


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_tensor(dtype):
    x = qk((2, 3, 5, 8), (1,), dtype)[0]
    cos, sin = tables(5, 8, TORCH[dtype])
    out = run_both(x, None, cos, sin, unsqueeze_dim=0)
    assert len(out) == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_key_tables_of_its_own(dtype):
    # Falcon: 3-d (batch * heads, L, D) tensors, the key's tables repeated for its own heads
    q, k = qk((6, 5, 8), (2, 5, 8), dtype)
    cos, sin = tables(5, 8, TORCH[dtype])
    run_both(q, k, cos.expand(6, 5, 8).clone(), sin.expand(6, 5, 8).clone(), unsqueeze_dim=None,
             k_cos=cos.expand(2, 5, 8).clone(), k_sin=sin.expand(2, 5, 8).clone())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,t,h,d", [(3, 7, 5, 6), (1, 1, 2, 10), (2, 11, 3, 64)])
def test_interleaved_half_width_tables(dtype, b, t, h, d):
    # GPT-J: (B, L, H, D), half-width tables picked by position ids
    q, k = qk((b, t, h, d), (b, t, h, d), dtype)
    cos, sin = tables(20, d, TORCH[dtype], half=True)
    position_ids = torch.stack([torch.randperm(20)[:t] for _ in range(b)])
    run_both(q, k, cos, sin, interleaved=True, position_ids=position_ids, unsqueeze_dim=2)


def _wrong_template(monkeypatch, old, new):
    """The kernel built from its template with ``old`` replaced by ``new`` (for negative controls)."""
    wrong = kernel.TEMPLATE.replace(old, new)
    assert wrong != kernel.TEMPLATE
    monkeypatch.setattr(kernel, "TEMPLATE", wrong)
    monkeypatch.setattr(_dispatch, "_functions", {})


@pytest.mark.parametrize("dtype", DTYPES)
def test_streaming_stores(dtype, monkeypatch):
    """Outputs past the size threshold are rotated in a row buffer and streamed out: odd head
    dims start rows off any alignment (heads and tails), both modes, forward and backward."""
    monkeypatch.setattr(_common, "STREAM_BYTES", 0)
    q, k = qk((3, 5, 7, 6), (3, 5, 7, 6), dtype)
    cos, sin = tables(20, 6, TORCH[dtype])
    run_both(q, k, cos, sin, position_ids=torch.stack([torch.randperm(20)[:7] for _ in range(3)]))
    q, k = qk((2, 11, 3, 10), (2, 11, 3, 10), dtype)
    cos, sin = tables(20, 10, TORCH[dtype], half=True)
    run_both(q, k, cos, sin, interleaved=True, position_ids=torch.stack([torch.randperm(20)[:11] for _ in range(2)]), unsqueeze_dim=2)


def test_negative_control_a_wrong_streamed_row_fails_the_check(monkeypatch):
    # the buffered row stored from one element on: only the streamed path carries the slip
    monkeypatch.setattr(_common, "STREAM_BYTES", 0)
    _wrong_template(monkeypatch, "if (buffered) store_row(y, buf, d, true);", "if (buffered) store_row(y, buf + 1, d, true);")
    q, k = qk((2, 3, 5, 8), (2, 3, 5, 8), "float32")
    cos, sin = tables(5, 8, torch.float32)
    with pytest.raises(AssertionError):
        run_both(q, k, cos, sin, unsqueeze_dim=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_interleaved_full_width_tables_and_one_tensor(dtype):
    b, h, t, d = 2, 3, 5, 8
    q, k = qk((b, h, t, d), (b, h, t, d), dtype)
    cos, sin = tables(t, d, TORCH[dtype], half=True)
    full = cos.repeat_interleave(2, -1), sin.repeat_interleave(2, -1)
    run_both(q, k, *full, interleaved=True, unsqueeze_dim=0)
    run_both(q, None, cos, sin, interleaved=True, unsqueeze_dim=0)


def test_only_one_output_used():
    q, k = qk((2, 3, 5, 8), (2, 3, 5, 8), "float32")
    cos, sin = tables(5, 8, torch.float32)
    ql, kl = q.clone().requires_grad_(), k.clone().requires_grad_()
    q_embed, _ = ak.apply_rope(ql, kl, cos, sin, unsqueeze_dim=0)
    q_embed.sum().backward()
    assert kl.grad is None
    qr = q.double().requires_grad_()
    kernel.reference(qr, None, cos.double(), sin.double(), None, 0).sum().backward()
    assert_matches(ql.grad, qr.grad, "float32", "grad q")


def sample_schedules(n, seed=3):
    rng = random.Random(seed)
    picked = [dict(kernel.SPACE.default), dict(kernel.SPACE.default, parallel="heads")]
    while len(picked) < n:
        s = kernel.SPACE.sample(rng)
        if s not in picked:
            picked.append(s)
    return picked


@pytest.mark.parametrize("schedule", sample_schedules(4), ids=lambda s: "-".join(str(v) for v in s.values()))
def test_schedules_agree(schedule):
    q, k = qk((2, 6, 13, 80), (2, 2, 13, 80), "float32", seed=4)
    cos, sin = tables(13, 80, torch.float32, batch=2)
    run_both(q, k, cos, sin, schedule=schedule, unsqueeze_dim=1)
    q, k = qk((2, 13, 3, 12), (2, 13, 3, 12), "float32", seed=5)
    cos, sin = tables(20, 12, torch.float32, half=True)
    run_both(q, k, cos, sin, interleaved=True, schedule=schedule, position_ids=torch.arange(13)[None] + 2, unsqueeze_dim=2)


def test_bfloat16_with_another_schedule():
    schedule = {"parallel": "heads", "chunk": 1, "vec_bits": 128, "unroll": 4, "omp_kind": "dynamic"}
    q, k = qk((2, 4, 9, 80), (2, 4, 9, 80), "bfloat16")
    cos, sin = tables(9, 80, torch.bfloat16)
    run_both(q, k, cos, sin, schedule=schedule, unsqueeze_dim=0)


def test_make_case_checks_out():
    for interleaved in (0, 1):
        workload = {"batch": 2, "heads": 4, "kv_heads": 2, "seq": 9, "dim": 16, "interleaved": interleaved, "dtype": "float32"}
        run, eager, check = kernel.make_case(workload)
        check(run(kernel.SPACE.default))
        check(eager())


def unsupported_case(case, monkeypatch):
    """(q, k, cos, sin, kwargs, interleaved) the compiled path must refuse."""
    q, k = qk((2, 3, 5, 8), (2, 3, 5, 8), "float32")
    cos, sin = tables(5, 8, torch.float32)
    kw, interleaved = {"unsqueeze_dim": 0}, False
    if case == "float64":
        q, k, cos, sin = q.double(), k.double(), cos.double(), sin.double()
    elif case == "tables_require_grad":
        cos = cos.clone().requires_grad_()
    elif case == "table_dtype":
        cos, sin = cos.bfloat16(), sin.bfloat16()
    elif case == "odd_dim":
        q, k = q[..., :7], k[..., :7]
        cos, sin = cos[:, :7], sin[:, :7]
    elif case == "tables_widen_the_batch":
        q, k = q[:1], k[:1]
        cos, sin = cos.expand(2, 1, 5, 8), sin.expand(2, 1, 5, 8)
        kw = {"unsqueeze_dim": None}
    elif case == "negative_position":
        kw = {"position_ids": torch.tensor([[0, 1, 2, 3, -1]]), "unsqueeze_dim": 1}
    elif case == "half_width_half_split":
        cos, sin = cos[:, :4], sin[:, :4]
    elif case == "disabled":
        monkeypatch.setenv("ADOPT_DISABLE", "apply_rope_interleaved")
        interleaved = True
    return q, k, cos, sin, kw, interleaved


@pytest.mark.parametrize("case", ["float64", "tables_require_grad", "table_dtype", "odd_dim", "tables_widen_the_batch",
                                  "negative_position", "half_width_half_split", "disabled"])
def test_unsupported_inputs_take_the_original_path(case, monkeypatch):
    q, k, cos, sin, kw, interleaved = unsupported_case(case, monkeypatch)
    assert kernel.rope(q, k, cos, sin, interleaved=interleaved, **kw) is None
    calls = _dispatch.CALLS[kernel.KERNEL.name]
    api = ak.apply_rope_interleaved if interleaved else ak.apply_rope
    try:
        out = api(q, k, cos, sin, **kw)
    except RuntimeError:
        out = None  # shapes the original rejects too (half-width tables for the half-split form)
    assert _dispatch.CALLS[kernel.KERNEL.name] == calls
    if out is not None:
        expected = kernel.reference(q, k, cos, sin, kw.get("position_ids"), kw.get("unsqueeze_dim", 1), interleaved)
        for o, e in zip(out, expected):
            torch.testing.assert_close(o, e)


def test_position_out_of_range_raises_like_the_original():
    q, k = qk((1, 2, 3, 8), (1, 2, 3, 8), "float32")
    cos, sin = tables(4, 8, torch.float32)
    with pytest.raises(IndexError):
        ak.apply_rope(q, k, cos, sin, position_ids=torch.tensor([[1, 2, 4]]))


def test_negative_control_a_wrong_kernel_fails_the_check(monkeypatch):
    # one operator changed in the half-split forward: the same check must reject it
    old = "store_f(y, j, rnd(x0 * load_f(c, j)) - rnd(x1 * s0));"
    _wrong_template(monkeypatch, old, old.replace(" - ", " + "))
    q, k = qk((2, 3, 5, 8), (2, 3, 5, 8), "float32")
    cos, sin = tables(5, 8, torch.float32)
    with pytest.raises(AssertionError, match="max abs error"):
        run_both(q, k, cos, sin, unsqueeze_dim=0)


def test_negative_control_a_wrong_backward_fails_the_check(monkeypatch):
    # the backward's rotation not transposed: forward right, gradients wrong
    _wrong_template(monkeypatch, "float s0 = BWD ? -load_f(s, o) : load_f(s, e), s1 = BWD ? -load_f(s, e) : load_f(s, o);",
                    "float s0 = load_f(s, e), s1 = load_f(s, o);")
    q, k = qk((2, 5, 3, 8), (2, 5, 3, 8), "float32")
    cos, sin = tables(5, 8, torch.float32, half=True)
    with pytest.raises(AssertionError, match="rope grad"):
        run_both(q, k, cos, sin, interleaved=True, unsqueeze_dim=1)


def test_table_changed_before_backward_is_an_error():
    q, k = qk((1, 2, 3, 8), (1, 2, 3, 8), "float32")
    q.requires_grad_()
    cos, sin = tables(3, 8, torch.float32)
    q_embed, _ = ak.apply_rope(q, k, cos, sin, unsqueeze_dim=0)
    cos.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        q_embed.sum().backward()
