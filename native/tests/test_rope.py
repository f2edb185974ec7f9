import pytest
import torch

import adopt_kernels as ak
from checks import DTYPES, compare


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def llama_apply_rotary_pos_emb(q, k, cos, sin, position_ids=None, unsqueeze_dim=1):
    if position_ids is not None:
        cos = cos[position_ids].unsqueeze(unsqueeze_dim)
        sin = sin[position_ids].unsqueeze(unsqueeze_dim)
    else:
        cos = cos.unsqueeze(unsqueeze_dim)
        sin = sin.unsqueeze(unsqueeze_dim)
    q_embed = (q * cos) + (rotate_half(q) * sin)
    k_embed = (k * cos) + (rotate_half(k) * sin)
    return q_embed, k_embed


def rotate_every_two(x):
    x1 = x[:, :, :, ::2]
    x2 = x[:, :, :, 1::2]
    x = torch.stack((-x2, x1), dim=-1)
    return x.flatten(-2)


def gptj_apply_rotary_pos_emb(tensor, sin, cos):
    # GPT-J: tensor (batch, seq, heads, dim), sin/cos (batch, seq, dim/2).
    sin = torch.repeat_interleave(sin[:, :, None, :], 2, 3)
    cos = torch.repeat_interleave(cos[:, :, None, :], 2, 3)
    return (tensor * cos) + (rotate_every_two(tensor) * sin)


def rope_tables(max_pos, dim, dtype, half=False):
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    freqs = torch.outer(torch.arange(max_pos, dtype=torch.float64), inv_freq)
    emb = freqs if half else torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,h,kvh,t,d", [(3, 5, 5, 7, 6), (1, 2, 1, 1, 10), (2, 4, 2, 9, 14)])
def test_half_split_with_position_ids(dtype, b, h, kvh, t, d):
    q = torch.randn(b, h, t, d, dtype=dtype)
    k = torch.randn(b, kvh, t, d, dtype=dtype)
    cos, sin = rope_tables(20, d, dtype)
    position_ids = torch.stack([torch.randperm(20)[:t] for _ in range(b)])
    compare(
        lambda q, k, cos, sin: llama_apply_rotary_pos_emb(q, k, cos, sin, position_ids),
        lambda q, k, cos, sin: ak.apply_rope(q, k, cos, sin, position_ids),
        [q, k, cos, sin],
        dtype=dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("unsqueeze_dim", [1, 2])
def test_half_split_precomputed_cos_sin(dtype, unsqueeze_dim):
    b, h, t, d = 3, 5, 7, 6
    layout = (b, h, t, d) if unsqueeze_dim == 1 else (b, t, h, d)
    q, k = torch.randn(layout, dtype=dtype), torch.randn(layout, dtype=dtype)
    cos, sin = rope_tables(t, d, dtype)
    cos, sin = cos.expand(b, t, d).clone(), sin.expand(b, t, d).clone()
    compare(
        lambda q, k, cos, sin: llama_apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=unsqueeze_dim),
        lambda q, k, cos, sin: ak.apply_rope(q, k, cos, sin, unsqueeze_dim=unsqueeze_dim),
        [q, k, cos, sin],
        dtype=dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,t,h,d", [(3, 7, 5, 6), (1, 1, 2, 10)])
def test_interleaved_matches_gptj(dtype, b, t, h, d):
    q, k = torch.randn(b, t, h, d, dtype=dtype), torch.randn(b, t, h, d, dtype=dtype)
    cos_half, sin_half = rope_tables(20, d, dtype, half=True)
    position_ids = torch.stack([torch.randperm(20)[:t] for _ in range(b)])
    compare(
        lambda q, k, cos, sin: (
            gptj_apply_rotary_pos_emb(q, sin[position_ids], cos[position_ids]),
            gptj_apply_rotary_pos_emb(k, sin[position_ids], cos[position_ids]),
        ),
        lambda q, k, cos, sin: ak.apply_rope_interleaved(q, k, cos, sin, position_ids, unsqueeze_dim=2),
        [q, k, cos_half, sin_half],
        dtype=dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_interleaved_full_width_tables(dtype):
    b, h, t, d = 2, 3, 5, 8
    q, k = torch.randn(b, h, t, d, dtype=dtype), torch.randn(b, h, t, d, dtype=dtype)
    cos_half, sin_half = rope_tables(t, d, dtype, half=True)
    cos_full, sin_full = cos_half.repeat_interleave(2, -1), sin_half.repeat_interleave(2, -1)
    expected = [
        gptj_apply_rotary_pos_emb(x.transpose(1, 2), sin_half.expand(b, t, d // 2), cos_half.expand(b, t, d // 2))
        .transpose(1, 2)
        for x in (q, k)
    ]
    out = ak.apply_rope_interleaved(q, k, cos_full, sin_full, unsqueeze_dim=0)
    for o, e in zip(out, expected):
        torch.testing.assert_close(o, e)


def test_layouts_are_not_interchangeable():
    q, k = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8)
    cos, sin = rope_tables(3, 8, torch.float32)
    half_split = ak.apply_rope(q, k, cos, sin, unsqueeze_dim=0)
    interleaved = ak.apply_rope_interleaved(q, k, cos, sin, unsqueeze_dim=0)
    assert not torch.allclose(half_split[0], interleaved[0])


def test_rotation_preserves_pair_norms():
    q, k = torch.randn(2, 3, 4, 8, dtype=torch.float64), torch.randn(2, 3, 4, 8, dtype=torch.float64)
    cos, sin = rope_tables(4, 8, torch.float64)
    q_embed, _ = ak.apply_rope(q, k, cos, sin, unsqueeze_dim=0)
    torch.testing.assert_close(q_embed.norm(dim=-1), q.norm(dim=-1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["bhtd", "bthd"])
def test_half_split_tables_already_broadcastable(dtype, layout):
    # what a rewritten apply_rotary_pos_emb passes: the tables after the model's own unsqueeze
    b, h, t, d = 2, 3, 5, 10
    shape = (b, h, t, d) if layout == "bhtd" else (b, t, h, d)
    q, k = torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)
    cos, sin = rope_tables(t, d, dtype)
    axis = 1 if layout == "bhtd" else 2
    cos, sin = cos.expand(b, t, d).unsqueeze(axis), sin.expand(b, t, d).unsqueeze(axis)
    compare(
        lambda q, k, cos, sin: ((q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)),
        lambda q, k, cos, sin: ak.apply_rope(q, k, cos, sin, unsqueeze_dim=None),
        [q, k, cos, sin],
        dtype=dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_interleaved_one_tensor(dtype):
    # GPT-J rotates q and k in separate calls: k=None returns only the one result
    b, t, h, d = 2, 5, 3, 8
    x = torch.randn(b, t, h, d, dtype=dtype)
    cos_half, sin_half = rope_tables(t, d, dtype, half=True)
    sin = torch.repeat_interleave(sin_half.expand(b, t, d // 2)[:, :, None, :], 2, 3)
    cos = torch.repeat_interleave(cos_half.expand(b, t, d // 2)[:, :, None, :], 2, 3)
    compare(
        lambda x, cos, sin: (x * cos) + (rotate_every_two(x) * sin),
        lambda x, cos, sin: ak.apply_rope_interleaved(x, None, cos, sin, unsqueeze_dim=None),
        [x, cos, sin],
        dtype=dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_half_split_key_tables_of_its_own(dtype):
    # Falcon: the key's tables are repeated for its own number of heads
    q, k = torch.randn(6, 5, 8, dtype=dtype), torch.randn(2, 5, 8, dtype=dtype)
    cos, sin = rope_tables(5, 8, dtype)
    q_cos, q_sin = cos.expand(6, 5, 8).clone(), sin.expand(6, 5, 8).clone()
    k_cos, k_sin = cos.expand(2, 5, 8).clone(), sin.expand(2, 5, 8).clone()
    compare(
        lambda q, k, qc, qs, kc, ks: ((q * qc) + (rotate_half(q) * qs), (k * kc) + (rotate_half(k) * ks)),
        lambda q, k, qc, qs, kc, ks: ak.apply_rope(q, k, qc, qs, unsqueeze_dim=None, k_cos=kc, k_sin=ks),
        [q, k, q_cos, q_sin, k_cos, k_sin],
        dtype=dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_half_split_one_tensor(dtype):
    # ESM rotates q and k in separate calls: k=None returns only the one result
    x = torch.randn(2, 3, 5, 8, dtype=dtype)
    cos, sin = rope_tables(5, 8, dtype)
    cos, sin = cos[None, None], sin[None, None]
    compare(
        lambda x, cos, sin: (x * cos) + (rotate_half(x) * sin),
        lambda x, cos, sin: ak.apply_rope(x, None, cos, sin, unsqueeze_dim=None),
        [x, cos, sin],
        dtype=dtype,
    )
