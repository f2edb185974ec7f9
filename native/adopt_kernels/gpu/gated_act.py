"""Gated activation ``act(gate) * up`` in Triton (SiLU, exact GELU, tanh GELU), one pass forward
and one backward.

``gate`` and ``up`` are read through their row strides, so the two halves of the stacked
gate/up product are read in place and the backward writes the gradient of that whole tensor
(no split, no concatenation). The backward recomputes the activation from the saved gate
rather than keeping ``act(gate)``: a read it needs anyway, against a tensor written and read.

Schedule (``cuda_space`` of the kernel): ``block`` columns and ``rows`` rows per program,
``num_warps``.
"""

import torch
import triton
import triton.language as tl

from ..kernels._common import saveable
from ._pointwise import ACT_CODES, act_grad, act_value, programs, tile
from . import first_order


@triton.jit
def _gate_up(G, U, rows, n, ldg, ldu, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    """This program's rows and columns (as a column and a row), their mask, and gate and up there."""
    row0, cols = tile(tl.program_id(0), n, ROWS, BLOCK)
    r = (row0 + tl.arange(0, ROWS))[:, None]
    c = cols[None, :]
    mask = (r < rows) & (c < n)
    x = tl.load(G + r * ldg + c, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + r * ldu + c, mask=mask, other=0.0).to(tl.float32)
    return r, c, mask, x, u


@triton.jit
def _fwd(G, U, Y, rows, n, ldg, ldu, ACT: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    r, c, mask, x, u = _gate_up(G, U, rows, n, ldg, ldu, ROWS, BLOCK)
    # the activation is rounded to the storage dtype before the product, as eager code keeps it
    a = act_value(x, ACT).to(Y.dtype.element_ty).to(tl.float32)
    tl.store(Y + r * n + c, (a * u).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _bwd(G, U, DY, DG, DU, rows, n, ldg, ldu, lddg, lddu, ACT: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    r, c, mask, x, u = _gate_up(G, U, rows, n, ldg, ldu, ROWS, BLOCK)
    d = tl.load(DY + r * n + c, mask=mask, other=0.0).to(tl.float32)
    dt = DG.dtype.element_ty
    a = act_value(x, ACT).to(dt).to(tl.float32)
    tl.store(DU + r * lddu + c, (d * a).to(dt), mask=mask)
    tl.store(DG + r * lddg + c, ((d * u).to(dt).to(tl.float32) * act_grad(x, ACT)).to(dt), mask=mask)


def _launch(kernel, rows, n, schedule, *args, act):
    kernel[programs(rows, n, schedule["rows"], schedule["block"])](
        *args, ACT=act, ROWS=schedule["rows"], BLOCK=schedule["block"], num_warps=schedule["num_warps"])


class _GatedAct(torch.autograd.Function):
    """``act(gate) * up``; ``up`` None means ``gate`` holds both halves (its gradient returned whole)."""

    @staticmethod
    def forward(ctx, gate, up, act, schedule):
        g2 = gate.contiguous().view(-1, gate.size(-1))
        if up is None:
            n = g2.size(1) // 2
            u2 = g2[:, n:]
        else:
            u2 = up.contiguous().view(-1, up.size(-1))
            n = g2.size(1)
        rows = g2.size(0)
        y = torch.empty(rows, n, dtype=g2.dtype, device=g2.device)
        _launch(_fwd, rows, n, schedule, g2, u2, y, rows, n, g2.stride(0), u2.stride(0), act=act)
        # views made here are saved detached: non-reentrant checkpointing cannot unpack them
        ctx.save_for_backward(saveable(g2, gate), None if up is None else saveable(u2, up))
        ctx.act, ctx.schedule, ctx.shape, ctx.stacked = act, schedule, gate.shape, up is None
        return y.view(*gate.shape[:-1], n)

    @staticmethod
    @first_order("gated_mlp")
    def backward(ctx, dy):
        g2, u2 = ctx.saved_tensors
        dy2 = dy.to(g2.dtype).contiguous().view(-1, dy.size(-1))
        rows, n = dy2.shape
        if ctx.stacked:
            u2 = g2[:, n:]
            dh = torch.empty_like(g2)
            dg, du = dh, dh[:, n:]
        else:
            dg, du = torch.empty_like(g2), torch.empty_like(u2)
        _launch(_bwd, rows, n, ctx.schedule, g2, u2, dy2, dg, du, rows, n, g2.stride(0), u2.stride(0), dg.stride(0),
                du.stride(0), act=ctx.act)
        if ctx.stacked:
            return dh.view(ctx.shape), None, None, None
        grads = [t.view(ctx.shape) if need else None for t, need in zip((dg, du), ctx.needs_input_grad[:2])]
        return grads[0], grads[1], None, None


def gated_act(gate, up, kind, *, schedule):
    return _GatedAct.apply(gate, up, ACT_CODES[kind], schedule)


def gated_act_stacked(h, kind, *, schedule):
    return _GatedAct.apply(h, None, ACT_CODES[kind], schedule)


# the functions the kernel module routes CUDA tensors to
ENTRIES = ("gated_act", "gated_act_stacked")

# small odd shapes for the kernel tests (the interpreter runs them on a CPU)
TEST_WORKLOADS = tuple(
    {"rows": rows, "n": n, "act": act, "dtype": dtype}
    for rows, n, act, dtype in ((11, 150, "silu", "float32"), (7, 90, "gelu", "float32"), (9, 65, "gelu_tanh", "float32"),
                                (10, 120, "silu", "bfloat16"), (5, 70, "gelu", "bfloat16"))
)
