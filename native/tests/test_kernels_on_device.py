"""Every kernel against the eager code it replaces, on each device present and in its dtypes.

Low precision has no fixed "right answer" to compare with: the eager code itself rounds. So both
the kernel and the eager code run in the dtype under test, and both are measured against the
eager code run in float64 on the same inputs; the kernel must be no less accurate than the code
it replaces (within a factor, above a floor of a few units in the last place). A wrong mask,
scale or layout is off by O(1) and fails by orders of magnitude. Forward and backward, odd
shapes. On a machine with CUDA the same cases run there too (SDPA's fused kernels, bf16/fp16).
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import adopt_kernels as ak
from adopt_kernels._impl import attention as attn_impl

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES_ON = {
    # torch's CPU half-precision matmul is missing or reference-slow on older releases
    "cpu": [torch.float32, torch.bfloat16],
    "cuda": [torch.float32, torch.float16, torch.bfloat16],
}
CASES = [pytest.param(d, t, id=f"{d}-{str(t).replace('torch.', '')}") for d in DEVICES for t in DTYPES_ON[d]]
# errors relative to the reference's largest magnitude; the floor is a few ulps of that dtype
FLOOR = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}
FACTOR = 2.0


@pytest.fixture(autouse=True)
def _no_tf32():
    """TF32 matmuls would make the float32 comparisons measure TF32, not the kernel."""
    if not torch.cuda.is_available():
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def rel_err(a, ref):
    scale = max(ref.abs().max().item(), 1e-30)
    return (a.double() - ref.double()).abs().max().item() / scale


def leaves(tensors, dtype):
    return [t.detach().to(dtype).requires_grad_(True) if t.is_floating_point() else t for t in tensors]


def outputs_and_grads(fn, inputs, dtype, modules=(), upstream_seed=7):
    """``fn(*inputs_cast, *modules_cast)``, its outputs and the gradients of the float inputs and
    module parameters under a fixed random upstream gradient."""
    xs = leaves(inputs, dtype)
    ms = [m.to(dtype) for m in modules]
    outs = fn(*xs, *ms)
    outs = outs if isinstance(outs, tuple) else (outs,)
    gen = torch.Generator().manual_seed(upstream_seed)
    total = 0
    for o in outs:
        if o.requires_grad:
            total = total + (o * torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.device, o.dtype)).sum()
    grads = []
    if torch.is_tensor(total):
        params = [x for x in xs if torch.is_tensor(x) and x.requires_grad] + [p for m in ms for p in m.parameters()]
        grads = torch.autograd.grad(total, params, allow_unused=True)
    return [o.detach() for o in outs], list(grads)


def check(kernel, eager, inputs, dtype, modules=(), grads=True):
    """The kernel in ``dtype`` is no less accurate than the eager code in ``dtype``, both against
    the eager code in float64."""
    ref_out, ref_g = outputs_and_grads(eager, inputs, torch.float64, [copy.deepcopy(m) for m in modules])
    eag_out, eag_g = outputs_and_grads(eager, inputs, dtype, [copy.deepcopy(m) for m in modules])
    ker_out, ker_g = outputs_and_grads(kernel, inputs, dtype, [copy.deepcopy(m) for m in modules])
    pairs = [("output", k, e, r) for k, e, r in zip(ker_out, eag_out, ref_out)]
    if grads:
        pairs += [(f"grad {i}", k, e, r) for i, (k, e, r) in enumerate(zip(ker_g, eag_g, ref_g)) if r is not None]
    for name, k, e, r in pairs:
        assert k is not None, name
        assert k.shape == r.shape and k.dtype == e.dtype, (name, k.shape, r.shape, k.dtype, e.dtype)
        assert torch.isfinite(k).all(), f"{name}: non-finite values"
        ek, ee = rel_err(k, r), rel_err(e, r)
        assert ek <= FACTOR * ee + FLOOR[dtype], f"{name}: kernel error {ek:.3g}, eager error {ee:.3g} (relative to the largest value)"


# ---------------------------------------------------------------- attention


def eager_attention(q, k, v, mask=None, scale=None, is_causal=False, bias=None, keep=None, keep_fill=None,
                    fill_mask=None, fill_value=None, heads=None):
    """Attention as models write it: scale, bias, the causal buffer's fill, a masked_fill, the
    additive or boolean mask, softmax in the scores' dtype, then the values."""
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1 / math.sqrt(q.size(-1)) if scale is None else scale)
    if bias is not None:
        scores = scores + bias
    flat = heads is not None
    if flat:
        scores = scores.view(-1, heads, scores.size(-2), scores.size(-1))
    if keep is not None:
        scores = torch.where(keep, scores, torch.tensor(keep_fill, dtype=scores.dtype, device=scores.device))
    if fill_mask is not None:
        scores = scores.masked_fill(fill_mask, fill_value)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    if is_causal:
        lq, lk = q.size(-2), k.size(-2)
        causal = torch.ones(lk, lk, dtype=torch.bool, device=q.device).tril()[lk - lq:]
        scores = scores.masked_fill(~causal, float("-inf"))
    if flat:
        scores = scores.view(-1, scores.size(-2), scores.size(-1))
    return torch.matmul(F.softmax(scores, dim=-1), v)


def qkv(device, b, h, lq, lk, d, seed=0, flat=False):
    g = torch.Generator().manual_seed(seed)
    shape = lambda n: (b * h, n, d) if flat else (b, h, n, d)  # noqa: E731
    return [torch.randn(shape(n), generator=g, dtype=torch.float64).to(device) for n in (lq, lk, lk)]


def padding(device, b, lk, dtype_min, padded=(0, 5)):
    """(b, 1, 1, lk) additive mask: the last keys of the batch's later rows are padding."""
    m = torch.zeros(b, 1, 1, lk, dtype=torch.float64, device=device)
    for i in range(1, b):
        m[i, ..., lk - padded[i % 2]:] = dtype_min
    return m


def run_attention(device, dtype, q, k, v, extra=None, **options):
    """Both sides get the same options; tensors in ``extra`` are cast with the inputs."""
    extra = extra or {}
    names = list(extra)
    inputs = [q, k, v] + [extra[n] for n in names]

    def kernel(q, k, v, *rest):
        kw = dict(options, **dict(zip(names, rest)))
        heads = kw.pop("heads", None)
        if heads is not None:
            kw["mask_heads"] = heads
        assert ak.attention_supported(q, k, v, kw.get("mask"))
        return ak.attention(q, k, v, **kw)

    def eager(q, k, v, *rest):
        return eager_attention(q, k, v, **dict(options, **dict(zip(names, rest))))

    check(kernel, eager, inputs, dtype)


@pytest.mark.parametrize("device,dtype", CASES)
@pytest.mark.parametrize("shape", [(2, 3, 37, 37, 64), (1, 2, 1, 29, 128), (3, 4, 11, 29, 80)], ids=["self", "decode", "cross-odd-d"])
def test_attention_plain(device, dtype, shape):
    run_attention(device, dtype, *qkv(device, *shape))


@pytest.mark.parametrize("device,dtype", CASES)
def test_attention_additive_padding_mask(device, dtype):
    q, k, v = qkv(device, 3, 2, 19, 19, 32)
    mask = padding(device, 3, 19, torch.finfo(dtype).min)
    run_attention(device, dtype, q, k, v, extra={"mask": mask})


@pytest.mark.parametrize("device,dtype", CASES)
def test_attention_boolean_keep_mask(device, dtype):
    q, k, v = qkv(device, 2, 3, 23, 31, 64, seed=1)
    g = torch.Generator().manual_seed(2)
    keep = torch.rand(2, 1, 23, 31, generator=g) > 0.3
    keep[..., 0] = True  # no fully masked row: eager gives NaN there, SDPA zeros on new torch
    run_attention(device, dtype, q, k, v, mask=keep.to(device))


@pytest.mark.parametrize("device,dtype", CASES)
@pytest.mark.parametrize("lq,lk", [(33, 33), (5, 33), (1, 33)], ids=["square", "cached", "decode"])
def test_attention_causal(device, dtype, lq, lk):
    run_attention(device, dtype, *qkv(device, 2, 2, lq, lk, 64, seed=3), is_causal=True)


@pytest.mark.parametrize("device,dtype", CASES)
@pytest.mark.parametrize("lq,lk", [(21, 21), (4, 21)], ids=["square", "cached"])
def test_attention_gpt2_causal_buffer_and_padding(device, dtype, lq, lk):
    """GPT-2: ``torch.where(bias[:, :, k-q:k, :k], w, finfo.min)``, then the padding mask added."""
    q, k, v = qkv(device, 2, 3, lq, lk, 64, seed=4)
    buffer = torch.ones(lk, lk, dtype=torch.bool, device=device).tril().view(1, 1, lk, lk)[:, :, lk - lq:lk, :lk]
    mask = padding(device, 2, lk, torch.finfo(dtype).min, padded=(0, 3))
    run_attention(device, dtype, q, k, v, extra={"mask": mask}, keep=buffer, keep_fill=torch.finfo(dtype).min)


@pytest.mark.parametrize("device,dtype", CASES)
def test_attention_masked_fill_minus_inf(device, dtype):
    """DistilBERT: ``scores.masked_fill(mask == 0, -inf)`` with a (b, 1, 1, lk) padding mask."""
    q, k, v = qkv(device, 3, 2, 17, 17, 32, seed=5)
    filled = torch.zeros(3, 1, 1, 17, dtype=torch.bool, device=device)
    filled[1, ..., 12:] = True
    run_attention(device, dtype, q, k, v, fill_mask=filled, fill_value=float("-inf"))


@pytest.mark.parametrize("device,dtype", CASES)
def test_attention_alibi_bias_then_mask(device, dtype):
    """A per-head linear bias on the key positions (ALiBi), then the padding mask."""
    q, k, v = qkv(device, 2, 4, 13, 13, 32, seed=6)
    slopes = torch.tensor([2 ** (-8 * (i + 1) / 4) for i in range(4)], dtype=torch.float64, device=device)
    bias = (slopes.view(1, 4, 1, 1) * torch.arange(13, dtype=torch.float64, device=device).view(1, 1, 1, 13))
    mask = padding(device, 2, 13, torch.finfo(dtype).min, padded=(0, 4))
    run_attention(device, dtype, q, k, v, extra={"bias": bias, "mask": mask})


@pytest.mark.parametrize("device,dtype", CASES)
def test_attention_t5_unscaled_with_position_bias(device, dtype):
    """T5: no 1/sqrt(d) scale; the relative position bias (with the mask folded in) is added."""
    q, k, v = qkv(device, 2, 3, 15, 15, 16, seed=7)
    g = torch.Generator().manual_seed(8)
    position_bias = torch.randn(1, 3, 15, 15, generator=g, dtype=torch.float64).to(device) + padding(device, 2, 15, torch.finfo(dtype).min)
    run_attention(device, dtype, q, k, v, extra={"mask": position_bias}, scale=1.0)


@pytest.mark.parametrize("device,dtype", CASES)
def test_attention_flat_heads_layout(device, dtype):
    """(batch * heads, L, D) inputs, the mask added to the scores viewed as (batch, heads, L, S)."""
    q, k, v = qkv(device, 2, 3, 14, 14, 32, seed=9, flat=True)
    mask = padding(device, 2, 14, torch.finfo(dtype).min, padded=(0, 6))
    run_attention(device, dtype, q, k, v, extra={"mask": mask}, heads=3)


def test_a_fused_path_is_taken_where_torch_has_one(monkeypatch):
    """The cases above exercise a fused path, not the reference, wherever SDPA exists: the
    blocked kernel (C++ on the CPU, Triton on CUDA) where it can run, else SDPA."""
    from adopt_kernels import _dispatch

    if attn_impl._sdpa is None:
        pytest.skip("this torch has no scaled_dot_product_attention; the reference path is what runs")
    calls = []
    real = attn_impl._sdpa
    monkeypatch.setattr(attn_impl, "_sdpa", lambda *a, **k: calls.append(k) or real(*a, **k))
    q, k, v = qkv(DEVICES[-1], 2, 2, 9, 9, 32)
    before = _dispatch.CALLS["flash_attention"]
    ak.attention(q.float(), k.float(), v.float(), is_causal=True)
    blocked = _dispatch.CALLS["flash_attention"] - before
    assert (blocked, calls) in ((1, []), (0, [{"is_causal": True}]))


# ---------------------------------------------------------------- the other kernels


def _g(seed):
    return torch.Generator().manual_seed(seed)


def randn(device, *shape, seed=0):
    return torch.randn(shape, generator=_g(seed), dtype=torch.float64).to(device)


def module(device, make, seed):
    torch.manual_seed(seed)
    m = make().double().to(device)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=_g(seed + 1), dtype=torch.float64).to(device) * 0.1)
    return m


@pytest.mark.parametrize("device,dtype", CASES)
def test_softmax(device, dtype):
    check(lambda x: ak.softmax(x, dim=-1), lambda x: F.softmax(x, dim=-1), [randn(device, 3, 5, 37) * 4], dtype)


@pytest.mark.parametrize("device,dtype", CASES)
def test_dropout_add_layer_norm(device, dtype):
    ln = module(device, lambda: nn.LayerNorm(96, eps=1e-12), 1)
    check(lambda x, r, ln: ak.dropout_add_layer_norm(x, r, ln, 0.1, training=False),
          lambda x, r, ln: ln(F.dropout(x, 0.1, training=False) + r),
          [randn(device, 2, 13, 96, seed=2), randn(device, 2, 13, 96, seed=3)], dtype, modules=[ln])


@pytest.mark.parametrize("device,dtype", CASES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_linear_gelu(device, dtype, approximate):
    lin = module(device, lambda: nn.Linear(72, 200), 4)
    check(lambda x, lin: ak.linear_gelu(x, lin, approximate),
          lambda x, lin: F.gelu(lin(x), approximate=approximate), [randn(device, 2, 11, 72, seed=5)], dtype, modules=[lin])


@pytest.mark.parametrize("device,dtype", CASES)
def test_rms_norm(device, dtype):
    def eager(x, w):
        var = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        return w * (x * torch.rsqrt(var + 1e-6)).to(x.dtype)

    check(lambda x, w: ak.rms_norm(x, w, 1e-6), eager, [randn(device, 2, 9, 80, seed=6), 1 + 0.1 * randn(device, 80, seed=7)], dtype)


@pytest.mark.parametrize("device,dtype", CASES)
def test_apply_rope(device, dtype):
    d, n = 32, 19
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    freqs = torch.outer(torch.arange(n, dtype=torch.float64), inv)
    emb = torch.cat((freqs, freqs), dim=-1).to(device)
    cos, sin = emb.cos(), emb.sin()

    def rotate_half(x):
        return torch.cat((-x[..., d // 2:], x[..., : d // 2]), dim=-1)

    def eager(q, k, cos, sin):
        c, s = cos.unsqueeze(0).unsqueeze(0), sin.unsqueeze(0).unsqueeze(0)
        return q * c + rotate_half(q) * s, k * c + rotate_half(k) * s

    def kernel(q, k, cos, sin):
        return ak.apply_rope(q, k, cos.unsqueeze(0), sin.unsqueeze(0))

    check(kernel, eager, [randn(device, 2, 3, n, d, seed=8), randn(device, 2, 3, n, d, seed=9), cos, sin], dtype)


@pytest.mark.parametrize("device,dtype", CASES)
def test_fused_qkv_grouped(device, dtype):
    q, k, v = (module(device, lambda o=o: nn.Linear(64, o, bias=b), 10 + i) for i, (o, b) in enumerate([(64, True), (32, False), (32, True)]))
    check(lambda x, q, k, v: ak.fused_qkv(x, q, k, v), lambda x, q, k, v: (q(x), k(x), v(x)),
          [randn(device, 3, 7, 64, seed=13)], dtype, modules=[q, k, v])


@pytest.mark.parametrize("device,dtype", CASES)
def test_gated_mlp(device, dtype):
    mods = [module(device, lambda a=a, b=b: nn.Linear(a, b, bias=False), 20 + i) for i, (a, b) in enumerate([(48, 136), (48, 136), (136, 48)])]
    check(lambda x, g, u, d: ak.gated_mlp(x, g, u, d, F.silu), lambda x, g, u, d: d(F.silu(g(x)) * u(x)),
          [randn(device, 2, 5, 48, seed=23)], dtype, modules=mods)


@pytest.mark.parametrize("device,dtype", CASES)
def test_linear_cross_entropy(device, dtype):
    head = module(device, lambda: nn.Linear(64, 103, bias=False), 30)
    labels = torch.randint(0, 103, (2, 9), generator=_g(31)).to(device)
    labels[0, 3] = -100

    def eager(h, head):
        logits = head(h).float() if h.dtype != torch.float64 else head(h)
        return F.cross_entropy(logits[..., :-1, :].reshape(-1, 103), labels[..., 1:].reshape(-1))

    def kernel(h, head):
        return ak.linear_cross_entropy(h, head, labels)

    check(kernel, eager, [randn(device, 2, 9, 64, seed=32)], dtype, modules=[head])


@pytest.mark.parametrize("device,dtype", CASES)
def test_conv_bn_folded_in_eval(device, dtype):
    conv = module(device, lambda: nn.Conv2d(6, 10, 3, padding=1), 40)
    bn = module(device, lambda: nn.BatchNorm2d(10), 41)
    with torch.no_grad():
        bn.running_mean.copy_(randn(device, 10, seed=42))
        bn.running_var.copy_(randn(device, 10, seed=43).abs() + 0.5)
    conv.eval(), bn.eval()
    check(lambda x, c, b: ak.conv_bn(x, c, b), lambda x, c, b: b(c(x)), [randn(device, 2, 6, 9, 11, seed=44)], dtype, modules=[conv, bn])
