"""Bias + GELU epilogue of a Linear in Triton: the product stays in cuBLAS (without its bias),
one pass adds the bias and applies GELU (exact erf or tanh form).

The forward reads the bias-free product and writes the output, nothing else: the backward
needs the pre-activation ``h0 + b``, and re-adding the bias to the saved product costs a
bias row per program where writing ``h0 + b`` out would cost a full pass. The backward is
one pass too: it recomputes GELU's derivative, writes ``dy * gelu'(h)`` and sums it over its
rows into a partial bias gradient per program, which torch adds up (a few rows of n floats).

Schedule (``cuda_space`` of the kernel): ``block`` columns and ``rows`` rows per program
tile, ``bwd_rows`` rows per backward program (its partial bias sums), ``num_warps``.
"""

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ..kernels._common import saveable
from ._pointwise import GELU, GELU_TANH, act_grad, act_value, programs, tile
from . import first_order


@triton.jit
def _fwd(H0, B, Y, rows, n, ACT: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    row0, cols = tile(tl.program_id(0), n, ROWS, BLOCK)
    r = row0 + tl.arange(0, ROWS)
    cmask = cols < n
    mask = (r < rows)[:, None] & cmask[None, :]
    at = r[:, None] * n + cols[None, :]
    b = tl.load(B + cols, mask=cmask, other=0.0).to(tl.float32)
    # the sum is rounded to the storage dtype before GELU, as the eager bias add materialises it
    h = (tl.load(H0 + at, mask=mask, other=0.0).to(tl.float32) + b[None, :]).to(Y.dtype.element_ty).to(tl.float32)
    tl.store(Y + at, act_value(h, ACT).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _bwd(H0, B, DY, DH, DB, rows, n, ACT: tl.constexpr, ROWS: tl.constexpr, BWD_ROWS: tl.constexpr,
         BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    row0, cols = tile(pid, n, BWD_ROWS, BLOCK)
    cmask = cols < n
    b = tl.load(B + cols, mask=cmask, other=0.0).to(tl.float32)
    db = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in range(BWD_ROWS // ROWS):
        r = row0 + i * ROWS + tl.arange(0, ROWS)
        mask = (r < rows)[:, None] & cmask[None, :]
        at = r[:, None] * n + cols[None, :]
        h = (tl.load(H0 + at, mask=mask, other=0.0).to(tl.float32) + b[None, :]).to(DH.dtype.element_ty).to(tl.float32)
        dy = tl.load(DY + at, mask=mask, other=0.0).to(tl.float32)
        # the bias gradient sums the gradient as stored (rounded), as the eager sum over rows does
        dh = (dy * act_grad(h, ACT)).to(DH.dtype.element_ty)
        tl.store(DH + at, dh, mask=mask)
        db += tl.sum(dh.to(tl.float32), axis=0)
    tl.store(DB + (pid // tl.cdiv(n, BLOCK)).to(tl.int64) * n + cols, db, mask=cmask)


def _act(approximate):
    return GELU_TANH if approximate == "tanh" else GELU


def _epilogue(h2, bias, y, act, schedule):
    rows, n = h2.shape
    _fwd[programs(rows, n, schedule["rows"], schedule["block"])](
        h2, bias, y, rows, n, ACT=act, ROWS=schedule["rows"], BLOCK=schedule["block"], num_warps=schedule["num_warps"])


class _BiasGelu(torch.autograd.Function):
    """Saves the bias-free product and the bias; the backward re-adds them."""

    @staticmethod
    def forward(ctx, h0, bias, act, schedule):
        h2 = h0.contiguous().view(-1, h0.size(-1))
        b = bias.detach().contiguous()
        y = torch.empty_like(h2)
        _epilogue(h2, b, y, act, schedule)
        # a view made here is saved detached: non-reentrant checkpointing cannot unpack it
        ctx.save_for_backward(saveable(h2, h0), saveable(b, bias))
        ctx.act, ctx.schedule, ctx.shape, ctx.bias_dtype = act, schedule, h0.shape, bias.dtype
        return y.view(h0.shape)

    @staticmethod
    @first_order("linear_gelu")
    def backward(ctx, dy):
        h2, b = ctx.saved_tensors
        rows, n = h2.shape
        s = ctx.schedule
        dy2 = dy.to(h2.dtype).contiguous().view(-1, n)
        dh = torch.empty_like(h2)
        per = s["bwd_rows"]  # a multiple of s["rows"] (a constraint of the space)
        grid = programs(rows, n, per, s["block"])
        db_partial = torch.empty(triton.cdiv(rows, per), n, dtype=torch.float32, device=h2.device)
        _bwd[grid](h2, b, dy2, dh, db_partial, rows, n, ACT=ctx.act, ROWS=s["rows"], BWD_ROWS=per, BLOCK=s["block"],
                   num_warps=s["num_warps"])
        db = db_partial.sum(0).to(ctx.bias_dtype) if ctx.needs_input_grad[1] else None
        return dh.view(ctx.shape), db, None, None


def _apply(h0, bias, approximate, schedule, own_h0):
    act = _act(approximate)
    if torch.is_grad_enabled() and (h0.requires_grad or bias.requires_grad):
        return _BiasGelu.apply(h0, bias, act, schedule)
    # nothing to differentiate: a product made for this call takes the output in place
    h2 = h0.contiguous().view(-1, h0.size(-1))
    y = h2 if own_h0 and h2.data_ptr() == h0.data_ptr() else torch.empty_like(h2)
    _epilogue(h2, bias.contiguous(), y, act, schedule)
    return y.view(h0.shape)


def bias_gelu(h0, bias, approximate="none", *, schedule):
    return _apply(h0, bias, approximate, schedule, own_h0=False)


def linear_gelu(x, weight, bias, approximate="none", *, schedule):
    return _apply(F.linear(x, weight), bias, approximate, schedule, own_h0=True)


# the functions the kernel module routes CUDA tensors to
ENTRIES = ("bias_gelu", "linear_gelu")

# small odd shapes for the kernel tests (the interpreter runs them on a CPU)
TEST_WORKLOADS = tuple(
    {"rows": rows, "n": n, "approximate": form, "dtype": dtype}
    for rows, n, form, dtype in ((13, 200, "none", "float32"), (9, 77, "tanh", "float32"), (11, 150, "none", "bfloat16"),
                                 (6, 96, "tanh", "bfloat16"))
)
