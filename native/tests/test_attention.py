import math

import pytest
import torch
from torch import nn

import adopt_kernels as ak
from adopt_kernels._impl import attention as attn_impl
from checks import DTYPES, assert_close, compare


def eager_attention(q, k, v, mask=None, scale=None, dropout=None, is_causal=False):
    """The code models contain, written out as they write it."""
    if scale is None:
        scale = 1 / math.sqrt(q.size(-1))
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    if is_causal:
        q_len, k_len = q.size(-2), k.size(-2)
        causal = torch.tril(torch.ones(k_len, k_len, dtype=torch.bool))[k_len - q_len :]
        scores = scores.masked_fill(~causal, float("-inf"))
    probs = nn.functional.softmax(scores, dim=-1)
    if dropout is not None:
        probs = dropout(probs)
    return torch.matmul(probs, v)


def fake_sdpa(calls):
    """Stand-in with the documented semantics of F.scaled_dot_product_attention.

    Its causal mask is aligned top-left and it refuses a mask together with is_causal, as
    the real one does; on torch 1.13 it lets the SDPA dispatch be tested.
    """

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
        calls.append(dict(attn_mask=attn_mask, is_causal=is_causal, scale=scale))
        assert dropout_p == 0.0
        assert not (is_causal and attn_mask is not None)
        s = 1 / math.sqrt(query.size(-1)) if scale is None else scale
        scores = query @ key.transpose(-2, -1) * s
        if is_causal:
            attn_mask = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool).tril()
        if attn_mask is not None:
            assert attn_mask.dtype in (torch.bool, query.dtype)
            if attn_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            else:
                scores = scores + attn_mask
        return torch.softmax(scores, dim=-1) @ value

    return sdpa


@pytest.fixture(params=["native", "fake_sdpa"])
def backend(request, monkeypatch):
    """Run each test against this torch's own path and against an SDPA-equipped path."""
    calls = []
    if request.param == "fake_sdpa":
        monkeypatch.setattr(attn_impl, "_sdpa", fake_sdpa(calls))
        monkeypatch.setattr(attn_impl, "_sdpa_takes_scale", True)
        # the compiled CPU kernel would take float32 calls before SDPA is reached
        monkeypatch.setenv("ADOPT_DISABLE", "native")
    return request.param, calls


def qkv(b, h, lq, lk, d, dtype, dv=None):
    return (
        torch.randn(b, h, lq, d, dtype=dtype),
        torch.randn(b, h, lk, d, dtype=dtype),
        torch.randn(b, h, lk, dv or d, dtype=dtype),
    )


def additive_mask(b, lq, lk, dtype):
    keep = torch.rand(b, 1, lq, lk) > 0.3
    keep[..., 0] = True  # no fully masked rows
    return torch.zeros(b, 1, lq, lk, dtype=dtype).masked_fill(~keep, torch.finfo(dtype).min)


SHAPES = [(3, 2, 5, 5, 7), (1, 1, 1, 6, 9), (2, 3, 4, 7, 8), (1, 2, 6, 6, 5)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mask_kind", [None, "additive", "bool", "padding"])
@pytest.mark.parametrize("scale", [None, 1.0, 0.3])
def test_matches_eager(dtype, shape, mask_kind, scale, backend):
    b, h, lq, lk, d = shape
    q, k, v = qkv(b, h, lq, lk, d, dtype)
    if mask_kind == "additive":
        mask = additive_mask(b, lq, lk, dtype)
    elif mask_kind == "bool":
        mask = torch.rand(b, h, lq, lk) > 0.3
        mask[..., 0] = True
    elif mask_kind == "padding":
        mask = torch.ones(b, 1, 1, lk, dtype=torch.bool)
        mask[0, ..., -1] = False
    else:
        mask = None
    compare(
        lambda q, k, v: eager_attention(q, k, v, mask, scale),
        lambda q, k, v: ak.attention(q, k, v, mask, scale),
        [q, k, v],
        dtype=dtype,
    )
    name, calls = backend
    if name == "fake_sdpa":
        assert len(calls) == 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lq,lk", [(5, 5), (1, 6), (3, 7)])
@pytest.mark.parametrize("with_mask", [False, True])
def test_causal_is_bottom_right_aligned(dtype, lq, lk, with_mask, backend):
    q, k, v = qkv(2, 3, lq, lk, 7, dtype)
    mask = additive_mask(2, lq, lk, dtype) if with_mask else None
    compare(
        lambda q, k, v: eager_attention(q, k, v, mask, is_causal=True),
        lambda q, k, v: ak.attention(q, k, v, mask, is_causal=True),
        [q, k, v],
        dtype=dtype,
    )
    name, calls = backend
    if name == "fake_sdpa":
        assert len(calls) == 1
        # SDPA's own is_causal is used only where its top-left alignment is the same.
        assert calls[0]["is_causal"] == (lq == lk and not with_mask)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 0.4])
@pytest.mark.parametrize("training", [False, True])
def test_dropout_matches_seeded_eager(dtype, p, training, backend, monkeypatch):
    # F.dropout's own draw: the compiled kernel's counter-based mask is tested in its own file
    monkeypatch.setenv("ADOPT_DISABLE", "native")
    q, k, v = qkv(3, 2, 5, 6, 7, dtype)
    mask = additive_mask(3, 5, 6, dtype)
    dropout = nn.Dropout(p).train(training)
    ref, out = compare(
        lambda q, k, v: eager_attention(q, k, v, mask, dropout=dropout),
        lambda q, k, v: ak.attention(q, k, v, mask, dropout_p=p, training=training),
        [q, k, v],
        dtype=dtype,
        seed=11,
    )
    if training and p > 0:
        assert not torch.allclose(ref[0], eager_attention(q, k, v, mask))
    name, calls = backend
    if name == "fake_sdpa":
        # SDPA would draw its own dropout mask, so it is only used when none is applied.
        assert len(calls) == (0 if training and p > 0 else 1)


class _HalfScale(nn.Module):
    """A module in the dropout's place that is no dropout at all."""

    def forward(self, x):
        return x * 0.5


class _DropoutWithItsOwnForward(nn.Dropout):
    def forward(self, x):
        return super().forward(x) * 2.0


def _dropouts_to_call():
    """Dropout modules the rewrite passes to the kernel that it must call, as the original does."""
    hooked = nn.Dropout(0.3)
    hooked.register_forward_hook(lambda mod, args, out: out * 0.0)  # an ablation
    pre = nn.Dropout(0.0)
    pre.register_forward_pre_hook(lambda mod, args: (args[0] * 3.0,))
    forward_set = nn.Dropout(0.0)
    forward_set.forward = lambda x: x.flip(-1)
    identity_hooked = nn.Identity()
    identity_hooked.register_forward_hook(lambda mod, args, out: out + 1.0)
    return [hooked, pre, forward_set, identity_hooked, _HalfScale(), _DropoutWithItsOwnForward(0.0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [False, True])
def test_identity_in_the_dropouts_place_is_no_dropout(dtype, training, backend):
    # nn.Identity() swapped in for the dropout (a common way to switch it off): the rewrite passes
    # the module, and the kernel runs without dropout (compiled kernels forced by conftest)
    q, k, v = qkv(2, 3, 5, 6, 8, dtype)
    mask = additive_mask(2, 5, 6, dtype)
    compare(
        lambda q, k, v: eager_attention(q, k, v, mask, dropout=nn.Identity()),
        lambda q, k, v: ak.attention(q, k, v, mask, dropout_p=nn.Identity(), training=training),
        [q, k, v],
        dtype=dtype,
        seed=5,
    )


@pytest.mark.parametrize("p", [0.0, 0.4])
@pytest.mark.parametrize("training", [False, True])
def test_a_plain_dropout_module_gives_its_probability(p, training, monkeypatch):
    monkeypatch.setenv("ADOPT_DISABLE", "native")  # F.dropout's own draw, as eager code draws it
    q, k, v = qkv(3, 2, 5, 6, 7, torch.float64)
    dropout = nn.Dropout(p).train(training)
    compare(
        lambda q, k, v: eager_attention(q, k, v, dropout=dropout),
        lambda q, k, v: ak.attention(q, k, v, dropout_p=dropout, training=training),
        [q, k, v],
        dtype=torch.float64,
        seed=11,
    )


@pytest.mark.parametrize("module_training", [False, True])
def test_a_dropout_modules_own_mode_decides(module_training, monkeypatch):
    # MC dropout: the model in eval mode (training=False passed), its dropout modules in train
    # mode, as the original's module call sees them; and the converse
    monkeypatch.setenv("ADOPT_DISABLE", "native")
    q, k, v = qkv(3, 2, 5, 6, 7, torch.float64)
    dropout = nn.Dropout(0.4).train(module_training)
    compare(
        lambda q, k, v: eager_attention(q, k, v, dropout=dropout),
        lambda q, k, v: ak.attention(q, k, v, dropout_p=dropout, training=not module_training),
        [q, k, v],
        dtype=torch.float64,
        seed=11,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("which", range(6))
@pytest.mark.parametrize("mask_heads", [False, True])
def test_a_dropout_module_doing_more_than_dropout_is_called(dtype, which, mask_heads, backend):
    # hooks, a forward set on the instance, a subclass's forward or another module altogether:
    # the probabilities pass through the module as in the original code
    dropout = _dropouts_to_call()[which].eval()  # eval: a hooked nn.Dropout(0.3) draws nothing
    fired = []
    dropout.register_forward_hook(lambda mod, args, out: fired.append(1))
    if mask_heads:
        # (batch * heads, L, D) with the mask added to the (batch, heads, L, S) view
        q, k, v = (torch.randn(4, 5, 8, dtype=dtype) for _ in range(3))
        mask = additive_mask(2, 5, 5, dtype)
        w = torch.bmm(q, k.transpose(1, 2)).view(2, 2, 5, 5) + mask
        expected = torch.bmm(dropout(nn.functional.softmax(w.view(4, 5, 5), dim=-1)), v)
        got = ak.attention(q, k, v, mask=mask, scale=1.0, dropout_p=dropout, training=True, mask_heads=2)
    else:
        q, k, v = qkv(2, 3, 5, 6, 8, dtype)
        mask = additive_mask(2, 5, 6, dtype)
        expected = eager_attention(q, k, v, mask, dropout=dropout)
        got = ak.attention(q, k, v, mask, dropout_p=dropout, training=True)
    assert_close(got, expected, dtype)
    assert fired == [1, 1]  # once for the expected output, once inside the kernel's call


@pytest.mark.parametrize("change", ["identity", "hook", "global hook"])
def test_the_rewritten_rule_example_runs_the_dropout_module_it_finds(change):
    # rules/attention's example, original and rewritten, with the dropout swapped or hooked
    import importlib.util
    from pathlib import Path

    def load(name):
        path = Path(__file__).resolve().parents[2] / "rules" / "attention" / name
        spec = importlib.util.spec_from_file_location(f"attention_rule_{name[:-3]}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.SelfAttention

    torch.manual_seed(0)
    original = load("before.py")()
    rewritten = load("after.py")()
    rewritten.load_state_dict(original.state_dict())
    for model in (original, rewritten):
        model.train()
        if change == "identity":
            model.dropout = nn.Identity()
        elif change == "hook":
            model.eval().dropout.register_forward_hook(lambda mod, args, out: out * 0.0)
    x = torch.randn(2, 7, 32)
    handle = None
    if change == "global hook":
        for model in (original, rewritten):
            model.eval()
        handle = torch.nn.modules.module.register_module_forward_hook(
            lambda mod, args, out: out * 0.5 if isinstance(mod, nn.Dropout) else out
        )
    try:
        torch.testing.assert_close(rewritten(x), original(x))
    finally:
        if handle is not None:
            handle.remove()


def test_value_head_dim_may_differ(backend):
    q, k, v = qkv(2, 2, 4, 5, 6, torch.float64, dv=3)
    compare(eager_attention, ak.attention, [q, k, v], dtype=torch.float64)


def test_broadcast_batch_dims_use_reference(backend):
    q, _, _ = qkv(2, 3, 4, 5, 6, torch.float64)
    k, v = torch.randn(2, 1, 5, 6, dtype=torch.float64), torch.randn(2, 1, 5, 6, dtype=torch.float64)
    compare(eager_attention, ak.attention, [q, k, v], dtype=torch.float64)
    assert backend[1] == []


@pytest.mark.parametrize("mask_dtype", [torch.bfloat16, torch.float32])
def test_bfloat16_softmax_in_float32(mask_dtype, backend):
    q, k, v = qkv(2, 2, 5, 6, 8, torch.float32)
    mask = additive_mask(2, 5, 6, torch.float32).to(mask_dtype)
    low = [t.to(torch.bfloat16) for t in (q, k, v)]
    out = ak.attention(*low, mask)
    assert out.dtype == torch.bfloat16
    expected = eager_attention(*[t.float() for t in low], mask.float())
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=2e-2)
    name, calls = backend
    if name == "fake_sdpa":
        # A float32 mask is not cast to bf16 (finfo.min would become -inf): reference path.
        assert len(calls) == (1 if mask_dtype == torch.bfloat16 else 0)


def test_fully_masked_rows(backend):
    q, k, v = qkv(1, 1, 3, 4, 5, torch.float64)
    mask = torch.ones(1, 1, 3, 4, dtype=torch.bool)
    mask[0, 0, 1] = False
    out = ak.attention(q, k, v, mask)
    ref = eager_attention(q, k, v, mask)
    torch.testing.assert_close(out[0, 0, [0, 2]], ref[0, 0, [0, 2]])
    assert torch.isnan(ref[0, 0, 1]).all()
    # Eager code yields NaN for a row with nothing to attend to; SDPA from torch 2.5 yields
    # zeros there instead. Either is accepted, nothing else.
    row = out[0, 0, 1]
    real_sdpa = backend[0] == "native" and attn_impl._sdpa is not None
    zeros_allowed = real_sdpa and attn_impl._torch_version() >= (2, 5)
    assert torch.isnan(row).all() or (zeros_allowed and torch.equal(row, torch.zeros_like(row)))


def test_custom_scale_without_sdpa_scale_argument(monkeypatch):
    calls = []
    monkeypatch.setattr(attn_impl, "_sdpa", fake_sdpa(calls))
    monkeypatch.setattr(attn_impl, "_sdpa_takes_scale", False)  # torch 2.0
    q, k, v = qkv(2, 2, 4, 4, 6, torch.float64)
    torch.testing.assert_close(ak.attention(q, k, v, scale=1.0), eager_attention(q, k, v, scale=1.0))
    assert calls == []
    torch.testing.assert_close(ak.attention(q, k, v), eager_attention(q, k, v))
    assert len(calls) == 1 and calls[0]["scale"] is None


def test_disabled_uses_reference(monkeypatch):
    calls = []
    monkeypatch.setattr(attn_impl, "_sdpa", fake_sdpa(calls))
    monkeypatch.setenv("ADOPT_DISABLE", "attention")
    q, k, v = qkv(2, 2, 4, 4, 6, torch.float64)
    torch.testing.assert_close(ak.attention(q, k, v), eager_attention(q, k, v))
    assert calls == []


def test_attention_supported():
    q, k, v = qkv(2, 2, 4, 4, 6, torch.float32)
    assert ak.attention_supported(q, k, v)
    assert ak.attention_supported(q, k, v, mask=torch.zeros(2, 1, 4, 4))

    assert not ak.attention_supported(q, k, v, head_mask=torch.ones(2))
    assert not ak.attention_supported(q, k, v, output_attentions=True)
    assert not ak.attention_supported(q, k, v, output_attentions=1)
    assert ak.attention_supported(q, k, v, output_attentions=None)
    # (batch * heads, L, D) as BART keeps it; a key/value memory shared by the batch; not a
    # single query matrix, not keys of higher rank, not leading dimensions that do not broadcast
    assert ak.attention_supported(q[0], k[0], v[0])
    assert ak.attention_supported(q[0], k[0, 0], v[0, 0])
    assert not ak.attention_supported(q[0, 0], k[0, 0], v[0, 0])
    assert not ak.attention_supported(q, k, v.unsqueeze(0))
    assert not ak.attention_supported(q, torch.randn(3, 2, 4, 6), v)


def test_attention_supported_respects_switch(monkeypatch):
    q, k, v = qkv(2, 2, 4, 4, 6, torch.float32)
    monkeypatch.setenv("ADOPT_DISABLE", "attention")
    assert not ak.attention_supported(q, k, v)
    monkeypatch.setenv("ADOPT_DISABLE", "rms_norm")
    assert ak.attention_supported(q, k, v)


@pytest.mark.parametrize("dtype", DTYPES)
def test_t5_learned_position_bias_gets_gradients(dtype, backend):
    # T5: no scaling, and the additive mask is a learned bias that needs its gradient.
    q, k, v = qkv(2, 3, 5, 6, 4, dtype)
    bias = torch.randn(1, 3, 5, 6, dtype=dtype)
    compare(
        lambda q, k, v, b: eager_attention(q, k, v, b, scale=1.0),
        lambda q, k, v, b: ak.attention(q, k, v, b, scale=1.0),
        [q, k, v, bias],
        dtype=dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale_shape", [(3, 1, 1), (1, 3, 1, 1), (), (3, 1, 6)])
def test_tensor_scale(dtype, scale_shape, backend):
    # Swin v2: a learned per-head logit scale multiplies the cosine scores; a scale that varies
    # along the key axis cannot be folded into q and takes the reference path
    q, k, v = (torch.randn(2, 3, 5 if i == 0 else 6, 4, dtype=dtype) for i in range(3))
    scale = (torch.rand(scale_shape, dtype=dtype) + 0.5).requires_grad_()
    compare(
        lambda q, k, v, s: eager_attention(q, k, v, scale=s),
        lambda q, k, v, s: ak.attention(q, k, v, scale=s),
        [q, k, v, scale],
        dtype=dtype,
    )


def bart_attention(q, k, v, mask, heads, dropout=0.0, training=False):
    """BART's spelling: (batch * heads, L, D) scores, the mask added to their 4-D view."""
    bh, tgt, _ = q.shape
    src = k.size(1)
    w = torch.bmm(q, k.transpose(1, 2))
    w = w.view(bh // heads, heads, tgt, src) + mask
    w = w.view(bh, tgt, src)
    w = nn.functional.softmax(w, dim=-1)
    w = nn.functional.dropout(w, p=dropout, training=training)
    return torch.bmm(w, v)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask_batch", [2, 1])
def test_mask_added_to_the_four_dimensional_view(dtype, mask_batch, backend):
    heads, tgt, src = 3, 5, 7
    q, k, v = torch.randn(2 * heads, tgt, 4, dtype=dtype), torch.randn(2 * heads, src, 4, dtype=dtype), torch.randn(2 * heads, src, 6, dtype=dtype)
    mask = torch.randn(mask_batch, 1, tgt, src, dtype=dtype)
    compare(
        lambda q, k, v, m: bart_attention(q, k, v, m, heads),
        lambda q, k, v, m: ak.attention(q, k, v, mask=m, scale=1.0, mask_heads=heads),
        [q, k, v, mask],
        dtype=dtype,
    )


def test_mask_heads_with_dropout_matches_seeded_eager():
    heads = 2
    q, k, v = (torch.randn(4, 5, 8, dtype=torch.float64) for _ in range(3))
    mask = torch.randn(2, 1, 5, 5, dtype=torch.float64)
    torch.manual_seed(3)
    expected = bart_attention(q, k, v, mask, heads, dropout=0.3, training=True)
    torch.manual_seed(3)
    got = ak.attention(q, k, v, mask=mask, scale=1.0, dropout_p=0.3, training=True, mask_heads=heads)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_memory_keys_shared_by_the_batch(dtype, backend):
    # queries (batch, L, D) reading a learned (M, D) key and value memory
    q = torch.randn(2, 5, 4, dtype=dtype)
    k, v = torch.randn(7, 4, dtype=dtype), torch.randn(7, 3, dtype=dtype)
    assert ak.attention_supported(q, k.t(), v)
    compare(
        lambda q, k, v: torch.matmul(torch.softmax(torch.matmul(q, k.t()) * 0.5, dim=-1), v),
        lambda q, k, v: ak.attention(q, k, v, scale=0.5),
        [q, k, v],
        dtype=dtype,
    )


def test_number_mask(backend):
    # `scores + 0.5`: a number added to every score
    q, k, v = (torch.randn(2, 3, 5, 4, dtype=torch.float64) for _ in range(3))
    expected = torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * 0.5 + 0.5, dim=-1), v)
    torch.testing.assert_close(ak.attention(q, k, v, mask=0.5, scale=0.5), expected)


def test_mask_heads_with_keys_shared_by_the_batch(backend):
    heads = 2
    q = torch.randn(4, 5, 8, dtype=torch.float64)
    k, v = torch.randn(1, 6, 8, dtype=torch.float64), torch.randn(1, 6, 3, dtype=torch.float64)
    mask = torch.randn(2, 1, 5, 6, dtype=torch.float64)
    w = torch.matmul(q, k.transpose(1, 2))
    w = (w.view(2, heads, 5, 6) + mask).view(4, 5, 6)
    expected = torch.matmul(torch.softmax(w, dim=-1), v)
    torch.testing.assert_close(ak.attention(q, k, v, mask=mask, scale=1.0, mask_heads=heads), expected)


def test_per_key_scale_is_not_folded_into_q(backend):
    # a scale of shape (S,) multiplies the scores along the key axis, not q's head dimension
    q, k, v = torch.randn(2, 3, 5, 4, dtype=torch.float64), torch.randn(2, 3, 6, 4, dtype=torch.float64), torch.randn(2, 3, 6, 4, dtype=torch.float64)
    scale = torch.rand(6, dtype=torch.float64) + 0.5
    expected = torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * scale, dim=-1), v)
    torch.testing.assert_close(ak.attention(q, k, v, scale=scale), expected)


def test_boolean_mask_added_to_the_scores(backend):
    # `scores + bool_mask` promotes the mask: True adds 1.0
    q, k, v = (torch.randn(2, 3, 5, 4, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(2, 1, 5, 5) > 0.5
    expected = torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-2, -1)) + mask, dim=-1), v)
    torch.testing.assert_close(ak.attention(q, k, v, mask=mask, scale=1.0, mask_added=True), expected)


def test_softmax_dtype_rounds_float64_scores_like_the_original(backend):
    # `F.softmax(scores, dim=-1, dtype=torch.float32).type_as(scores)` on float64 scores
    q, k, v = (torch.randn(2, 3, 5, 4, dtype=torch.float64) for _ in range(3))
    scores = torch.matmul(q, k.transpose(-2, -1)) * 0.5
    expected = torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32).type_as(scores), v)
    got = ak.attention(q, k, v, scale=0.5, softmax_dtype=torch.float32)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    assert (ak.attention(q, k, v, scale=0.5) - expected).abs().max() > 1e-12


def eager_filled(q, k, v, keep=None, keep_fill=None, fill_mask=None, fill_value=None, mask=None, scale=None):
    """GPT-2 (``torch.where`` over a causal buffer) and nanoGPT (``masked_fill``), as written."""
    scale = 1 / math.sqrt(q.size(-1)) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if keep is not None:
        scores = torch.where(keep, scores, keep_fill)
    if fill_mask is not None:
        scores = scores.masked_fill(fill_mask, fill_value)
    if mask is not None:
        scores = scores + mask
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def causal_buffer(lq, lk):
    """A (1, 1, lq, lk) slice of a tril buffer, as models register and slice it."""
    return torch.tril(torch.ones(lk, lk, dtype=torch.bool))[lk - lq :].view(1, 1, lq, lk)


FILLS = ["-inf", "finfo_min", "tensor_min", "minus_1e4"]


def fill_value_of(kind, dtype):
    return {
        "-inf": float("-inf"),
        "finfo_min": torch.finfo(dtype).min,
        "tensor_min": torch.full([], torch.finfo(dtype).min, dtype=dtype),
        "minus_1e4": -1e4,
    }[kind]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lq,lk", [(5, 5), (1, 6), (3, 7)])
@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("form", ["where", "masked_fill"])
def test_filled_scores_match_eager(dtype, lq, lk, fill, with_mask, form, backend):
    q, k, v = qkv(2, 3, lq, lk, 7, dtype)
    causal = causal_buffer(lq, lk)
    value = fill_value_of(fill, dtype)
    mask = additive_mask(2, lq, lk, dtype) if with_mask else None
    kw = dict(keep=causal, keep_fill=value) if form == "where" else dict(fill_mask=causal == 0, fill_value=value)
    if form == "where" and not isinstance(value, torch.Tensor):
        kw["keep_fill"] = torch.tensor(value, dtype=dtype)
    compare(
        lambda q, k, v: eager_filled(q, k, v, mask=mask, **kw),
        lambda q, k, v: ak.attention(q, k, v, mask, **kw),
        [q, k, v],
        dtype=dtype,
    )
    name, calls = backend
    if name == "fake_sdpa":
        # -inf and the dtype's own minimum over a causal buffer become the causal flag (the
        # mask leaves every row a visible key); -1e4 does not, and takes the eager path
        foldable = fill in ("-inf", "finfo_min", "tensor_min")
        assert len(calls) == (1 if foldable else 0)


@pytest.mark.parametrize("fill", ["-inf", "finfo_min"])
def test_fully_filled_row_matches_eager(fill, backend):
    """A row the fill covers entirely: uniform over the keys with a finite fill (every score
    is the fill), NaN with -inf, as eager code gives."""
    q, k, v = qkv(1, 2, 3, 4, 5, torch.float32)
    fill_mask = torch.zeros(1, 1, 3, 4, dtype=torch.bool)
    fill_mask[..., 1, :] = True
    value = fill_value_of(fill, torch.float32)
    out = ak.attention(q, k, v, fill_mask=fill_mask, fill_value=value)
    ref = eager_filled(q, k, v, fill_mask=fill_mask, fill_value=value)
    torch.testing.assert_close(out[..., [0, 2], :], ref[..., [0, 2], :])
    if fill == "finfo_min":
        torch.testing.assert_close(out[..., 1, :], v.mean(dim=-2))
        torch.testing.assert_close(ref[..., 1, :], v.mean(dim=-2))
    else:
        assert torch.isnan(ref[..., 1, :]).all()


def test_fills_with_heads_folded_into_the_batch(backend):
    """(batch * heads, L, S) scores filled and masked on their 4-D view."""
    b, h, lq, lk, d = 2, 3, 4, 4, 5
    q, k, v = (torch.randn(b * h, n, d, dtype=torch.float64) for n in (lq, lk, lk))
    fill_mask = torch.rand(b, h, lq, lk) > 0.7
    mask = additive_mask(b, lq, lk, torch.float64)

    def eager(q, k, v):
        scores = (q @ k.transpose(-2, -1) / math.sqrt(d)).view(b, h, lq, lk).masked_fill(fill_mask, -1e4)
        scores = (scores + mask).view(b * h, lq, lk)
        return torch.softmax(scores, dim=-1) @ v

    compare(eager, lambda q, k, v: ak.attention(q, k, v, mask, mask_heads=h, fill_mask=fill_mask, fill_value=-1e4), [q, k, v], dtype=torch.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shared_bias", [False, True])
def test_bias_in_the_folded_layout(dtype, shared_bias, backend):
    """Bloom: ALiBi added through baddbmm to the (batch * heads, L, S) scores, the padding mask
    filled on their 4-D view with the dtype's minimum, the softmax in float32."""
    b, h, lq, lk, d = 2, 3, 4, 6, 5
    q, k, v = (torch.randn(b * h, n, d, dtype=dtype) for n in (lq, lk, lk))
    alibi = torch.randn(1 if shared_bias else b * h, 1, lk, dtype=dtype)
    padding = torch.zeros(b, 1, lq, lk, dtype=torch.bool)
    padding[-1, ..., -1] = True
    alpha = 1 / math.sqrt(d)

    def eager(q, k, v):
        scores = alibi.baddbmm(q, k.transpose(-2, -1), beta=1.0, alpha=alpha).view(b, h, lq, lk)
        scores = torch.masked_fill(scores, padding, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(dtype)
        return torch.bmm(probs.view(b * h, lq, lk), v)

    compare(
        eager,
        lambda q, k, v: ak.attention(q, k, v, scale=alpha, bias=alibi, mask_heads=h, fill_mask=padding, fill_value=torch.finfo(dtype).min, softmax_dtype=torch.float32),
        [q, k, v],
        dtype=dtype,
    )
    name, calls = backend
    if name == "fake_sdpa":
        # float32: the bias and the fill fold into one additive mask; float64 computes the
        # softmax in float32, which only the eager path does
        assert len(calls) == (1 if dtype == torch.float32 else 0)


def test_probabilities_take_the_values_dtype(backend):
    """Scores from float32 queries and keys, probabilities cast to the values' dtype (GPT-Neo)."""
    q, k, _ = qkv(2, 2, 4, 5, 6, torch.float32)
    v = torch.randn(2, 2, 5, 6, dtype=torch.float64)
    causal = causal_buffer(4, 5)
    fill = torch.tensor(torch.finfo(torch.float32).min)

    def eager(q, k, v):
        scores = torch.where(causal, q @ k.transpose(-2, -1), fill)
        return torch.softmax(scores, dim=-1).to(v.dtype) @ v

    out = ak.attention(q, k, v, scale=1.0, keep=causal, keep_fill=fill)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, eager(q, k, v))


def test_cast_before_the_softmax_is_where_the_original_casts(backend):
    """XLM: float64 scores filled with float64's minimum, then ``softmax(scores.float())``: the
    cast turns the fill into -inf and the softmax runs in float32."""
    q, k, v = qkv(2, 2, 4, 5, 6, torch.float64)
    fill_mask = torch.zeros(2, 1, 4, 5, dtype=torch.bool)
    fill_mask[..., -1] = True
    value = torch.finfo(torch.float64).min

    def eager(q, k, v):
        scores = (q @ k.transpose(-2, -1)).masked_fill(fill_mask, value)
        return torch.softmax(scores.float(), dim=-1).type_as(scores) @ v

    compare(eager, lambda q, k, v: ak.attention(q, k, v, scale=1.0, cast_dtype=torch.float32, fill_mask=fill_mask, fill_value=value), [q, k, v], dtype=torch.float64, atol=0, rtol=0)


def test_a_mask_with_strided_rows_reaches_sdpa_contiguous(monkeypatch):
    """T5's position bias is a permuted embedding (last-dimension stride = heads): SDPA's fused
    kernels would refuse it and fall back to the float32 math path."""
    calls = []
    monkeypatch.setattr(attn_impl, "_sdpa", fake_sdpa(calls))
    monkeypatch.setattr(attn_impl, "_sdpa_takes_scale", True)
    q, k, v = qkv(2, 3, 5, 5, 4, torch.float64)
    bias = torch.randn(5, 5, 3, dtype=torch.float64).permute(2, 0, 1).unsqueeze(0)  # (1, H, L, S)
    assert bias.stride(-1) != 1
    torch.testing.assert_close(ak.attention(q, k, v, mask=bias, scale=1.0), eager_attention(q, k, v, mask=bias, scale=1.0))
    assert calls[0]["attn_mask"].stride(-1) == 1


# ---------------------------------------------------------------- a causal buffer as the causal flag


def gpt2_call(q, k, v, mask, keep, fill):
    return ak.attention(q, k, v, mask=mask, keep=keep, keep_fill=torch.tensor(fill, dtype=q.dtype), mask_added=True)


def padding_mask(b, lk, dtype, padded, left):
    """(b, 1, 1, lk) additive padding mask, ``padded`` keys of each row masked with the minimum."""
    mask = torch.zeros(b, 1, 1, lk, dtype=dtype)
    if padded:
        (mask[..., :padded] if left else mask[..., lk - padded:]).fill_(torch.finfo(dtype).min)
    return mask


def flash_calls(monkeypatch):
    """The is_causal and keep arguments of each compiled attention call."""
    from adopt_kernels.kernels import flash_attention as kernel

    calls, real = [], kernel.flash_attention

    def spy(*args, **kw):
        calls.append((kw.get("is_causal"), kw.get("keep"), kw.get("mask")))
        return real(*args, **kw)

    monkeypatch.setattr(kernel, "flash_attention", spy)
    return calls


@pytest.mark.parametrize("lq,lk", [(70, 70), (5, 67)])
@pytest.mark.parametrize("left", [False, True])
def test_causal_buffer_runs_as_causal_flag(lq, lk, left, monkeypatch):
    """GPT-2's ``torch.where(bias[..., :L, :S], scores, finfo.min)`` reaches the kernel as
    ``is_causal`` (no L x S mask read, blocks above the diagonal skipped) where that is exact: a
    right-padded batch; with left padding the first query rows see only padded keys, eager code
    then spreads them over every key, and the buffer is kept."""
    calls = flash_calls(monkeypatch)
    q, k, v = qkv(2, 3, lq, lk, 16, torch.float32)
    mask = padding_mask(2, lk, torch.float32, 3, left)
    keep, fill = causal_buffer(lq, lk), torch.finfo(torch.float32).min
    got = gpt2_call(q, k, v, mask, keep, fill)
    expected = eager_filled(*(t.double() for t in (q, k, v)), keep=keep, keep_fill=torch.tensor(fill, dtype=torch.float64), mask=mask.double())
    exact = not (left and lq == lk)
    assert len(calls) == 1 and calls[0][0] is exact
    if exact:
        assert calls[0][1] is None  # no keep-mask: the kernel reads only the padding row
    torch.testing.assert_close(got.double(), expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("case", ["not_causal", "more_queries_than_keys", "minus_1e4"])
def test_other_fills_keep_their_mask(case, monkeypatch):
    calls = flash_calls(monkeypatch)
    lq, lk = (9, 6) if case == "more_queries_than_keys" else (8, 8)
    q, k, v = qkv(1, 2, lq, lk, 8, torch.float32)
    keep = torch.ones(1, 1, lq, lk, dtype=torch.bool).tril(1) if case == "not_causal" else torch.ones(lq, lq, dtype=torch.bool).tril()[:, :lk].view(1, 1, lq, lk)
    fill = -1e4 if case == "minus_1e4" else torch.finfo(torch.float32).min
    got = gpt2_call(q, k, v, None, keep, fill)
    expected = eager_filled(*(t.double() for t in (q, k, v)), keep=keep, keep_fill=torch.tensor(fill, dtype=torch.float64))
    if case == "minus_1e4":
        assert calls == []  # not foldable into the kernel's masks: the eager path
    else:
        assert len(calls) == 1 and calls[0][0] is False
    torch.testing.assert_close(got.double(), expected, rtol=2e-4, atol=2e-5, equal_nan=True)


def _left_padded_gradients(bias=None):
    from test_kernel_flash_attention import gpt2_left_padded_gradients

    return gpt2_left_padded_gradients(bias)[1]


def test_a_left_padded_row_under_a_folded_fill_keeps_eagers_gradients_through_sdpa(monkeypatch):
    calls = []
    monkeypatch.setattr(attn_impl, "_sdpa", fake_sdpa(calls))
    monkeypatch.setattr(attn_impl, "_sdpa_takes_scale", True)
    monkeypatch.setenv("ADOPT_DISABLE", "native")  # the compiled kernel would take the call first
    assert _left_padded_gradients() < 1e-6
    assert _left_padded_gradients(bias=torch.randn(1, 2, 7, 7, generator=torch.Generator().manual_seed(3))) < 1e-6
    assert not calls  # such calls go to the reference path
    # negative control: the fold allowed anyway gives other gradients
    monkeypatch.setattr(attn_impl, "_every_row_keeps_a_key", lambda mask, fills: True)
    assert _left_padded_gradients() > 1e-2 and calls


def test_a_learned_bias_under_a_left_padded_row_keeps_eagers_gradient_in_the_kernel(monkeypatch):
    bias = torch.randn(1, 2, 7, 7, generator=torch.Generator().manual_seed(3))
    assert _left_padded_gradients(bias=bias) < 1e-6
    monkeypatch.setattr(attn_impl, "_every_row_keeps_a_key", lambda mask, fills: True)
    assert _left_padded_gradients(bias=bias) > 1e-2


def test_runs_its_forward_tells_a_hooked_softmax_module_from_a_plain_one():
    """The guard a rewrite puts on a Softmax module it computes itself (`self.attend`): a plain
    module passes, a module with a forward hook (an attention-map recorder) does not."""
    import adopt_kernels as ak

    plain, hooked = torch.nn.Softmax(dim=-1), torch.nn.Softmax(dim=-1)
    hooked.register_forward_hook(lambda m, i, o: None)
    assert ak.runs_its_forward(plain) and not ak.runs_its_forward(hooked)
