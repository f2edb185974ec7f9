"""Rotary position embeddings in the half-split (LLaMA) and interleaved (GPT-J) layouts."""

import torch

from .. import _dispatch
from .switches import enabled


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rotate_every_two(x):
    even = x[..., ::2]
    odd = x[..., 1::2]
    return torch.stack((-odd, even), dim=-1).flatten(-2)


def _select(table, position_ids, unsqueeze_dim):
    if position_ids is not None:
        table = table[position_ids]
    # None: the caller passes tables already shaped to broadcast against q and k
    return table if unsqueeze_dim is None else table.unsqueeze(unsqueeze_dim)


def _unit_stride(table):
    return table.contiguous() if table.dim() and table.size(-1) > 1 and table.stride(-1) != 1 else table


def _compiled(q, k, cos, sin, position_ids, unsqueeze_dim, interleaved, k_cos=None, k_sin=None):
    """The compiled (CPU) or Triton (CUDA) kernel's result, or None when it does not take these
    inputs."""
    # q and k read and written, and the tables read (counted once: a table shared by the batch
    # is counted as the kernel counts it only when it holds the batch's rows)
    moved = (2 * (q.numel() + (k.numel() if k is not None else 0)) + 2 * cos.numel()) * q.element_size()
    if _dispatch.small("rope", moved, q):
        return None
    from ..kernels import rope as kernel

    # tables read off complex rotations (freqs_cis.real / .imag) step over the imaginary parts;
    # the kernel reads rows contiguously, and a table is small beside q and k
    cos, sin = _unit_stride(cos), _unit_stride(sin)
    if k_cos is not None:
        k_cos, k_sin = _unit_stride(k_cos), _unit_stride(k_sin)
    return kernel.rope(q, k, cos, sin, position_ids, unsqueeze_dim, interleaved, k_cos, k_sin)


def apply_rope(q, k, cos, sin, position_ids=None, unsqueeze_dim=1, k_cos=None, k_sin=None):
    """Replaces the half-split ``apply_rotary_pos_emb``::

        cos = cos[position_ids].unsqueeze(unsqueeze_dim)   # cos.unsqueeze(...) without ids
        sin = sin[position_ids].unsqueeze(unsqueeze_dim)
        q_embed = q * cos + rotate_half(q) * sin
        k_embed = k * cos + rotate_half(k) * sin

    where ``rotate_half(x) = cat((-x[..., d/2:], x[..., :d/2]), -1)``. Returns (q_embed, k_embed).
    With ``unsqueeze_dim=None`` the tables are used as given (already broadcastable). ``k_cos``
    and ``k_sin``, when given, are k's own tables (Falcon repeats them per key head). With ``k``
    None only ``q``'s result is returned.

    On CPU in float32/bfloat16, or on CUDA (Triton, also float16), one kernel rotates q and k
    in one pass when the tables broadcast against them without widening them (e.g. (batch or
    1, 1, seq, dim) or (seq, dim), in either layout) or are picked by ``position_ids``, and do
    not require grad; other inputs run the composite below.
    """
    if enabled("apply_rope"):
        out = _compiled(q, k, cos, sin, position_ids, unsqueeze_dim, False, k_cos, k_sin)
        if out is not None:
            return out
    return eager_rope(q, k, cos, sin, position_ids, unsqueeze_dim, k_cos, k_sin)


def eager_rope(q, k, cos, sin, position_ids=None, unsqueeze_dim=1, k_cos=None, k_sin=None):
    """:func:`apply_rope` as torch ops."""
    q_embed = q * _select(cos, position_ids, unsqueeze_dim) + _rotate_half(q) * _select(sin, position_ids, unsqueeze_dim)
    if k is None:
        # one tensor rotated on its own (ESM applies the embedding to q and k in separate calls)
        return q_embed
    k_cos = _select(cos if k_cos is None else k_cos, position_ids, unsqueeze_dim)
    k_sin = _select(sin if k_sin is None else k_sin, position_ids, unsqueeze_dim)
    return q_embed, k * k_cos + _rotate_half(k) * k_sin


def apply_rope_interleaved(q, k, cos, sin, position_ids=None, unsqueeze_dim=1):
    """Interleaved (GPT-J style) rotary embedding; same parameters as :func:`apply_rope`.

    Pairs are adjacent channels ``(x[2i], x[2i+1])`` rotated as ``(-x[2i+1], x[2i])``.
    ``cos``/``sin`` may be full width with each frequency repeated twice adjacently, or half
    width (one entry per pair), in which case they are repeated as GPT-J's
    ``repeat_interleave(2)`` does. With ``k`` None only ``q``'s result is returned. On CPU in
    float32/bfloat16 or on CUDA a kernel runs when it takes the inputs, as for :func:`apply_rope`
    (half-width tables are read as they are).
    """
    if enabled("apply_rope_interleaved"):
        out = _compiled(q, k, cos, sin, position_ids, unsqueeze_dim, True)
        if out is not None:
            return out
    return eager_rope_interleaved(q, k, cos, sin, position_ids, unsqueeze_dim)


def eager_rope_interleaved(q, k, cos, sin, position_ids=None, unsqueeze_dim=1):
    """:func:`apply_rope_interleaved` as torch ops."""
    cos = _select(cos, position_ids, unsqueeze_dim)
    sin = _select(sin, position_ids, unsqueeze_dim)
    if cos.shape[-1] * 2 == q.shape[-1]:
        cos = cos.repeat_interleave(2, dim=-1)
        sin = sin.repeat_interleave(2, dim=-1)
    q_embed = q * cos + _rotate_every_two(q) * sin
    # k None: one tensor rotated on its own (GPT-J applies the embedding to q and k separately)
    return q_embed if k is None else (q_embed, k * cos + _rotate_every_two(k) * sin)
