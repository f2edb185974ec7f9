"""The backward of the Triton attention (``flash_attention.py``), without atomics.

Three launches: ``delta = rowsum(dO * O)`` per query row; then per (batch, head, block of keys)
the probabilities recomputed from the saved log-sum-exp for each block of queries, accumulating
``dV += P^T dO`` and ``dK += dS^T Q`` in registers, ``dS = P * (dP - delta)``; then (the same
kernel's dQ pass) per (batch, head, block of queries) the same probabilities again for
``dQ += dS K``, writing ``dS`` itself where a bias or mask takes a gradient (T5's learned position
bias: summed to its shape after). Recomputing the scores
twice buys a deterministic dQ with no float32 atomics and no partial sums to add. Dropout's mask
is regenerated from the seed; keys and values shared by the batch or the heads get their
gradients per (batch, head) in float32, summed after.
"""

import torch
import triton
import triton.language as tl

from ._philox import launch
from .flash_attention import COMPILED_FLAGS  # noqa: F401  (for compile_check: the kernels here take F32 too)
from .flash_attention import LOG2E, _dropped, _kept, _key_end, _mask_rows, _masked, _op, _program, _tile


@triton.jit
def _delta(O, DO, DELTA, sdb, sdh, sdm, H, L, DV, BLOCK: tl.constexpr, BLOCK_DV: tl.constexpr):
    bh = tl.program_id(1).to(tl.int64)
    rows = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    dv = tl.arange(0, BLOCK_DV)
    inside = (rows < L)[:, None] & (dv < DV)[None, :]
    o = tl.load(O + (bh * L + rows)[:, None] * DV + dv[None, :], mask=inside, other=0.0).to(tl.float32)
    do = tl.load(DO + (bh // H) * sdb + (bh % H) * sdh + rows[:, None] * sdm + dv[None, :], mask=inside, other=0.0).to(tl.float32)
    tl.store(DELTA + bh * L + rows, tl.sum(o * do, 1), mask=rows < L)


@triton.jit(do_not_specialize=["thr", "seed"])
def _bwd(Q, K, V, MASKS, DO, LSE, DELTA, DK, DVAL, DQ, DSC, QS, KS, VS, DS, MS, H, L, S, D, DV, scale, p_drop, thr, seed,
         HAS_BIAS: tl.constexpr, HAS_ADD: tl.constexpr, HAS_KEEP: tl.constexpr, CAUSAL: tl.constexpr,
         DROPOUT: tl.constexpr, F32: tl.constexpr, PREC: tl.constexpr, JOIN: tl.constexpr, DQ_PASS: tl.constexpr, LEARNED: tl.constexpr,
         HELD: tl.constexpr, STEP: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    # a program holds HELD keys (dK and dV) or, in the dQ pass, HELD queries, and streams the other side STEP rows at a time
    bh, b, h, held, d, dv = _program(H, HELD, BLOCK_D, BLOCK_DV)
    held64 = held.to(tl.int64)
    if DQ_PASS:
        rows = held
        q = _tile(Q, QS, b, h, rows[:, None], L, d[None, :], D, F32)
        do = _tile(DO, DS, b, h, rows[:, None], L, dv[None, :], DV, F32)
        # rows past the end read an infinite maximum: probability 0
        lse = tl.load(LSE + bh * L + held64, mask=rows < L, other=float("inf"))
        logsum = tl.load(LSE + tl.num_programs(1).to(tl.int64) * L + bh * L + held64, mask=rows < L, other=0.0)
        delta = tl.load(DELTA + bh * L + held64, mask=rows < L, other=0.0)
        offsets = _mask_rows(MS, b, h, held64[:, None])
        dq = tl.zeros([HELD, BLOCK_D], tl.float32)
        for start in range(0, _key_end(L, S, HELD, CAUSAL), STEP):
            cols = start + tl.arange(0, STEP)
            kt = _tile(K, KS, b, h, cols[None, :], S, d[:, None], D, F32)
            s = _masked(tl.dot(q, kt, input_precision=PREC), rows[:, None], cols[None, :], L, S, scale, MASKS, offsets, MS,
                        HAS_BIAS, HAS_ADD, HAS_KEEP, CAUSAL)
            p = tl.exp2((s - lse[:, None]) * LOG2E) * tl.exp2(-logsum * LOG2E)[:, None]
            dp = tl.dot(do, _tile(V, VS, b, h, cols[None, :], S, dv[:, None], DV, F32), input_precision=PREC)
            if DROPOUT:
                dp = _dropped(dp, _kept(seed, bh, held64, start, L, S, thr, HELD, STEP, JOIN), p_drop)
            ds = p * (dp - delta[:, None])
            if LEARNED:  # the scores' gradient is the learned bias's and mask's: each written once, by its query block
                tl.store(DSC + (bh * L + held64)[:, None] * S + cols[None, :], ds, mask=(rows < L)[:, None] & (cols < S)[None, :])
            dq = tl.dot(_op(ds, K, F32), tl.trans(kt), dq, input_precision=PREC)
        tl.store(DQ + (bh * L + held64)[:, None] * D + d[None, :], (dq * scale).to(DQ.dtype.element_ty), mask=(rows < L)[:, None] & (d < D)[None, :])
    else:
        # scores are held transposed, keys by queries: the products then need no transposed result
        cols = held
        k = _tile(K, KS, b, h, cols[:, None], S, d[None, :], D, F32)
        v = _tile(V, VS, b, h, cols[:, None], S, dv[None, :], DV, F32)
        dk = tl.zeros([HELD, BLOCK_D], tl.float32)
        dval = tl.zeros([HELD, BLOCK_DV], tl.float32)
        lo = 0
        if CAUSAL:  # query rows before the first that sees this key block see none of it
            lo = tl.maximum(0, tl.program_id(0) * HELD - (S - L)) // STEP * STEP
        for start in range(lo, L, STEP):
            rows = start + tl.arange(0, STEP)
            rows64 = rows.to(tl.int64)
            qt = _tile(Q, QS, b, h, rows[None, :], L, d[:, None], D, F32)
            st = _masked(tl.dot(k, qt, input_precision=PREC), rows[None, :], cols[:, None], L, S, scale, MASKS,
                         _mask_rows(MS, b, h, rows64[None, :]), MS, HAS_BIAS, HAS_ADD, HAS_KEEP, CAUSAL)
            lse = tl.load(LSE + bh * L + rows64, mask=rows < L, other=float("inf"))
            logsum = tl.load(LSE + tl.num_programs(1).to(tl.int64) * L + bh * L + rows64, mask=rows < L, other=0.0)
            delta = tl.load(DELTA + bh * L + rows64, mask=rows < L, other=0.0)
            pt = tl.exp2((st - lse[None, :]) * LOG2E) * tl.exp2(-logsum * LOG2E)[None, :]
            do = _tile(DO, DS, b, h, rows[:, None], L, dv[None, :], DV, F32)
            dpt = tl.dot(v, tl.trans(do), input_precision=PREC)
            if DROPOUT:  # one draw serves the kept probabilities and their gradient
                kept = tl.trans(_kept(seed, bh, rows64, tl.program_id(0) * HELD, L, S, thr, STEP, HELD, JOIN))
                dval = tl.dot(_op(_dropped(pt, kept, p_drop), V, F32), do, dval, input_precision=PREC)
                dpt = _dropped(dpt, kept, p_drop)
            else:
                dval = tl.dot(_op(pt, V, F32), do, dval, input_precision=PREC)
            dk = tl.dot(_op(pt * (dpt - delta[None, :]), Q, F32), tl.trans(qt), dk, input_precision=PREC)
        out = (bh * S + held64)[:, None]
        tl.store(DK + out * D + d[None, :], (dk * scale).to(DK.dtype.element_ty), mask=(cols < S)[:, None] & (d < D)[None, :])
        tl.store(DVAL + out * DV + dv[None, :], dval.to(DVAL.dtype.element_ty), mask=(cols < S)[:, None] & (dv < DV)[None, :])


def _grads(run, out, lse, dout, schedule, learned):
    q, k, v = run.q, run.k, run.v
    B, H, L, S, D, DV = run.B, run.H, run.L, run.S, run.D, run.DV
    flags = run.flags()
    delta = torch.empty_like(lse[0])
    _delta[(triton.cdiv(L, 64), B * H)](out, dout, delta, *dout.stride()[:3], H, L, DV, BLOCK=64, BLOCK_DV=flags["BLOCK_DV"])
    # keys and values shared across the batch or heads: per (batch, head) in float32, summed below
    dk = torch.empty(B, H, S, D, dtype=k.dtype if k.shape == (B, H, S, D) else torch.float32, device=q.device)
    dv = torch.empty(B, H, S, DV, dtype=v.dtype if v.shape == (B, H, S, DV) else torch.float32, device=q.device)
    dq = torch.empty(B, H, L, D, dtype=q.dtype, device=q.device)
    # every score's gradient where a bias or mask is learned (B*H*L*S float32, as the CPU
    # kernel's); zeroed where causal query blocks never visit the keys past their limit
    alloc = torch.zeros if run.causal else torch.empty
    dscores = alloc(B, H, L, S, dtype=torch.float32, device=q.device) if any(learned) else q
    masks, mask_strides = run.mask_args()
    common = [*run.strides(), dout.stride()[:3], mask_strides, *run.sizes()]
    held, step = schedule["bwd_block"], schedule["bwd_step"]
    options = dict(flags, num_warps=schedule["bwd_warps"], num_stages=schedule["num_stages"])
    for dq_pass, n in ((False, S), (True, L)):
        # only the dQ pass writes the scores' gradient: the dK/dV pass keeps its one compiled variant
        launch(_bwd, (triton.cdiv(n, held), B * H), q, k, v, masks, dout, lse, delta, dk, dv, dq, dscores, *common,
               DQ_PASS=dq_pass, LEARNED=dq_pass and any(learned), HELD=held, STEP=step, **options)
    grads = tuple(None if want is None else dscores.sum_to_size(want[0]).to(want[1]) for want in learned)
    return (dq, dk.sum_to_size(k.shape).to(k.dtype), dv.sum_to_size(v.shape).to(v.dtype)) + grads


def backward(run, out, lse, dout, schedule, learned=(None, None)):
    """dQ, dK and dV, then the gradients of the bias and the float mask where ``learned`` gives
    the (shape, dtype) each takes it in (None: not learned); a schedule the device cannot take
    (shared memory, say) falls back to the default through the dispatcher, as the forward does."""
    from .. import _dispatch, registry
    from ..kernels.flash_attention import _unit_last

    dout = _unit_last(dout.to(run.q.dtype))
    return _dispatch.with_fallback(registry.KERNELS["flash_attention"], schedule, lambda s: _grads(run, out, lse, dout, s, learned))
