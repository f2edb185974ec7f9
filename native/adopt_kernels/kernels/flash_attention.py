"""Blocked (flash-style) attention: ``softmax(q @ k^T * scale + bias + mask) @ v`` with online softmax.

Each (batch, head, block of query rows) runs over the key blocks: scores, scale, additive bias
and mask, boolean keep-mask and bottom-right causal mask, a running maximum and sum per row, the
output accumulated in float32; the L x S probabilities never exist. The forward saves a
log-sum-exp per row; the backward (flash-attention-2 style) recomputes probabilities block by
block per (batch, head, group of key blocks): dK and dV accumulate privately, dQ in one float32
buffer per key group. Dropout keeps a score where a counter-based hash of (seed, batch * heads +
head, row, key) clears a threshold, so the backward regenerates the mask from the seed. Keys and
values are packed as float32 blocks, so every inner product is a unit-stride vector loop over a
register tile of rows. Bfloat16 inputs are computed in float32 throughout: unlike eager bfloat16
matmuls, the scores and probabilities are not rounded, only the output and the gradients.

Schedule: ``block_q`` query rows per task, ``block_k`` keys per block, ``vec_bits`` the vector
width, ``loop`` the score product's order ("axpy": a broadcast query element times a transposed
key block; "dot": dot products over the head dimension), ``omp_kind`` the OpenMP schedule kind.
"""

import math

import torch

from .. import _dispatch
from ..registry import Kernel, Space, register
from ._common import TORCH_DTYPE, assert_matches, render
from ._flash_attention_cpp import BACKWARD, FORWARD, TEMPLATE
from .softmax import VECTOR_HELPERS, causal_keep

SPACE = Space(
    params={"block_q": (16, 32, 64), "block_k": (32, 64, 128), "vec_bits": (128, 256), "loop": ("axpy", "dot"),
            "omp_kind": ("static", "dynamic")},
    default={"block_q": 32, "block_k": 64, "vec_bits": 256, "loop": "axpy", "omp_kind": "dynamic"},
    omp={"kind": "omp_kind"},
)
DQ_PAD = 16  # dQ's float32 rows are padded to a multiple of every vector length


def _part(text, schedule, dtype):
    return render(text, schedule, dtype).split("\n", 1)[1]


def _render(schedule, dtype):
    return render(TEMPLATE, schedule, dtype, helpers=_part(VECTOR_HELPERS, schedule, dtype),
                  fwd=_part(FORWARD, schedule, dtype), bwd=_part(BACKWARD, schedule, dtype).replace("DQ_PAD", str(DQ_PAD)),
                  loop_dot=int(schedule["loop"] == "dot"))


def reference(q, k, v, scale, bias=None, mask=None, keep=None, is_causal=False, dropout=None, dropout_p=0.0):
    """Float64-capable reference: the eager composite. ``dropout`` is a kept-mask to apply."""
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if bias is not None:
        scores = scores + bias.to(scores.dtype)
    if mask is not None:
        scores = torch.where(mask, scores, scores.new_tensor(-math.inf)) if mask.dtype == torch.bool else scores + mask.to(scores.dtype)
    if keep is not None:
        scores = torch.where(keep, scores, scores.new_tensor(-math.inf))
    if is_causal:
        scores = torch.where(causal_keep(q.size(-2), k.size(-2)), scores, scores.new_tensor(-math.inf))
    probs = torch.softmax(scores, dim=-1)
    if dropout is not None:
        probs = probs * dropout / (1 - dropout_p)
    return torch.matmul(probs, v)


def _mask_fits(t, shape, kinds):
    if t is None:
        return True
    # a learned bias needs its gradient, which the eager path computes
    if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or t.dtype not in kinds or t.dim() > 4 or (t.requires_grad and torch.is_grad_enabled()):
        return False
    try:
        return torch.broadcast_shapes(t.shape, shape) == shape
    except RuntimeError:
        return False


def supported(q, k, v, bias=None, mask=None, keep=None, dropout_p=0.0):
    """4-D (batch, heads, length, head_dim) float32/bfloat16 CPU tensors of one dtype, keys and
    values whose batch and heads are the queries' or 1, masks that broadcast to the scores."""
    if not all(isinstance(t, torch.Tensor) and t.dim() == 4 and t.numel() and t.dtype == q.dtype for t in (q, k, v)):
        return False
    B, H, L, D = q.shape
    if k.size(-1) != D or k.size(-2) != v.size(-2):
        return False
    if any(t.size(0) not in (1, B) or t.size(1) not in (1, H) for t in (k, v)) or not 0.0 <= dropout_p < 1.0:
        return False
    shape = torch.Size((B, H, L, k.size(-2)))
    floats = (torch.float32, torch.bfloat16)
    masks_fit = _mask_fits(bias, shape, floats) and _mask_fits(mask, shape, floats + (torch.bool,)) and _mask_fits(keep, shape, (torch.bool,))
    return masks_fit and _dispatch.native_ok(KERNEL, q, k, v)


def _unit_last(t):
    return t if t.size(-1) == 1 or t.stride(-1) == 1 else t.contiguous()


def _mask_arg(t, shape):
    """A mask as the kernel reads it: float32 or uint8 values and their strides over the scores
    (0 where it broadcasts), the last one 0 or 1."""
    if t is None:
        return None, (0, 0, 0, 0)
    t = t.reshape(1, 1) if t.dim() == 0 else t  # `scores + 0.5`: one value everywhere
    t = _unit_last(t.view(torch.uint8) if t.dtype == torch.bool else t.float())
    return t, t.expand(shape).stride()


def _meta(q, k, v, masks, causal, dropout, seed):
    """The kernel's integer arguments in the order of its ``enum``: sizes, strides, flags."""
    B, H, L, D = q.shape
    values = [B, H, L, k.size(2), D, v.size(3), int(causal), k.size(0), k.size(1), v.size(0), v.size(1)]
    values += [s for t in (q, k, v) for s in t.stride()[:3]] + [s for _, strides in masks for s in strides]
    return torch.tensor(values + [int(dropout), seed], dtype=torch.int64)


def _groups(B, H, S):
    """Key groups of the backward: eight (batch, head, group) tasks a thread, so a thread slowed
    by another process costs little, each group at least one key block of the largest size."""
    return max(1, min(-(-8 * torch.get_num_threads() // (B * H)), -(-S // 128)))


class FlashAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, bias, mask, keep, scale, causal, dropout_p, fwd, bwd):
        q, k, v = (_unit_last(t) for t in (q, k, v))
        B, H, L, _ = q.shape
        shape = (B, H, L, k.size(2))
        # a boolean mask is a keep-mask; with an explicit keep-mask too, the two are and-ed
        if mask is not None and mask.dtype == torch.bool:
            keep = mask if keep is None else mask & keep
            mask = None
        masks = [_mask_arg(t, shape) for t in (bias, mask, keep)]
        seed = int(torch.empty((), dtype=torch.int64).random_().item()) if dropout_p > 0 else 0
        meta = _meta(q, k, v, masks, causal, dropout_p > 0, seed)
        out = torch.empty(B, H, L, v.size(3), dtype=q.dtype)
        lse = torch.empty(B, H, L, dtype=torch.float32)
        ptrs = [_dispatch.ptr(t) for t, _ in masks]
        fwd(_dispatch.ptr(q), _dispatch.ptr(k), _dispatch.ptr(v), *ptrs, _dispatch.ptr(out), _dispatch.ptr(lse), _dispatch.ptr(meta),
            _dispatch.f32(scale), _dispatch.f32(dropout_p), _dispatch.threads())
        ctx.save_for_backward(q, k, v, out, lse, meta, *(t for t, _ in masks))
        ctx.scale, ctx.dropout_p, ctx.bwd = scale, dropout_p, bwd
        _dispatch.CALLS[KERNEL.name] += 1
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse, meta, *masks = ctx.saved_tensors
        B, H, L, D = q.shape
        S = k.size(2)
        dout = dout.to(q.dtype).contiguous()
        delta = (dout.float() * out.float()).sum(-1)
        groups = _groups(B, H, S)
        dq = torch.zeros(groups, B, H, L, -(-D // DQ_PAD) * DQ_PAD, dtype=torch.float32)
        dk = torch.empty(B, H, S, D, dtype=torch.float32)
        dv = torch.empty(B, H, S, v.size(3), dtype=torch.float32)
        ctx.bwd(_dispatch.ptr(q), _dispatch.ptr(k), _dispatch.ptr(v), *(_dispatch.ptr(t) for t in masks), _dispatch.ptr(dout),
                _dispatch.ptr(lse), _dispatch.ptr(delta), _dispatch.ptr(dq), _dispatch.ptr(dk), _dispatch.ptr(dv), _dispatch.ptr(meta),
                _dispatch.f32(ctx.scale), _dispatch.f32(ctx.dropout_p), _dispatch.i64(groups), _dispatch.threads())
        dq = (dq[0] if groups == 1 else dq.sum(0))[..., :D].to(q.dtype)
        return (dq, dk.sum_to_size(k.shape).to(k.dtype), dv.sum_to_size(v.shape).to(v.dtype)) + (None,) * 8


def flash_attention(q, k, v, scale=None, bias=None, mask=None, keep=None, is_causal=False, dropout_p=0.0, schedule=None):
    """The compiled attention of 4-D (batch, heads, length, head_dim) tensors, or None when it
    cannot run here (the caller runs the original).

    ``scale`` None means ``1 / sqrt(head_dim)``; ``bias`` and a float ``mask`` are added to the
    scaled scores in that order; a boolean ``mask`` or ``keep`` keeps where True; ``is_causal``
    masks bottom-right aligned; ``dropout_p`` > 0 drops probabilities (the caller decides whether
    it is training). A row with every key masked gives NaN, as eager softmax does."""
    if not supported(q, k, v, bias, mask, keep, dropout_p):
        return None
    workload = {"batch": q.size(0), "heads": q.size(1), "q_len": q.size(2), "k_len": k.size(2), "head_dim": q.size(3)}
    fwd = _dispatch.function(KERNEL, "attn_fwd", q.dtype, workload, schedule)
    bwd = _dispatch.function(KERNEL, "attn_bwd", q.dtype, workload, schedule)
    if fwd is None or bwd is None:
        return None
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else float(scale)
    return FlashAttentionFunction.apply(q, k, v, bias, mask, keep, scale, bool(is_causal), float(dropout_p), fwd, bwd)


def _case_inputs(workload, seed):
    dtype = TORCH_DTYPE[workload["dtype"]]
    g = torch.Generator().manual_seed(seed)
    B, H, L, S, D = (workload[f] for f in ("batch", "heads", "q_len", "k_len", "head_dim"))
    q, k, v, dout = (torch.randn(B, H, n, D, generator=g).to(dtype) for n in (L, S, S, L))
    # a padding mask as BERT-style models build it: the batch's last keys masked with the minimum
    mask = torch.zeros(B, 1, 1, S, dtype=dtype)
    mask[..., S - S // 8:] = torch.finfo(dtype).min
    return q, k, v, mask, dout


def make_case(workload, seed=0):
    """``run(schedule)`` is the compiled attention forward and backward with a padding mask;
    ``eager`` the torch composite; ``check`` compares with float64, one head at a time."""
    q, k, v, mask, dout = _case_inputs(workload, seed)
    scale = 1.0 / math.sqrt(q.size(-1))

    def forward_backward(fn, backward):
        ql, kl, vl = (t.detach().requires_grad_(backward) for t in (q, k, v))
        out = fn(ql, kl, vl)
        if not backward:
            return (out,)
        out.backward(dout)
        return out, ql.grad, kl.grad, vl.grad

    def run(schedule, backward=True):
        return forward_backward(lambda q, k, v: flash_attention(q, k, v, scale, mask=mask, schedule=schedule), backward)

    def eager(backward=True):
        return forward_backward(lambda q, k, v: torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * scale + mask, dim=-1), v), backward)

    def check(outputs):
        for b, h in ((b, h) for b in range(q.size(0)) for h in range(q.size(1))):
            ql, kl, vl = (t[b:b + 1, h:h + 1].double().requires_grad_(True) for t in (q, k, v))
            out = reference(ql, kl, vl, scale, mask=mask[b:b + 1].double())
            out.backward(dout[b:b + 1, h:h + 1].double())
            for name, a, e in zip(("output", "grad q", "grad k", "grad v"), outputs, (out, ql.grad, kl.grad, vl.grad)):
                assert_matches(a[b:b + 1, h:h + 1], e, workload["dtype"], f"attention {name} (batch {b}, head {h})")

    return run, eager, check


KERNEL = register(Kernel(
    name="flash_attention",
    doc=__doc__.strip().splitlines()[0],
    api=("attention",),
    signature={"attention": ("q", "k", "v", "mask", "scale", "dropout_p", "training", "is_causal", "mask_heads", "mask_added", "softmax_dtype",
                             "cast_dtype", "bias", "keep", "keep_fill", "fill_mask", "fill_value")},
    switch="attention",
    space=SPACE,
    workload_fields=("batch", "heads", "q_len", "k_len", "head_dim", "dtype"),
    render=_render,
    reference=reference,
    make_case=make_case,
    # what a fused forward must move: q, k, v, the output and the padding mask
    bytes_moved=lambda w: (2 * w["batch"] * w["heads"] * w["head_dim"] * (w["q_len"] + w["k_len"]) + w["batch"] * w["k_len"])
    * (2 if w["dtype"] == "bfloat16" else 4),
    example_workloads=tuple(
        {"batch": b, "heads": h, "q_len": n, "k_len": n, "head_dim": d, "dtype": "float32"}
        for b, h, n, d in ((1, 12, 1024, 64), (2, 12, 2048, 64), (4, 12, 1024, 64), (1, 16, 2048, 80), (1, 12, 4096, 64))
    ),
))
