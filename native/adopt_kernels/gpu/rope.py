"""Rotary position embedding in Triton: q and k rotated in one launch, half-split (LLaMA) or
interleaved (GPT-J, full- or half-width tables), forward and backward (the rotation by -theta).

The kernel module resolves the tables first (``kernels.rope``): each tensor is seen as
(batch, heads, seq) rows of D with strides for its input, its output and its table rows (zero
where the table broadcasts, or the strides of ``position_ids`` when they pick the rows), so
neither broadcast tables nor ``cos[position_ids]`` are materialised, and q and k may be the
usual transposed views. A program rotates ``rows`` rows of one tensor: the first programs take
q's rows, the rest k's. The backward applies the transposed rotation to the gradients.

Schedule (``cuda_space`` of the kernel): ``rows`` rows per program, ``heads_inner`` whether
a program's rows run over heads (one table row shared, rows adjacent in a (batch, seq, heads)
layout) or over positions, ``num_warps``.
"""

import functools

import torch
import triton
import triton.language as tl

from ..kernels import rope as spec


@triton.jit
def _pairs(PTR, at, j, half, mask, MODE: tl.constexpr):
    """The two elements each rotation pairs, in float32, of the rows that start at ``at``: the
    two halves (MODE 0), or the even and odd elements, read as whole rows and split (else)."""
    if MODE == 0:
        a = tl.load(PTR + at + j[None, :], mask=mask, other=0.0)
        b = tl.load(PTR + at + (j + half)[None, :], mask=mask, other=0.0)
    else:
        # one contiguous load of (even, odd) pairs instead of two strided ones: vector loads
        k = tl.arange(0, 2)[None, None, :]
        pairs = tl.load(PTR + at[:, :, None] + (2 * j)[None, :, None] + k, mask=mask[:, :, None] & (k < 2), other=0.0)
        a, b = tl.split(pairs)
    return a.to(tl.float32), b.to(tl.float32)


@triton.jit
def _rotate(X, Y, C, S, P, prog, nrows, n1, n2, xs0, xs1, xs2, ys0, ys1, ys2, ts0, ts1, ts2, trow, half,
            MODE: tl.constexpr, BWD: tl.constexpr, HAS_POS: tl.constexpr, HEADS_INNER: tl.constexpr,
            ROWS: tl.constexpr, BLOCK: tl.constexpr):
    r = prog.to(tl.int64) * ROWS + tl.arange(0, ROWS)
    rmask = r < nrows
    if HEADS_INNER:
        i1 = r % n1
        i2 = (r // n1) % n2
    else:
        i2 = r % n2
        i1 = (r // n2) % n1
    i0 = r // (n1 * n2)
    x_at = (i0 * xs0 + i1 * xs1 + i2 * xs2)[:, None]
    y_at = (i0 * ys0 + i1 * ys1 + i2 * ys2)[:, None]
    t_at = i0 * ts0 + i1 * ts1 + i2 * ts2
    if HAS_POS:
        t_at = tl.load(P + t_at, mask=rmask, other=0).to(tl.int64) * trow
    t_at = t_at[:, None]
    j = tl.arange(0, BLOCK)
    mask = rmask[:, None] & (j < half)[None, :]
    x0, x1 = _pairs(X, x_at, j, half, mask, MODE)
    if MODE == 2:  # a half-width table: one entry per pair
        c0 = tl.load(C + t_at + j[None, :], mask=mask, other=0.0).to(tl.float32)
        s0 = tl.load(S + t_at + j[None, :], mask=mask, other=0.0).to(tl.float32)
        c1 = c0
        s1 = s0
    else:
        c0, c1 = _pairs(C, t_at, j, half, mask, MODE)
        s0, s1 = _pairs(S, t_at, j, half, mask, MODE)
    if BWD:  # the transposed rotation: each element takes its partner's sine, negated
        s0, s1 = -s1, -s0
    dt = Y.dtype.element_ty
    # each product rounded to the storage dtype before the sum, as the eager composite's are
    y0 = ((x0 * c0).to(dt).to(tl.float32) - (x1 * s0).to(dt).to(tl.float32)).to(dt)
    y1 = ((x1 * c1).to(dt).to(tl.float32) + (x0 * s1).to(dt).to(tl.float32)).to(dt)
    if MODE == 0:
        tl.store(Y + y_at + j[None, :], y0, mask=mask)
        tl.store(Y + y_at + (j + half)[None, :], y1, mask=mask)
    else:
        k = tl.arange(0, 2)[None, None, :]
        tl.store(Y + y_at[:, :, None] + (2 * j)[None, :, None] + k, tl.join(y0, y1), mask=mask[:, :, None] & (k < 2))


@triton.jit
def _rope(QX, QY, QC, QS, QP, q_progs, q_rows, q_n1, q_n2, q_xs0, q_xs1, q_xs2, q_ys0, q_ys1, q_ys2, q_ts0, q_ts1, q_ts2,
          q_trow, KX, KY, KC, KS, KP, k_rows, k_n1, k_n2, k_xs0, k_xs1, k_xs2, k_ys0, k_ys1, k_ys2, k_ts0, k_ts1, k_ts2,
          k_trow, half, MODE: tl.constexpr, BWD: tl.constexpr, HAS_POS: tl.constexpr, HEADS_INNER: tl.constexpr,
          ROWS: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    if pid < q_progs:
        _rotate(QX, QY, QC, QS, QP, pid, q_rows, q_n1, q_n2, q_xs0, q_xs1, q_xs2, q_ys0, q_ys1, q_ys2, q_ts0, q_ts1, q_ts2,
                q_trow, half, MODE, BWD, HAS_POS, HEADS_INNER, ROWS, BLOCK)
    else:
        _rotate(KX, KY, KC, KS, KP, pid - q_progs, k_rows, k_n1, k_n2, k_xs0, k_xs1, k_xs2, k_ys0, k_ys1, k_ys2, k_ts0, k_ts1,
                k_ts2, k_trow, half, MODE, BWD, HAS_POS, HEADS_INNER, ROWS, BLOCK)


def _side(x, y, tab):
    """The kernel's arguments for one tensor: pointers, then (rows, n1, n2, strides..., table row)."""
    (n0, n1, n2), xs, ys, ts = spec.dims(x, y, tab)
    pos = tab.pos if tab.pos is not None else x
    return [x, y, tab.cos, tab.sin, pos], [n0 * n1 * n2, n1, n2, *xs, *ys, *ts, tab.row]


def _launch(mode, xs, tabs, bwd, *, schedule):
    """Rotate every (input, tables) pair in one launch; returns the contiguous outputs."""
    xs = [spec.last_contiguous(x) for x in xs]
    ys = [torch.empty(x.shape, dtype=x.dtype, device=x.device) for x in xs]
    sides = [_side(x, y, t) for x, y, t in zip(xs, ys, tabs)]
    per = schedule["rows"]
    q_progs = triton.cdiv(sides[0][1][0], per)
    k_ptrs, k_nums = sides[1] if len(sides) > 1 else (sides[0][0], [0] + sides[0][1][1:])
    d = xs[0].size(-1)
    grid = (q_progs + triton.cdiv(k_nums[0], per),)
    _rope[grid](*sides[0][0], q_progs, *sides[0][1], *k_ptrs, *k_nums, d // 2, MODE=mode, BWD=bwd,
                HAS_POS=tabs[0].pos is not None, HEADS_INNER=schedule["heads_inner"], ROWS=per,
                BLOCK=triton.next_power_of_2(d // 2), num_warps=schedule["num_warps"])
    return ys


def rope(q, k, mode, q_tab, k_tab, *, schedule):
    """q (and k) rotated by the tables ``kernels.rope`` resolved for them (``mode``: half-split,
    pairs, pairs with a half-width table)."""
    return spec.RopeFunction.apply(q, k, q_tab, k_tab, mode, functools.partial(_launch, schedule=schedule))


# the functions the kernel module routes CUDA tensors to
ENTRIES = ("rope",)

# small odd shapes for the kernel tests (the interpreter runs them on a CPU)
TEST_WORKLOADS = (
    {"batch": 2, "heads": 3, "kv_heads": 1, "seq": 7, "dim": 24, "interleaved": 0, "dtype": "float32"},
    {"batch": 1, "heads": 2, "kv_heads": 2, "seq": 5, "dim": 20, "interleaved": 1, "dtype": "float32"},
    {"batch": 2, "heads": 2, "kv_heads": 1, "seq": 6, "dim": 16, "interleaved": 0, "dtype": "bfloat16"},
    {"batch": 1, "heads": 3, "kv_heads": 3, "seq": 4, "dim": 12, "interleaved": 1, "dtype": "bfloat16"},
)
