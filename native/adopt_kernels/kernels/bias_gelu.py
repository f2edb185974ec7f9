"""Bias + GELU epilogue of a Linear: ``gelu(x @ W^T + b)``, the GEMM left to BLAS.

The matrix product runs without its bias through torch; one fused pass then adds the bias and
applies GELU (exact erf form or tanh form), reading the product once and writing the output
once. When a gradient is wanted, the same pass also writes GELU's derivative, which shares its
costly part (Phi, or tanh's exp) with the output, over the product it no longer needs; that is
all the backward reads besides dy: one multiply, the bias gradient summed in per-thread column
partials, and torch does the GEMM gradients. Exact GELU is ``h * Phi(h)``; the normal cdf Phi comes from a vectorisable
``erfc(t) = exp(Q(t))`` with Q a minimax polynomial: within 8e-8 of Phi everywhere (as erf,
``2 Phi(x sqrt 2) - 1``, within 1.6e-7) and, unlike ``1 + erf``, accurate relative to itself in
the lower tail (2e-5 down to Phi = 1e-12).

Schedule: ``cblock`` columns and ``rchunk`` rows per tile (the OpenMP work item), ``vec_bits``
the width of the vector type the math is written in, ``unroll`` how many independent vectors
go through each step of the formulas together, ``omp_kind`` the schedule kind.

CUDA tensors go to the Triton kernel in ``adopt_kernels.gpu.bias_gelu`` (its own schedule space,
``cuda_space``), with the same numerics.
"""

import ctypes

import torch
import torch.nn.functional as F

from .. import _dispatch
from ..registry import CpuFloors, Kernel, register, Space
from ._common import TORCH_DTYPE, assert_matches, differentiable_backward, product_operands, reference_grads, render, rows_view

# The element math is written on GCC vector types (``vf``: vec_bits / 32 floats) and on K of
# them at a time: each step of a formula is applied to K independent vectors before the next, so
# their long polynomial chains overlap instead of waiting on each other's latency, and the values
# stay in registers. Comparisons give lane masks and ``?:`` selects per lane, so nothing branches.
MATH = r"""
#define FOR_K _Pragma("GCC unroll 8") for (int k = 0; k < K; ++k)

static inline vf splat(float v) { return vf{} + v; }

// Cephes' expf polynomial on [-ln2/2, ln2/2]
static const float EXP_C[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f,
                               5.0000001201e-1f};
// log(erfc(t)) on [0, 5]: degree-11 minimax fit weighted by max(erfc(t) / 2, 1e-4)
static const float LOG_ERFC_C[12] = {
    7.993106265757888e-08f, -2.1727612420363585e-06f, 2.5868217562674545e-05f, -0.00017653655959293246f,
    0.0007443773210979998f, -0.0017826264956966043f, 0.00022073742002248764f, 0.019143370911478996f,
    -0.10278131812810898f, -0.6366180181503296f, -1.1283793449401855f, 1.2574955521316156e-09f};

// exp in place for x in [-87.3, 88.3], which the caller guarantees: k = round(x / ln 2) by
// truncating x / ln 2 + 128.5 (positive there), Cody-Waite reduction, the polynomial, and 2^k
// built in the exponent bits (a NaN lane comes out NaN)
template <int K> static inline void exp_core(vf* x) {
  vi ki[K];
  vf f[K], p[K];
  FOR_K {
    ki[k] = __builtin_convertvector(x[k] * 1.44269504088896341f + 128.5f, vi);
    vf kf = __builtin_convertvector(ki[k], vf) - 128.f;
    f[k] = x[k] - kf * 0.693359375f;
    f[k] = f[k] + kf * 2.12194440e-4f;
    p[k] = splat(EXP_C[0]);
  }
  #pragma GCC unroll 6
  for (int c = 1; c < 6; ++c) FOR_K p[k] = p[k] * f[k] + EXP_C[c];
  FOR_K x[k] = (p[k] * (f[k] * f[k]) + f[k] + 1.f) * (vf)((ki[k] - 1) << 23);
}

// exp in place for any x: 0 below -87.3, inf above 88.3, NaN stays NaN
template <int K> static inline void exp_any(vf* x) {
  vf c[K];
  FOR_K {
    c[k] = x[k] < -87.3f ? -87.3f : x[k];
    c[k] = c[k] > 88.3f ? 88.3f : c[k];
  }
  exp_core<K>(c);
  FOR_K x[k] = x[k] > 88.3f ? INFINITY : x[k] < -87.3f ? 0.f : c[k];
}

// The normal cdf Phi(h) = erfc(-h / sqrt(2)) / 2 that exact GELU is h * Phi(h) of, as exp(Q(t)) / 2
// with t = |h| / sqrt(2): the lower tail Phi(-|h|) keeps its relative accuracy (no 1 + erf
// cancellation) and Phi(|h|) = 1 - Phi(-|h|). Beyond t = 5 the tail (under 8e-13) is 0.
template <int K> static inline void normal_cdf(const vf* h, vf* out) {
  vf t[K], u[K], q[K];
  FOR_K {
    t[k] = (vf)((vi)h[k] & 0x7fffffff) * 0.70710678118654752f;
    u[k] = t[k] < 5.f ? t[k] : 5.f;
    q[k] = splat(LOG_ERFC_C[0]);
  }
  #pragma GCC unroll 12
  for (int c = 1; c < 12; ++c) FOR_K q[k] = q[k] * u[k] + LOG_ERFC_C[c];
  exp_core<K>(q);  // q lies in [-27.3, 1e-8] (or is NaN)
  FOR_K {
    vf lower = t[k] > 5.f ? 0.f : 0.5f * q[k];
    out[k] = h[k] > 0.f ? 1.f - lower : lower;
  }
}

static const float K_TANH = 0.7978845608028654f;  // sqrt(2 / pi)
static const float K_CUBE = 0.044715f;

// y = gelu(h) and, with GRAD, g = gelu'(h): the two share their expensive part (Phi, or the
// logistic function's exp), so a training forward that keeps g for the backward pays it once
template <int K, bool TANH, bool GRAD> static inline void gelu_fused(const vf* h, vf* y, vf* g) {
  vf e[K];
  if (TANH) {
    // 0.5 * (1 + tanh(u)) is the logistic function of 2u
    FOR_K e[k] = (-2.f * K_TANH) * (h[k] + K_CUBE * h[k] * h[k] * h[k]);
    exp_any<K>(e);
    FOR_K {
      vf sg = 1.f / (1.f + e[k]);
      y[k] = GRAD ? h[k] * sg : h[k] / (1.f + e[k]);
      if (GRAD) {
        vf sg_c = e[k] < 1.f ? e[k] * sg : 1.f - sg;  // 1 - sg without cancelling where sg is near 1
        g[k] = sg + 2.f * h[k] * sg * sg_c * K_TANH * (1.f + 3.f * K_CUBE * h[k] * h[k]);
      }
    }
  } else {
    vf cdf[K], a[K];
    normal_cdf<K>(h, cdf);
    FOR_K y[k] = h[k] * cdf[k];
    if (!GRAD) return;
    FOR_K {
      a[k] = -0.5f * h[k] * h[k];
      e[k] = a[k] < -87.3f ? -87.3f : a[k];
    }
    exp_core<K>(e);
    FOR_K g[k] = cdf[k] + h[k] * (a[k] < -87.3f ? 0.f : e[k] * 0.3989422804014327f);
  }
}
"""

TEMPLATE = r"""
#pragma GCC target("prefer-vector-width=$vec_bits")
typedef $scalar_t scalar_t;
#define CBLOCK $cblock
#define RCHUNK $rchunk
#define UNROLL $unroll
typedef float vf __attribute__((vector_size($vec_bits / 8)));
typedef int32_t vi __attribute__((vector_size($vec_bits / 8)));
typedef uint32_t vu __attribute__((vector_size($vec_bits / 8)));
typedef uint16_t vh __attribute__((vector_size($vec_bits / 16)));
#define VL ($vec_bits / 32)
static const bool IS_BF16 = sizeof(scalar_t) == 2;
$math

// bfloat16 bits of v in the upper halves, rounded to nearest even with NaN kept quiet, as f_to_bf16
static inline vu bf16_bits(vf v) {
  vu u = (vu)v;
  return ((u & 0x7fffffffu) > 0x7f800000u ? u | 0x400000u : u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
}

// the value as the eager code materialises it: bfloat16 tensors round every intermediate
static inline vf rnd(vf v) { return IS_BF16 ? (vf)bf16_bits(v) : v; }

static inline vf load_v(const float* p) { vf v; std::memcpy(&v, p, sizeof v); return v; }
static inline vf load_v(const bf16_t* p) { vh h; std::memcpy(&h, p, sizeof h); return (vf)(__builtin_convertvector(h, vu) << 16); }
static inline void store_v(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
static inline void store_v(bf16_t* p, vf v) { vh h = __builtin_convertvector(bf16_bits(v) >> 16, vh); std::memcpy(p, &h, sizeof h); }

// the last len < VL values of a span, through a vector's worth of scratch
template <class T> static inline vf load_part(const T* p, int len) {
  float s[VL] = {};
  for (int i = 0; i < len; ++i) s[i] = load_f(p, i);
  return load_v(s);
}
template <class T> static inline void store_part(T* p, vf v, int len) {
  float s[VL];
  store_v(s, v);
  for (int i = 0; i < len; ++i) store_f(p, i, s[i]);
}

// y = gelu(h0 + b) for K vectors from column j (len values when K = 1 and len < VL), and with
// GRAD gelu'(h0 + b) into gr, the backward's only input besides dy. The derivative is kept in
// float32 whatever the dtype: rounded to bfloat16 it would round again in dh = dy * g, and the
// gradients then had 1.2-1.3x the mean error of torch's bfloat16 code, which rounds once
template <int K, bool TANH, bool GRAD>
static inline void fwd_vectors(const scalar_t* hr, const scalar_t* b, scalar_t* yr, float* gr, int64_t j, int len = VL) {
  vf h[K], y[K], g[K];
  if (len < VL) h[0] = rnd(load_part(hr + j, len) + load_part(b + j, len));
  else FOR_K h[k] = rnd(load_v(hr + j + k * VL) + load_v(b + j + k * VL));
  gelu_fused<K, TANH, GRAD>(h, y, g);
  if (len < VL) {
    store_part(yr + j, y[0], len);
    if (GRAD) store_part(gr + j, g[0], len);
    return;
  }
  FOR_K {
    store_v(yr + j + k * VL, y[k]);
    if (GRAD) store_v(gr + j + k * VL, g[k]);
  }
}

// dh = dy * g for K vectors from column j, the bias gradient into the partial row dbp
template <int K>
static inline void bwd_vectors(const float* gr, const scalar_t* dyr, scalar_t* dr, float* dbp, int64_t j, int len = VL) {
  if (len < VL) {
    vf d = rnd(load_part(dyr + j, len) * load_part(gr + j, len));
    store_part(dr + j, d, len);
    store_part(dbp + j, load_part(dbp + j, len) + d, len);
    return;
  }
  FOR_K {
    vf d = rnd(load_v(dyr + j + k * VL) * load_v(gr + j + k * VL));
    store_v(dr + j + k * VL, d);
    store_v(dbp + j + k * VL, load_v(dbp + j + k * VL) + d);
  }
}

// columns [j0, j1) of one row: UNROLL vectors at a time, then single vectors, then the rest
template <bool TANH, bool GRAD>
static inline void fwd_span(const scalar_t* hr, const scalar_t* b, scalar_t* yr, float* gr, int64_t j0, int64_t j1) {
  int64_t j = j0;
  for (; j + UNROLL * VL <= j1; j += UNROLL * VL) fwd_vectors<UNROLL, TANH, GRAD>(hr, b, yr, gr, j);
  for (; j + VL <= j1; j += VL) fwd_vectors<1, TANH, GRAD>(hr, b, yr, gr, j);
  if (j < j1) fwd_vectors<1, TANH, GRAD>(hr, b, yr, gr, j, (int)(j1 - j));
}

static inline void bwd_span(const float* gr, const scalar_t* dyr, scalar_t* dr, float* dbp, int64_t j0, int64_t j1) {
  int64_t j = j0;
  for (; j + UNROLL * VL <= j1; j += UNROLL * VL) bwd_vectors<UNROLL>(gr, dyr, dr, dbp, j);
  for (; j + VL <= j1; j += VL) bwd_vectors<1>(gr, dyr, dr, dbp, j);
  if (j < j1) bwd_vectors<1>(gr, dyr, dr, dbp, j, (int)(j1 - j));
}

struct Tile { int64_t r0, r1, j0, j1; };

static inline int64_t tiles(int64_t rows, int64_t n) { return ((rows + RCHUNK - 1) / RCHUNK) * ((n + CBLOCK - 1) / CBLOCK); }

static inline Tile tile(int64_t rows, int64_t n, int64_t t) {
  const int64_t nb = (n + CBLOCK - 1) / CBLOCK;
  const int64_t r0 = (t / nb) * RCHUNK, j0 = (t % nb) * CBLOCK;
  return {r0, std::min(rows, r0 + RCHUNK), j0, std::min(n, j0 + CBLOCK)};
}

template <bool TANH, bool GRAD>
static void fwd_all(const scalar_t* h0, const scalar_t* b, scalar_t* y, float* g, int64_t rows, int64_t n, int nthreads) {
  #pragma omp parallel for schedule(runtime) num_threads(nthreads)
  for (int64_t t = 0; t < tiles(rows, n); ++t) {
    const Tile k = tile(rows, n, t);
    for (int64_t r = k.r0; r < k.r1; ++r) fwd_span<TANH, GRAD>(h0 + r * n, b, y + r * n, GRAD ? g + r * n : nullptr, k.j0, k.j1);
  }
}

// g: where gelu'(h0 + b) goes for the backward (float32), or null when none is needed; y may be h0 itself
extern "C" void bias_gelu_fwd(const scalar_t* h0, const scalar_t* b, scalar_t* y, float* g, int64_t rows, int64_t n,
                              int tanh_form, int nthreads) {
  if (tanh_form) g ? fwd_all<true, true>(h0, b, y, g, rows, n, nthreads) : fwd_all<true, false>(h0, b, y, g, rows, n, nthreads);
  else g ? fwd_all<false, true>(h0, b, y, g, rows, n, nthreads) : fwd_all<false, false>(h0, b, y, g, rows, n, nthreads);
}

// dh = dy * g; db_partial: nthreads rows of n floats, summed by the caller
extern "C" void bias_gelu_bwd(const float* g, const scalar_t* dy, scalar_t* dh, float* db_partial, int64_t rows, int64_t n,
                              int nthreads) {
  #pragma omp parallel num_threads(nthreads)
  {
    float* dbp = db_partial + (int64_t)omp_get_thread_num() * n;
    #pragma omp for schedule(runtime)
    for (int64_t t = 0; t < tiles(rows, n); ++t) {
      const Tile k = tile(rows, n, t);
      for (int64_t r = k.r0; r < k.r1; ++r) bwd_span(g + r * n, dy + r * n, dh + r * n, dbp, k.j0, k.j1);
    }
  }
}

// the element functions alone, for measuring the approximations: 0 Phi, 1 exp, 2 gelu, 3 tanh
// gelu, 4 gelu', 5 tanh gelu'
static inline vf math_vector(vf x, int which) {
  vf out, y;
  switch (which) {
    case 0: normal_cdf<1>(&x, &out); break;
    case 1: out = x; exp_any<1>(&out); break;
    case 2: gelu_fused<1, false, false>(&x, &out, nullptr); break;
    case 3: gelu_fused<1, true, false>(&x, &out, nullptr); break;
    case 4: gelu_fused<1, false, true>(&x, &y, &out); break;
    default: gelu_fused<1, true, true>(&x, &y, &out);
  }
  return out;
}

extern "C" void gelu_math(const float* x, float* out, int64_t n, int which) {
  int64_t j = 0;
  for (; j + VL <= n; j += VL) store_v(out + j, math_vector(load_v(x + j), which));
  if (j < n) store_part(out + j, math_vector(load_part(x + j, (int)(n - j)), which), (int)(n - j));
}
"""

SPACE = Space(
    params={
        "cblock": (256, 1024, 4096),
        "rchunk": (1, 4, 16),
        "vec_bits": (128, 256, 512),
        "unroll": (1, 2, 4, 8),
        "omp_kind": ("static", "dynamic", "guided"),
        "omp_chunk": (1, 4, 16),
    },
    default={"cblock": 1024, "rchunk": 4, "vec_bits": 256, "unroll": 4, "omp_kind": "static", "omp_chunk": 1},
    omp={"kind": "omp_kind", "chunk": "omp_chunk"},
    # 512-bit vectors on AVX-512 CPUs: 13% less time in cache (512 x 3072), 2% out of it (docs/kernels.md)
    target_defaults={"avx512": {"vec_bits": 512}},
)


def _render(schedule, dtype):
    return render(TEMPLATE, schedule, dtype, math=MATH)


def reference(h0, bias, approximate="none"):
    """Float64-capable reference: ``gelu(h0 + bias)`` with ``h0`` the bias-free product."""
    return F.gelu(h0 + bias, approximate=approximate)


def _shapes_ok(h0, bias):
    if not isinstance(h0, torch.Tensor) or not isinstance(bias, torch.Tensor):
        return False
    return not (h0.dim() == 0 or h0.numel() == 0 or bias.dim() != 1 or bias.numel() != h0.size(-1) or bias.dtype != h0.dtype)


def supported(h0, bias):
    """Shapes and dtypes the epilogue takes; anything else runs the reference."""
    return _shapes_ok(h0, bias) and _dispatch.native_ok(KERNEL, h0, bias)


def _linear_shapes_ok(x, weight, bias):
    if not all(isinstance(t, torch.Tensor) for t in (x, weight, bias)):
        return False
    if x.dim() == 0 or weight.dim() != 2 or x.size(-1) != weight.size(1) or x.dtype != weight.dtype:
        return False
    return not (x.numel() == 0 or weight.size(0) == 0 or bias.dim() != 1 or bias.numel() != weight.size(0) or bias.dtype != x.dtype)


def _linear_supported(x, weight, bias):
    return _linear_shapes_ok(x, weight, bias) and _dispatch.native_ok(KERNEL, x, weight, bias)


def _workload(t, n, approximate):
    return {"rows": t.numel() // t.size(-1), "n": n, "approximate": approximate}


def _int(v):
    return ctypes.c_int(int(v))


class BiasGeluFunction(torch.autograd.Function):
    """The forward keeps GELU's derivative instead of the pre-activation: it computes it beside
    the output from the same Phi, and the backward is then one multiply and the bias sum.

    ``x`` and ``weight`` are the product's operands where ``h0 = F.linear(x, weight,
    product_bias)`` was made for this call (``own_h0``), else None; ``product_bias`` is the bias
    where the product took it (bfloat16: ``bias`` is then zero), else None. They get no gradient here (h0's own graph gives them
    theirs); each is saved where the product's own backward saves it (x where the weight needs a
    gradient, the weight where x does), so nothing more is kept, and a backward with
    ``create_graph`` makes the product again from them, the forward having written the
    derivative over it (where one of them is frozen it is refused, naming the remedy). Without
    them h0 itself is saved for that."""

    @staticmethod
    def forward(ctx, h0, bias, x, weight, product_bias, tanh_form, own_h0, fwd, bwd):
        h2 = rows_view(h0)
        rows, n = h2.shape
        b = bias.detach().contiguous()
        # made in the output's own shape: a view returned from here could not be changed in place
        # (a Dropout(inplace=True) after the activation), as torch's own result can
        y = torch.empty(h0.shape, dtype=h2.dtype, device=h2.device)
        # a float32 product made for this call is needed by nothing else: the derivative (float32
        # in every dtype) overwrites it
        g = h2 if own_h0 and h2.data_ptr() == h0.data_ptr() and h2.dtype == torch.float32 else torch.empty(h2.shape, dtype=torch.float32)
        fwd(_dispatch.ptr(h2), _dispatch.ptr(b), _dispatch.ptr(y), _dispatch.ptr(g), _dispatch.i64(rows), _dispatch.i64(n),
            _int(tanh_form), _dispatch.threads())
        given = x is not None
        keep_x = x if given and weight.requires_grad else None
        keep_w = weight if given and x.requires_grad else None
        _dispatch.save_for_backward(ctx, g.detach(), bias, None if given else h0, keep_x, keep_w, product_bias if given else None)
        ctx.bwd, ctx.shape, ctx.dtype, ctx.bias_dtype, ctx.tanh_form = bwd, h0.shape, h2.dtype, bias.dtype, tanh_form
        _dispatch.CALLS[KERNEL.name] += 1
        return y

    @staticmethod
    def _second_order(ctx, dy):
        _, bias, h0, x, weight, product_bias = ctx.saved_tensors
        approximate = "tanh" if ctx.tanh_form else "none"
        if h0 is None:  # the product again, a function of x and weight for the second differentiation
            if x is None or weight is None:
                raise RuntimeError("adopt_kernels: linear_gelu with a frozen input or weight keeps only what a first-order "
                                   "backward needs (as F.linear does), so a backward with create_graph=True cannot run through it; "
                                   "ADOPT_DISABLE=linear_gelu runs the torch code")
            with torch.enable_grad(), torch.autocast("cpu", enabled=False):
                h0 = F.linear(x, weight, product_bias).view(ctx.shape)
        grads = reference_grads(lambda h, b: reference(h, b, approximate), (h0, bias), ctx.needs_input_grad[:2], (dy,))
        return grads[0], grads[1], None, None, None, None, None, None, None

    @staticmethod
    @differentiable_backward(_second_order.__func__)
    def backward(ctx, dy):
        g = ctx.saved_tensors[0]
        rows, n = g.shape
        dy2 = rows_view(dy.to(ctx.dtype))
        dh = torch.empty(g.shape, dtype=ctx.dtype)
        nthreads = torch.get_num_threads()
        db_partial = torch.zeros(nthreads, n, dtype=torch.float32)
        ctx.bwd(_dispatch.ptr(g), _dispatch.ptr(dy2), _dispatch.ptr(dh), _dispatch.ptr(db_partial), _dispatch.i64(rows),
                _dispatch.i64(n), _int(nthreads))
        db = db_partial.sum(0).to(ctx.bias_dtype) if ctx.needs_input_grad[1] else None
        return dh.view(ctx.shape), db, None, None, None, None, None, None, None


def _functions(dtype, workload, schedule):
    fwd = _dispatch.function(KERNEL, "bias_gelu_fwd", dtype, workload, schedule)
    bwd = _dispatch.function(KERNEL, "bias_gelu_bwd", dtype, workload, schedule)
    return (fwd, bwd) if fwd is not None and bwd is not None else None


def _apply(h0, bias, approximate, fns, own_h0, operands=(None, None, None)):
    tanh_form = int(approximate == "tanh")
    if torch.is_grad_enabled() and (h0.requires_grad or bias.requires_grad):
        return BiasGeluFunction.apply(h0, bias, *operands, tanh_form, own_h0, *fns)
    # nothing to differentiate: the epilogue overwrites a product made for this call, and
    # writes anyone else's to a new tensor in the same pass (a copy first would read it twice)
    h2 = rows_view(h0)
    y = h2 if own_h0 and h2.data_ptr() == h0.data_ptr() else torch.empty_like(h2)
    b = bias.contiguous()
    fns[0](_dispatch.ptr(h2), _dispatch.ptr(b), _dispatch.ptr(y), _dispatch.ptr(None), _dispatch.i64(h2.size(0)), _dispatch.i64(h2.size(1)),
           _int(tanh_form), _dispatch.threads())
    _dispatch.CALLS[KERNEL.name] += 1
    return y.view(h0.shape)


def bias_gelu(h0, bias, approximate="none", schedule=None):
    """The compiled ``gelu(h0 + bias)``, or None when it cannot run here. ``h0`` is not modified."""
    if approximate in ("none", "tanh") and _dispatch.on_gpu(h0, bias):
        if not _shapes_ok(h0, bias):
            return None
        fn = _dispatch.gpu_function(KERNEL, "bias_gelu", h0.dtype, _workload(h0, h0.size(-1), approximate), schedule)
        return None if fn is None else fn(h0, bias, approximate)
    if approximate not in ("none", "tanh") or not supported(h0, bias):
        return None
    fns = _functions(h0.dtype, _workload(h0, h0.size(-1), approximate), schedule)
    if fns is None:
        return None
    return _apply(h0, bias, approximate, fns, own_h0=False)


def bias_in_product(dtype):
    """Whether the product takes the bias (bfloat16, see linear_gelu) rather than the kernel."""
    return dtype == torch.bfloat16


def linear_gelu(x, weight, bias, approximate="none", schedule=None):
    """The compiled ``gelu(F.linear(x, weight, bias))``: the product in BLAS, the bias and GELU
    in one fused pass. None when it cannot run here (checked before the product is computed)."""
    if approximate in ("none", "tanh") and _dispatch.on_gpu(x, weight, bias):
        if not _linear_shapes_ok(x, weight, bias):
            return None
        fn = _dispatch.gpu_function(KERNEL, "linear_gelu", x.dtype, _workload(x, weight.size(0), approximate), schedule)
        return None if fn is None else fn(x, weight, bias, approximate)
    if approximate not in ("none", "tanh") or not _linear_shapes_ok(x, weight, bias):
        return None
    # under autocast F.linear multiplies (and returns) autocast's dtype, not x's: the kernel is
    # chosen for that dtype, and the bias cast to it, as the original F.linear casts it
    x, weight, bias = product_operands(x, weight, bias)
    if not _linear_supported(x, weight, bias):
        return None
    fns = _functions(x.dtype, _workload(x, weight.size(0), approximate), schedule)
    if fns is None:
        return None
    # bfloat16: the bias goes into the product, which then rounds once, as F.linear's does; added
    # to a product already rounded to bfloat16 it rounds twice (exact GELU then had 1.2x eager's
    # mean error against float64). In float32 the rounding is far below tolerance and the bias
    # costs the product a pass over its output, so the kernel adds it
    in_product = bias_in_product(x.dtype)
    h0 = F.linear(x, weight, bias if in_product else None)
    if h0.dtype != x.dtype:
        # a product in another dtype than the kernel was built for (an autocast state the
        # check above could not read) is never read by it: the torch formulation takes it
        return reference(h0, (torch.zeros_like(bias) if in_product else bias).to(h0.dtype), approximate)
    if in_product:
        return _apply(h0, torch.zeros_like(bias), approximate, fns, own_h0=True, operands=(x, weight, bias))
    return _apply(h0, bias, approximate, fns, own_h0=True, operands=(x, weight, None))


def make_case(workload, seed=0, device="cpu"):
    """The epilogue alone at ``workload`` (rows x n product, ``approximate``) on ``device``;
    ``run(schedule)`` does forward and backward, ``eager`` is ``F.gelu(h + b)``, ``check``
    compares with float64."""
    dtype = TORCH_DTYPE[workload["dtype"]]
    rows, n, approximate = workload["rows"], workload["n"], workload.get("approximate", "none")
    g = torch.Generator().manual_seed(seed)
    h0 = (2 * torch.randn(rows, n, generator=g)).to(device, dtype)
    b = (0.5 * torch.randn(n, generator=g)).to(device, dtype)
    dy = torch.randn(rows, n, generator=g).to(device, dtype)

    def finish(y, ins, backward):
        if not backward:
            return (y,)
        y.backward(dy)
        return (y,) + tuple(t.grad for t in ins)

    def run(schedule, backward=True):
        ins = [t.detach().requires_grad_(backward) for t in (h0, b)]
        return finish(bias_gelu(*ins, approximate, schedule=schedule), ins, backward)

    def eager(backward=True):
        ins = [t.detach().requires_grad_(backward) for t in (h0, b)]
        return finish(reference(*ins, approximate), ins, backward)

    def check(outputs):
        ins = [t.double().requires_grad_(True) for t in (h0, b)]
        expected = finish(reference(*ins, approximate), ins, True)
        for name, a, e in zip(("output", "grad h", "grad bias"), outputs, expected):
            if name == "grad bias":
                a, e = a.double() / max(1.0, rows ** 0.5), e / max(1.0, rows ** 0.5)
            assert_matches(a, e, workload["dtype"], f"bias_gelu {name}")

    return run, eager, check


KERNEL = register(Kernel(
    name="bias_gelu",
    doc=__doc__.strip().splitlines()[0],
    api=("linear_gelu",),
    signature={"linear_gelu": ("x", "linear", "approximate")},
    switch="linear_gelu",
    space=SPACE,
    workload_fields=("rows", "n", "approximate", "dtype"),
    workload_choices={"approximate": ("none", "tanh")},
    size_axes=("rows",),
    # bench:crossover, 2 threads, this machine: forward faster from 1.5 MiB (rows 64 x 3072), forward + backward from 3 MiB
    cpu_min_bytes=CpuFloors(inference=3 << 19, training=3 << 20),
    render=_render,
    reference=reference,
    make_case=make_case,
    bytes_moved=lambda w: 2 * w["rows"] * w["n"] * (4 if w["dtype"] == "float32" else 2),
    example_workloads=tuple(
        {"rows": r, "n": n, "approximate": a, "dtype": d}
        for r, n, a, d in ((512, 3072, "none", "float32"), (2048, 3072, "none", "float32"), (8192, 3072, "tanh", "float32"),
                           (4096, 4096, "none", "float32"), (2048, 3072, "none", "bfloat16"))
    ),
    # on an H200 the forward ran 1.65-1.78x faster than eager at 16384 x 3072, forward+backward
    # 0.75-0.80x (eager fuses the bias into the product): launched only when asked
    gpu_min_bytes=float("inf"),
    cuda_space=Space(
        params={"block": (256, 512, 1024, 2048), "rows": (1, 2, 4), "bwd_rows": (16, 64), "num_warps": (4, 8)},
        default={"block": 1024, "rows": 2, "bwd_rows": 16, "num_warps": 4},
        # a tile of at least 512 values, at most 16 a thread (more spill the backward's
        # registers), no wider than a row needs
        constraints=("block * rows >= 512", "block * rows <= 512 * num_warps", "block < 2 * n + 256", "bwd_rows % rows == 0"),
    ),
))
