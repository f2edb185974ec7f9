"""Softmax over the last dimension of ``x * scale + mask``, with causal masking folded in.

The mask is additive (float) or boolean (True = keep) and broadcasts against ``x``; the causal
mask is aligned bottom-right over the last two dimensions, as attention's is. Arithmetic is in
float32 for float32 and bfloat16 alike; the output has ``x``'s dtype. A row whose every score is
masked gives NaN, as the eager ``softmax`` of a row of -inf does. Each row is read once into a
per-thread float32 scratch row (scores, then exponentials) and written once; the backward
``dx = scale * p * (dy - sum(dy * p))`` reads the saved probabilities.

Schedule: ``chunk`` rows per OpenMP task, ``vec_bits`` the width of the explicit vectors,
``unroll`` the unroll factor of the row loops, ``math`` where the exponentials come from (``poly``:
the vector polynomial ``vexp``; ``libm``: the C library's expf, a call per element),
``omp_kind`` the OpenMP schedule kind.
"""

import math

import torch

from .. import _dispatch
from ..registry import CpuFloors, Kernel, register, Space
from ._common import TORCH_DTYPE, assert_matches, differentiable_backward, render, rows_view, stream_output

# Explicit GCC vectors shared with the attention kernel: loads and stores for float32 and
# bfloat16, and an exp accurate to a few ulp that maps -inf to 0 and keeps NaN.
VECTOR_HELPERS = r"""
#define VL ($vec_bits / 32)
typedef float vf __attribute__((vector_size($vec_bits / 8)));
typedef int32_t vi __attribute__((vector_size($vec_bits / 8)));
typedef uint32_t vu __attribute__((vector_size($vec_bits / 8)));
typedef uint16_t vh __attribute__((vector_size($vec_bits / 16)));
typedef uint8_t vb __attribute__((vector_size($vec_bits / 32)));
static const float NEG_INF = -__builtin_inff();

static inline vf vsplat(float x) { return (vf){} + x; }
static inline vf vload(const float* p) { vf v; __builtin_memcpy(&v, p, sizeof v); return v; }
static inline vf vload(const bf16_t* p) {
  vh h; __builtin_memcpy(&h, p, sizeof h);
  return (vf)(__builtin_convertvector(h, vu) << 16);
}
static inline void vstore(float* p, vf v) { __builtin_memcpy(p, &v, sizeof v); }
static inline void vstore(bf16_t* p, vf v) {
  vu u = (vu)v;
  vu r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  // round to nearest even, as torch does
  r = ((u & 0x7fffffffu) > 0x7f800000u) ? ((u >> 16) | 0x40u) : r;
  vh h = __builtin_convertvector(r, vh);
  __builtin_memcpy(p, &h, sizeof h);
}
static inline vi vkeep(const uint8_t* p) { vb b; __builtin_memcpy(&b, p, sizeof b); return __builtin_convertvector(b, vi) != 0; }
static inline vf vmax(vf a, vf b) { return a > b ? a : b; }
static inline float hsum(vf v) { float s = 0.f; for (int i = 0; i < VL; ++i) s += v[i]; return s; }
static inline float hmax(vf v) { float m = v[0]; for (int i = 1; i < VL; ++i) m = v[i] > m ? v[i] : m; return m; }
static inline vf viota() { vf v; for (int i = 0; i < VL; ++i) v[i] = (float)i; return v; }

// exp for arguments <= 0 (softmax's x - max): round-to-nearest reduction by the 1.5 * 2^23
// trick (the empty asm keeps the compiler from folding the add and the subtract away),
// Cephes' polynomial, 2^n built in the exponent bits. Below -87 the result is 0, as exp(-inf)
// must be; NaN stays NaN.
static inline vf vexp(vf x) {
  vf t = x * 1.44269504088896341f + 12582912.0f;
  __asm__("" : "+x"(t));
  vf nf = t - 12582912.0f;
  vf r = x - nf * 0.693359375f;
  r = r + nf * 2.12194440e-4f;
  vf p = vsplat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + (r + 1.0f);
  vf res = p * (vf)(((vi)t + 127) << 23);
  return (vf)((vi)res & ~(x < -87.0f));
}
"""

TEMPLATE = r"""
#pragma GCC target("prefer-vector-width=$vec_bits")
#include <cstdlib>
#define MATH_$math 1
$helpers
typedef $scalar_t scalar_t;
#define OMP_SCHED schedule(runtime)  // kind and chunk set at each call (Space.omp)
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

// Outputs too large to stay in cache (the caller says ``stream``) are written with streaming
// stores, which skip reading the destination's lines first: a third of a float32 pass's traffic.
// They need aligned vectors, so a row's first elements up to the alignment are stored as usual.
static const bool STREAMS = sizeof(scalar_t) == 4;
static inline bool vstream(float* p, vf v) {
#if defined(__AVX512F__) && VL == 16
  _mm512_stream_ps(p, (__m512)v);
  return true;
#elif defined(__AVX__) && VL == 8
  _mm256_stream_ps(p, (__m256)v);
  return true;
#elif defined(__SSE__) && VL == 4
  _mm_stream_ps(p, (__m128)v);
  return true;
#else
  return false;
#endif
}
static inline int64_t unaligned_head(const void* p, int64_t n) {
  int64_t head = (int64_t)((VL * 4 - ((uintptr_t)p & (VL * 4 - 1))) & (VL * 4 - 1)) / 4;
  return head < n ? head : n;
}
static inline void streams_done(bool stream) {
#ifdef __SSE__
  if (stream) _mm_sfence();  // streaming stores are weakly ordered: publish them before the threads join
#endif
}

// The scores of one row into z: x * scale, plus the additive mask, -inf where the boolean mask
// drops a key or the key lies past the causal limit ``lim``. Returns the row's maximum.
static float scores_row(const scalar_t* x, float* z, int64_t n, float scale, const float* madd,
                        const uint8_t* mkeep, int64_t mstep, int64_t lim) {
  const vf ninf = vsplat(NEG_INF);
  const vf iota = viota();
  float add0 = (madd && !mstep) ? madd[0] : 0.f;
  bool drop_all = mkeep && !mstep && !mkeep[0];
  vf vm = ninf;
  int64_t j = 0;
  #pragma GCC unroll $unroll
  for (; j + VL <= n; j += VL) {
    vf s = vload(x + j) * scale;
    if (madd) s += mstep ? vload(madd + j) : vsplat(add0);
    if (mkeep && mstep) s = vkeep(mkeep + j) ? s : ninf;
    if (lim < j + VL - 1) s = (iota + (float)j > (float)lim) ? ninf : s;
    if (drop_all) s = ninf;
    vstore(z + j, s);
    vm = vmax(vm, s);
  }
  float m = hmax(vm);
  for (; j < n; ++j) {
    float s = load_f(x, j) * scale;
    if (madd) s += mstep ? madd[j] : add0;
    if ((mkeep && !mkeep[mstep ? j : 0]) || j > lim) s = NEG_INF;
    z[j] = s;
    m = s > m ? s : m;
  }
  return m;
}

// z <- exp(z - m) in place; returns the sum. A row of -inf gives NaN, as eager softmax does.
static float exp_row(float* z, int64_t n, float m) {
  if (m == NEG_INF) m = __builtin_nanf("");
#ifdef MATH_libm
  // math=libm: the C library's expf, a call per element (the loop stays scalar)
  float sl = 0.f;
  for (int64_t j = 0; j < n; ++j) { float e = std::exp(z[j] - m); z[j] = e; sl += e; }
  return sl;
#endif
  vf vs = vsplat(0.f);
  int64_t j = 0;
  #pragma GCC unroll $unroll
  for (; j + VL <= n; j += VL) {
    vf e = vexp(vload(z + j) - m);
    vstore(z + j, e);
    vs += e;
  }
  float s = hsum(vs);
  for (; j < n; ++j) { float e = std::exp(z[j] - m); z[j] = e; s += e; }
  return s;
}

extern "C" void softmax_fwd(const scalar_t* x, scalar_t* y, uint8_t* empty, const float* madd, const uint8_t* mkeep,
                            const int64_t* moff, int64_t mstep, int64_t rows, int64_t n, float scale,
                            int64_t q_len, int stream, int nthreads) {
  #pragma omp parallel num_threads(nthreads)
  {
    float* z = (float*)std::aligned_alloc(64, ((n * 4 + 63) / 64) * 64);
    #pragma omp for OMP_SCHED nowait
    for (int64_t r = 0; r < rows; ++r) {
      int64_t off = moff ? moff[r] : 0;
      // bottom-right aligned: query i of q_len sees keys up to i + n - q_len
      int64_t lim = q_len ? (r % q_len) + n - q_len : n;
      float m = scores_row(x + r * n, z, n, scale, madd ? madd + off : nullptr, mkeep ? mkeep + off : nullptr, mstep, lim);
      empty[r] = m == NEG_INF;
      float inv = 1.f / exp_row(z, n, m);
      scalar_t* yr = y + r * n;
      int64_t j = 0;
      if (STREAMS && stream) {
        for (int64_t h = unaligned_head(yr, n); j < h; ++j) store_f(yr, j, z[j] * inv);
        for (; j + VL <= n && vstream((float*)(yr + j), vload(z + j) * inv); j += VL) {}
      }
      #pragma GCC unroll $unroll
      for (; j + VL <= n; j += VL) vstore(yr + j, vload(z + j) * inv);
      for (; j < n; ++j) store_f(yr, j, z[j] * inv);
    }
    streams_done(stream);
    std::free(z);
  }
}

// dz = p * (dy - sum(dy * p)); dx = scale * dz, and dz itself where the mask wants a gradient.
// Rows flagged in ``zero`` (every score masked by a boolean or causal mask) get zeros, as the
// gradient of eager code's torch.where is there.
extern "C" void softmax_bwd(const scalar_t* y, const scalar_t* dy, const uint8_t* zero, scalar_t* dx, float* dz_out,
                            int64_t rows, int64_t n, float scale, int stream, int nthreads) {
  #pragma omp parallel num_threads(nthreads)
  {
  #pragma omp for OMP_SCHED nowait
  for (int64_t r = 0; r < rows; ++r) {
    const scalar_t* yr = y + r * n;
    const scalar_t* gr = dy + r * n;
    scalar_t* dxr = dx + r * n;
    float* dzr = dz_out ? dz_out + r * n : nullptr;
    vf vd = vsplat(0.f);
    int64_t j = 0;
    #pragma GCC unroll $unroll
    for (; j + VL <= n; j += VL) vd += vload(yr + j) * vload(gr + j);
    float dot = hsum(vd);
    for (; j < n; ++j) dot += load_f(yr, j) * load_f(gr, j);
    const float keep = (zero && zero[r]) ? 0.f : 1.f;
    auto one = [&](int64_t j) {
      float dz = keep ? load_f(yr, j) * (load_f(gr, j) - dot) : 0.f;
      store_f(dxr, j, dz * scale);
      if (dzr) dzr[j] = dz;
    };
    j = 0;
    const bool streamed = STREAMS && stream;
    if (streamed) for (int64_t h = unaligned_head(dxr, n); j < h; ++j) one(j);
    #pragma GCC unroll $unroll
    for (; j + VL <= n; j += VL) {
      vf dz = keep ? vload(yr + j) * (vload(gr + j) - dot) : vsplat(0.f);
      if (!(streamed && vstream((float*)(dxr + j), dz * scale))) vstore(dxr + j, dz * scale);
      if (dzr) vstore(dzr + j, dz);
    }
    for (; j < n; ++j) one(j);
  }
  streams_done(stream);
  }
}
"""

SPACE = Space(
    params={"chunk": (1, 2, 4, 8, 16, 32, 64, 128), "vec_bits": (128, 256, 512), "unroll": (1, 2, 4, 8),
            "math": ("poly", "libm"), "omp_kind": ("static", "dynamic", "guided")},
    default={"chunk": 4, "vec_bits": 256, "unroll": 2, "math": "poly", "omp_kind": "static"},
    omp={"kind": "omp_kind", "chunk": "chunk"},
    # 512-bit vectors on AVX-512 CPUs: 9-10% less time (docs/kernels.md)
    target_defaults={"avx512": {"vec_bits": 512}},
)


def _render(schedule, dtype):
    helpers = render(VECTOR_HELPERS, schedule, dtype).split("\n", 1)[1]
    return render(TEMPLATE, schedule, dtype, helpers=helpers)


def causal_keep(q_len, k_len):
    """Boolean (q_len, k_len), True where allowed, aligned to the bottom-right corner."""
    return torch.ones(q_len, k_len, dtype=torch.bool).tril(diagonal=k_len - q_len)


def reference(x, scale=1.0, mask=None, is_causal=False):
    """Float64-capable reference: the eager composite, in ``x``'s dtype where x is float64."""
    z = x * scale if scale != 1.0 else x
    if mask is not None:
        z = torch.where(mask, z, z.new_tensor(-math.inf)) if mask.dtype == torch.bool else z + mask.to(z.dtype)
    if is_causal:
        z = torch.where(causal_keep(x.size(-2), x.size(-1)), z, z.new_tensor(-math.inf))
    return torch.softmax(z, dim=-1)


def _mask_fits(x, mask, dtypes=(torch.bool, torch.float32, torch.bfloat16)):
    if mask is None:
        return True
    if not isinstance(mask, torch.Tensor) or mask.device != x.device or mask.dim() > x.dim():
        return False
    if mask.dtype not in dtypes:
        return False
    try:
        return torch.broadcast_shapes(x.shape, mask.shape) == x.shape
    except RuntimeError:
        return False


def supported(x, mask=None, is_causal=False):
    """Shapes and dtypes the compiled kernel takes; anything else runs the reference.

    A fully masked row is computed (NaN, as eager softmax gives), not refused."""
    if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.numel() == 0:
        return False
    if is_causal and x.dim() < 2:
        return False
    return _mask_fits(x, mask) and _dispatch.native_ok(KERNEL, x)


def _gpu_fits(x, mask, is_causal):
    """What the Triton kernel takes: as :func:`supported`, float16 besides, on the input's device."""
    if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.numel() == 0 or (is_causal and x.dim() < 2):
        return False
    return _mask_fits(x, mask, (torch.bool, torch.float32, torch.bfloat16, torch.float16))


def _mask_rows(x, mask):
    """The mask as (values, per-row offsets, step along the last dimension): values are float32
    (additive) or uint8 (keep), the mask itself where it already is one, never expanded."""
    values = mask.view(torch.uint8) if mask.dtype == torch.bool else mask.float()
    if values.dim() and values.size(-1) > 1 and values.stride(-1) != 1:
        values = values.contiguous()
    view = values.expand(x.shape)
    step = 1 if x.size(-1) > 1 and view.stride(-1) == 1 else 0
    # each row's first element, as an offset from values' first element through its own strides
    extent = 1 + sum((s - 1) * st for s, st in zip(view.shape, view.stride()))
    offsets = torch.arange(extent, dtype=torch.int64).as_strided(x.shape[:-1], view.stride()[:-1]).contiguous()
    return values, offsets, step


def backward_reference(y, dy, scale, zero=None):
    """Softmax's backward in torch ops, differentiable again: ``dz = y * (dy - sum(dy * y))`` in
    float32, ``dx = scale * dz`` in y's dtype, both zero in the rows flagged in ``zero``."""
    yf, gf = y.float(), dy.float()
    if zero is not None:  # those rows' outputs are NaN: zeros in their place, so no NaN reaches a gradient
        yf = torch.where(zero.view(*y.shape[:-1], 1).bool(), yf.new_zeros(()), yf)
    dz = yf * (gf - (gf * yf).sum(-1, keepdim=True))
    return (dz * scale).to(y.dtype), dz


class SoftmaxFunction(torch.autograd.Function):
    """Saves its output (as returned: a backward with create_graph differentiates through it)."""

    @staticmethod
    def forward(ctx, x, mask, scale, is_causal, fwd, bwd):
        x2 = rows_view(x)
        rows, n = x2.shape
        values, offsets, step = _mask_rows(x, mask) if mask is not None else (None, None, 0)
        is_add = values is not None and values.dtype == torch.float32
        y = torch.empty_like(x2)
        empty = torch.empty(rows, dtype=torch.uint8)
        q_len = x.size(-2) if is_causal else 0
        fwd(_dispatch.ptr(x2), _dispatch.ptr(y), _dispatch.ptr(empty), _dispatch.ptr(values if is_add else None), _dispatch.ptr(None if is_add else values),
            _dispatch.ptr(offsets), _dispatch.i64(step), _dispatch.i64(rows), _dispatch.i64(n), _dispatch.f32(scale),
            _dispatch.i64(q_len), stream_output(y), _dispatch.threads())
        out = y.view(x.shape)
        # where-style masks (boolean, causal) give a fully masked row a zero gradient in eager
        # code; an additive -inf mask passes the NaN on
        _dispatch.save_for_backward(ctx, out, empty if is_causal or (mask is not None and mask.dtype == torch.bool) else None)
        ctx.scale, ctx.bwd, ctx.shape = scale, bwd, x.shape
        ctx.mask_meta = (mask.shape, mask.dtype) if mask is not None else None
        _dispatch.CALLS[KERNEL.name] += 1
        return out

    @staticmethod
    def _second_order(ctx, dy):
        out, zero = ctx.saved_tensors
        with torch.enable_grad():
            dx, dz = backward_reference(out, dy.to(out.dtype), ctx.scale, zero)
            dmask = dz.sum_to_size(ctx.mask_meta[0]).to(ctx.mask_meta[1]) if ctx.needs_input_grad[1] else None
        return dx, dmask, None, None, None, None

    @staticmethod
    @differentiable_backward(_second_order.__func__)
    def backward(ctx, dy):
        out, zero = ctx.saved_tensors
        y = rows_view(out)
        rows, n = y.shape
        dy2 = rows_view(dy.to(y.dtype))
        dx = torch.empty_like(y)
        dz = torch.empty(rows, n, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        ctx.bwd(_dispatch.ptr(y), _dispatch.ptr(dy2), _dispatch.ptr(zero), _dispatch.ptr(dx), _dispatch.ptr(dz), _dispatch.i64(rows), _dispatch.i64(n),
                _dispatch.f32(ctx.scale), stream_output(dx), _dispatch.threads())
        dmask = dz.view(ctx.shape).sum_to_size(ctx.mask_meta[0]).to(ctx.mask_meta[1]) if dz is not None else None
        return dx.view(ctx.shape), dmask, None, None, None, None


def softmax(x, scale=1.0, mask=None, is_causal=False, schedule=None):
    """The compiled masked softmax, or None when it cannot run here (the caller runs the original).

    A gradient reaches an additive mask that requires one (in float32, summed over the
    dimensions it broadcasts along, then cast to the mask's dtype). CUDA tensors (float16 too)
    go to the Triton kernel."""
    if isinstance(x, torch.Tensor) and _dispatch.on_gpu(x, mask if isinstance(mask, torch.Tensor) else None):
        if not _gpu_fits(x, mask, is_causal):
            return None
        fn = _dispatch.gpu_function(KERNEL, "softmax", x.dtype, {"rows": x.numel() // x.size(-1), "n": x.size(-1)}, schedule)
        return None if fn is None else fn(x, float(scale), mask, bool(is_causal))
    if not supported(x, mask, is_causal):
        return None
    workload = {"rows": x.numel() // x.size(-1), "n": x.size(-1)}
    fwd = _dispatch.function(KERNEL, "softmax_fwd", x.dtype, workload, schedule)
    bwd = _dispatch.function(KERNEL, "softmax_bwd", x.dtype, workload, schedule)
    if fwd is None or bwd is None:
        return None
    return SoftmaxFunction.apply(x, mask, float(scale), bool(is_causal), fwd, bwd)


CASE_SCALE = 0.125


def _case_inputs(workload, seed, device="cpu"):
    dtype = TORCH_DTYPE[workload["dtype"]]
    g = torch.Generator().manual_seed(seed)
    rows, n = workload["rows"], workload["n"]
    x = (4 * torch.randn(rows, n, generator=g)).to(device, dtype)
    # a padding mask shared by every row, as attention scores get one
    mask = torch.zeros(n, dtype=dtype).masked_fill_(torch.rand(n, generator=g) < 0.1, torch.finfo(dtype).min).to(device)
    dy = torch.randn(rows, n, generator=g).to(device, dtype)
    return x, mask, dy


def make_case(workload, seed=0, device="cpu"):
    """Inputs on ``device``: ``run(schedule)`` is the compiled ``softmax(x * scale + mask)``
    forward and backward; ``eager`` the torch composite; ``check`` compares with float64."""
    x, mask, dy = _case_inputs(workload, seed, device)

    def run(schedule, backward=True):
        xl = x.detach().requires_grad_(backward)
        y = softmax(xl, CASE_SCALE, mask, schedule=schedule)
        if backward:
            y.backward(dy)
            return y, xl.grad
        return (y,)

    def eager(backward=True):
        xl = x.detach().requires_grad_(backward)
        y = torch.softmax(xl * CASE_SCALE + mask, dim=-1)
        if backward:
            y.backward(dy)
            return y, xl.grad
        return (y,)

    def check(outputs):
        xd = x.double().requires_grad_(True)
        y = reference(xd, CASE_SCALE, mask.double())
        y.backward(dy.double())
        for name, a, e in zip(("output", "grad x"), outputs, (y, xd.grad)):
            assert_matches(a, e, workload["dtype"], f"softmax {name}")

    return run, eager, check


KERNEL = register(Kernel(
    name="softmax",
    doc=__doc__.strip().splitlines()[0],
    api=("softmax",),
    signature={"softmax": ("x", "dim", "dtype")},
    switch="softmax",
    space=SPACE,
    workload_fields=("rows", "n", "dtype"),
    size_axes=("rows",),
    # bench:crossover, 2 threads, this machine: forward faster from 768 KiB-1.5 MiB (rows 192-384 x 512), forward + backward from 768 KiB
    cpu_min_bytes=CpuFloors(inference=1 << 20, training=512 << 10),
    render=_render,
    reference=reference,
    make_case=make_case,
    bytes_moved=lambda w: 2 * w["rows"] * w["n"] * (4 if w["dtype"] == "float32" else 2),
    example_workloads=tuple({"rows": r, "n": n, "dtype": "float32"} for r, n in ((12 * 512, 512), (12 * 1024, 1024), (4096, 2048), (1024, 8192), (8192, 4096))),
    # rows: rows per program for whole rows; block: 0 for a whole row in registers, else the
    # blocks a long row loops over (one row per program); num_warps per program
    cuda_space=Space(
        params={"rows": (1, 2, 4, 8, 16), "block": (0, 1024, 4096), "num_warps": (1, 2, 4, 8, 16)},
        default={"rows": 1, "block": 0, "num_warps": 4},
        constraints=(
            "(block > 0) + (n <= 32768) >= 1",
            "(block == 0) + (n > block) >= 1",
            "(block == 0) + (rows == 1) >= 1",
            "(rows == 1) + (rows * n <= 8192) >= 1",
            # at most 64 values to a thread, at least one
            "(block > 0) + (rows * n <= num_warps * 2048) >= 1",
            "(block == 0) + (block <= num_warps * 2048) >= 1",
            "(block > 0) + (rows * n >= num_warps * 32) >= 1",
        ),
    ),
))
