"""Rotary position embedding of q and k in one pass, half-split (LLaMA) or interleaved (GPT-J).

One call rotates every row of q and of k: ``y = x * cos + rotate(x) * sin`` with ``rotate``
the half-split ``cat(-x2, x1)`` or the interleaved ``(-x[2i+1], x[2i])``. The cos/sin rows are
found through strides (zero where the table broadcasts, over heads typically) or through
``position_ids``, so neither the broadcast tables nor ``cos[position_ids]`` are materialised;
interleaved half-width tables (GPT-J's ``repeat_interleave(2)``) are read as they are. q and
k may be strided views (the usual ``view(...).transpose(1, 2)``); outputs are contiguous. The
backward applies the transposed rotation to the gradients; tables get no gradient.

Every tensor is seen as ``(batch, heads, seq, D)`` whatever its memory layout (the sequence
being the outer dimension along which the table rows change). Schedule: ``parallel`` "seq"
runs the threads over (batch, position) with every head of q and then of k inner, so that a
table row serves all heads while it is in cache; "heads" over (tensor, batch, head) with the
positions inner; ``chunk`` units per OpenMP chunk (``omp_kind`` scheduled), ``vec_bits`` the
vector width the compiler prefers (0: not vectorised), ``unroll`` the unroll factor of the loop along a row.

CUDA tensors go to the Triton kernel in ``adopt_kernels.gpu.rope`` (its own schedule space,
``cuda_space``), with the same numerics.
"""

import collections
import ctypes
import dataclasses
import functools
import weakref

import torch

from .. import _dispatch
from ..registry import CpuFloors, Kernel, register, Space
from ._common import STORE_ROW, TORCH_DTYPE, assert_matches, render, stream_output

TEMPLATE = r"""
$vec_pragma
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
typedef $scalar_t scalar_t;
#define PAR_SEQ $par_seq
$store_row
// rows up to this long are rotated in a buffer and then stored (streamed when the outputs are large)
#define BUFFERED_ROW 512
enum { HALF_SPLIT = 0, PAIRS = 1, PAIRS_HALF_TABLE = 2 };

// the eager code rounds every op's result to the storage dtype
static inline float rnd(float v) { return sizeof(scalar_t) == 2 ? bf16_round(v) : v; }

// one rotated tensor as (batch, heads, seq) rows of d; ctypes mirrors this layout
struct Side {
  const scalar_t* x;                 // input rows, last dimension contiguous
  scalar_t* y;                       // output rows, last dimension contiguous
  const scalar_t* cos;
  const scalar_t* sin;
  const int64_t* pos;                // table row per (i0, i1, i2), or null: strides below
  int64_t n0, n1, n2;
  int64_t xs0, xs1, xs2;             // input strides
  int64_t ys0, ys1, ys2;             // output strides
  int64_t ts0, ts1, ts2;             // table strides (0 where it broadcasts), or those of pos
  int64_t row;                       // table row stride, with pos
};

// forward: y = x c + R(x) s; backward (dy in x): dx = dy c + R^T(dy s)
template <int MODE, bool BWD>
static inline void rotate_row(const scalar_t* x, scalar_t* y, const scalar_t* c, const scalar_t* s, int64_t d) {
  const int64_t h = d / 2;
  if (MODE == HALF_SPLIT) {
    #pragma GCC ivdep
    #pragma GCC unroll $unroll
    for (int64_t j = 0; j < h; ++j) {
      float x0 = load_f(x, j), x1 = load_f(x, j + h);
      float s0 = BWD ? -load_f(s, j + h) : load_f(s, j), s1 = BWD ? -load_f(s, j) : load_f(s, j + h);
      store_f(y, j, rnd(x0 * load_f(c, j)) - rnd(x1 * s0));
      store_f(y, j + h, rnd(x1 * load_f(c, j + h)) + rnd(x0 * s1));
    }
  } else {
    #pragma GCC ivdep
    #pragma GCC unroll $unroll
    for (int64_t i = 0; i < h; ++i) {
      const int64_t e = MODE == PAIRS ? 2 * i : i, o = MODE == PAIRS ? 2 * i + 1 : i;
      float x0 = load_f(x, 2 * i), x1 = load_f(x, 2 * i + 1);
      float s0 = BWD ? -load_f(s, o) : load_f(s, e), s1 = BWD ? -load_f(s, e) : load_f(s, o);
      store_f(y, 2 * i, rnd(x0 * load_f(c, e)) - rnd(x1 * s0));
      store_f(y, 2 * i + 1, rnd(x1 * load_f(c, o)) + rnd(x0 * s1));
    }
  }
}

// not inlined: both loop orders share one copy of each vectorised row loop (half the code
// to compile), at the cost of a call per row of d elements
template <int MODE, bool BWD>
__attribute__((noinline)) static void one_row(const Side& t, int64_t i0, int64_t i1, int64_t i2, int64_t d, bool stream) {
  const scalar_t* x = t.x + i0 * t.xs0 + i1 * t.xs1 + i2 * t.xs2;
  scalar_t* y = t.y + i0 * t.ys0 + i1 * t.ys1 + i2 * t.ys2;
  const int64_t at = i0 * t.ts0 + i1 * t.ts1 + i2 * t.ts2;
  const int64_t off = t.pos ? t.pos[at] * t.row : at;
  alignas(64) scalar_t buf[BUFFERED_ROW];
  const bool buffered = stream && d <= BUFFERED_ROW;
  rotate_row<MODE, BWD>(x, buffered ? buf : y, t.cos + off, t.sin + off, d);
  if (buffered) store_row(y, buf, d, true);
}

template <int MODE, bool BWD>
static void rope(const Side* sides, int nsides, int64_t d, bool stream, int nthreads) {
  const Side& q = sides[0];
  const bool same = nsides == 1 || (sides[1].n0 == q.n0 && sides[1].n2 == q.n2);
  #pragma omp parallel num_threads(nthreads)
  {
    if (PAR_SEQ && same) {
      #pragma omp for schedule(runtime) nowait
      for (int64_t u = 0; u < q.n0 * q.n2; ++u) {
        const int64_t i0 = u / q.n2, i2 = u % q.n2;
        for (int k = 0; k < nsides; ++k)
          for (int64_t i1 = 0; i1 < sides[k].n1; ++i1) one_row<MODE, BWD>(sides[k], i0, i1, i2, d, stream);
      }
    } else {
      const int64_t units_q = q.n0 * q.n1, units = units_q + (nsides > 1 ? sides[1].n0 * sides[1].n1 : 0);
      #pragma omp for schedule(runtime) nowait
      for (int64_t u = 0; u < units; ++u) {
        const Side& t = u < units_q ? q : sides[1];
        const int64_t v = u < units_q ? u : u - units_q;
        for (int64_t i2 = 0; i2 < t.n2; ++i2) one_row<MODE, BWD>(t, v / t.n1, v % t.n1, i2, d, stream);
      }
    }
    if (stream) stores_done();
  }
}

template <bool BWD>
static void rope_mode(int mode, const Side* sides, int nsides, int64_t d, bool stream, int nthreads) {
  if (mode == HALF_SPLIT) rope<HALF_SPLIT, BWD>(sides, nsides, d, stream, nthreads);
  else if (mode == PAIRS) rope<PAIRS, BWD>(sides, nsides, d, stream, nthreads);
  else rope<PAIRS_HALF_TABLE, BWD>(sides, nsides, d, stream, nthreads);
}

extern "C" void rope_fwd(int mode, const Side* sides, int nsides, int64_t d, int stream, int nthreads) {
  rope_mode<false>(mode, sides, nsides, d, stream, nthreads);
}

extern "C" void rope_bwd(int mode, const Side* sides, int nsides, int64_t d, int stream, int nthreads) {
  rope_mode<true>(mode, sides, nsides, d, stream, nthreads);
}
"""

SPACE = Space(
    params={
        "parallel": ("seq", "heads"),
        "chunk": (1, 2, 8, 32),
        "vec_bits": (0, 128, 256, 512),
        "unroll": (1, 2, 4),
        "omp_kind": ("static", "dynamic"),
    },
    default={"parallel": "seq", "chunk": 2, "vec_bits": 256, "unroll": 2, "omp_kind": "static"},
    omp={"kind": "omp_kind", "chunk": "chunk"},
    # 512-bit vectors on AVX-512 CPUs: 1-9% less time (docs/kernels.md)
    target_defaults={"avx512": {"vec_bits": 512}},
)

HALF_SPLIT, PAIRS, PAIRS_HALF_TABLE = 0, 1, 2


def _render(schedule, dtype):
    return render(TEMPLATE, schedule, dtype, par_seq=int(schedule["parallel"] == "seq"), store_row=STORE_ROW)


class Side(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in ("x", "y", "cos", "sin", "pos")] + [
        (name, ctypes.c_int64) for name in ("n0", "n1", "n2", "xs0", "xs1", "xs2", "ys0", "ys1", "ys2", "ts0", "ts1", "ts2", "row")
    ]


# How one tensor finds its table rows: strides over its three outer dimensions (of the table,
# or of pos when positions select the rows), the tables, and the rows' width.
Tables = collections.namedtuple("Tables", "cos sin pos strides row width")


def _native_ok(switch, *tensors):
    """The dispatcher's test (native switch, CPU, float32/bfloat16) under this API's own switch."""
    return _dispatch.native_ok(_Switch(switch), *tensors)


_Switch = collections.namedtuple("_Switch", "switch")


def _outer3(values, fill):
    """The three outer dimensions (or strides) of a tensor padded to (n0, n1, n2, D)."""
    values = tuple(values)
    return (fill,) * (3 - len(values)) + values


def _broadcast_tables(x, cos, sin, unsqueeze_dim):
    """Table strides over x's outer dimensions when cos/sin broadcast against x as they are."""
    if unsqueeze_dim is not None:
        cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    if cos.dim() > x.dim():
        return None
    width = cos.size(-1)
    ce, se = cos.expand(x.shape[:-1] + (width,)), sin.expand(x.shape[:-1] + (width,))
    if ce.stride() != se.stride() or (width > 1 and ce.stride(-1) != 1):
        return None
    return Tables(cos, sin, None, _outer3(ce.stride()[:-1], 0), 0, width)


# The bounds of recent position ids, by tensor: a model hands the same ids to every layer, and
# on a GPU reading them back waits for the device, so they are read once while the tensor
# stays as it was (same object, same version).
_BOUNDS = {}


def _bounds(position_ids):
    """(smallest, largest) of ``position_ids``, read in one transfer."""
    try:
        key = (id(position_ids), position_ids._version)
    except RuntimeError:  # an inference tensor keeps no version: read it every time
        key = None
    hit = _BOUNDS.get(key)
    if hit is not None and hit[0]() is position_ids:
        return hit[1]
    bounds = tuple(torch.stack(torch.aminmax(position_ids)).tolist())
    if key is not None:
        if len(_BOUNDS) >= 64:
            _BOUNDS.clear()
        _BOUNDS[key] = (weakref.ref(position_ids), bounds)
    return bounds


def _selected_tables(x, cos, sin, position_ids, unsqueeze_dim):
    """Table rows chosen by ``position_ids`` (``cos[position_ids].unsqueeze(unsqueeze_dim)``)."""
    if cos.dim() != 2 or cos.stride() != sin.stride() or (cos.size(1) > 1 and cos.stride(1) != 1):
        return None
    if position_ids.dtype not in (torch.int64, torch.int32) or position_ids.device != x.device or position_ids.numel() == 0:
        return None
    pos = position_ids.long()
    if unsqueeze_dim is not None:
        # unsqueeze_dim counts over cos[pos].unsqueeze(...)'s dims; it must fall among pos's own
        dim = unsqueeze_dim + pos.dim() + 2 if unsqueeze_dim < 0 else unsqueeze_dim
        if not 0 <= dim <= pos.dim():
            return None
        pos = pos.unsqueeze(dim)
    if pos.dim() > x.dim() - 1:
        return None
    pe = pos.expand(x.shape[:-1])
    lo, hi = _bounds(position_ids)
    # negative ids wrap in torch indexing and out-of-range ones raise: both go to the original
    if lo < 0 or hi >= cos.size(0):
        return None
    return Tables(cos, sin, pos, _outer3(pe.stride(), 0), cos.stride(0), cos.size(1))


def _tables(x, cos, sin, position_ids, unsqueeze_dim):
    if cos.shape != sin.shape or cos.dtype != x.dtype or sin.dtype != x.dtype or cos.requires_grad or sin.requires_grad:
        return None
    try:
        if position_ids is None:
            return _broadcast_tables(x, cos, sin, unsqueeze_dim)
        return _selected_tables(x, cos, sin, position_ids, unsqueeze_dim)
    except (IndexError, RuntimeError):
        # the shapes do not broadcast the way the kernel reads them
        return None


def _mode(tables, d, interleaved):
    if tables.width == d:
        return PAIRS if interleaved else HALF_SPLIT
    return PAIRS_HALF_TABLE if interleaved and 2 * tables.width == d else None


def _seq_first(tables):
    """True when the table rows change along the first outer dimension after the batch and
    not along the next: a (batch, seq, heads, D) tensor."""
    return tables.strides[1] != 0 and tables.strides[2] == 0


def dims(x, y, tables):
    """One tensor as (batch, heads, seq): its sizes, the strides of x (its input), of y (its
    output) and of its table rows (or of pos), each three numbers."""
    out = [_outer3(x.shape[:-1], 1), _outer3(x.stride()[:-1], 0), _outer3(y.stride()[:-1], 0), tables.strides]
    return [(a, c, b) for a, b, c in out] if _seq_first(tables) else out


def _side(x, y, tables):
    """The C description of one tensor: x its input (last dimension contiguous), y its output."""
    return Side(x.data_ptr(), y.data_ptr(), tables.cos.data_ptr(), tables.sin.data_ptr(),
                tables.pos.data_ptr() if tables.pos is not None else None, *(v for d in dims(x, y, tables) for v in d), tables.row)


def last_contiguous(t):
    return t if t.stride(-1) == 1 else t.contiguous()


def _call(fn, mode, xs, tables, d):
    """Run ``fn`` over every (input, tables) pair at once; returns the contiguous outputs."""
    xs = [last_contiguous(x) for x in xs]
    ys = [torch.empty(x.shape, dtype=x.dtype) for x in xs]
    sides = (Side * len(xs))(*(_side(x, y, t) for x, y, t in zip(xs, ys, tables)))
    fn(ctypes.c_int(mode), sides, ctypes.c_int(len(xs)), _dispatch.i64(d), stream_output(*ys), _dispatch.threads())
    return ys


def _compiled_rotation(fwd, bwd, mode, xs, tables, backward):
    """The compiled kernel as RopeFunction's ``rotate``."""
    return _call(bwd if backward else fwd, mode, xs, tables, xs[0].size(-1))


class RopeFunction(torch.autograd.Function):
    """Rotates q and, when given, k; the tables (plain tensors in ``q_tab``/``k_tab``) get no
    gradient. ``rotate(mode, xs, tables, backward)`` runs a kernel over every (input, tables)
    pair at once and returns the outputs: the compiled one or the Triton one."""

    @staticmethod
    def forward(ctx, q, k, q_tab, k_tab, mode, rotate):
        ctx.set_materialize_grads(False)
        xs, tabs = ([q], [q_tab]) if k is None else ([q, k], [q_tab, k_tab])
        ys = rotate(mode, xs, tabs, False)
        # saved, not kept on ctx, so that an in-place change to a table before the backward
        # is an error, as it is for the eager code
        _dispatch.save_for_backward(ctx, *(t for tab in tabs for t in (tab.cos, tab.sin, tab.pos)))
        ctx.tables, ctx.mode, ctx.rotate = [tab._replace(cos=None, sin=None, pos=None) for tab in tabs], mode, rotate
        return ys[0] if k is None else tuple(ys)

    @staticmethod
    def backward(ctx, *grads):
        saved = ctx.saved_tensors
        tables = [tab._replace(cos=saved[3 * i], sin=saved[3 * i + 1], pos=saved[3 * i + 2]) for i, tab in enumerate(ctx.tables)]
        out = _rotate_grads(ctx.rotate, ctx.mode, grads, ctx.needs_input_grad, tables, True) + [None]
        return out[0], out[1], None, None, None, None


def _rotate_grads(rotate, mode, grads, needs, tables, backward):
    """The rotations (``backward``: the transposed ones) of the gradients ``grads`` where
    ``needs`` wants them, each by its own tables, in a list as long as ``grads`` (None
    elsewhere)."""
    todo = [(i, g) for i, g in enumerate(grads) if g is not None and needs[i]]
    out = [None] * len(grads)
    if todo:
        dxs = _rotated(rotate, mode, [g for _, g in todo], [tables[i] for i, _ in todo], backward)
        for (i, _), dx in zip(todo, dxs):
            out[i] = dx
    return out


def _rotated(rotate, mode, xs, tables, backward):
    """``rotate(mode, xs, tables, backward)``; with grad mode on (a backward run with
    ``create_graph``) through :class:`RotationFunction`, so that the results can be
    differentiated again: the compiled kernel's results carry no graph."""
    if torch.is_grad_enabled():
        return list(RotationFunction.apply(mode, rotate, backward, tables, *xs))
    return rotate(mode, xs, tables, backward)


class RotationFunction(torch.autograd.Function):
    """The rotation of each of ``xs`` by its tables (``backward``: the transposed rotation), as
    a differentiable function of ``xs``: the map is linear and its gradient is the transposed
    map, a rotation by the same kernel. Second and higher derivatives through RopeFunction
    (gradient penalties, Hessian-vector products) run through it."""

    @staticmethod
    def forward(ctx, mode, rotate, backward, tables, *xs):
        ctx.set_materialize_grads(False)
        ctx.mode, ctx.rotate, ctx.backward, ctx.tables = mode, rotate, backward, tables
        return tuple(rotate(mode, list(xs), tables, backward))

    @staticmethod
    def backward(ctx, *grads):
        out = _rotate_grads(ctx.rotate, ctx.mode, grads, ctx.needs_input_grad[4:], ctx.tables, not ctx.backward)
        return (None, None, None, None, *out)


def _shapes_ok(q, k):
    if not isinstance(q, torch.Tensor) or not 2 <= q.dim() <= 4 or q.numel() == 0 or q.size(-1) % 2:
        return False
    if k is None:
        return True
    return isinstance(k, torch.Tensor) and 2 <= k.dim() <= 4 and k.numel() > 0 and k.size(-1) == q.size(-1) and k.dtype == q.dtype


def _workload(q, k, tables, interleaved):
    """Batch, heads and sequence as the kernel sees them."""
    n0, n1, n2 = _outer3(q.shape[:-1], 1)
    seq, heads = (n1, n2) if _seq_first(tables) else (n2, n1)
    kv = 0 if k is None else k.numel() // (n0 * seq * k.size(-1))
    return {"batch": n0, "heads": heads, "kv_heads": kv, "seq": seq, "dim": q.size(-1), "interleaved": int(interleaved)}


def _plan(q, k, cos, sin, position_ids, unsqueeze_dim, interleaved, k_cos, k_sin):
    """(mode, q's tables, k's tables or None) when the kernel takes these inputs, else None."""
    if (k_cos is None) != (k_sin is None) or (interleaved and k_cos is not None):
        return None
    q_tab = _tables(q, cos, sin, position_ids, unsqueeze_dim)
    k_tab = None
    if k is not None:
        k_tab = _tables(k, cos if k_cos is None else k_cos, sin if k_sin is None else k_sin, position_ids, unsqueeze_dim)
        if k_tab is None or q_tab is None or _mode(k_tab, k.size(-1), interleaved) != _mode(q_tab, q.size(-1), interleaved):
            return None
    mode = None if q_tab is None else _mode(q_tab, q.size(-1), interleaved)
    return None if mode is None else (mode, q_tab, k_tab)


def _gpu_rope(switch, q, k, plan, interleaved, schedule):
    """The Triton rotation; the dispatcher's switch test is made under this API's own switch."""
    kernel = _GPU_KERNELS.get(switch) or _GPU_KERNELS.setdefault(switch, dataclasses.replace(KERNEL, switch=switch))
    fn = _dispatch.gpu_function(kernel, "rope", q.dtype, _workload(q, k, plan[1], interleaved), schedule)
    return None if fn is None else fn(q, k, *plan)


_GPU_KERNELS = {}


def rope(q, k, cos, sin, position_ids=None, unsqueeze_dim=1, interleaved=False, k_cos=None, k_sin=None, schedule=None):
    """The compiled rotation of q (and k), or None when it cannot run here (the caller runs the
    original). Same parameters as ``apply_rope``; returns q's result alone when k is None. CUDA
    tensors go to the Triton kernel (``adopt_kernels.gpu.rope``), which takes the resolved
    tables rather than these parameters."""
    switch = "apply_rope_interleaved" if interleaved else "apply_rope"
    if not _shapes_ok(q, k):
        return None
    if _dispatch.on_gpu(q, k, cos, sin, k_cos, k_sin, position_ids):
        plan = _plan(q, k, cos, sin, position_ids, unsqueeze_dim, interleaved, k_cos, k_sin)
        return None if plan is None else _gpu_rope(switch, q, k, plan, interleaved, schedule)
    if not _native_ok(switch, q, k, cos, sin, k_cos, k_sin):
        return None
    plan = _plan(q, k, cos, sin, position_ids, unsqueeze_dim, interleaved, k_cos, k_sin)
    if plan is None:
        return None
    mode, q_tab, k_tab = plan
    workload = _workload(q, k, q_tab, interleaved)
    fwd = _dispatch.function(KERNEL, "rope_fwd", q.dtype, workload, schedule)
    bwd = _dispatch.function(KERNEL, "rope_bwd", q.dtype, workload, schedule)
    if fwd is None or bwd is None:
        return None
    out = RopeFunction.apply(q, k, q_tab, k_tab, mode, functools.partial(_compiled_rotation, fwd, bwd))
    _dispatch.CALLS[KERNEL.name] += 1
    return out


def reference(q, k, cos, sin, position_ids=None, unsqueeze_dim=1, interleaved=False):
    """The eager composite (float64-capable): what ``apply_rope``/``apply_rope_interleaved`` run
    without the kernel."""
    from .._impl import rope as eager

    fn = eager.eager_rope_interleaved if interleaved else eager.eager_rope
    return fn(q, k, cos, sin, position_ids, unsqueeze_dim)


def _tables_for(workload, dtype, device="cpu"):
    """cos/sin as LLaMA computes them (per batch row, full width) or GPT-J stores them (a
    half-width table indexed by position ids)."""
    d, seq = workload["dim"], workload["seq"]
    inv_freq = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    freqs = torch.outer(torch.arange(seq, dtype=torch.float64), inv_freq)
    if workload["interleaved"]:
        return freqs.cos().to(device, dtype), freqs.sin().to(device, dtype), torch.arange(seq, device=device).expand(workload["batch"], seq)
    emb = torch.cat((freqs, freqs), dim=-1).expand(workload["batch"], seq, d)
    return emb.cos().to(device, dtype).contiguous(), emb.sin().to(device, dtype).contiguous(), None


def make_case(workload, seed=0, device="cpu"):
    """q and k as attention code hands them over, on ``device``: LLaMA's (B, H, L, D) transposed
    views of the projections with per-batch tables, or GPT-J's (B, L, H, D) with position ids
    into a half-width table. ``run(schedule)`` does forward and backward, ``eager`` the
    composite, ``check`` compares with float64."""
    dtype = TORCH_DTYPE[workload["dtype"]]
    b, h, kvh, seq, d = (workload[f] for f in ("batch", "heads", "kv_heads", "seq", "dim"))
    interleaved = bool(workload["interleaved"])
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, seq, h, d, generator=g).to(device, dtype)
    k = torch.randn(b, seq, kvh, d, generator=g).to(device, dtype)
    dq, dk = (torch.randn(t.shape, generator=g).to(device, dtype) for t in (q, k))
    if not interleaved:
        q, k, dq, dk = (t.transpose(1, 2) for t in (q, k, dq, dk))
    cos, sin, pos = _tables_for(workload, dtype, device)
    udim = 2 if interleaved else 1

    def go(fn, backward, cast=None):
        qq, kk = (t.detach() if cast is None else t.detach().to(cast) for t in (q, k))
        qq.requires_grad_(backward)
        kk.requires_grad_(backward)
        c, s = (cos, sin) if cast is None else (cos.to(cast), sin.to(cast))
        yq, yk = fn(qq, kk, c, s, pos, udim)
        if not backward:
            return yq, yk
        torch.autograd.backward((yq, yk), (dq if cast is None else dq.to(cast), dk if cast is None else dk.to(cast)))
        return yq, yk, qq.grad, kk.grad

    def run(schedule, backward=True):
        return go(lambda *a: rope(*a, interleaved=interleaved, schedule=schedule), backward)

    def eager(backward=True):
        return go(lambda *a: reference(*a, interleaved=interleaved), backward)

    def check(outputs):
        expected = go(lambda *a: reference(*a, interleaved=interleaved), True, torch.float64)
        for name, a, e in zip(("q", "k", "grad q", "grad k"), outputs, expected):
            assert_matches(a, e, workload["dtype"], f"rope {name}")

    return run, eager, check


def _bytes_moved(w):
    rows = w["batch"] * w["seq"] * (w["heads"] + w["kv_heads"])
    table = 2 * w["batch"] * w["seq"] * w["dim"] // (2 if w["interleaved"] else 1)
    return (2 * rows * w["dim"] + table) * (4 if w["dtype"] == "float32" else 2)


KERNEL = register(Kernel(
    name="rope",
    doc=__doc__.strip().splitlines()[0],
    api=("apply_rope", "apply_rope_interleaved"),
    signature={
        "apply_rope": ("q", "k", "cos", "sin", "position_ids", "unsqueeze_dim", "k_cos", "k_sin"),
        "apply_rope_interleaved": ("q", "k", "cos", "sin", "position_ids", "unsqueeze_dim"),
    },
    switch="apply_rope",
    space=SPACE,
    workload_fields=("batch", "heads", "kv_heads", "seq", "dim", "interleaved", "dtype"),
    workload_choices={"interleaved": (0, 1)},
    size_axes=("seq",),
    # bench:crossover, 2 threads, this machine: forward faster from 1 MiB (32 heads x 16 tokens x 128), forward + backward from 65 KiB (one token)
    cpu_min_bytes=CpuFloors(inference=1 << 20, training=64 << 10),
    render=_render,
    reference=reference,
    make_case=make_case,
    bytes_moved=_bytes_moved,
    example_workloads=tuple(
        {"batch": b, "heads": h, "kv_heads": kv, "seq": s, "dim": d, "interleaved": i, "dtype": "float32"}
        for b, h, kv, s, d, i in (
            (1, 32, 32, 2048, 128, 0),  # LLaMA-2 7B
            (4, 32, 8, 1024, 128, 0),  # grouped-query keys (Mistral)
            (2, 16, 16, 2048, 64, 0),
            (8, 12, 12, 512, 64, 0),
            (2, 16, 16, 2048, 64, 1),  # GPT-J 6B: its 64 rotary channels per head
        )
    ),
    cuda_space=Space(
        params={"rows": (2, 4, 8, 16, 32), "heads_inner": (0, 1), "num_warps": (2, 4, 8)},
        # the schedule nearest the optimum over the H200 replay workloads (fixtures/tuning/replay-cuda).
        # Chosen on all but one workload, the held-out one ran at 0.90 of its optimum (geometric mean
        # over the workloads left out), the previous default at 0.80
        default={"rows": 16, "heads_inner": 1, "num_warps": 4},
        # a program's tile of rows x dim values: at least 256, at most 16 a thread (32 spill
        # registers)
        constraints=("rows * dim >= 256", "rows * dim <= 512 * num_warps"),
    ),
))
