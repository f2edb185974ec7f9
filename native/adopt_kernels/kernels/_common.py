"""What the kernel modules share: template rendering, row views, timing cases, the autograd
Functions' rules (what they save, how their backward is differentiated again)."""

import ctypes
import functools
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


def saveable(made, *inputs):
    """``made``, a tensor a Function's forward derived from its inputs, as it may go to
    ``save_for_backward``: a view made there (``rows_view`` of an input, a dtype view of a mask)
    is saved as a detached alias, since non-reentrant checkpointing cannot unpack a saved view
    made without grad ("No grad accumulator for a saved leaf"); the inputs themselves, and
    anything else (a copy), as they are. A Function that needs an input's autograd history in
    its backward (see :func:`differentiable_backward`) saves the input itself."""
    if made is None or any(made is t for t in inputs):
        return made
    return made.detach() if made._is_view() else made


def differentiable_backward(second_order):
    """Decorator of an autograd Function's compiled ``backward``, in place of
    ``once_differentiable``. A backward run with grad mode off (any ``backward()`` or
    ``autograd.grad`` without ``create_graph``) runs the compiled code as before; one run with it
    on (``create_graph=True``: a gradient penalty, a Hessian-vector product) calls
    ``second_order(ctx, *grads)`` instead, which returns the same gradients computed by torch ops
    that autograd can differentiate again (usually through :func:`reference_grads`). The
    compiled backward's results carry no graph, so a second differentiation through them would
    be silently zero."""

    def decorate(backward):
        @functools.wraps(backward)
        def run(ctx, *grads):
            if torch.is_grad_enabled():
                return second_order(ctx, *grads)
            return backward(ctx, *grads)

        return run

    return decorate


def reference_grads(reference, inputs, wanted, grads):
    """The gradients of ``reference(*inputs)`` (a tensor or a tuple of them) for the output
    gradients ``grads`` (None where an output gets none), as differentiable tensors: a list with
    one entry per input, None where ``wanted`` is false, the input is not a tensor that requires
    a gradient, or the outputs do not depend on it. ``inputs`` are the Function's saved inputs,
    which keep their autograd history, so the gradients differentiate back through them; the
    reference runs with autocast off, the inputs being in the dtypes the kernel itself took."""
    result = [None] * len(inputs)
    with torch.enable_grad(), torch.autocast("cpu", enabled=False):
        # each input through an alias of its own, so that the gradients are the partial ones: an
        # input computed from another (``f(h, 0.5 * h)``) would otherwise add its path to the other's
        inputs = [t.view_as(t) if isinstance(t, torch.Tensor) and t.requires_grad else t for t in inputs]
        outs = reference(*inputs)
        outs = tuple(outs) if isinstance(outs, (tuple, list)) else (outs,)
        which = [i for i, (t, w) in enumerate(zip(inputs, wanted)) if w and isinstance(t, torch.Tensor) and t.requires_grad]
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
        if which and pairs:
            got = torch.autograd.grad([o for o, _ in pairs], [inputs[i] for i in which], [g.to(o.dtype) for o, g in pairs],
                                      create_graph=True, allow_unused=True)
            for i, g in zip(which, got):
                result[i] = g
    return result


def product_operands(x, weight, *rest):
    """``x``, ``weight`` (and ``rest``: the bias) as ``F.linear(x, weight, ...)`` multiplies them:
    where autocast is on for their device and would cast them (both of one float dtype), cast to
    autocast's dtype by differentiable casts, as autocast does, so that a kernel is chosen for
    the dtype of the product actually computed; else as they are."""
    from .._impl.products import product_dtype

    tensors = (x, weight) + rest
    if x.dtype != weight.dtype or x.dtype not in AUTOCAST_ELIGIBLE:
        return tensors
    dtype = product_dtype(x, weight.t()) if weight.dim() == 2 else x.dtype
    if dtype == x.dtype:
        return tensors
    return tuple(t if not isinstance(t, torch.Tensor) or t.dtype not in AUTOCAST_ELIGIBLE else t.to(dtype) for t in tensors)


# the dtypes autocast casts
AUTOCAST_ELIGIBLE = (torch.float32, torch.float16, torch.bfloat16)


def assert_matches(actual, expected, dtype, what):
    tol = TOLERANCE[dtype]
    a = actual.double()
    e = expected.double()
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}")
    if not torch.allclose(a, e, equal_nan=True, **tol):
        err = (a - e).abs().nan_to_num(nan=float("inf")).max().item()
        raise AssertionError(f"{what}: max abs error {err:.3g} over tolerance {tol}")
