"""What the kernel modules share: template rendering, row views, timing cases."""

import ctypes
import string

import torch

SCALAR = {"float32": "float", "bfloat16": "bf16_t"}
TORCH_DTYPE = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# forward/backward tolerances against a float64 reference, per dtype
TOLERANCE = {"float32": dict(rtol=2e-4, atol=2e-5), "bfloat16": dict(rtol=2e-2, atol=2e-2),
             "float16": dict(rtol=5e-3, atol=5e-3)}


def render(template, schedule, dtype, **extra):
    """C++ source: ``$name`` placeholders filled from the schedule, the dtype and ``extra``.

    ``$scalar_t`` is the storage type of the dtype; every schedule parameter is available by
    name, as is ``$omp_schedule`` for the parallel loop's scheduling clause, and ``$vec_pragma``
    the pragma that sets the vector width: ``vec_bits`` 0 turns the vectoriser off (scalar code,
    the baseline AVX2 is measured against), 128, 256 or 512 make it prefer that width.
    """
    subs = {k: str(v) for k, v in schedule.items()}
    if "vec_bits" in schedule:
        subs["vec_pragma"] = vec_pragma(schedule["vec_bits"])
    subs.update({k: str(v) for k, v in extra.items()})
    subs["scalar_t"] = SCALAR[dtype]
    subs["dtype"] = dtype
    return f"// adopt kernel, dtype={dtype}, schedule={sorted(schedule.items())}\n" + string.Template(template).substitute(subs)


def vec_pragma(vec_bits):
    if int(vec_bits) == 0:
        return '#pragma GCC optimize("no-tree-vectorize")'
    return f'#pragma GCC target("prefer-vector-width={int(vec_bits)}")'


def threshold16(p):
    """The dropout kernels' 16-bit threshold below which half a random word drops its element
    (LayerNorm on CPU and GPU, the Triton attention): P(drop) = thr / 2^16, ``p`` to the nearest
    1/65536 (for p = 0.1, 0.100006)."""
    return min(int(round(p * 2.0 ** 16)), 2 ** 16 - 1)


# outputs at least this large are written with streaming stores: they would not stay in cache
STREAM_BYTES = 8 << 20


def stream_output(*outputs):
    """The kernels' ``stream`` argument for these outputs: 1 where together they are at least
    STREAM_BYTES."""
    return ctypes.c_int(int(sum(t.numel() * t.element_size() for t in outputs) >= STREAM_BYTES))


# C++ (needs <immintrin.h> and scalar_t): a row finished in a cache-resident buffer goes to the output
STORE_ROW = r"""
// A finished row goes from its cache-resident buffer to the output. Outputs too large to stay
// in cache are written with streaming stores, which skip reading the destination lines first.
static inline void store_row(scalar_t* dst, const scalar_t* src, int64_t n, bool stream) {
  const size_t bytes = (size_t)n * sizeof(scalar_t);
#ifdef __AVX__
  if (stream) {
    char* d = (char*)dst;
    const char* s = (const char*)src;
    size_t i = std::min(bytes, (size_t)((32 - ((uintptr_t)d & 31)) & 31));
    std::memcpy(d, s, i);
    for (; i + 32 <= bytes; i += 32) _mm256_stream_si256((__m256i*)(d + i), _mm256_loadu_si256((const __m256i*)(s + i)));
    std::memcpy(d + i, s + i, bytes - i);
    return;
  }
#endif
  std::memcpy(dst, src, bytes);
}

static inline void stores_done() {
#ifdef __AVX__
  _mm_sfence();  // streaming stores are weakly ordered: publish them before the threads join
#endif
}
""".strip("\n")


def rows_view(x):
    """``x`` as a contiguous (rows, last) matrix; a copy only when ``x`` is not contiguous."""
    x = x.contiguous()
    return x.view(-1, x.size(-1)) if x.dim() else x.view(1, 1)


def assert_matches(actual, expected, dtype, what):
    tol = TOLERANCE[dtype]
    a = actual.double()
    e = expected.double()
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}")
    if not torch.allclose(a, e, equal_nan=True, **tol):
        err = (a - e).abs().nan_to_num(nan=float("inf")).max().item()
        raise AssertionError(f"{what}: max abs error {err:.3g} over tolerance {tol}")
