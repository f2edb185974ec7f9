"""The C++ source of the blocked attention kernel (``flash_attention.py``): the library's frame,
the forward over key blocks with online softmax, and the backward that recomputes the
probabilities block by block. Rendered with the schedule's parameters by ``_common.render``.
"""

TEMPLATE = r"""
#pragma GCC target("prefer-vector-width=$vec_bits")
#include <cstdlib>
#include <vector>
$helpers
typedef $scalar_t scalar_t;
#define BQ $block_q
#define BK $block_k
#define LOOP_DOT $loop_dot
#define RM $tile_rows  /* rows of a register tile */
#define TILE_V $tile_vecs  /* vectors of a register tile (the dot loop: two) */
#define DR $direct_max_rows  /* the most query rows the forward's direct path takes */
// row-level helpers stay out of line: one copy each keeps the build near two seconds
#define NOINLINE __attribute__((noinline))

// meta: the integer arguments, by position
enum { B_, H_, L_, S_, D_, DV_, CAUSAL_, KB_, KH_, VB_, VH_, QS_, KS_ = QS_ + 3, VS_ = KS_ + 3,
       BIAS_ = VS_ + 3, ADD_ = BIAS_ + 4, KEEP_ = ADD_ + 4, DROP_ = KEEP_ + 4, SEED_, DIRECT_, META_N };

static inline int64_t rup(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
// The score columns computed for a key block of nk keys: whole vectors, not the whole block, so
// that the last block of a length short of a multiple of BK (ViT's 197 keys: 5 in the last of
// four 64-key blocks) costs what its keys do. Columns from nk on are -inf scores, 0 probabilities.
static inline int64_t cols(int64_t nk) { return rup(nk, VL); }
static inline float* ualloc(int64_t n) { return (float*)std::aligned_alloc(64, rup(n * 4 + 64, 64)); }
static inline float* falloc(int64_t n) { return (float*)std::memset(ualloc(n), 0, n * 4); }

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

// panels of TILE_V vectors, then panels of one for what N (a multiple of VL) leaves
NOINLINE static void mm(float* C, int64_t ldc, const float* A, int64_t a_rs, int64_t a_ks, const float* B, int64_t ldb,
                        int64_t M, int64_t N, int64_t K, bool acc) {
  int64_t n0 = 0;
  for (; n0 + TILE_V * VL <= N; n0 += TILE_V * VL) mm_rows<TILE_V>(C + n0, ldc, A, a_rs, a_ks, B + n0, ldb, M, K, acc);
  for (; n0 < N; n0 += VL) mm_rows<1>(C + n0, ldc, A, a_rs, a_ks, B + n0, ldb, M, K, acc);
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
// s[j] *= keep(j) / (1 - p) for the keys j0 .. j0 + n of one row
NOINLINE static void dropout_row(float* s, int64_t n, uint32_t key, uint32_t hi, int64_t j0, uint32_t thresh, float inv_keep) {
  vu j;
  for (int t = 0; t < VL; ++t) j[t] = (uint32_t)(j0 + t);
  for (int64_t jj = 0; jj < n; jj += VL, j += VL) {
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
  for (; jj < cols(nk); ++jj) s[jj] = NEG_INF;
  return mx;  // the row's maximum
}

// s <- exp(s - m) over n columns (a multiple of VL); returns the sum
// exp(s - m) * k: the row's maximum m, then k (the backward's 1 / the row's sum) as a factor, so that
// a row whose scores all sit near a huge mask value (float32's minimum, -1e9) keeps its
// probabilities: m + log(sum) rounded to one float loses the log to m's magnitude (and with
// -fassociative-math a second subtraction may be folded into the first).
static inline __attribute__((always_inline)) float exp_cols(float* s, int64_t n, float m, float k) {
  vf sum = vsplat(0.f);
  for (int64_t jj = 0; jj < n; jj += VL) { vf e = vexp(vload(s + jj) - m) * k; vstore(s + jj, e); sum += e; }
  return hsum(sum);
}
// a whole block's row with BK known to the compiler (unrolled), a short one's with n; the forward's
// with no factor (a literal 1, folded away), the backward's with its row's 1 / sum
NOINLINE static float exp_row(float* s, int64_t n, float m) { return n == BK ? exp_cols(s, BK, m, 1.f) : exp_cols(s, n, m, 1.f); }
NOINLINE static float exp_row_scaled(float* s, int64_t n, float m, float k) { return n == BK ? exp_cols(s, BK, m, k) : exp_cols(s, n, m, k); }

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
// Key block kb of key head x (batch * key heads + head) into dst, in the loop's layout.
static inline void pack_k_block(const scalar_t* k, float* dst, const int64_t* meta, int64_t x, int64_t kb) {
  const int64_t S = meta[S_], D = meta[D_], Dp = rup(D, VL), j0 = kb * BK, nk = std::min<int64_t>(BK, S - j0);
  const scalar_t* ks = k + (x / meta[KH_]) * meta[KS_] + (x % meta[KH_]) * meta[KS_ + 1] + j0 * meta[KS_ + 2];
  if (LOOP_DOT) load_rows(dst, Dp, ks, meta[KS_ + 2], nk, D);
  else for (int64_t j = 0; j < nk; ++j) for (int64_t d = 0; d < D; ++d) dst[d * BK + j] = load_f(ks + j * meta[KS_ + 2], d);
}
static inline void pack_v_block(const scalar_t* v, float* dst, const int64_t* meta, int64_t x, int64_t kb) {
  const int64_t S = meta[S_], Dv = meta[DV_], Dvp = rup(Dv, VL), j0 = kb * BK, nk = std::min<int64_t>(BK, S - j0);
  const scalar_t* vs = v + (x / meta[VH_]) * meta[VS_] + (x % meta[VH_]) * meta[VS_ + 1] + j0 * meta[VS_ + 2];
  load_rows(dst, Dvp, vs, meta[VS_ + 2], nk, Dv);
}

static void pack_kv(const scalar_t* k, const scalar_t* v, float* kp, float* vp, const int64_t* meta, int nthreads) {
  const int64_t S = meta[S_], D = meta[D_], Dv = meta[DV_], Dp = rup(D, VL), Dvp = rup(Dv, VL), nkb = rup(S, BK) / BK;
  const int64_t nk_heads = meta[KB_] * meta[KH_], nv_heads = meta[VB_] * meta[VH_];
  #pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
  for (int64_t x = 0; x < std::max(nk_heads, nv_heads); ++x)
    for (int64_t kb = 0; kb < nkb; ++kb) {
      if (x < nk_heads) pack_k_block(k, kp + (x * nkb + kb) * BK * Dp, meta, x, kb);
      if (x < nv_heads) pack_v_block(v, vp + (x * nkb + kb) * BK * Dvp, meta, x, kb);
    }
}

// kb, vb: a task's own key and value block, packed as it reaches them when the keys are not
// packed ahead (one query block a head: each block is packed once either way, and packing it
// in the task spares writing and reading back a copy of every key and value)
struct FwdScratch { float *q, *s, *o, *m, *l, *kb, *vb; };

// Online softmax over one score block: the running max and sum of each row, the output
// rows rescaled, the block turned into (dropped-out) probabilities. False where they all are 0.
static bool softmax_block(const FwdScratch& w, int64_t nq, int64_t n, int64_t Dvp, const float* bmax, const uint32_t* keys, uint32_t hi,
                          int64_t j0, uint32_t thresh, float inv_keep) {
  bool mass = false;
  for (int64_t r = 0; r < nq; ++r) {
    float* s = w.s + r * BK;
    float mnew = std::max(w.m[r], bmax[r]);
    if (mnew == NEG_INF) { std::memset(s, 0, BK * 4); continue; }
    float alpha = std::exp(w.m[r] - mnew), sum = exp_row(s, n, mnew);
    mass |= !(sum == 0.f);
    w.l[r] = w.l[r] * alpha + sum;
    w.m[r] = mnew;
    if (alpha != 1.f)
      for (float* o = w.o + r * Dvp; o < w.o + (r + 1) * Dvp; o += VL) vstore(o, vload(o) * alpha);
    if (keys) dropout_row(s, n, keys[r], hi, j0, thresh, inv_keep);
  }
  return mass;
}

static void fwd_task(const scalar_t* q, const scalar_t* k, const scalar_t* v, const float* kp, const float* vp, const float* bias,
                     const float* add, const uint8_t* keep, scalar_t* out, float* lse, const int64_t* meta, float scale, float p_drop,
                     int64_t task, const FwdScratch& w) {
  const int64_t H = meta[H_], L = meta[L_], S = meta[S_], D = meta[D_], Dv = meta[DV_];
  const int64_t Dp = rup(D, VL), Dvp = rup(Dv, VL), nkb = rup(S, BK) / BK, nqb = rup(L, BQ) / BQ;
  const int64_t bh = task / nqb, b = bh / H, h = bh % H, i0 = (task % nqb) * BQ, nq = std::min<int64_t>(BQ, L - i0);
  const int64_t kx = (meta[KB_] > 1 ? b : 0) * meta[KH_] + (meta[KH_] > 1 ? h : 0);
  const int64_t vx = (meta[VB_] > 1 ? b : 0) * meta[VH_] + (meta[VH_] > 1 ? h : 0);
  const float* kh = kp ? kp + kx * nkb * BK * Dp : nullptr;
  const float* vh = vp ? vp + vx * nkb * BK * Dvp : nullptr;
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
    const float* kblk = kh ? kh + kb * BK * Dp : w.kb;
    if (!kh) pack_k_block(k, w.kb, meta, kx, kb);
    if (LOOP_DOT) dot_nt(w.s, BK, w.q, Dp, kblk, Dp, nq, cols(nk), Dp);
    else mm(w.s, BK, w.q, Dp, 1, kblk, BK, nq, cols(nk), D, false);
    float bmax[BQ];
    for (int64_t r = 0; r < nq; ++r)
      bmax[r] = mask_row(w.s + r * BK, row_mask(bias, add, keep, meta, b, h, i0 + r, j0), scale, nk, key_limit(meta, i0 + r) - j0);
    if (softmax_block(w, nq, cols(nk), Dvp, bmax, meta[DROP_] ? keys : nullptr, hi, j0, thresh, 1.f / (1.f - p_drop))) {
      if (!vh) pack_v_block(v, w.vb, meta, vx, kb);
      mm(w.o, Dvp, w.s, BK, 1, vh ? vh + kb * BK * Dvp : w.vb, Dvp, nq, Dvp, nk, true);
    }
  }
  for (int64_t r = 0; r < nq; ++r) {
    const int64_t i = i0 + r;
    const bool empty = w.m[r] == NEG_INF;  // every key masked: NaN, as eager softmax gives
    const float inv = empty ? __builtin_nanf("") : 1.f / w.l[r];
    scalar_t* dst = out + (bh * L + i) * Dv;
    for (int64_t d = 0; d < Dv; ++d) store_f(dst, d, w.o[r * Dvp + d] * inv);
    lse[bh * L + i] = empty ? __builtin_nanf("") : w.m[r];
    lse[meta[B_] * H * L + bh * L + i] = empty ? __builtin_nanf("") : std::log(w.l[r]);
  }
}

// A few query rows (a decoded token: one row against a long key cache) read the keys and values
// where they lie, once for all the rows of a (batch, head): packing them first, as the blocked
// path must to tile many rows, would move every key and value three times for one row's products.
// A (batch, head) too few to keep the threads busy splits its keys in chunks, each with its own
// running maximum, sum and output rows, merged at the end as the online softmax merges blocks.
// DR (the template's head): the most rows this path takes; the caller sends more to the blocked path.
struct DirectPart { float* o; float m[DR]; float l[DR]; };

static void direct_chunk(const scalar_t* q, const scalar_t* k, const scalar_t* v, const float* bias, const float* add,
                         const uint8_t* keep, const int64_t* meta, float scale, float p_drop, int64_t bh, int64_t j0, int64_t nk,
                         float* qs, float* s, DirectPart& part) {
  const int64_t H = meta[H_], L = meta[L_], D = meta[D_], Dv = meta[DV_], Dp = rup(D, VL), Dvp = rup(Dv, VL), ns = cols(nk);
  const int64_t b = bh / H, h = bh % H, dv_vec = Dv / VL * VL, d_vec = D / VL * VL;
  const scalar_t* kh = k + (meta[KB_] > 1 ? b : 0) * meta[KS_] + (meta[KH_] > 1 ? h : 0) * meta[KS_ + 1];
  const scalar_t* vh = v + (meta[VB_] > 1 ? b : 0) * meta[VS_] + (meta[VH_] > 1 ? h : 0) * meta[VS_ + 1];
  load_rows(qs, Dp, q + b * meta[QS_] + h * meta[QS_ + 1], meta[QS_ + 2], L, D);
  // scores: each key row loaded once, its dot product with every query row
  for (int64_t j = 0; j < nk; ++j) {
    const scalar_t* kr = kh + (j0 + j) * meta[KS_ + 2];
    vf acc[DR];
    for (int64_t r = 0; r < L; ++r) acc[r] = vsplat(0.f);
    for (int64_t d = 0; d < d_vec; d += VL) {
      const vf kv = vload(kr + d);
      for (int64_t r = 0; r < L; ++r) acc[r] += vload(qs + r * Dp + d) * kv;
    }
    for (int64_t r = 0; r < L; ++r) {
      float x = hsum(acc[r]);
      for (int64_t d = d_vec; d < D; ++d) x += qs[r * Dp + d] * load_f(kr, d);
      s[r * ns + j] = x;
    }
  }
  const uint32_t hi = (uint32_t)((uint64_t)meta[SEED_] >> 32), thresh = (uint32_t)std::min(16777216.0, (double)p_drop * 16777216.0);
  for (int64_t r = 0; r < L; ++r) {
    float* sr = s + r * ns;
    const float m = mask_row(sr, row_mask(bias, add, keep, meta, b, h, r, j0), scale, nk, key_limit(meta, r) - j0);
    part.m[r] = m;
    if (m == NEG_INF) { part.l[r] = 0.f; std::memset(sr, 0, ns * 4); continue; }
    part.l[r] = exp_cols(sr, ns, m, 1.f);
    if (meta[DROP_]) dropout_row(sr, ns, row_key(meta, bh, r), hi, j0, thresh, 1.f / (1.f - p_drop));
  }
  // the output rows: each value row loaded once, added into every row it weighs in
  std::memset(part.o, 0, L * Dvp * 4);
  for (int64_t j = 0; j < nk; ++j) {
    const scalar_t* vr = vh + (j0 + j) * meta[VS_ + 2];
    for (int64_t d = 0; d < dv_vec; d += VL) {
      const vf vv = vload(vr + d);
      for (int64_t r = 0; r < L; ++r) vstore(part.o + r * Dvp + d, vload(part.o + r * Dvp + d) + s[r * ns + j] * vv);
    }
    for (int64_t d = dv_vec; d < Dv; ++d) {
      const float x = load_f(vr, d);
      for (int64_t r = 0; r < L; ++r) part.o[r * Dvp + d] += s[r * ns + j] * x;
    }
  }
}

static void attn_fwd_direct(const scalar_t* q, const scalar_t* k, const scalar_t* v, const float* bias, const float* add,
                            const uint8_t* keep, scalar_t* out, float* lse, const int64_t* meta, float scale, float p_drop,
                            int nthreads) {
  const int64_t BH = meta[B_] * meta[H_], L = meta[L_], S = meta[S_], Dv = meta[DV_], Dvp = rup(Dv, VL);
  // chunks of at least 256 keys, enough of them for four tasks a thread
  const int64_t want = (4 * (int64_t)nthreads + BH - 1) / BH;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(want, S / 256));
  const int64_t span = rup((S + chunks - 1) / chunks, VL);
  const int64_t n_chunks = (S + span - 1) / span;
  std::vector<DirectPart> parts(BH * n_chunks);
  // not cleared: direct_chunk writes every element it reads (each row's scores up to cols(nk),
  // its output rows, the query rows up to D)
  float* o_all = ualloc(BH * n_chunks * L * Dvp);
  #pragma omp parallel num_threads(nthreads)
  {
    float* qs = ualloc(L * rup(meta[D_], VL));
    float* s = ualloc(L * span);
    #pragma omp for schedule(runtime)
    for (int64_t t = 0; t < BH * n_chunks; ++t) {
      const int64_t j0 = (t % n_chunks) * span;
      parts[t].o = o_all + t * L * Dvp;
      direct_chunk(q, k, v, bias, add, keep, meta, scale, p_drop, t / n_chunks, j0, std::min<int64_t>(span, S - j0), qs, s, parts[t]);
    }
    std::free(qs);
    std::free(s);
  }
  // merged as the online softmax would: each chunk's sum and output scaled to the common maximum
  for (int64_t bh = 0; bh < BH; ++bh)
    for (int64_t r = 0; r < L; ++r) {
      float m = NEG_INF, l = 0.f;
      for (int64_t c = 0; c < n_chunks; ++c) m = std::max(m, parts[bh * n_chunks + c].m[r]);
      scalar_t* dst = out + (bh * L + r) * Dv;
      if (m == NEG_INF) {  // every key masked: NaN, as eager softmax gives
        for (int64_t d = 0; d < Dv; ++d) store_f(dst, d, __builtin_nanf(""));
        lse[bh * L + r] = lse[BH * L + bh * L + r] = __builtin_nanf("");
        continue;
      }
      float* acc = parts[bh * n_chunks].o + r * Dvp;  // the first chunk's row gathers the others
      const float a0 = std::exp(parts[bh * n_chunks].m[r] - m);
      l = parts[bh * n_chunks].l[r] * a0;
      for (int64_t d = 0; d < Dv; ++d) acc[d] *= a0;
      for (int64_t c = 1; c < n_chunks; ++c) {
        const DirectPart& p = parts[bh * n_chunks + c];
        if (p.m[r] == NEG_INF) continue;
        const float a = std::exp(p.m[r] - m);
        l += p.l[r] * a;
        for (int64_t d = 0; d < Dv; ++d) acc[d] += p.o[r * Dvp + d] * a;
      }
      const float inv = 1.f / l;
      for (int64_t d = 0; d < Dv; ++d) store_f(dst, d, acc[d] * inv);
      lse[bh * L + r] = m;
      lse[BH * L + bh * L + r] = std::log(l);
    }
  std::free(o_all);
}

// lse: (2, B, H, L), each row's score maximum, then the log of its sum of exponentials (apart: see exp_cols)
extern "C" void attn_fwd(const scalar_t* q, const scalar_t* k, const scalar_t* v, const float* bias, const float* add,
                         const uint8_t* keep, scalar_t* out, float* lse, const int64_t* meta, float scale, float p_drop,
                         int nthreads) {
  if (meta[DIRECT_] && meta[L_] <= DR) return attn_fwd_direct(q, k, v, bias, add, keep, out, lse, meta, scale, p_drop, nthreads);
  const int64_t S = meta[S_], D = meta[D_], Dv = meta[DV_], Dp = rup(D, VL), Dvp = rup(Dv, VL), nkb = rup(S, BK) / BK;
  // Each task packs its own blocks as it goes (FwdScratch) where every head has keys and values
  // of its own and one query block (each block is then packed once either way), or a few query
  // rows (at most four blocks, a quarter of the keys) against copies that would outgrow the caches
  // (writing the copy and reading it back from memory cost more than packing a block again per
  // query block). Keys shared by heads or batch, and training's L x L shapes, pack ahead.
  const int64_t L = meta[L_], nqb = rup(L, BQ) / BQ, k_floats = meta[KB_] * meta[KH_] * nkb * BK * Dp;
  const int64_t v_floats = meta[VB_] * meta[VH_] * nkb * BK * Dvp, BH = meta[B_] * meta[H_];
  const bool own = meta[KB_] * meta[KH_] == BH && meta[VB_] * meta[VH_] == BH;
  const bool few_rows_long_cache = nqb <= 4 && 4 * L <= S && (k_floats + v_floats) * 4 > (16 << 20);
  const bool ahead = !(own && (nqb == 1 || few_rows_long_cache));
  float* kp = ahead ? falloc(k_floats) : nullptr;
  float* vp = ahead ? falloc(v_floats) : nullptr;
  if (ahead) pack_kv(k, v, kp, vp, meta, nthreads);
  const int64_t tasks = BH * nqb;
  #pragma omp parallel num_threads(nthreads)
  {
    FwdScratch w{falloc(BQ * Dp), falloc(BQ * BK), falloc(BQ * Dvp), falloc(BQ), falloc(BQ),
                 ahead ? nullptr : falloc(BK * Dp), ahead ? nullptr : falloc(BK * Dvp)};
    #pragma omp for schedule(runtime)
    for (int64_t t = 0; t < tasks; ++t) fwd_task(q, k, v, kp, vp, bias, add, keep, out, lse, meta, scale, p_drop, t, w);
    for (float* p : {w.q, w.s, w.o, w.m, w.l, w.kb, w.vb}) std::free(p);
  }
  std::free(kp);
  std::free(vp);
}
"""

BACKWARD = r"""
struct BwdScratch { float *kt, *kr, *vt, *q, *dout, *p, *ds, *pd, *dk, *dv; };

// One (query block, key block) pair: recompute the probabilities from each row's saved maximum and log-sum,
// then dV += P^T dO, dS = P * (dP - delta), dK += dS^T Q, dQ += dS K (scale folded into dS).
static void bwd_pair(const scalar_t* q, const scalar_t* dout, const float* bias, const float* add, const uint8_t* keep,
                     const float* lse, const float* delta, float* dq, float* dbias, const int64_t* meta, float scale, float p_drop,
                     int64_t b, int64_t h, int64_t i0, int64_t j0, const BwdScratch& w) {
  const int64_t H = meta[H_], L = meta[L_], S = meta[S_], D = meta[D_], Dv = meta[DV_];
  const int64_t Dp = rup(D, VL), Dvp = rup(Dv, VL), bh = b * H + h;
  const int64_t nq = std::min<int64_t>(BQ, L - i0), nk = std::min<int64_t>(BK, S - j0);
  load_rows(w.q, Dp, q + b * meta[QS_] + h * meta[QS_ + 1] + i0 * meta[QS_ + 2], meta[QS_ + 2], nq, D);
  const int64_t n = cols(nk);
  if (LOOP_DOT) dot_nt(w.p, BK, w.q, Dp, w.kr, Dp, nq, n, Dp);
  else mm(w.p, BK, w.q, Dp, 1, w.kt, BK, nq, n, D, false);
  bool mass = false;
  for (int64_t r = 0; r < nq; ++r) {
    const int64_t i = i0 + r;
    mask_row(w.p + r * BK, row_mask(bias, add, keep, meta, b, h, i, j0), scale, nk, key_limit(meta, i) - j0);
    mass |= !(exp_row_scaled(w.p + r * BK, n, lse[bh * L + i], std::exp(-lse[meta[B_] * H * L + bh * L + i])) == 0.f);
  }
  if (!mass) {  // every probability of the pair underflowed to 0 (a masked block): nothing to add
    if (dbias) for (int64_t r = 0; r < nq; ++r) std::memset(dbias + (bh * L + i0 + r) * S + j0, 0, nk * 4);
    return;
  }
  load_rows(w.dout, Dvp, dout + (bh * L + i0) * Dv, Dv, nq, Dv);
  if (LOOP_DOT) dot_nt(w.ds, BK, w.dout, Dvp, w.vt, Dvp, nq, n, Dvp);
  else mm(w.ds, BK, w.dout, Dvp, 1, w.vt, BK, nq, n, Dv, false);
  const uint32_t hi = (uint32_t)((uint64_t)meta[SEED_] >> 32), thresh = (uint32_t)std::min(16777216.0, (double)p_drop * 16777216.0);
  for (int64_t r = 0; r < nq; ++r) {
    const int64_t i = i0 + r;
    float *p = w.p + r * BK, *ds = w.ds + r * BK, *pd = w.pd + r * BK;
    if (meta[DROP_]) {  // dropped-out probabilities multiply dO; dP's kept entries scale alike
      std::memcpy(pd, p, n * 4);
      for (float* t : {pd, ds}) dropout_row(t, n, row_key(meta, bh, i), hi, j0, thresh, 1.f / (1.f - p_drop));
    }
    const float dl = delta[bh * L + i];
    if (dbias) {  // the scores' gradient is the added bias's; the product's is it times the scale
      for (int64_t jj = 0; jj < n; jj += VL) vstore(ds + jj, vload(p + jj) * (vload(ds + jj) - dl));
      std::memcpy(dbias + (bh * L + i) * S + j0, ds, nk * 4);
      for (int64_t jj = 0; jj < n; jj += VL) vstore(ds + jj, vload(ds + jj) * scale);
    } else {
      for (int64_t jj = 0; jj < n; jj += VL) vstore(ds + jj, vload(p + jj) * (vload(ds + jj) - dl) * scale);
    }
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
                         float* dk, float* dv, float* dbias, const int64_t* meta, float scale, float p_drop, int64_t groups,
                         int nthreads) {
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
        // this task alone accumulates into these rows: it zeroes them (the caller's buffer is
        // not zeroed, which would fault in every page from one thread and pass over it once more)
        std::memset(dqg + bh * L * rup(D, DQ_PAD), 0, L * rup(D, DQ_PAD) * 4);
        for (int64_t kb = g * nkb / groups; kb < (g + 1) * nkb / groups; ++kb) {
          const int64_t j0 = kb * BK, nk = std::min<int64_t>(BK, S - j0);
          pack_block(k, v, meta, b, h, j0, w);
          std::memset(w.dk, 0, BK * Dp * 4);
          std::memset(w.dv, 0, BK * Dvp * 4);
          // with a causal mask, query rows before the first that sees this block are skipped
          const int64_t first = meta[CAUSAL_] ? std::max<int64_t>(0, j0 - (S - L)) : 0;
          // the bias gradient of every (row, key) pair this task owns is written, 0 where skipped
          if (dbias) for (int64_t i = 0; i < first / BQ * BQ; ++i) std::memset(dbias + (bh * L + i) * S + j0, 0, nk * 4);
          for (int64_t i0 = first / BQ * BQ; i0 < L; i0 += BQ)
            bwd_pair(q, dout, bias, add, keep, lse, delta, dqg, dbias, meta, scale, p_drop, b, h, i0, j0, w);
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
