"""RMSNorm in Triton: one pass per row forward, the backward regenerating the normalised row
from the saved reciprocal (one float per row), the weight's gradient reduced in per-program
partial sums.

Schedule (``cuda_space`` of the kernel): ``rows`` rows per program in the forward, ``bwd_rows``
rows per program in the backward (the partial weight gradients it sums in registers),
``num_warps`` per program.
"""

import torch
import triton
import triton.language as tl

from ..kernels._common import saveable
from . import first_order


@triton.jit
def _fwd(X, W, Y, RSTD, rows, n, eps, offset, HAS_W: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    cols = tl.arange(0, BLOCK)
    cmask = cols < n
    if HAS_W:
        g = offset + tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
    for i in range(ROWS):
        r = tl.program_id(0) * ROWS + i
        if r < rows:
            x = tl.load(X + r * n + cols, mask=cmask, other=0.0).to(tl.float32)
            rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / n + eps)
            tl.store(RSTD + r, rstd)
            # the normalised value is rounded to the input dtype before the weight, as the original casts it
            h = (x * rstd).to(Y.dtype.element_ty).to(tl.float32)
            if HAS_W:
                h = h * g
            tl.store(Y + r * n + cols, h.to(Y.dtype.element_ty), mask=cmask)


@triton.jit
def _bwd(X, W, DY, RSTD, DX, DW, rows, n, offset, HAS_W: tl.constexpr, WANT_DW: tl.constexpr,
         ROWS: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    cmask = cols < n
    if HAS_W:
        g = offset + tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in range(ROWS):
        r = pid * ROWS + i
        if r < rows:
            x = tl.load(X + r * n + cols, mask=cmask, other=0.0).to(tl.float32)
            dy = tl.load(DY + r * n + cols, mask=cmask, other=0.0).to(tl.float32)
            rstd = tl.load(RSTD + r)
            xh = x * rstd
            gy = dy * g if HAS_W else dy
            m = tl.sum(gy * xh, axis=0) / n
            tl.store(DX + r * n + cols, (rstd * (gy - xh * m)).to(DX.dtype.element_ty), mask=cmask)
            if WANT_DW:
                dw += dy * xh
    if WANT_DW:
        tl.store(DW + pid * n + cols, dw, mask=cmask)


def _block(n):
    return triton.next_power_of_2(n)


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps, offset, schedule):
        x2 = x.contiguous().view(-1, x.size(-1))
        rows, n = x2.shape
        w = weight.contiguous() if weight is not None else None
        y = torch.empty_like(x2)
        rstd = torch.empty(rows, dtype=torch.float32, device=x.device)
        per = schedule["rows"]
        _fwd[(triton.cdiv(rows, per),)](x2, w if w is not None else x2, y, rstd, rows, n, eps, offset,
                                          HAS_W=w is not None, ROWS=per, BLOCK=_block(n), num_warps=schedule["num_warps"])
        # a view made here is saved detached: non-reentrant checkpointing cannot unpack it
        ctx.save_for_backward(saveable(x2, x), saveable(w, weight), rstd)
        ctx.offset, ctx.schedule, ctx.shape = offset, schedule, x.shape
        return y.view(x.shape)

    @staticmethod
    @first_order("rms_norm")
    def backward(ctx, dy):
        x2, w, rstd = ctx.saved_tensors
        rows, n = x2.shape
        dy2 = dy.to(x2.dtype).contiguous().view(-1, n)
        dx = torch.empty_like(x2)
        per = ctx.schedule["bwd_rows"]
        programs = triton.cdiv(rows, per)
        want_dw = w is not None and ctx.needs_input_grad[1]
        dw_partial = torch.empty(programs, n, dtype=torch.float32, device=x2.device) if want_dw else rstd
        _bwd[(programs,)](x2, w if w is not None else x2, dy2, rstd, dx, dw_partial, rows, n, ctx.offset,
                          HAS_W=w is not None, WANT_DW=want_dw, ROWS=per, BLOCK=_block(n),
                          num_warps=ctx.schedule["num_warps"])
        dw = dw_partial.sum(0).to(w.dtype) if want_dw else None
        return dx.view(ctx.shape), dw, None, None, None


def rms_norm(x, weight, eps, offset=0.0, *, schedule):
    return _RMSNorm.apply(x, weight, float(eps), float(offset), schedule)


# small odd shapes for the kernel tests (the interpreter runs them on a CPU)
# the functions the kernel module routes CUDA tensors to
ENTRIES = ("rms_norm",)

TEST_WORKLOADS = (
    {"rows": 15, "n": 123, "dtype": "float32"},
    {"rows": 7, "n": 80, "dtype": "bfloat16"},
)
