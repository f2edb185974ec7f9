"""Masked softmax in Triton: ``softmax(x * scale + mask)`` over the last dimension, causal
masking folded in, forward and backward.

Rows that fit in registers are read once and written once, several rows to a program where
they are short. Longer rows loop over blocks of the row: an online pass keeps the running
maximum and the sum of exponentials rescaled to it, a second pass writes the probabilities.
The mask is never expanded: each row finds its mask row from at most three collapsed leading
dimensions and their strides, and a mask broadcast along the last dimension is one load per row.

The backward ``dx = scale * p * (dy - sum(dy * p))`` reads the saved probabilities; a row whose
every score a boolean or causal mask dropped gets a zero gradient (one byte per row says so),
as eager code's ``torch.where`` gives it. An additive mask that wants a gradient gets ``dz``,
written in its own dtype when it has the input's shape, else in float32 and summed.

Schedule (``cuda_space`` of the kernel): ``rows`` rows per program for whole rows, ``block`` 0
for a whole row in one block or the width of the blocks a long row is looped over,
``num_warps`` per program.
"""

import torch
import triton
import triton.language as tl
from . import first_order

# row counts, mask strides and sizes vary from call to call: one compiled kernel serves them all
_GENERIC = ("rows", "q_len", "d1", "d2", "s0", "s1", "s2")
# the widest row held whole in registers; longer rows loop (also where a schedule says 0)
WHOLE_MAX = 32768
LONG_BLOCK = 4096
_NO_MASK, _ADD, _KEEP = 0, 1, 2


@triton.jit
def _scores(X, M, r, cols, rows, n, scale, q_len, d1, d2, s0, s1, s2,
            MASK: tl.constexpr, MASK_ROW: tl.constexpr, CAUSAL: tl.constexpr):
    # r: [R, 1] int64 row numbers, cols: [1, B]; -inf where masked or outside the row
    inside = (r < rows) & (cols < n)
    z = tl.load(X + r * n + cols, mask=inside, other=0.0).to(tl.float32) * scale
    if MASK != 0:
        moff = (r // (d1 * d2)) * s0 + ((r // d2) % d1) * s1 + (r % d2) * s2
        if MASK_ROW:
            mv = tl.load(M + moff + cols, mask=inside, other=0)
        else:
            mv = tl.load(M + moff, mask=r < rows, other=0)
        if MASK == 1:
            z = z + mv.to(tl.float32)
        else:
            z = tl.where(mv != 0, z, float("-inf"))
    if CAUSAL:
        # bottom-right aligned: query i of q_len sees keys up to i + n - q_len
        z = tl.where(cols > (r % q_len) + n - q_len, float("-inf"), z)
    return tl.where(inside, z, float("-inf"))


@triton.jit(do_not_specialize=_GENERIC)
def _fwd(X, Y, M, EMPTY, rows, n, scale, q_len, d1, d2, s0, s1, s2,
         MASK: tl.constexpr, MASK_ROW: tl.constexpr, CAUSAL: tl.constexpr, R: tl.constexpr, BLOCK: tl.constexpr):
    r = (tl.program_id(0).to(tl.int64) * R + tl.arange(0, R))[:, None]
    cols = tl.arange(0, BLOCK)[None, :]
    z = _scores(X, M, r, cols, rows, n, scale, q_len, d1, d2, s0, s1, s2, MASK, MASK_ROW, CAUSAL)
    m = tl.max(z, axis=1)
    # a row of -inf: -inf - -inf is NaN, which the row then carries, as eager softmax does
    e = tl.exp(z - m[:, None])
    y = e * (1.0 / tl.sum(e, axis=1))[:, None]
    tl.store(Y + r * n + cols, y.to(Y.dtype.element_ty), mask=(r < rows) & (cols < n))
    tl.store(EMPTY + r, (m == float("-inf")).to(tl.int8)[:, None], mask=r < rows)


@triton.jit(do_not_specialize=_GENERIC)
def _fwd_long(X, Y, M, EMPTY, rows, n, scale, q_len, d1, d2, s0, s1, s2,
              MASK: tl.constexpr, MASK_ROW: tl.constexpr, CAUSAL: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0).to(tl.int64) + tl.zeros((1, 1), dtype=tl.int64)
    cols = tl.arange(0, BLOCK)[None, :]
    m = tl.full((1,), float("-inf"), tl.float32)
    s = tl.zeros((1,), dtype=tl.float32)
    for start in range(0, n, BLOCK):
        z = _scores(X, M, r, cols + start, rows, n, scale, q_len, d1, d2, s0, s1, s2, MASK, MASK_ROW, CAUSAL)
        m_new = tl.maximum(m, tl.max(z, axis=1))
        # rescale against 0 while every score so far is -inf, so that no -inf - -inf appears
        base = tl.where(m_new == float("-inf"), 0.0, m_new)
        s = s * tl.exp(m - base) + tl.sum(tl.exp(z - base[:, None]), axis=1)
        m = m_new
    inv = (1.0 / s)[:, None]
    for start in range(0, n, BLOCK):
        z = _scores(X, M, r, cols + start, rows, n, scale, q_len, d1, d2, s0, s1, s2, MASK, MASK_ROW, CAUSAL)
        y = tl.exp(z - m[:, None]) * inv
        tl.store(Y + r * n + cols + start, y.to(Y.dtype.element_ty), mask=cols + start < n)
    tl.store(EMPTY + r, (m == float("-inf")).to(tl.int8)[:, None])


@triton.jit
def _load_pair(Y, DY, r, cols, rows, n):
    inside = (r < rows) & (cols < n)
    y = tl.load(Y + r * n + cols, mask=inside, other=0.0).to(tl.float32)
    dy = tl.load(DY + r * n + cols, mask=inside, other=0.0).to(tl.float32)
    return y, dy


@triton.jit
def _store_grad(EMPTY, DX, DZ, r, cols, rows, n, scale, y, dy, dot, ZERO_EMPTY: tl.constexpr, WANT_DZ: tl.constexpr):
    inside = (r < rows) & (cols < n)
    dz = y * (dy - dot)
    if ZERO_EMPTY:
        dz = tl.where(tl.load(EMPTY + r, mask=r < rows, other=0) != 0, 0.0, dz)
    tl.store(DX + r * n + cols, (dz * scale).to(DX.dtype.element_ty), mask=inside)
    if WANT_DZ:
        tl.store(DZ + r * n + cols, dz.to(DZ.dtype.element_ty), mask=inside)


@triton.jit(do_not_specialize=("rows",))
def _bwd(Y, DY, EMPTY, DX, DZ, rows, n, scale, ZERO_EMPTY: tl.constexpr, WANT_DZ: tl.constexpr,
         R: tl.constexpr, BLOCK: tl.constexpr):
    r = (tl.program_id(0).to(tl.int64) * R + tl.arange(0, R))[:, None]
    cols = tl.arange(0, BLOCK)[None, :]
    y, dy = _load_pair(Y, DY, r, cols, rows, n)
    dot = tl.sum(y * dy, axis=1)[:, None]
    _store_grad(EMPTY, DX, DZ, r, cols, rows, n, scale, y, dy, dot, ZERO_EMPTY, WANT_DZ)


@triton.jit(do_not_specialize=("rows",))
def _bwd_long(Y, DY, EMPTY, DX, DZ, rows, n, scale, ZERO_EMPTY: tl.constexpr, WANT_DZ: tl.constexpr,
              BLOCK: tl.constexpr):
    r = tl.program_id(0).to(tl.int64) + tl.zeros((1, 1), dtype=tl.int64)
    cols = tl.arange(0, BLOCK)[None, :]
    dot = tl.zeros((1, 1), dtype=tl.float32)
    for start in range(0, n, BLOCK):
        y, dy = _load_pair(Y, DY, r, cols + start, rows, n)
        dot += tl.sum(y * dy, axis=1)[:, None]
    for start in range(0, n, BLOCK):
        y, dy = _load_pair(Y, DY, r, cols + start, rows, n)
        _store_grad(EMPTY, DX, DZ, r, cols + start, rows, n, scale, y, dy, dot, ZERO_EMPTY, WANT_DZ)


def _collapse(shape, strides):
    """Leading dimensions merged where their strides allow (size-1 ones dropped), as (size, stride)
    pairs, outermost first."""
    dims = []
    for size, stride in zip(shape, strides):
        if size == 1:
            continue
        if dims and dims[-1][1] == stride * size:
            dims[-1] = (dims[-1][0] * size, stride)
        else:
            dims.append((size, stride))
    return dims


def _mask_layout(x, mask):
    """The mask as the kernel reads it: (values, sizes d1 and d2, strides s0 s1 s2 of the three
    leading dimensions a row number splits into, whether it varies along the last dimension).
    The mask itself, never expanded, unless its leading dimensions do not collapse to three."""
    values = mask.view(torch.uint8) if mask.dtype == torch.bool else mask
    if values.dim() and values.size(-1) > 1 and values.stride(-1) != 1:
        values = values.contiguous()
    view = values.expand(x.shape)
    dims = _collapse(x.shape[:-1], view.stride()[:-1])
    if len(dims) > 3:
        values = view.contiguous()
        view = values
        dims = _collapse(x.shape[:-1], view.stride()[:-1])
    dims = [(1, 0)] * (3 - len(dims)) + dims
    per_col = x.size(-1) > 1 and view.stride(-1) != 0
    return values, dims[1][0], dims[2][0], dims[0][1], dims[1][1], dims[2][1], per_col


def _plan(schedule, n):
    """(rows per program, loop block or 0, num_warps) for a row of n; a whole-row schedule
    for a row too long to hold falls to the looped kernel."""
    block = schedule["block"]
    if block == 0 and triton.next_power_of_2(n) > WHOLE_MAX:
        block = LONG_BLOCK
    return (1 if block else schedule["rows"]), block, schedule["num_warps"]


class _Softmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mask, scale, is_causal, schedule):
        x2 = x.contiguous().view(-1, x.size(-1))
        rows, n = x2.shape
        y = torch.empty_like(x2)
        empty = torch.empty(rows, dtype=torch.int8, device=x.device)
        kind = _NO_MASK if mask is None else (_KEEP if mask.dtype == torch.bool else _ADD)
        if mask is None:
            values, d1, d2, s0, s1, s2, per_col = x2, 1, 1, 0, 0, 0, False
        else:
            values, d1, d2, s0, s1, s2, per_col = _mask_layout(x, mask)
        q_len = x.size(-2) if is_causal else 1
        per, block, warps = _plan(schedule, n)
        args = (x2, y, values, empty, rows, n, scale, q_len, d1, d2, s0, s1, s2)
        flags = dict(MASK=kind, MASK_ROW=per_col, CAUSAL=is_causal, num_warps=warps)
        if block:
            _fwd_long[(rows,)](*args, BLOCK=block, **flags)
        else:
            _fwd[(triton.cdiv(rows, per),)](*args, R=per, BLOCK=triton.next_power_of_2(n), **flags)
        ctx.save_for_backward(y, empty)
        # where-style masks (boolean, causal) give a fully masked row a zero gradient in eager
        # code; an additive -inf mask passes the NaN on
        ctx.zero_empty = is_causal or kind == _KEEP
        ctx.scale, ctx.schedule, ctx.shape = scale, schedule, x.shape
        ctx.mask_meta = (mask.shape, mask.dtype) if mask is not None else None
        return y.view(x.shape)

    @staticmethod
    @first_order("softmax")
    def backward(ctx, dy):
        y, empty = ctx.saved_tensors
        rows, n = y.shape
        dy2 = dy.to(y.dtype).contiguous().view(-1, n)
        dx = torch.empty_like(y)
        want_dz = ctx.needs_input_grad[1]
        # a mask of the input's own shape takes dz as it is, in its dtype; a broadcast one sums it
        whole = want_dz and tuple(ctx.mask_meta[0]) == tuple(ctx.shape)
        dz = torch.empty(rows, n, dtype=ctx.mask_meta[1] if whole else torch.float32, device=y.device) if want_dz else dx
        per, block, warps = _plan(ctx.schedule, n)
        args = (y, dy2, empty, dx, dz, rows, n, ctx.scale)
        flags = dict(ZERO_EMPTY=ctx.zero_empty, WANT_DZ=want_dz, num_warps=warps)
        if block:
            _bwd_long[(rows,)](*args, BLOCK=block, **flags)
        else:
            _bwd[(triton.cdiv(rows, per),)](*args, R=per, BLOCK=triton.next_power_of_2(n), **flags)
        dmask = None
        if want_dz:
            dmask = dz.view(ctx.shape) if whole else dz.view(ctx.shape).sum_to_size(ctx.mask_meta[0]).to(ctx.mask_meta[1])
        return dx.view(ctx.shape), dmask, None, None, None


def softmax(x, scale=1.0, mask=None, is_causal=False, *, schedule):
    return _Softmax.apply(x, mask, float(scale), bool(is_causal), schedule)


# the functions the kernel module routes CUDA tensors to
ENTRIES = ("softmax",)

# small odd shapes for the kernel tests (the interpreter runs them on a CPU)
TEST_WORKLOADS = (
    {"rows": 13, "n": 100, "dtype": "float32"},
    {"rows": 6, "n": 75, "dtype": "bfloat16"},
    {"rows": 3, "n": 1100, "dtype": "float32"},
)
