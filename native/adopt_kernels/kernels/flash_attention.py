"""Blocked (flash-style) attention: ``softmax(q @ k^T * scale + bias + mask) @ v`` with online softmax.

Each (batch, head, block of query rows) runs over the key blocks: scores, scale, additive bias
and mask, boolean keep-mask and bottom-right causal mask, a running maximum and sum per row, the
output accumulated in float32; the L x S probabilities never exist. The forward saves a
log-sum-exp per row; the backward (flash-attention-2 style) recomputes probabilities block by
block per (batch, head, group of key blocks): dK and dV accumulate privately, dQ in one float32
buffer per key group. Dropout keeps a score where a counter-based hash of (seed, batch * heads +
head, row, key) clears a threshold, so the backward regenerates the mask from the seed. Keys and
values are packed as float32 blocks, so every inner product is a unit-stride vector loop over a
register tile of rows. Bfloat16 inputs are computed in float32 throughout: unlike eager bfloat16
matmuls, the scores and probabilities are not rounded, only the output and the gradients.

Schedule: ``block_q`` query rows per task, ``block_k`` keys per block, ``vec_bits`` the vector
width, ``loop`` the score product's order ("axpy": a broadcast query element times a transposed
key block; "dot": dot products over the head dimension), ``omp_kind`` the OpenMP schedule kind.
"""

import math

import torch

from .. import _dispatch
from ..registry import Kernel, Space, register
from ._common import TORCH_DTYPE, assert_matches, render
from .softmax import VECTOR_HELPERS, causal_keep

TEMPLATE = r"""
#pragma GCC target("prefer-vector-width=$vec_bits")
#include <cstdlib>
$helpers
typedef $scalar_t scalar_t;
#define BQ $block_q
#define BK $block_k
#define LOOP_DOT $loop_dot
#define RM 4  /* rows per register tile, of two vectors each */
// row-level helpers stay out of line: one copy each keeps the build near two seconds
#define NOINLINE __attribute__((noinline))

// meta: the integer arguments, by position
enum { B_, H_, L_, S_, D_, DV_, CAUSAL_, KB_, KH_, VB_, VH_, QS_, KS_ = QS_ + 3, VS_ = KS_ + 3,
       BIAS_ = VS_ + 3, ADD_ = BIAS_ + 4, KEEP_ = ADD_ + 4, DROP_ = KEEP_ + 4, SEED_, META_N };

static inline int64_t rup(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static inline float* falloc(int64_t n) { return (float*)std::memset(std::aligned_alloc(64, rup(n * 4 + 64, 64)), 0, n * 4); }

// C[M x N] (+)= A B: A element (row r, k) at A[r * a_rs + k * a_ks] (broadcast), B row-major with
// unit-stride vectors; N a multiple of VL. A register tile is R rows by NV vectors.
#define UNROLLED(i, n) _Pragma("GCC unroll 8") for (int i = 0; i < n; ++i)
template <int R, int NV>
static inline void mm_tile(float* C, int64_t ldc, const float* A, int64_t a_rs, int64_t a_ks,
                           const float* B, int64_t ldb, int64_t K, bool acc) {
  vf c[R][NV];
  UNROLLED(r, R) UNROLLED(v, NV) c[r][v] = acc ? vload(C + r * ldc + v * VL) : vsplat(0.f);
  for (int64_t k = 0; k < K; ++k) {
    vf b[NV];
    UNROLLED(v, NV) b[v] = vload(B + k * ldb + v * VL);
    UNROLLED(r, R) UNROLLED(v, NV) c[r][v] += A[r * a_rs + k * a_ks] * b[v];
  }
  UNROLLED(r, R) UNROLLED(v, NV) vstore(C + r * ldc + v * VL, c[r][v]);
}

// the last M % RM rows: one tile of exactly that many
template <int NV, int R = RM - 1>
static inline void mm_tail(int64_t rows, float* C, int64_t ldc, const float* A, int64_t a_rs, int64_t a_ks,
                           const float* B, int64_t ldb, int64_t K, bool acc) {
  if constexpr (R > 0) {
    if (rows == R) mm_tile<R, NV>(C, ldc, A, a_rs, a_ks, B, ldb, K, acc);
    else mm_tail<NV, R - 1>(rows, C, ldc, A, a_rs, a_ks, B, ldb, K, acc);
  }
}

template <int NV>
static inline void mm_rows(float* C, int64_t ldc, const float* A, int64_t a_rs, int64_t a_ks,
                           const float* B, int64_t ldb, int64_t M, int64_t K, bool acc) {
  int64_t i = 0;
  for (; i + RM <= M; i += RM) mm_tile<RM, NV>(C + i * ldc, ldc, A + i * a_rs, a_rs, a_ks, B, ldb, K, acc);
  mm_tail<NV>(M - i, C + i * ldc, ldc, A + i * a_rs, a_rs, a_ks, B, ldb, K, acc);
}

// panels of two vectors, then one where N (a multiple of VL) leaves a single vector
NOINLINE static void mm(float* C, int64_t ldc, const float* A, int64_t a_rs, int64_t a_ks, const float* B, int64_t ldb,
                        int64_t M, int64_t N, int64_t K, bool acc) {
  int64_t n0 = 0;
  for (; n0 + 2 * VL <= N; n0 += 2 * VL) mm_rows<2>(C + n0, ldc, A, a_rs, a_ks, B + n0, ldb, M, K, acc);
  if (n0 < N) mm_rows<1>(C + n0, ldc, A, a_rs, a_ks, B + n0, ldb, M, K, acc);
}

// S[M x N] = X Y^T by vector dot products over the (zero-padded) inner dimension P.
template <int R, int C>
static inline void dot_tile(float* S, int64_t lds, const float* X, int64_t ldx, const float* Y, int64_t ldy, int64_t P) {
  vf acc[R][C];
  UNROLLED(r, R) UNROLLED(c, C) acc[r][c] = vsplat(0.f);
  for (int64_t d = 0; d < P; d += VL) {
    vf y[C];
    UNROLLED(c, C) y[c] = vload(Y + c * ldy + d);
    UNROLLED(r, R) UNROLLED(c, C) acc[r][c] += vload(X + r * ldx + d) * y[c];
  }
  UNROLLED(r, R) UNROLLED(c, C) S[r * lds + c] = hsum(acc[r][c]);
}

NOINLINE static void dot_nt(float* S, int64_t lds, const float* X, int64_t ldx, const float* Y, int64_t ldy, int64_t M, int64_t N, int64_t P) {
  for (int64_t j = 0; j < N; j += 2) {
    int64_t i = 0;
    for (; i + RM <= M; i += RM) dot_tile<RM, 2>(S + i * lds + j, lds, X + i * ldx, ldx, Y + j * ldy, ldy, P);
    for (; i < M; ++i) dot_tile<1, 2>(S + i * lds + j, lds, X + i * ldx, ldx, Y + j * ldy, ldy, P);
  }
}

// Counter-based dropout: a key survives where two rounds of murmur3's finaliser over (seed,
// batch * heads + head, row, key) clear the threshold (the tests mirror it with torch's integers).
static inline uint32_t fmix1(uint32_t h) { h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; h ^= h >> 16; return h; }
static inline vu fmix(vu h) { h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; h ^= h >> 16; return h; }
static inline uint32_t row_key(const int64_t* meta, int64_t bh, int64_t i) {
  uint32_t lo = (uint32_t)meta[SEED_], hi = (uint32_t)((uint64_t)meta[SEED_] >> 32);
  uint32_t a = fmix1(lo ^ ((uint32_t)bh * 0x9e3779b1u));
  return fmix1((a ^ ((uint32_t)i * 0x85ebca77u)) + hi);
}
// s[j] *= keep(j) / (1 - p) for the keys j0 .. j0 + BK of one row
NOINLINE static void dropout_row(float* s, uint32_t key, uint32_t hi, int64_t j0, uint32_t thresh, float inv_keep) {
  vu j;
  for (int t = 0; t < VL; ++t) j[t] = (uint32_t)(j0 + t);
  for (int64_t jj = 0; jj < BK; jj += VL, j += VL) {
    vu h = fmix(fmix(key ^ (j * 0xc2b2ae3du)) + hi);
    vi kept = (vi)(h >> 8) >= (vi)(vu{} + thresh);
    vstore(s + jj, kept ? vload(s + jj) * inv_keep : vsplat(0.f));
  }
}

// One row of a score block: s <- s * scale + bias + mask, -inf where the keep-mask drops a key,
// past the causal limit lim (relative to the block) or past the last key (nk valid).
struct RowMask { const float* bias; int64_t bstep; const float* add; int64_t astep; const uint8_t* keep; int64_t kstep; };

static inline RowMask row_mask(const float* bias, const float* add, const uint8_t* keep, const int64_t* meta,
                               int64_t b, int64_t h, int64_t i, int64_t j0) {
  auto at = [&](int o) { return b * meta[o] + h * meta[o + 1] + i * meta[o + 2] + j0 * meta[o + 3]; };
  return {bias ? bias + at(BIAS_) : nullptr, meta[BIAS_ + 3], add ? add + at(ADD_) : nullptr, meta[ADD_ + 3],
          keep ? keep + at(KEEP_) : nullptr, meta[KEEP_ + 3]};
}

NOINLINE static float mask_row(float* s, const RowMask& m, float scale, int64_t nk, int64_t lim) {
  const vf ninf = vsplat(NEG_INF), iota = viota();
  const int64_t nv = nk / VL * VL;
  vf vm = ninf;
  int64_t jj = 0;
  for (; jj < nv; jj += VL) {
    vf x = vload(s + jj) * scale;
    if (m.bias) x += m.bstep ? vload(m.bias + jj) : vsplat(m.bias[0]);
    if (m.add) x += m.astep ? vload(m.add + jj) : vsplat(m.add[0]);
    if (m.keep) x = (m.kstep ? vkeep(m.keep + jj) : (vi{} + (m.keep[0] ? -1 : 0))) ? x : ninf;
    if (lim < jj + VL - 1) x = (iota + (float)jj > (float)lim) ? ninf : x;
    vstore(s + jj, x);
    vm = vmax(vm, x);
  }
  float mx = hmax(vm);
  for (; jj < nk; ++jj) {
    float x = s[jj] * scale;
    if (m.bias) x += m.bias[jj * m.bstep];
    if (m.add) x += m.add[jj * m.astep];
    if ((m.keep && !m.keep[jj * m.kstep]) || jj > lim) x = NEG_INF;
    s[jj] = x;
    mx = std::max(mx, x);
  }
  for (; jj < BK; ++jj) s[jj] = NEG_INF;
  return mx;  // the row's maximum
}

// s <- exp(s - m); returns the sum
NOINLINE static float exp_row(float* s, float m) {
  vf sum = vsplat(0.f);
  for (int64_t jj = 0; jj < BK; jj += VL) { vf e = vexp(vload(s + jj) - m); vstore(s + jj, e); sum += e; }
  return hsum(sum);
}

// The causal limit of query row i: the last key it may see (bottom-right aligned), or S.
static inline int64_t key_limit(const int64_t* meta, int64_t i) {
  return meta[CAUSAL_] ? i + meta[S_] - meta[L_] : meta[S_];
}

// Row r of a (rows x width) tile from a strided tensor row into float32, zero-padded.
NOINLINE static void load_rows(float* dst, int64_t ld, const scalar_t* src, int64_t stride, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    int64_t d = 0;
    for (; d + VL <= n; d += VL) vstore(dst + r * ld + d, vload(src + r * stride + d));
    for (; d < n; ++d) dst[r * ld + d] = load_f(src + r * stride, d);
  }
}

$fwd

$bwd
"""

FORWARD = r"""
// Keys and values of every distinct (batch, head) as float32 blocks: transposed keys
// (D x BK per block) for "axpy", row-major padded keys for "dot"; row-major padded values.
static void pack_kv(const scalar_t* k, const scalar_t* v, float* kp, float* vp, const int64_t* meta, int nthreads) {
  const int64_t S = meta[S_], D = meta[D_], Dv = meta[DV_], Dp = rup(D, VL), Dvp = rup(Dv, VL), nkb = rup(S, BK) / BK;
  const int64_t nk_heads = meta[KB_] * meta[KH_], nv_heads = meta[VB_] * meta[VH_];
  #pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
  for (int64_t x = 0; x < std::max(nk_heads, nv_heads); ++x)
    for (int64_t kb = 0; kb < nkb; ++kb) {
      const int64_t j0 = kb * BK, nk = std::min<int64_t>(BK, S - j0);
      if (x < nk_heads) {
        const scalar_t* ks = k + (x / meta[KH_]) * meta[KS_] + (x % meta[KH_]) * meta[KS_ + 1] + j0 * meta[KS_ + 2];
        float* dst = kp + (x * nkb + kb) * BK * Dp;
        if (LOOP_DOT) load_rows(dst, Dp, ks, meta[KS_ + 2], nk, D);
        else for (int64_t j = 0; j < nk; ++j) for (int64_t d = 0; d < D; ++d) dst[d * BK + j] = load_f(ks + j * meta[KS_ + 2], d);
      }
      if (x < nv_heads) {
        const scalar_t* vs = v + (x / meta[VH_]) * meta[VS_] + (x % meta[VH_]) * meta[VS_ + 1] + j0 * meta[VS_ + 2];
        load_rows(vp + (x * nkb + kb) * BK * Dvp, Dvp, vs, meta[VS_ + 2], nk, Dv);
      }
    }
}

struct FwdScratch { float *q, *s, *o, *m, *l; };

// Online softmax over one score block: the running max and sum of each row, the output
// rows rescaled, the block turned into (dropped-out) probabilities. False where they all are 0.
static bool softmax_block(const FwdScratch& w, int64_t nq, int64_t Dvp, const float* bmax, const uint32_t* keys, uint32_t hi,
                          int64_t j0, uint32_t thresh, float inv_keep) {
  bool mass = false;
  for (int64_t r = 0; r < nq; ++r) {
    float* s = w.s + r * BK;
    float mnew = std::max(w.m[r], bmax[r]);
    if (mnew == NEG_INF) { std::memset(s, 0, BK * 4); continue; }
    float alpha = std::exp(w.m[r] - mnew), sum = exp_row(s, mnew);
    mass |= !(sum == 0.f);
    w.l[r] = w.l[r] * alpha + sum;
    w.m[r] = mnew;
    if (alpha != 1.f)
      for (float* o = w.o + r * Dvp; o < w.o + (r + 1) * Dvp; o += VL) vstore(o, vload(o) * alpha);
    if (keys) dropout_row(s, keys[r], hi, j0, thresh, inv_keep);
  }
  return mass;
}

static void fwd_task(const scalar_t* q, const float* kp, const float* vp, const float* bias, const float* add, const uint8_t* keep,
                     scalar_t* out, float* lse, const int64_t* meta, float scale, float p_drop, int64_t task, const FwdScratch& w) {
  const int64_t H = meta[H_], L = meta[L_], S = meta[S_], D = meta[D_], Dv = meta[DV_];
  const int64_t Dp = rup(D, VL), Dvp = rup(Dv, VL), nkb = rup(S, BK) / BK, nqb = rup(L, BQ) / BQ;
  const int64_t bh = task / nqb, b = bh / H, h = bh % H, i0 = (task % nqb) * BQ, nq = std::min<int64_t>(BQ, L - i0);
  const float* kh = kp + ((meta[KB_] > 1 ? b : 0) * meta[KH_] + (meta[KH_] > 1 ? h : 0)) * nkb * BK * Dp;
  const float* vh = vp + ((meta[VB_] > 1 ? b : 0) * meta[VH_] + (meta[VH_] > 1 ? h : 0)) * nkb * BK * Dvp;
  load_rows(w.q, Dp, q + b * meta[QS_] + h * meta[QS_ + 1] + i0 * meta[QS_ + 2], meta[QS_ + 2], nq, D);
  std::memset(w.o, 0, BQ * Dvp * 4);
  uint32_t keys[BQ];
  const uint32_t hi = (uint32_t)((uint64_t)meta[SEED_] >> 32), thresh = (uint32_t)std::min(16777216.0, (double)p_drop * 16777216.0);
  for (int64_t r = 0; r < nq; ++r) {
    w.m[r] = NEG_INF; w.l[r] = 0.f;
    if (meta[DROP_]) keys[r] = row_key(meta, bh, i0 + r);
  }
  // with a causal mask, key blocks past the last row's limit are all masked
  int64_t last = std::min<int64_t>(S - 1, key_limit(meta, i0 + nq - 1));
  int64_t kb_end = last < 0 ? 0 : last / BK + 1;
  for (int64_t kb = 0; kb < kb_end; ++kb) {
    const int64_t j0 = kb * BK, nk = std::min<int64_t>(BK, S - j0);
    const float* kblk = kh + kb * BK * Dp;
    if (LOOP_DOT) dot_nt(w.s, BK, w.q, Dp, kblk, Dp, nq, BK, Dp);
    else mm(w.s, BK, w.q, Dp, 1, kblk, BK, nq, BK, D, false);
    float bmax[BQ];
    for (int64_t r = 0; r < nq; ++r)
      bmax[r] = mask_row(w.s + r * BK, row_mask(bias, add, keep, meta, b, h, i0 + r, j0), scale, nk, key_limit(meta, i0 + r) - j0);
    if (softmax_block(w, nq, Dvp, bmax, meta[DROP_] ? keys : nullptr, hi, j0, thresh, 1.f / (1.f - p_drop)))
      mm(w.o, Dvp, w.s, BK, 1, vh + kb * BK * Dvp, Dvp, nq, Dvp, nk, true);
  }
  for (int64_t r = 0; r < nq; ++r) {
    const int64_t i = i0 + r;
    const bool empty = w.m[r] == NEG_INF;  // every key masked: NaN, as eager softmax gives
    const float inv = empty ? __builtin_nanf("") : 1.f / w.l[r];
    scalar_t* dst = out + (bh * L + i) * Dv;
    for (int64_t d = 0; d < Dv; ++d) store_f(dst, d, w.o[r * Dvp + d] * inv);
    lse[bh * L + i] = empty ? __builtin_nanf("") : w.m[r] + std::log(w.l[r]);
  }
}

extern "C" void attn_fwd(const scalar_t* q, const scalar_t* k, const scalar_t* v, const float* bias, const float* add,
                         const uint8_t* keep, scalar_t* out, float* lse, const int64_t* meta, float scale, float p_drop,
                         int nthreads) {
  const int64_t S = meta[S_], D = meta[D_], Dv = meta[DV_], Dp = rup(D, VL), Dvp = rup(Dv, VL), nkb = rup(S, BK) / BK;
  float* kp = falloc(meta[KB_] * meta[KH_] * nkb * BK * Dp);
  float* vp = falloc(meta[VB_] * meta[VH_] * nkb * BK * Dvp);
  pack_kv(k, v, kp, vp, meta, nthreads);
  const int64_t tasks = meta[B_] * meta[H_] * (rup(meta[L_], BQ) / BQ);
  #pragma omp parallel num_threads(nthreads)
  {
    FwdScratch w{falloc(BQ * Dp), falloc(BQ * BK), falloc(BQ * Dvp), falloc(BQ), falloc(BQ)};
    #pragma omp for schedule(runtime)
    for (int64_t t = 0; t < tasks; ++t) fwd_task(q, kp, vp, bias, add, keep, out, lse, meta, scale, p_drop, t, w);
    for (float* p : {w.q, w.s, w.o, w.m, w.l}) std::free(p);
  }
  std::free(kp);
  std::free(vp);
}
"""

BACKWARD = r"""
struct BwdScratch { float *kt, *kr, *vt, *q, *dout, *p, *ds, *pd, *dk, *dv; };

// One (query block, key block) pair: recompute the probabilities from the saved log-sum-exp,
// then dV += P^T dO, dS = P * (dP - delta), dK += dS^T Q, dQ += dS K (scale folded into dS).
static void bwd_pair(const scalar_t* q, const scalar_t* dout, const float* bias, const float* add, const uint8_t* keep,
                     const float* lse, const float* delta, float* dq, const int64_t* meta, float scale, float p_drop,
                     int64_t b, int64_t h, int64_t i0, int64_t j0, const BwdScratch& w) {
  const int64_t H = meta[H_], L = meta[L_], S = meta[S_], D = meta[D_], Dv = meta[DV_];
  const int64_t Dp = rup(D, VL), Dvp = rup(Dv, VL), bh = b * H + h;
  const int64_t nq = std::min<int64_t>(BQ, L - i0), nk = std::min<int64_t>(BK, S - j0);
  load_rows(w.q, Dp, q + b * meta[QS_] + h * meta[QS_ + 1] + i0 * meta[QS_ + 2], meta[QS_ + 2], nq, D);
  if (LOOP_DOT) dot_nt(w.p, BK, w.q, Dp, w.kr, Dp, nq, BK, Dp);
  else mm(w.p, BK, w.q, Dp, 1, w.kt, BK, nq, BK, D, false);
  bool mass = false;
  for (int64_t r = 0; r < nq; ++r) {
    const int64_t i = i0 + r;
    mask_row(w.p + r * BK, row_mask(bias, add, keep, meta, b, h, i, j0), scale, nk, key_limit(meta, i) - j0);
    mass |= !(exp_row(w.p + r * BK, lse[bh * L + i]) == 0.f);
  }
  if (!mass) return;  // every probability of the pair underflowed to 0 (a masked block): nothing to add
  load_rows(w.dout, Dvp, dout + (bh * L + i0) * Dv, Dv, nq, Dv);
  if (LOOP_DOT) dot_nt(w.ds, BK, w.dout, Dvp, w.vt, Dvp, nq, BK, Dvp);
  else mm(w.ds, BK, w.dout, Dvp, 1, w.vt, BK, nq, BK, Dv, false);
  const uint32_t hi = (uint32_t)((uint64_t)meta[SEED_] >> 32), thresh = (uint32_t)std::min(16777216.0, (double)p_drop * 16777216.0);
  for (int64_t r = 0; r < nq; ++r) {
    const int64_t i = i0 + r;
    float *p = w.p + r * BK, *ds = w.ds + r * BK, *pd = w.pd + r * BK;
    if (meta[DROP_]) {  // dropped-out probabilities multiply dO; dP's kept entries scale alike
      std::memcpy(pd, p, BK * 4);
      for (float* t : {pd, ds}) dropout_row(t, row_key(meta, bh, i), hi, j0, thresh, 1.f / (1.f - p_drop));
    }
    const float dl = delta[bh * L + i];
    for (int64_t jj = 0; jj < BK; jj += VL) vstore(ds + jj, vload(p + jj) * (vload(ds + jj) - dl) * scale);
  }
  mm(w.dv, Dvp, meta[DROP_] ? w.pd : w.p, 1, BK, w.dout, Dvp, nk, Dvp, nq, true);
  mm(w.dk, Dp, w.ds, 1, BK, w.q, Dp, nk, Dp, nq, true);
  mm(dq + (bh * L + i0) * rup(D, DQ_PAD), rup(D, DQ_PAD), w.ds, BK, 1, w.kr, Dp, nq, Dp, nk, true);
}

// Pack one key block and its values (transposed for "axpy", row-major for "dot" and dQ).
static void pack_block(const scalar_t* k, const scalar_t* v, const int64_t* meta, int64_t b, int64_t h, int64_t j0, const BwdScratch& w) {
  const int64_t S = meta[S_], D = meta[D_], Dv = meta[DV_], Dp = rup(D, VL), Dvp = rup(Dv, VL), nk = std::min<int64_t>(BK, S - j0);
  const scalar_t* ks = k + (meta[KB_] > 1 ? b : 0) * meta[KS_] + (meta[KH_] > 1 ? h : 0) * meta[KS_ + 1] + j0 * meta[KS_ + 2];
  const scalar_t* vs = v + (meta[VB_] > 1 ? b : 0) * meta[VS_] + (meta[VH_] > 1 ? h : 0) * meta[VS_ + 1] + j0 * meta[VS_ + 2];
  std::memset(w.kr, 0, BK * Dp * 4);
  std::memset(w.vt, 0, BK * Dvp * 4);
  load_rows(w.kr, Dp, ks, meta[KS_ + 2], nk, D);
  if (LOOP_DOT) load_rows(w.vt, Dvp, vs, meta[VS_ + 2], nk, Dv);
  else {
    std::memset(w.kt, 0, BK * Dp * 4);
    for (int64_t j = 0; j < nk; ++j) for (int64_t d = 0; d < D; ++d) w.kt[d * BK + j] = w.kr[j * Dp + d];
    for (int64_t j = 0; j < nk; ++j) for (int64_t d = 0; d < Dv; ++d) w.vt[d * BK + j] = load_f(vs + j * meta[VS_ + 2], d);
  }
}

extern "C" void attn_bwd(const scalar_t* q, const scalar_t* k, const scalar_t* v, const float* bias, const float* add,
                         const uint8_t* keep, const scalar_t* dout, const float* lse, const float* delta, float* dq,
                         float* dk, float* dv, const int64_t* meta, float scale, float p_drop, int64_t groups, int nthreads) {
  const int64_t B = meta[B_], H = meta[H_], L = meta[L_], S = meta[S_], D = meta[D_], Dv = meta[DV_];
  const int64_t Dp = rup(D, VL), Dvp = rup(Dv, VL), nkb = rup(S, BK) / BK;
  #pragma omp parallel num_threads(nthreads)
  {
    BwdScratch w{falloc(BK * Dp), falloc(BK * Dp), falloc(BK * Dvp), falloc(BQ * Dp), falloc(BQ * Dvp),
                 falloc(BQ * BK), falloc(BQ * BK), falloc(BQ * BK), falloc(BK * Dp), falloc(BK * Dvp)};
    #pragma omp for collapse(2) schedule(runtime)
    for (int64_t bh = 0; bh < B * H; ++bh)
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t b = bh / H, h = bh % H;
        float* dqg = dq + g * B * H * L * rup(D, DQ_PAD);
        for (int64_t kb = g * nkb / groups; kb < (g + 1) * nkb / groups; ++kb) {
          const int64_t j0 = kb * BK, nk = std::min<int64_t>(BK, S - j0);
          pack_block(k, v, meta, b, h, j0, w);
          std::memset(w.dk, 0, BK * Dp * 4);
          std::memset(w.dv, 0, BK * Dvp * 4);
          // with a causal mask, query rows before the first that sees this block are skipped
          const int64_t first = meta[CAUSAL_] ? std::max<int64_t>(0, j0 - (S - L)) : 0;
          for (int64_t i0 = first / BQ * BQ; i0 < L; i0 += BQ)
            bwd_pair(q, dout, bias, add, keep, lse, delta, dqg, meta, scale, p_drop, b, h, i0, j0, w);
          for (int64_t j = 0; j < nk; ++j) {
            std::memcpy(dk + ((bh * S) + j0 + j) * D, w.dk + j * Dp, D * 4);
            std::memcpy(dv + ((bh * S) + j0 + j) * Dv, w.dv + j * Dvp, Dv * 4);
          }
        }
      }
    for (float* p : {w.kt, w.kr, w.vt, w.q, w.dout, w.p, w.ds, w.pd, w.dk, w.dv}) std::free(p);
  }
}
"""

SPACE = Space(
    params={"block_q": (16, 32, 64), "block_k": (32, 64, 128), "vec_bits": (128, 256), "loop": ("axpy", "dot"),
            "omp_kind": ("static", "dynamic")},
    default={"block_q": 32, "block_k": 64, "vec_bits": 256, "loop": "axpy", "omp_kind": "dynamic"},
    omp={"kind": "omp_kind"},
)
DQ_PAD = 16  # dQ's float32 rows are padded to a multiple of every vector length


def _part(text, schedule, dtype):
    return render(text, schedule, dtype).split("\n", 1)[1]


def _render(schedule, dtype):
    return render(TEMPLATE, schedule, dtype, helpers=_part(VECTOR_HELPERS, schedule, dtype),
                  fwd=_part(FORWARD, schedule, dtype), bwd=_part(BACKWARD, schedule, dtype).replace("DQ_PAD", str(DQ_PAD)),
                  loop_dot=int(schedule["loop"] == "dot"))


def reference(q, k, v, scale, bias=None, mask=None, keep=None, is_causal=False, dropout=None, dropout_p=0.0):
    """Float64-capable reference: the eager composite. ``dropout`` is a kept-mask to apply."""
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if bias is not None:
        scores = scores + bias.to(scores.dtype)
    if mask is not None:
        scores = torch.where(mask, scores, scores.new_tensor(-math.inf)) if mask.dtype == torch.bool else scores + mask.to(scores.dtype)
    if keep is not None:
        scores = torch.where(keep, scores, scores.new_tensor(-math.inf))
    if is_causal:
        scores = torch.where(causal_keep(q.size(-2), k.size(-2)), scores, scores.new_tensor(-math.inf))
    probs = torch.softmax(scores, dim=-1)
    if dropout is not None:
        probs = probs * dropout / (1 - dropout_p)
    return torch.matmul(probs, v)


def _mask_fits(t, shape, kinds):
    if t is None:
        return True
    # a learned bias needs its gradient, which the eager path computes
    if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or t.dtype not in kinds or t.dim() > 4 or (t.requires_grad and torch.is_grad_enabled()):
        return False
    try:
        return torch.broadcast_shapes(t.shape, shape) == shape
    except RuntimeError:
        return False


def supported(q, k, v, bias=None, mask=None, keep=None, dropout_p=0.0):
    """4-D (batch, heads, length, head_dim) float32/bfloat16 CPU tensors of one dtype, keys and
    values whose batch and heads are the queries' or 1, masks that broadcast to the scores."""
    if not all(isinstance(t, torch.Tensor) and t.dim() == 4 and t.numel() and t.dtype == q.dtype for t in (q, k, v)):
        return False
    B, H, L, D = q.shape
    if k.size(-1) != D or k.size(-2) != v.size(-2):
        return False
    if any(t.size(0) not in (1, B) or t.size(1) not in (1, H) for t in (k, v)) or not 0.0 <= dropout_p < 1.0:
        return False
    shape = torch.Size((B, H, L, k.size(-2)))
    floats = (torch.float32, torch.bfloat16)
    masks_fit = _mask_fits(bias, shape, floats) and _mask_fits(mask, shape, floats + (torch.bool,)) and _mask_fits(keep, shape, (torch.bool,))
    return masks_fit and _dispatch.native_ok(KERNEL, q, k, v)


def _unit_last(t):
    return t if t.size(-1) == 1 or t.stride(-1) == 1 else t.contiguous()


def _mask_arg(t, shape):
    """A mask as the kernel reads it: float32 or uint8 values and their strides over the scores
    (0 where it broadcasts), the last one 0 or 1."""
    if t is None:
        return None, (0, 0, 0, 0)
    t = t.reshape(1, 1) if t.dim() == 0 else t  # `scores + 0.5`: one value everywhere
    t = _unit_last(t.view(torch.uint8) if t.dtype == torch.bool else t.float())
    return t, t.expand(shape).stride()


def _meta(q, k, v, masks, causal, dropout, seed):
    """The kernel's integer arguments in the order of its ``enum``: sizes, strides, flags."""
    B, H, L, D = q.shape
    values = [B, H, L, k.size(2), D, v.size(3), int(causal), k.size(0), k.size(1), v.size(0), v.size(1)]
    values += [s for t in (q, k, v) for s in t.stride()[:3]] + [s for _, strides in masks for s in strides]
    return torch.tensor(values + [int(dropout), seed], dtype=torch.int64)


def _groups(B, H, S):
    """Key groups of the backward: eight (batch, head, group) tasks a thread, so a thread slowed
    by another process costs little, each group at least one key block of the largest size."""
    return max(1, min(-(-8 * torch.get_num_threads() // (B * H)), -(-S // 128)))


class FlashAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, bias, mask, keep, scale, causal, dropout_p, fwd, bwd):
        q, k, v = (_unit_last(t) for t in (q, k, v))
        B, H, L, _ = q.shape
        shape = (B, H, L, k.size(2))
        # a boolean mask is a keep-mask; with an explicit keep-mask too, the two are and-ed
        if mask is not None and mask.dtype == torch.bool:
            keep = mask if keep is None else mask & keep
            mask = None
        masks = [_mask_arg(t, shape) for t in (bias, mask, keep)]
        seed = int(torch.empty((), dtype=torch.int64).random_().item()) if dropout_p > 0 else 0
        meta = _meta(q, k, v, masks, causal, dropout_p > 0, seed)
        out = torch.empty(B, H, L, v.size(3), dtype=q.dtype)
        lse = torch.empty(B, H, L, dtype=torch.float32)
        ptrs = [_dispatch.ptr(t) for t, _ in masks]
        fwd(_dispatch.ptr(q), _dispatch.ptr(k), _dispatch.ptr(v), *ptrs, _dispatch.ptr(out), _dispatch.ptr(lse), _dispatch.ptr(meta),
            _dispatch.f32(scale), _dispatch.f32(dropout_p), _dispatch.threads())
        ctx.save_for_backward(q, k, v, out, lse, meta, *(t for t, _ in masks))
        ctx.scale, ctx.dropout_p, ctx.bwd = scale, dropout_p, bwd
        _dispatch.CALLS[KERNEL.name] += 1
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse, meta, *masks = ctx.saved_tensors
        B, H, L, D = q.shape
        S = k.size(2)
        dout = dout.to(q.dtype).contiguous()
        delta = (dout.float() * out.float()).sum(-1)
        groups = _groups(B, H, S)
        dq = torch.zeros(groups, B, H, L, -(-D // DQ_PAD) * DQ_PAD, dtype=torch.float32)
        dk = torch.empty(B, H, S, D, dtype=torch.float32)
        dv = torch.empty(B, H, S, v.size(3), dtype=torch.float32)
        ctx.bwd(_dispatch.ptr(q), _dispatch.ptr(k), _dispatch.ptr(v), *(_dispatch.ptr(t) for t in masks), _dispatch.ptr(dout),
                _dispatch.ptr(lse), _dispatch.ptr(delta), _dispatch.ptr(dq), _dispatch.ptr(dk), _dispatch.ptr(dv), _dispatch.ptr(meta),
                _dispatch.f32(ctx.scale), _dispatch.f32(ctx.dropout_p), _dispatch.i64(groups), _dispatch.threads())
        dq = (dq[0] if groups == 1 else dq.sum(0))[..., :D].to(q.dtype)
        return (dq, dk.sum_to_size(k.shape).to(k.dtype), dv.sum_to_size(v.shape).to(v.dtype)) + (None,) * 8


def flash_attention(q, k, v, scale=None, bias=None, mask=None, keep=None, is_causal=False, dropout_p=0.0, schedule=None):
    """The compiled attention of 4-D (batch, heads, length, head_dim) tensors, or None when it
    cannot run here (the caller runs the original).

    ``scale`` None means ``1 / sqrt(head_dim)``; ``bias`` and a float ``mask`` are added to the
    scaled scores in that order; a boolean ``mask`` or ``keep`` keeps where True; ``is_causal``
    masks bottom-right aligned; ``dropout_p`` > 0 drops probabilities (the caller decides whether
    it is training). A row with every key masked gives NaN, as eager softmax does."""
    if not supported(q, k, v, bias, mask, keep, dropout_p):
        return None
    workload = {"batch": q.size(0), "heads": q.size(1), "q_len": q.size(2), "k_len": k.size(2), "head_dim": q.size(3)}
    fwd = _dispatch.function(KERNEL, "attn_fwd", q.dtype, workload, schedule)
    bwd = _dispatch.function(KERNEL, "attn_bwd", q.dtype, workload, schedule)
    if fwd is None or bwd is None:
        return None
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else float(scale)
    return FlashAttentionFunction.apply(q, k, v, bias, mask, keep, scale, bool(is_causal), float(dropout_p), fwd, bwd)


def _case_inputs(workload, seed):
    dtype = TORCH_DTYPE[workload["dtype"]]
    g = torch.Generator().manual_seed(seed)
    B, H, L, S, D = (workload[f] for f in ("batch", "heads", "q_len", "k_len", "head_dim"))
    q, k, v, dout = (torch.randn(B, H, n, D, generator=g).to(dtype) for n in (L, S, S, L))
    # a padding mask as BERT-style models build it: the batch's last keys masked with the minimum
    mask = torch.zeros(B, 1, 1, S, dtype=dtype)
    mask[..., S - S // 8:] = torch.finfo(dtype).min
    return q, k, v, mask, dout


def make_case(workload, seed=0):
    """``run(schedule)`` is the compiled attention forward and backward with a padding mask;
    ``eager`` the torch composite; ``check`` compares with float64, one head at a time."""
    q, k, v, mask, dout = _case_inputs(workload, seed)
    scale = 1.0 / math.sqrt(q.size(-1))

    def forward_backward(fn, backward):
        ql, kl, vl = (t.detach().requires_grad_(backward) for t in (q, k, v))
        out = fn(ql, kl, vl)
        if not backward:
            return (out,)
        out.backward(dout)
        return out, ql.grad, kl.grad, vl.grad

    def run(schedule, backward=True):
        return forward_backward(lambda q, k, v: flash_attention(q, k, v, scale, mask=mask, schedule=schedule), backward)

    def eager(backward=True):
        return forward_backward(lambda q, k, v: torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * scale + mask, dim=-1), v), backward)

    def check(outputs):
        for b, h in ((b, h) for b in range(q.size(0)) for h in range(q.size(1))):
            ql, kl, vl = (t[b:b + 1, h:h + 1].double().requires_grad_(True) for t in (q, k, v))
            out = reference(ql, kl, vl, scale, mask=mask[b:b + 1].double())
            out.backward(dout[b:b + 1, h:h + 1].double())
            for name, a, e in zip(("output", "grad q", "grad k", "grad v"), outputs, (out, ql.grad, kl.grad, vl.grad)):
                assert_matches(a[b:b + 1, h:h + 1], e, workload["dtype"], f"attention {name} (batch {b}, head {h})")

    return run, eager, check


KERNEL = register(Kernel(
    name="flash_attention",
    doc=__doc__.strip().splitlines()[0],
    api=("attention",),
    signature={"attention": ("q", "k", "v", "mask", "scale", "dropout_p", "training", "is_causal", "mask_heads", "mask_added", "softmax_dtype",
                             "cast_dtype", "bias", "keep", "keep_fill", "fill_mask", "fill_value")},
    switch="attention",
    space=SPACE,
    workload_fields=("batch", "heads", "q_len", "k_len", "head_dim", "dtype"),
    render=_render,
    reference=reference,
    make_case=make_case,
    # what a fused forward must move: q, k, v, the output and the padding mask
    bytes_moved=lambda w: (2 * w["batch"] * w["heads"] * w["head_dim"] * (w["q_len"] + w["k_len"]) + w["batch"] * w["k_len"])
    * (2 if w["dtype"] == "bfloat16" else 4),
    example_workloads=tuple(
        {"batch": b, "heads": h, "q_len": n, "k_len": n, "head_dim": d, "dtype": "float32"}
        for b, h, n, d in ((1, 12, 1024, 64), (2, 12, 2048, 64), (4, 12, 1024, 64), (1, 16, 2048, 80), (1, 12, 4096, 64))
    ),
))
