"""Blocked (flash-style) attention: ``softmax(q @ k^T * scale + bias + mask) @ v`` with online softmax.

Each (batch, head, block of query rows) runs over the key blocks: scores, scale, additive bias
and mask, boolean keep-mask and bottom-right causal mask, a running maximum and sum per row, the
output accumulated in float32; the L x S probabilities never exist. The forward saves a
log-sum-exp per row; the backward (flash-attention-2 style) recomputes probabilities block by
block per (batch, head, group of key blocks): dK and dV accumulate privately, dQ in one float32
buffer per key group; a bias or mask that takes a gradient (T5's learned position bias) gets
every score's gradient, written by the pair of blocks that owns it. Dropout keeps a score where a
counter-based hash of (seed, batch * heads + head, row, key) clears a threshold, so the backward
regenerates the mask from the seed. Keys and values are packed as float32 blocks, so every
inner product is a unit-stride vector loop over a register tile of rows. Bfloat16 inputs are computed in float32 throughout: unlike eager bfloat16
matmuls, the scores and probabilities are not rounded, only the output and the gradients.

Schedule: ``block_q`` query rows per task, ``block_k`` keys per block, ``vec_bits`` the vector
width (512 by default on AVX-512 CPUs), ``loop`` the score product's order ("axpy": a broadcast query element times a transposed
key block; "dot": dot products over the head dimension), ``tile_rows`` and ``tile_vecs`` the
register tile of the block products (rows by vectors: its accumulators, with one vector per
column panel and a broadcast, must fit the registers, 16 with AVX2 and 32 with AVX-512, or they
spill; the dot loop's score tile stays two columns wide), ``omp_kind`` the OpenMP schedule kind.

CUDA tensors (and CPU ones under Triton's interpreter, in tests) run the Triton kernel of
``gpu/flash_attention.py`` instead, scheduled by ``cuda_space``.
"""

import math
import weakref

import torch

from .. import _dispatch
from ..registry import CpuFloors, Kernel, register, Space
from ._common import TORCH_DTYPE, assert_matches, differentiable_backward, reference_grads, render, saveable
from ._flash_attention_cpp import BACKWARD, FORWARD, TEMPLATE
from .softmax import VECTOR_HELPERS, causal_keep

SPACE = Space(
    params={"block_q": (16, 32, 64), "block_k": (32, 64, 128), "vec_bits": (128, 256, 512), "loop": ("axpy", "dot"),
            "tile_rows": (4, 6, 8), "tile_vecs": (1, 2, 4), "omp_kind": ("static", "dynamic")},
    default={"block_q": 32, "block_k": 64, "vec_bits": 256, "loop": "axpy", "tile_rows": 6, "tile_vecs": 2, "omp_kind": "dynamic"},
    omp={"kind": "omp_kind"},
    # 512-bit products: 1.5x the default's speed at BERT's shape on an AVX-512 CPU (docs/kernels.md)
    target_defaults={"avx512": {"vec_bits": 512}},
)
DQ_PAD = 16  # dQ's float32 rows are padded to a multiple of every vector length


def _part(text, schedule, dtype):
    return render(text, schedule, dtype).split("\n", 1)[1]


def _render(schedule, dtype):
    return render(TEMPLATE, schedule, dtype, helpers=_part(VECTOR_HELPERS, schedule, dtype), direct_max_rows=DIRECT_MAX_ROWS,
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
        scores = torch.where(causal_keep(q.size(-2), k.size(-2)).to(scores.device), scores, scores.new_tensor(-math.inf))
    probs = torch.softmax(scores, dim=-1)
    if dropout is not None:
        probs = probs * dropout / (1 - dropout_p)
    return torch.matmul(probs, v)


def _mask_fits(t, shape, kinds, device):
    # a float mask may take a gradient (T5's learned position bias): both kernels give it
    if t is None:
        return True
    if not isinstance(t, torch.Tensor) or t.device != device or t.dtype not in kinds or t.dim() > 4:
        return False
    try:
        return torch.broadcast_shapes(t.shape, shape) == shape
    except RuntimeError:
        return False


def _fits(q, k, v, bias, mask, keep, dropout_p, floats):
    """4-D (batch, heads, length, head_dim) tensors of one dtype among ``floats`` and one device,
    keys and values whose batch and heads are the queries' or 1, masks there that broadcast to
    the scores."""
    if not all(isinstance(t, torch.Tensor) and t.dim() == 4 and t.numel() and t.dtype == q.dtype and t.device == q.device for t in (q, k, v)):
        return False
    if q.dtype not in floats:
        return False
    B, H, L, D = q.shape
    if k.size(-1) != D or k.size(-2) != v.size(-2):
        return False
    if any(t.size(0) not in (1, B) or t.size(1) not in (1, H) for t in (k, v)) or not 0.0 <= dropout_p < 1.0:
        return False
    shape = torch.Size((B, H, L, k.size(-2)))
    return (_mask_fits(bias, shape, floats, q.device) and _mask_fits(mask, shape, floats + (torch.bool,), q.device)
            and _mask_fits(keep, shape, (torch.bool,), q.device))


def supported(q, k, v, bias=None, mask=None, keep=None, dropout_p=0.0):
    """What the compiled CPU kernel takes: float32/bfloat16 CPU tensors that :func:`_fits`."""
    floats = (torch.float32, torch.bfloat16)
    return isinstance(q, torch.Tensor) and q.device.type == "cpu" and _fits(q, k, v, bias, mask, keep, dropout_p, floats) \
        and _dispatch.native_ok(KERNEL, q, k, v)


def _unit_last(t):
    return t if t.size(-1) == 1 or t.stride(-1) == 1 else t.contiguous()


# Masks copied for the kernel, by source: (source, its version, widen, copy), weakly held. Every
# layer of T5 adds the one position bias the first computed, laid out heads-innermost: one copy
# serves them all (the copy lives as long as a layer's saved tensors hold it).
_COPIES = []


def _copied(t, widen):
    """``t`` as float32 (where ``widen``) with a unit last stride, copied at most once while the
    same unchanged tensor comes again."""
    if (t.dtype == torch.float32 or not widen) and (t.size(-1) == 1 or t.stride(-1) == 1):
        return t
    if t.is_inference():  # no version counter to tell a changed tensor by: copied every call
        return _unit_last(t.float() if widen else t)
    for src, version, wide, copy in _COPIES:
        c = copy()
        if src() is t and version == t._version and wide == widen and c is not None:
            return c
    ready = _unit_last(t.float() if widen else t)
    _COPIES[:] = [e for e in _COPIES if e[0]() is not None and e[3]() is not None][-3:]
    _COPIES.append((weakref.ref(t), t._version, widen, weakref.ref(ready)))
    return ready


def _mask_arg(t, shape, widen=True):
    """A mask as the kernel reads it: float32 (its own float dtype where not ``widen``) or uint8
    values and their strides over the scores (0 where it broadcasts), the last one 0 or 1."""
    if t is None:
        return None, (0, 0, 0, 0)
    t = t.reshape(1, 1) if t.dim() == 0 else t  # `scores + 0.5`: one value everywhere
    t = _unit_last(t.view(torch.uint8)) if t.dtype == torch.bool else _copied(t, widen)
    return t, t.expand(shape).stride()


def _meta(q, k, v, masks, causal, dropout, seed):
    """The kernel's integer arguments in the order of its ``enum``: sizes, strides, flags."""
    B, H, L, D = q.shape
    values = [B, H, L, k.size(2), D, v.size(3), int(causal), k.size(0), k.size(1), v.size(0), v.size(1)]
    values += [s for t in (q, k, v) for s in t.stride()[:3]] + [s for _, strides in masks for s in strides]
    return torch.tensor(values + [int(dropout), seed, int(L <= min(DIRECT_ROWS, DIRECT_MAX_ROWS))], dtype=torch.int64)


# Up to DIRECT_ROWS query rows the forward reads keys and values where they lie instead of
# tiling them into blocks: at 1-4 rows it ran 1.1-1.6x the blocked path's speed, at 8 level, at 16
# 0.5-0.7x (docs/kernels.md). DIRECT_MAX_ROWS is what the template's path can take (its DR: one
# accumulator a row); tests set DIRECT_ROWS to 0 to run the blocked path.
DIRECT_MAX_ROWS = 16
DIRECT_ROWS = 4


def _groups(B, H, S):
    """Key groups of the backward: eight (batch, head, group) tasks a thread, so a thread slowed
    by another process costs little, each group at least one key block of the largest size."""
    return max(1, min(-(-8 * torch.get_num_threads() // (B * H)), -(-S // 128)))


def keep_and_mask(mask, keep):
    """(additive mask, keep-mask): a boolean mask is a keep-mask; with an explicit keep-mask
    too, the two are and-ed."""
    if mask is not None and mask.dtype == torch.bool:
        return None, mask if keep is None else mask & keep
    return mask, keep


def dropout_seed():
    """The seed of a call's dropout mask: one draw of torch's generator."""
    return int(torch.empty((), dtype=torch.int64).random_().item())


_M32 = 0xFFFFFFFF


def _fmix(h):
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & _M32
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & _M32
    return h ^ (h >> 16)


def dropout_keep(seed, batch, heads, q_len, k_len, p):
    """The compiled kernel's dropout mask for ``seed``, True where a probability is kept, as a
    (batch, heads, q_len, k_len) tensor: the same hash of (seed, batch * heads + head, row, key),
    in torch's integers (uint32 arithmetic in int64)."""
    lo, hi = seed & _M32, (seed >> 32) & _M32
    bh = torch.arange(batch * heads, dtype=torch.int64).view(-1, 1, 1)
    i = torch.arange(q_len, dtype=torch.int64).view(1, -1, 1)
    j = torch.arange(k_len, dtype=torch.int64).view(1, 1, -1)
    a = _fmix(lo ^ ((bh * 0x9E3779B1) & _M32))
    key = _fmix(((a ^ ((i * 0x85EBCA77) & _M32)) + hi) & _M32)
    h = _fmix(((_fmix(key ^ ((j * 0xC2B2AE3D) & _M32))) + hi) & _M32)
    thresh = int(min(16777216.0, torch.tensor(p, dtype=torch.float32).item() * 16777216.0))
    return ((h >> 8) >= thresh).view(batch, heads, q_len, k_len)


def _version(t):
    try:
        return t._version
    except RuntimeError:  # an inference tensor keeps none
        return None


class FlashAttentionFunction(torch.autograd.Function):
    """Saves q, k, v as the kernel read them and as given (a backward with create_graph needs
    their history), and the masks as the kernel read them (copies kept for the backward's
    kernel, views made here detached). A learned bias or float mask is held as given too, for a
    backward with create_graph, but not saved: the ordinary backward reads the kernel's copy, so
    an in-place change to the mask after the forward is no error there, as in eager code."""

    @staticmethod
    def forward(ctx, q, k, v, bias, mask, keep, scale, causal, dropout_p, seed, fwd, bwd):
        given = (q, k, v)
        q, k, v = (_unit_last(t) for t in (q, k, v))
        B, H, L, _ = q.shape
        shape = (B, H, L, k.size(2))
        mask, keep = keep_and_mask(mask, keep)
        masks = [_mask_arg(t, shape) for t in (bias, mask, keep)]
        seed = (dropout_seed() if seed is None else seed) if dropout_p > 0 else 0
        meta = _meta(q, k, v, masks, causal, dropout_p > 0, seed)
        out = torch.empty(B, H, L, v.size(3), dtype=q.dtype)
        # each row's maximum and log-sum, kept apart (the template's exp_cols says why)
        lse = torch.empty(2, B, H, L, dtype=torch.float32)
        ptrs = [_dispatch.ptr(t) for t, _ in masks]
        fwd(_dispatch.ptr(q), _dispatch.ptr(k), _dispatch.ptr(v), *ptrs, _dispatch.ptr(out), _dispatch.ptr(lse), _dispatch.ptr(meta),
            _dispatch.f32(scale), _dispatch.f32(dropout_p), _dispatch.threads())
        inputs = (*given, bias, mask, keep)
        _dispatch.save_for_backward(ctx, *(saveable(t, *inputs) for t in (q, k, v)), out, lse, meta, *(saveable(t, *inputs) for t, _ in masks), *given)
        ctx.scale, ctx.dropout_p, ctx.bwd, ctx.causal, ctx.seed = scale, dropout_p, bwd, causal, seed
        # the shapes and dtypes a learned bias or float mask takes its gradient in
        ctx.learned = [(t.shape, t.dtype) if want else None for t, want in ((bias, ctx.needs_input_grad[3]), (mask, ctx.needs_input_grad[4]))]
        ctx.learned_inputs = [(t, _version(t)) if want else None for t, want in ((bias, ctx.needs_input_grad[3]), (mask, ctx.needs_input_grad[4]))]
        _dispatch.CALLS[KERNEL.name] += 1
        return out

    @staticmethod
    def _second_order(ctx, dout):
        saved = ctx.saved_tensors
        q, k, v = saved[-3:]
        # the masks' values as the kernel read them; a learned one as given, for its history
        bias, mask, keep = saved[6:9]
        keep = None if keep is None else keep.view(torch.bool)
        learned = []
        for i, held in enumerate(ctx.learned_inputs):
            if held is None:
                learned.append(None)
                continue
            t, version = held
            if _version(t) != version:
                raise RuntimeError("attention: a learned bias or mask was modified in place after the forward; a backward with "
                                   "create_graph needs its values as the forward read them")
            learned.append(t)
        bias, mask = (t if t is not None else m for t, m in zip(learned, (bias, mask)))
        dropped = None
        if ctx.dropout_p > 0:
            B, H, L, _ = q.shape
            dropped = dropout_keep(ctx.seed, B, H, L, k.size(2), ctx.dropout_p)

        def attend(q, k, v, bias, mask):
            return reference(q, k, v, ctx.scale, bias, mask, keep, ctx.causal, dropped, ctx.dropout_p)

        grads = reference_grads(attend, (q, k, v, bias, mask), ctx.needs_input_grad[:5], (dout,))
        return (*grads, None, None, None, None, None, None, None)

    @staticmethod
    @differentiable_backward(_second_order.__func__)
    def backward(ctx, dout):
        q, k, v, out, lse, meta, *masks = ctx.saved_tensors[:-3]
        B, H, L, D = q.shape
        S = k.size(2)
        dout = dout.to(q.dtype).contiguous()
        delta = (dout.float() * out.float()).sum(-1)
        groups = _groups(B, H, S)
        dq = torch.empty(groups, B, H, L, -(-D // DQ_PAD) * DQ_PAD, dtype=torch.float32)  # zeroed by the kernel
        dk = torch.empty(B, H, S, D, dtype=torch.float32)
        dv = torch.empty(B, H, S, v.size(3), dtype=torch.float32)
        # every score's gradient, written by the kernel where a bias or mask is learned
        dscores = torch.empty(B, H, L, S, dtype=torch.float32) if any(ctx.learned) else None
        ctx.bwd(_dispatch.ptr(q), _dispatch.ptr(k), _dispatch.ptr(v), *(_dispatch.ptr(t) for t in masks), _dispatch.ptr(dout),
                _dispatch.ptr(lse), _dispatch.ptr(delta), _dispatch.ptr(dq), _dispatch.ptr(dk), _dispatch.ptr(dv), _dispatch.ptr(dscores),
                _dispatch.ptr(meta), _dispatch.f32(ctx.scale), _dispatch.f32(ctx.dropout_p), _dispatch.i64(groups), _dispatch.threads())
        dq = (dq[0] if groups == 1 else dq.sum(0))[..., :D].to(q.dtype)
        learned = tuple(None if want is None else dscores.sum_to_size(want[0]).to(want[1]) for want in ctx.learned)
        return (dq, dk.sum_to_size(k.shape).to(k.dtype), dv.sum_to_size(v.shape).to(v.dtype)) + learned + (None,) * 7


def flash_attention(q, k, v, scale=None, bias=None, mask=None, keep=None, is_causal=False, dropout_p=0.0, schedule=None, seed=None):
    """The compiled attention of 4-D (batch, heads, length, head_dim) tensors, or None when it
    cannot run here (the caller runs the original).

    ``scale`` None means ``1 / sqrt(head_dim)``; ``bias`` and a float ``mask`` are added to the
    scaled scores in that order; a boolean ``mask`` or ``keep`` keeps where True; ``is_causal``
    masks bottom-right aligned; ``dropout_p`` > 0 drops probabilities (the caller decides whether
    it is training), from a mask drawn with ``seed`` (None: one draw of torch's generator). A row
    with every key masked gives NaN, as eager softmax does. CUDA tensors (float16 too) run the
    Triton kernel (``gpu/flash_attention.py``), whose dropout mask is Philox's, not the hash's."""
    if _dispatch.on_gpu(q, k, v):
        if not _fits(q, k, v, bias, mask, keep, dropout_p, GPU_FLOATS) or max(q.size(-1), v.size(-1)) > GPU_MAX_HEAD_DIM:
            return None
        fn = _dispatch.gpu_function(KERNEL, "flash_attention", q.dtype, _workload(q, k), schedule)
        return None if fn is None else fn(q, k, v, scale, bias, mask, keep, bool(is_causal), float(dropout_p), seed)
    if not supported(q, k, v, bias, mask, keep, dropout_p):
        return None
    workload = _workload(q, k)
    # a call with dropout takes the training floor whatever the grad mode (_dispatch.cpu_floor)
    drops = True if dropout_p > 0 else None
    fwd = _dispatch.function(KERNEL, "attn_fwd", q.dtype, workload, schedule, training=drops)
    bwd = _dispatch.function(KERNEL, "attn_bwd", q.dtype, workload, schedule, training=drops)
    if fwd is None or bwd is None:
        return None
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else float(scale)
    return FlashAttentionFunction.apply(q, k, v, bias, mask, keep, scale, bool(is_causal), float(dropout_p), seed, fwd, bwd)


def one_query_row(workload):
    """One query row (a decoded token) has nothing a fusion removes: its keys and values stream
    once either way and its scores are one row. In a decoding model they come from memory, not
    cache, and the compiled call measured level with eager at one thread and 6-12% slower at two
    (docs/kernels.md), so without autograd torch takes it at any length."""
    return "of one query row (a decoded token)" if workload["q_len"] == 1 else None


GPU_FLOATS = (torch.float32, torch.bfloat16, torch.float16)
# past it a program's accumulators spill and float32 tiles outgrow shared memory: SDPA serves
GPU_MAX_HEAD_DIM = 128


def _workload(q, k):
    return {"batch": q.size(0), "heads": q.size(1), "q_len": q.size(2), "k_len": k.size(2), "head_dim": q.size(3)}


def _case_inputs(workload, seed, device):
    dtype = TORCH_DTYPE[workload["dtype"]]
    g = torch.Generator().manual_seed(seed)
    B, H, L, S, D = (workload[f] for f in ("batch", "heads", "q_len", "k_len", "head_dim"))
    q, k, v, dout = (torch.randn(B, H, n, D, generator=g).to(device, dtype) for n in (L, S, S, L))
    kind = workload.get("mask", "padding")
    bias = mask = keep = None
    if kind == "padding":  # as BERT-style models build it: the batch's last keys masked with the minimum
        mask = torch.zeros(B, 1, 1, S, dtype=dtype)
        mask[..., S - S // 8:] = torch.finfo(dtype).min
    elif kind == "bool":  # a keep-mask of every score; each row keeps its last key
        mask = torch.rand(B, H, L, S, generator=g) > 0.3
        mask[..., -1] = True
    elif kind == "bias+keep+causal":  # ALiBi-like bias per head, keys kept for every query, the first always
        bias = torch.randn(H, L, S, generator=g).to(dtype)
        keep = torch.rand(1, 1, 1, S, generator=g) > 0.1
        keep[..., 0] = True
    elif kind == "learned":  # T5's position bias: one per head, learned, heads innermost as its embedding leaves it
        mask = torch.randn(L, S, H, generator=g).to(dtype).permute(2, 0, 1).unsqueeze(0)
    elif kind not in ("causal", "none"):
        raise ValueError(f"unknown mask kind {kind!r}")
    masks = tuple(None if t is None else t.to(device) for t in (bias, mask, keep))
    return (q, k, v) + masks + ("causal" in kind, dout)


def make_case(workload, seed=0, device="cpu"):
    """Inputs on ``device``; ``run(schedule)`` is the compiled attention forward and backward,
    ``eager`` the torch composite; ``check`` compares with float64, one head at a time.

    The masks are a padding mask unless the workload's ``mask`` says otherwise ("bool",
    "bias+keep+causal", "causal", "none", or "learned": T5's position bias, which takes a
    gradient); its ``dropout`` (Triton kernel only) drops with a fixed seed, whose mask the
    reference gets from the kernel's own draw (``dropout_keep``)."""
    q, k, v, bias, mask, keep, causal, dout = _case_inputs(workload, seed, device)
    scale = 1.0 / math.sqrt(q.size(-1))
    p = workload.get("dropout", 0.0)
    drop_seed = 1000 + seed
    kept = None
    if p > 0:
        if not _dispatch.on_gpu(q):
            raise ValueError("dropout cases run the Triton kernel (a CUDA device or Triton's interpreter)")
        from .. import gpu  # through gpu.module: the interpreter's setup comes with it

        kept = gpu.module(KERNEL).dropout_keep(drop_seed, q.size(0), q.size(1), q.size(2), k.size(2), p, device)

    learned = workload.get("mask") == "learned"

    def forward_backward(fn, backward):
        ql, kl, vl = (t.detach().requires_grad_(backward) for t in (q, k, v))
        # a learned mask takes its gradient too: a fresh leaf each run, in the layout it came in
        ml = mask.detach().requires_grad_(backward) if learned else mask
        out = fn(ql, kl, vl, ml)
        if not backward:
            return (out,)
        out.backward(dout)
        return out, ql.grad, kl.grad, vl.grad

    def run(schedule, backward=True):
        return forward_backward(lambda q, k, v, m: flash_attention(q, k, v, scale, bias, m, keep, causal, p, schedule=schedule, seed=drop_seed),
                                backward)

    def eager(backward=True):
        return forward_backward(lambda q, k, v, m: reference(q, k, v, scale, bias, m, keep, causal, kept, p), backward)

    def check(outputs):
        shape = (q.size(0), q.size(1), q.size(2), k.size(2))
        for b, h in ((b, h) for b in range(q.size(0)) for h in range(q.size(1))):
            ql, kl, vl = (t[b:b + 1, h:h + 1].double().requires_grad_(True) for t in (q, k, v))
            one = [None if t is None else t.expand(shape)[b:b + 1, h:h + 1] for t in (bias, mask, keep, kept)]
            one = [t.double() if t is not None and t.is_floating_point() else t for t in one]
            out = reference(ql, kl, vl, scale, *one[:3], causal, one[3], p)
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
    size_axes=("q_len", "k_len"),
    inference_to_torch=one_query_row,
    # bench:crossover, 2 threads, this machine: forward faster from 1.5 MiB (12 heads x 128 x 64), forward + backward from 768 KiB
    cpu_min_bytes=CpuFloors(inference=3 << 19, training=3 << 18),
    render=_render,
    reference=reference,
    make_case=make_case,
    # what a fused forward must move: q, k, v, the output and the padding mask
    bytes_moved=lambda w: (2 * w["batch"] * w["heads"] * w["head_dim"] * (w["q_len"] + w["k_len"]) + w["batch"] * w["k_len"])
    * (4 if w["dtype"] == "float32" else 2),
    example_workloads=tuple(
        {"batch": b, "heads": h, "q_len": n, "k_len": n, "head_dim": d, "dtype": "float32"}
        for b, h, n, d in ((1, 12, 1024, 64), (2, 12, 2048, 64), (4, 12, 1024, 64), (1, 16, 2048, 80), (1, 12, 4096, 64))
    ),
    # quadratic work, not bytes: the Triton kernel won in training (dropout fused) at every size measured
    gpu_min_bytes=0,
    cuda_space=Space(
        params={"block_m": (32, 64, 128), "block_n": (32, 64, 128), "num_warps": (2, 4, 8), "num_stages": (2, 3),
                "bwd_block": (64, 128), "bwd_step": (16, 32), "bwd_warps": (4, 8)},
        default={"block_m": 64, "block_n": 64, "num_warps": 4, "num_stages": 2, "bwd_block": 64, "bwd_step": 32, "bwd_warps": 4},
        constraints=(
            # sixteen rows a warp; a key step no wider than the query block nor under half of it
            "block_m == 16 * num_warps", "block_n <= block_m", "2 * block_n >= block_m", "bwd_block == 16 * bwd_warps",
            # 16-bit shared memory within 192 KiB for the head dimension padded to 64 or 128: the
            # query block and the pipelined key and value steps, the held keys and values and the
            # pipelined query and gradient steps (a float32 schedule past it falls back to the default)
            "64 * ((head_dim + 63) // 64) * (block_m + 2 * num_stages * block_n) <= 98304",
            "64 * ((head_dim + 63) // 64) * (2 * bwd_block + 2 * num_stages * bwd_step) <= 98304",
            # 128 x 128 score tiles three stages deep ran out of shared memory on an H200 at head
            # dim 64 (the tiles' own buffers, which the line above does not count)
            "block_n * num_stages <= 256",
        ),
    ),
))
