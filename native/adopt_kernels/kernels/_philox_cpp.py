"""The C++ source of the dropout mask's counter-based generator (Philox-4x32-10), which the
dropout + add + LayerNorm kernel (``layer_norm.py``) renders into its template: forward and
backward regenerate the same mask from the seed instead of storing it.
"""

# Philox-4x32-10 (Salmon et al., SC'11). The keep factor of element j of row r comes from half
# (j / 32) % 2 (low, then high 16 bits) of word (j / 8) % 4 of counter (8 * (j / 64) + j % 8, r_lo,
# r_hi, 0): eight consecutive counters fill 64 consecutive elements and every half-word is a
# contiguous run of eight. The generator, not memory, bounds the kernel with dropout on: 16 bits an
# element halve its work against a word each.
PHILOX = r"""
#include <immintrin.h>
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

#ifdef __AVX2__
static inline void mulhilo8(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  __m256i pe = _mm256_mul_epu32(a, m);
  __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
}
#endif
#ifdef __AVX512F__
static inline void mulhilo16(__m512i a, __m512i m, __m512i& hi, __m512i& lo) {
  __m512i pe = _mm512_mul_epu32(a, m);
  __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  lo = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
}
#endif

// the ten round keys of a seed, as vectors where the generator is vectorised
struct PhiloxKeys {
#ifdef __AVX2__
  __m256i k0[10], k1[10];
#ifdef __AVX512F__
  __m512i z0[10], z1[10];
#endif
#else
  uint32_t k0[10], k1[10];
#endif
};

static inline PhiloxKeys philox_keys(uint64_t seed) {
  PhiloxKeys keys;
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int r = 0; r < 10; ++r, k0 += PHILOX_W0, k1 += PHILOX_W1) {
#ifdef __AVX2__
    keys.k0[r] = _mm256_set1_epi32((int)k0);
    keys.k1[r] = _mm256_set1_epi32((int)k1);
#ifdef __AVX512F__
    keys.z0[r] = _mm512_set1_epi32((int)k0);
    keys.z1[r] = _mm512_set1_epi32((int)k1);
#endif
#else
    keys.k0[r] = k0;
    keys.k1[r] = k1;
#endif
  }
  return keys;
}

// keep factors (0 or scale) of 64 consecutive elements: element e takes half e / 32 (low 16 bits,
// then high) of word (e / 8) % 4 of counter lane e % 8, and is kept when that half is >= thr.
// Sixteen bits decide an element, so one generator call serves eight of them.
static inline void dropout_block(float* m, uint32_t base, uint32_t rlo, uint32_t rhi, const PhiloxKeys& keys,
                                 uint32_t thr, float scale) {
#ifdef __AVX2__
  const __m256i M0 = _mm256_set1_epi32((int)PHILOX_M0), M1 = _mm256_set1_epi32((int)PHILOX_M1);
  __m256i c0 = _mm256_add_epi32(_mm256_set1_epi32((int)base), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256i c1 = _mm256_set1_epi32((int)rlo), c2 = _mm256_set1_epi32((int)rhi), c3 = _mm256_setzero_si256();
  for (int r = 0; r < 10; ++r) {
    __m256i hi0, lo0, hi1, lo1;
    mulhilo8(c0, M0, hi0, lo0);
    mulhilo8(c2, M1, hi1, lo1);
    c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), keys.k0[r]);
    c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), keys.k1[r]);
    c1 = lo1; c3 = lo0;
  }
  // halves lie in 0 .. 65535, so a signed compare with thr - 1 is half >= thr (all kept at thr 0)
  const __m256i t = _mm256_set1_epi32((int)thr - 1), low = _mm256_set1_epi32(0xFFFF);
  const __m256 sc = _mm256_set1_ps(scale);
  const __m256i w[4] = {c0, c1, c2, c3};
  for (int k = 0; k < 4; ++k) {
    __m256i keep_lo = _mm256_cmpgt_epi32(_mm256_and_si256(w[k], low), t);
    __m256i keep_hi = _mm256_cmpgt_epi32(_mm256_srli_epi32(w[k], 16), t);
    _mm256_storeu_ps(m + 8 * k, _mm256_and_ps(_mm256_castsi256_ps(keep_lo), sc));
    _mm256_storeu_ps(m + 32 + 8 * k, _mm256_and_ps(_mm256_castsi256_ps(keep_hi), sc));
  }
#else
  for (int i = 0; i < 8; ++i) {
    uint32_t c[4] = {base + i, rlo, rhi, 0};
    for (int r = 0; r < 10; ++r) {
      uint64_t p0 = (uint64_t)PHILOX_M0 * c[0], p1 = (uint64_t)PHILOX_M1 * c[2];
      uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ keys.k0[r], n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ keys.k1[r];
      c[1] = (uint32_t)p1; c[3] = (uint32_t)p0; c[0] = n0; c[2] = n2;
    }
    for (int k = 0; k < 4; ++k) {
      m[8 * k + i] = (c[k] & 0xFFFFu) >= thr ? scale : 0.f;
      m[32 + 8 * k + i] = (c[k] >> 16) >= thr ? scale : 0.f;
    }
  }
#endif
}

#ifdef __AVX512F__
// dropout_block for two consecutive blocks at once (sixteen counters; 15% faster than two calls)
static inline void dropout_block_pair(float* m, uint32_t base, uint32_t rlo, uint32_t rhi, const PhiloxKeys& keys,
                                      uint32_t thr, float scale) {
  const __m512i M0 = _mm512_set1_epi32((int)PHILOX_M0), M1 = _mm512_set1_epi32((int)PHILOX_M1);
  __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32((int)base), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  __m512i c1 = _mm512_set1_epi32((int)rlo), c2 = _mm512_set1_epi32((int)rhi), c3 = _mm512_setzero_si512();
  for (int r = 0; r < 10; ++r) {
    __m512i hi0, lo0, hi1, lo1;
    mulhilo16(c0, M0, hi0, lo0);
    mulhilo16(c2, M1, hi1, lo1);
    c0 = _mm512_ternarylogic_epi32(hi1, c1, keys.z0[r], 0x96);  // three-way xor
    c2 = _mm512_ternarylogic_epi32(hi0, c3, keys.z1[r], 0x96);
    c1 = lo1; c3 = lo0;
  }
  const __m512i t = _mm512_set1_epi32((int)thr - 1), low = _mm512_set1_epi32(0xFFFF);
  const __m512 sc = _mm512_set1_ps(scale);
  const __m512i w[4] = {c0, c1, c2, c3};
  for (int k = 0; k < 4; ++k) {  // lanes 0-7 belong to the first block, 8-15 to the second
    __m512 keep[2] = {_mm512_maskz_mov_ps(_mm512_cmpgt_epi32_mask(_mm512_and_si512(w[k], low), t), sc),
                      _mm512_maskz_mov_ps(_mm512_cmpgt_epi32_mask(_mm512_srli_epi32(w[k], 16), t), sc)};
    for (int h = 0; h < 2; ++h) {
      _mm256_storeu_ps(m + 32 * h + 8 * k, _mm512_castps512_ps256(keep[h]));
      _mm256_storeu_ps(m + 64 + 32 * h + 8 * k, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(keep[h]), 1)));
    }
  }
}
#endif

static inline int64_t padded64(int64_t n) { return (n + 63) / 64 * 64; }

// keep factors of row r into m, which holds padded64(n) floats
static inline void row_keep(float* m, int64_t r, int64_t n, const PhiloxKeys& keys, uint32_t thr, float scale) {
  const uint32_t rlo = (uint32_t)r, rhi = (uint32_t)((uint64_t)r >> 32);
  int64_t b = 0;
#ifdef __AVX512F__
  for (; 64 * (b + 1) < n; b += 2) dropout_block_pair(m + 64 * b, (uint32_t)(8 * b), rlo, rhi, keys, thr, scale);
#endif
  for (; 64 * b < n; ++b) dropout_block(m + 64 * b, (uint32_t)(8 * b), rlo, rhi, keys, thr, scale);
}
"""
