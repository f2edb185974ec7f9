"""The backward of the Triton attention (``flash_attention.py``), without atomics.

Three launches: ``delta = rowsum(dO * O)`` per query row; then per (batch, head, block of keys)
the probabilities recomputed from the saved log-sum-exp for each block of queries, accumulating
``dV += P^T dO`` and ``dK += dS^T Q`` in registers, ``dS = P * (dP - delta)``; then per (batch,
head, block of queries) the same probabilities again for ``dQ += dS K``. Recomputing the scores
twice buys a deterministic dQ with no float32 atomics and no partial sums to add. Dropout's mask
is regenerated from the seed; keys and values shared by the batch or the heads get their
gradients per (batch, head) in float32, summed after.
"""

import torch
import triton
import triton.language as tl

from .flash_attention import LOG2E, _dropped, _masked, _op


@triton.jit
def _delta(O, DO, DELTA, sdb, sdh, sdm, H, L, DV, BLOCK: tl.constexpr, BLOCK_DV: tl.constexpr):
    bh = tl.program_id(1).to(tl.int64)
    rows = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    dv = tl.arange(0, BLOCK_DV)
    inside = (rows < L)[:, None] & (dv < DV)[None, :]
    o = tl.load(O + (bh * L + rows)[:, None] * DV + dv[None, :], mask=inside, other=0.0).to(tl.float32)
    do = tl.load(DO + (bh // H) * sdb + (bh % H) * sdh + rows[:, None] * sdm + dv[None, :], mask=inside, other=0.0).to(tl.float32)
    tl.store(DELTA + bh * L + rows, tl.sum(o * do, 1), mask=rows < L)


@triton.jit(do_not_specialize=["seed"])
def _dkdv(Q, K, V, BIAS, ADD, KEEP, DO, LSE, DELTA, DK, DVAL,
          sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sdb, sdh, sdm,
          sbb, sbh, sbm, sbn, sab, sah, sam, san, spb, sph, spm, spn,
          H, L, S, D, DV, scale, p_drop, seed,
          HAS_BIAS: tl.constexpr, HAS_ADD: tl.constexpr, HAS_KEEP: tl.constexpr, CAUSAL: tl.constexpr,
          DROPOUT: tl.constexpr, F32: tl.constexpr, PREC: tl.constexpr,
          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    # scores are held transposed, keys by queries: the products then need no transposed result
    pid_n = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    cols64 = cols.to(tl.int64)
    d = tl.arange(0, BLOCK_D)
    dv = tl.arange(0, BLOCK_DV)
    k = tl.load(K + b * skb + h * skh + cols64[:, None] * skn + d[None, :], mask=(cols < S)[:, None] & (d < D)[None, :], other=0.0)
    v = tl.load(V + b * svb + h * svh + cols64[:, None] * svn + dv[None, :], mask=(cols < S)[:, None] & (dv < DV)[None, :], other=0.0)
    k = _op(k, K, F32)
    v = _op(v, V, F32)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dval = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
    lo = 0
    if CAUSAL:  # query rows before the first that sees this key block see none of it
        lo = tl.maximum(0, pid_n * BLOCK_N - (S - L)) // BLOCK_M * BLOCK_M
    for start in range(lo, L, BLOCK_M):
        rows = start + tl.arange(0, BLOCK_M)
        rows64 = rows.to(tl.int64)
        qt = tl.load(Q + b * sqb + h * sqh + rows64[None, :] * sqm + d[:, None], mask=(rows < L)[None, :] & (d < D)[:, None], other=0.0)
        qt = _op(qt, Q, F32)
        st = tl.dot(k, qt, input_precision=PREC)
        st = _masked(st, rows[None, :], cols[:, None], L, S, scale,
                     BIAS, (b * sbb + h * sbh + rows64 * sbm)[None, :], sbn, ADD, (b * sab + h * sah + rows64 * sam)[None, :], san,
                     KEEP, (b * spb + h * sph + rows64 * spm)[None, :], spn, HAS_BIAS, HAS_ADD, HAS_KEEP, CAUSAL)
        # rows past the end read an infinite log-sum-exp: probability 0
        lse = tl.load(LSE + bh * L + rows64, mask=rows < L, other=float("inf"))
        delta = tl.load(DELTA + bh * L + rows64, mask=rows < L, other=0.0)
        pt = tl.exp2((st - lse[None, :]) * LOG2E)
        do = tl.load(DO + b * sdb + h * sdh + rows64[:, None] * sdm + dv[None, :], mask=(rows < L)[:, None] & (dv < DV)[None, :], other=0.0)
        do = _op(do, DO, F32)
        dpt = tl.dot(v, tl.trans(do), input_precision=PREC)
        if DROPOUT:
            dval = tl.dot(_op(_dropped(pt, seed, bh, rows[None, :], cols[:, None], L, S, p_drop), V, F32), do, dval, input_precision=PREC)
            dpt = _dropped(dpt, seed, bh, rows[None, :], cols[:, None], L, S, p_drop)
        else:
            dval = tl.dot(_op(pt, V, F32), do, dval, input_precision=PREC)
        dst = pt * (dpt - delta[None, :])
        dk = tl.dot(_op(dst, Q, F32), tl.trans(qt), dk, input_precision=PREC)
    out = (bh * S + cols64)[:, None]
    tl.store(DK + out * D + d[None, :], (dk * scale).to(DK.dtype.element_ty), mask=(cols < S)[:, None] & (d < D)[None, :])
    tl.store(DVAL + out * DV + dv[None, :], dval.to(DVAL.dtype.element_ty), mask=(cols < S)[:, None] & (dv < DV)[None, :])


@triton.jit(do_not_specialize=["seed"])
def _dq(Q, K, V, BIAS, ADD, KEEP, DO, LSE, DELTA, DQ,
        sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sdb, sdh, sdm,
        sbb, sbh, sbm, sbn, sab, sah, sam, san, spb, sph, spm, spn,
        H, L, S, D, DV, scale, p_drop, seed,
        HAS_BIAS: tl.constexpr, HAS_ADD: tl.constexpr, HAS_KEEP: tl.constexpr, CAUSAL: tl.constexpr,
        DROPOUT: tl.constexpr, F32: tl.constexpr, PREC: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rows64 = rows.to(tl.int64)
    d = tl.arange(0, BLOCK_D)
    dv = tl.arange(0, BLOCK_DV)
    q = tl.load(Q + b * sqb + h * sqh + rows64[:, None] * sqm + d[None, :], mask=(rows < L)[:, None] & (d < D)[None, :], other=0.0)
    do = tl.load(DO + b * sdb + h * sdh + rows64[:, None] * sdm + dv[None, :], mask=(rows < L)[:, None] & (dv < DV)[None, :], other=0.0)
    q = _op(q, Q, F32)
    do = _op(do, DO, F32)
    lse = tl.load(LSE + bh * L + rows64, mask=rows < L, other=float("inf"))
    delta = tl.load(DELTA + bh * L + rows64, mask=rows < L, other=0.0)
    bias_row = (b * sbb + h * sbh + rows64 * sbm)[:, None]
    add_row = (b * sab + h * sah + rows64 * sam)[:, None]
    keep_row = (b * spb + h * sph + rows64 * spm)[:, None]
    k_base = K + b * skb + h * skh
    v_base = V + b * svb + h * svh
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    hi = S
    if CAUSAL:
        hi = tl.minimum(S, (pid_m + 1) * BLOCK_M + S - L)
    for start in range(0, hi, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        cols64 = cols.to(tl.int64)
        kt = tl.load(k_base + cols64[None, :] * skn + d[:, None], mask=(cols < S)[None, :] & (d < D)[:, None], other=0.0)
        vt = tl.load(v_base + cols64[None, :] * svn + dv[:, None], mask=(cols < S)[None, :] & (dv < DV)[:, None], other=0.0)
        kt = _op(kt, K, F32)
        s = tl.dot(q, kt, input_precision=PREC)
        s = _masked(s, rows[:, None], cols[None, :], L, S, scale, BIAS, bias_row, sbn, ADD, add_row, san, KEEP, keep_row, spn,
                    HAS_BIAS, HAS_ADD, HAS_KEEP, CAUSAL)
        p = tl.exp2((s - lse[:, None]) * LOG2E)
        dp = tl.dot(do, _op(vt, V, F32), input_precision=PREC)
        if DROPOUT:
            dp = _dropped(dp, seed, bh, rows[:, None], cols[None, :], L, S, p_drop)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(_op(ds, K, F32), tl.trans(kt), dq, input_precision=PREC)
    tl.store(DQ + (bh * L + rows64)[:, None] * D + d[None, :], (dq * scale).to(DQ.dtype.element_ty), mask=(rows < L)[:, None] & (d < D)[None, :])


def _grads(run, out, lse, dout, schedule):
    q, k, v = run.q, run.k, run.v
    B, H, L, S, D, DV = run.B, run.H, run.L, run.S, run.D, run.DV
    flags = run.flags()
    delta = torch.empty_like(lse)
    _delta[(triton.cdiv(L, 64), B * H)](out, dout, delta, *dout.stride()[:3], H, L, DV, BLOCK=64, BLOCK_DV=flags["BLOCK_DV"])
    # keys and values shared across the batch or heads: per (batch, head) in float32, summed below
    dk = torch.empty(B, H, S, D, dtype=k.dtype if k.shape == (B, H, S, D) else torch.float32, device=q.device)
    dv = torch.empty(B, H, S, DV, dtype=v.dtype if v.shape == (B, H, S, DV) else torch.float32, device=q.device)
    dq = torch.empty(B, H, L, D, dtype=q.dtype, device=q.device)
    masks, strides = run.mask_args()[:3], run.mask_args()[3:]
    common = [*q.stride()[:3], *run.kstrides, *run.vstrides, *dout.stride()[:3], *strides, *run.sizes()]
    held, step = schedule["bwd_block"], schedule["bwd_step"]
    launch = dict(flags, num_warps=schedule["bwd_warps"], num_stages=schedule["num_stages"])
    _dkdv[(triton.cdiv(S, held), B * H)](q, k, v, *masks, dout, lse, delta, dk, dv, *common, BLOCK_M=step, BLOCK_N=held, **launch)
    _dq[(triton.cdiv(L, held), B * H)](q, k, v, *masks, dout, lse, delta, dq, *common, BLOCK_M=held, BLOCK_N=step, **launch)
    return dq, dk.sum_to_size(k.shape).to(k.dtype), dv.sum_to_size(v.shape).to(v.dtype)


def backward(run, out, lse, dout, schedule):
    """dQ, dK and dV; a schedule the device cannot take (shared memory, say) falls back to the
    default, as ``_dispatch.gpu_function`` does for the forward."""
    from .. import _dispatch, registry
    from ..kernels.flash_attention import _unit_last

    dout = _unit_last(dout.to(run.q.dtype))
    default = registry.KERNELS["flash_attention"].cuda_space.default
    try:
        return _grads(run, out, lse, dout, schedule)
    except Exception as e:  # noqa: BLE001 (re-raised unless it is a resource error)
        if schedule == default or not _dispatch._is_resource_error(e):
            raise
        _dispatch.say_once(("gpu-schedule-bwd", tuple(sorted(schedule.items()))),
                           f"flash_attention backward schedule {schedule} cannot run on this device ({type(e).__name__}); using the default")
        return _grads(run, out, lse, dout, dict(default))
