"""Dropout + residual add + LayerNorm in Triton: ``layer_norm(dropout(x) + residual)`` over the
last dimension, forward and backward, a whole row in registers.

The forward reads ``x`` and ``residual`` once and writes the normalised row once; the sum
lives only in registers, rounded to the input dtype where eager code materialises it (the
dropped ``x``, the sum). The dropout mask comes from Philox-4x32-10 keyed by a 64-bit seed,
sixteen bits a column (``_philox.py``), row ``r``'s counters starting at ``r * ceil(n / 8)``, so
the backward (and :func:`keep_factors`, which checks use) regenerates the mask from the seed
instead of storing it. The half-words go back into column order with ``tl.join``; where a
Triton cannot compile that, every column runs its counter's Philox itself, which draws the same
words. Besides the inputs only each row's mean and reciprocal deviation are saved.

The backward regenerates the normalised row, writes the gradient of the sum to ``residual``
and through the mask to ``x`` (one tensor for both without dropout), and sums the weight's and
bias's gradients in per-program partial rows, added up at the end.

Schedule (``cuda_space`` of the kernel): ``rows`` rows per program in the forward,
``bwd_rows`` rows per program in the backward, ``num_warps`` per program (the backward takes
more for wide rows, see ``BWD_COLUMNS_PER_WARP``).
"""

import torch
import triton
import triton.language as tl

from .. import _dispatch
from ..kernels._common import saveable, threshold16
from ._philox import kept16, launch
from . import first_order

# the seed changes at every call, the row count often: one compiled kernel serves them all
_GENERIC = ("rows", "seed", "thr")

# The backward keeps about six float32 values of each column live (the normalised row, the
# upstream gradient, the weight, the gradient under way, the two partial sums): it runs at least
# one warp per 256 columns, eight values a thread, whatever the forward's num_warps (measured
# with ptxas for sm_90: 4096 columns on 8 warps use 255 registers, 8192 on 16 spill 2 KiB)
BWD_COLUMNS_PER_WARP = 256


@triton.jit
def _keep(seed, r, n, thr, scale, R: tl.constexpr, BLOCK: tl.constexpr, JOIN: tl.constexpr):
    # the keep factors (0 or scale) of rows r [R, 1], columns 0 .. BLOCK - 1
    return tl.where(kept16(seed, r * ((n + 7) // 8), 0, thr, R, BLOCK, JOIN), scale, 0.0)


@triton.jit
def _sum(X, RES, r, cols, rows, n, seed, thr, scale, DROP: tl.constexpr, R: tl.constexpr, BLOCK: tl.constexpr,
         JOIN: tl.constexpr):
    # h = dropout(x) + residual in float32, rounded as eager code rounds it; 0 outside the rows
    inside = (r < rows) & (cols < n)
    x = tl.load(X + r * n + cols, mask=inside, other=0.0).to(tl.float32)
    keep = x
    if DROP:
        keep = _keep(seed, r, n, thr, scale, R, BLOCK, JOIN)
        x = (x * keep).to(X.dtype.element_ty).to(tl.float32)
    res = tl.load(RES + r * n + cols, mask=inside, other=0.0).to(tl.float32)
    return (x + res).to(X.dtype.element_ty).to(tl.float32), keep, inside


@triton.jit(do_not_specialize=_GENERIC)
def _fwd(X, RES, W, B, Y, STATS, rows, n, eps, seed, thr, scale, DROP: tl.constexpr, HAS_W: tl.constexpr,
         HAS_B: tl.constexpr, R: tl.constexpr, BLOCK: tl.constexpr, JOIN: tl.constexpr):
    r = (tl.program_id(0).to(tl.int64) * R + tl.arange(0, R))[:, None]
    cols = tl.arange(0, BLOCK)[None, :]
    h, _unused, inside = _sum(X, RES, r, cols, rows, n, seed, thr, scale, DROP, R, BLOCK, JOIN)
    mean = tl.sum(h, axis=1) / n
    # two passes over registers: the deviations, then their squares, free of cancellation
    d = tl.where(inside, h - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(d * d, axis=1) / n + eps)
    y = d * rstd[:, None]
    if HAS_W:
        y = y * tl.load(W + cols, mask=cols < n, other=0.0).to(tl.float32)
    if HAS_B:
        y = y + tl.load(B + cols, mask=cols < n, other=0.0).to(tl.float32)
    tl.store(Y + r * n + cols, y.to(Y.dtype.element_ty), mask=inside)
    tl.store(STATS + r, mean[:, None], mask=r < rows)
    tl.store(STATS + rows + r, rstd[:, None], mask=r < rows)


@triton.jit(do_not_specialize=_GENERIC)
def _bwd(X, RES, W, DY, STATS, DX, DRES, DW, DB, rows, n, seed, thr, scale, DROP: tl.constexpr,
         HAS_W: tl.constexpr, WANT_DW: tl.constexpr, WANT_DB: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
         JOIN: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)[None, :]
    if HAS_W:
        w = tl.load(W + cols, mask=cols < n, other=0.0).to(tl.float32)
    dw = tl.zeros((1, BLOCK), dtype=tl.float32)
    db = tl.zeros((1, BLOCK), dtype=tl.float32)
    for i in range(ROWS):
        row = pid * ROWS + i
        if row < rows:
            r = row + tl.zeros((1, 1), dtype=tl.int64)
            h, keep, inside = _sum(X, RES, r, cols, rows, n, seed, thr, scale, DROP, 1, BLOCK, JOIN)
            rstd = tl.load(STATS + rows + r)
            xh = tl.where(inside, (h - tl.load(STATS + r)) * rstd, 0.0)
            dy = tl.load(DY + r * n + cols, mask=inside, other=0.0).to(tl.float32)
            g = dy * w if HAS_W else dy
            a = tl.sum(g, axis=1)[:, None] / n
            c = tl.sum(g * xh, axis=1)[:, None] / n
            dh = (rstd * (g - a - xh * c)).to(DX.dtype.element_ty)
            if DROP:
                tl.store(DRES + r * n + cols, dh, mask=inside)
                dh = (dh.to(tl.float32) * keep).to(DX.dtype.element_ty)
            tl.store(DX + r * n + cols, dh, mask=inside)
            if WANT_DW:
                dw += dy * xh
            if WANT_DB:
                db += dy
    if WANT_DW:
        tl.store(DW + pid * n + cols, dw, mask=cols < n)
    if WANT_DB:
        tl.store(DB + pid * n + cols, db, mask=cols < n)


@triton.jit(do_not_specialize=("seed", "thr"))
def _keep_rows(OUT, n, seed, thr, scale, BLOCK: tl.constexpr, JOIN: tl.constexpr):
    r = tl.program_id(0).to(tl.int64) + tl.zeros((1, 1), dtype=tl.int64)
    cols = tl.arange(0, BLOCK)[None, :]
    tl.store(OUT + r * n + cols, _keep(seed, r, n, thr, scale, 1, BLOCK, JOIN), mask=cols < n)


def _block(n):
    # at least two Philox calls' eight half-words
    return max(16, triton.next_power_of_2(n))


class _DropoutAddLayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, residual, weight, bias, eps, p, seed, schedule):
        n = x.size(-1)
        x2, r2 = x.contiguous().view(-1, n), residual.contiguous().view(-1, n)
        rows = x2.size(0)
        w = weight.detach().contiguous() if weight is not None else None
        b = bias.detach().contiguous() if bias is not None else None
        thr = threshold16(p)
        scale = 1.0 / (1.0 - p)
        y = torch.empty_like(x2)
        # each row's mean, then each row's reciprocal deviation
        stats = torch.empty(2, rows, dtype=torch.float32, device=x.device)
        per = schedule["rows"]
        launch(_fwd, (triton.cdiv(rows, per),), x2, r2, x2 if w is None else w, x2 if b is None else b, y, stats,
                rows, n, eps, seed, thr, scale, DROP=p > 0, HAS_W=w is not None, HAS_B=b is not None, R=per,
                BLOCK=_block(n), num_warps=schedule["num_warps"])
        # views made here are saved detached: non-reentrant checkpointing cannot unpack them
        ctx.save_for_backward(saveable(x2, x), saveable(r2, residual), saveable(w, weight), stats)
        ctx.dropout, ctx.schedule, ctx.shape = (seed, thr, scale, p > 0), schedule, x.shape
        return y.view(x.shape)

    @staticmethod
    @first_order("dropout_add_layer_norm")
    def backward(ctx, dy):
        x2, r2, w, stats = ctx.saved_tensors
        rows, n = x2.shape
        seed, thr, scale, drop = ctx.dropout
        dx = torch.empty_like(x2)
        # without dropout both inputs get the same gradient, as the eager add's backward gives
        dres = torch.empty_like(x2) if drop else dx
        per = ctx.schedule["bwd_rows"]
        programs = triton.cdiv(rows, per)
        want_dw, want_db = ctx.needs_input_grad[2], ctx.needs_input_grad[3]
        dw = torch.empty(programs, n, dtype=torch.float32, device=x2.device) if want_dw else stats
        db = torch.empty(programs, n, dtype=torch.float32, device=x2.device) if want_db else stats
        dy2 = dy.to(x2.dtype).contiguous().view(-1, n)
        launch(_bwd, (programs,), x2, r2, x2 if w is None else w, dy2, stats, dx, dres, dw, db, rows, n, seed, thr, scale,
                DROP=drop, HAS_W=w is not None, WANT_DW=want_dw, WANT_DB=want_db, ROWS=per,
                BLOCK=_block(n), num_warps=max(ctx.schedule["num_warps"], min(32, _block(n) // BWD_COLUMNS_PER_WARP)))
        dw = dw.sum(0).to(x2.dtype) if want_dw else None
        db = db.sum(0).to(x2.dtype) if want_db else None
        # without dropout the one tensor goes to both inputs, as the eager add's backward hands it:
        # two views of one buffer would each become a leaf's .grad, sharing memory
        gx = dx.view(ctx.shape)
        return gx, gx if dres is dx else dres.view(ctx.shape), dw, db, None, None, None, None


def dropout_add_layer_norm(x, residual, weight, bias, eps, p=0.0, seed=0, *, schedule):
    return _DropoutAddLayerNorm.apply(x, residual, weight, bias, float(eps), float(p), int(seed), schedule)


def keep_factors(rows, n, p, seed, device):
    """The (rows, n) float32 keep factors (0 or ``1 / (1 - p)``) the kernels apply for ``p`` and
    ``seed``, on ``device``."""
    out = torch.empty(rows, n, dtype=torch.float32, device=device)
    launch(_keep_rows, (rows,), out, n, int(seed), threshold16(p), 1.0 / (1.0 - p), BLOCK=_block(n))
    return out


# the functions the kernel module routes CUDA tensors to
ENTRIES = ("dropout_add_layer_norm",)

# small odd shapes for the kernel tests (the interpreter runs them on a CPU)
TEST_WORKLOADS = (
    {"rows": 11, "n": 90, "dtype": "float32"},
    {"rows": 6, "n": 61, "dtype": "bfloat16"},
)
