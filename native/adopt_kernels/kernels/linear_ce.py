"""Linear + cross entropy in row chunks: BLAS for the projection, one compiled sweep per chunk.

Each chunk of rows is projected into one reused float32 logits buffer; a compiled pass then
takes each row once: an online (block-wise) max and log-sum-exp, the target logit and the loss,
and, when gradients are wanted, ``scale * (softmax - one_hot)`` written over the logits in
place. The two gradient GEMMs follow at once on the same buffer, so the whole backward work is
done in the forward (three GEMMs in all, as eager does) and the backward only scales the
results, unless the upstream gradient differs between rows; then the logits are recomputed a
chunk at a time. Neither the logits nor their gradient is ever held whole, and rows whose
label is ignored (padding, prompts, the shifted-out last position) are never projected: they
add nothing to the loss or to any gradient.

bfloat16 inputs are multiplied in float32 (torch's CPU bfloat16 GEMM is tens of times slower
than its float32 one); the logits and their gradient are rounded to bfloat16 where the eager
code's bfloat16 tensors round them.

Schedule: ``chunk_rows`` rows per logits chunk, ``block`` the elements per step of the online
log-sum-exp, ``vec_bits`` the vector width, ``unroll`` the inner loops' unroll factor,
``omp_kind`` the OpenMP schedule of the row loop.
"""

import torch
import torch.nn.functional as F

from .. import _dispatch, schedules
from ..registry import CpuFloors, Kernel, register, Space
from ._common import TORCH_DTYPE, assert_matches, differentiable_backward, reference_grads, render

TEMPLATE = r"""
#pragma GCC target("prefer-vector-width=$vec_bits")
#define ROUND_BF16 $round_bf16
#define BLOCK $block
typedef float vf __attribute__((vector_size($vec_bits / 8)));
typedef int32_t vi __attribute__((vector_size($vec_bits / 8)));
enum { LANES = sizeof(vf) / sizeof(float) };

// round-to-nearest-even to bfloat16 and back, branch-free so that the loops vectorise
static inline float round_bf16(float x) {
  uint32_t u; std::memcpy(&u, &x, 4);
  uint32_t r = ((u & 0x7fffffffu) > 0x7f800000u) ? (u | 0x400000u) : ((u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u);
  float y; std::memcpy(&y, &r, 4);
  return y;
}

static inline float as_stored(float x) { return ROUND_BF16 ? round_bf16(x) : x; }

// exp(x) in a form the vectoriser takes (libm's expf is not vectorised without -ffast-math):
// Cody-Waite reduction by ln 2 and Cephes' degree-6 polynomial, about 1 ulp; exact 0 below
// the normal range, so exp(-inf) = 0 for masked logits, and NaN stays NaN.
static inline float fexp(float x) {
  const float lo = -87.3365447504f, hi = 88.3762626647949f;
  float xc = std::min(std::max(x, lo), hi);
  float fx = std::floor(xc * 1.44269504088896341f + 0.5f);
  float r = xc - fx * 0.693359375f;
  r = r + fx * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.f;
  int32_t bits = ((int32_t)fx + 127) << 23;
  float s; std::memcpy(&s, &bits, 4);
  return x < lo ? 0.f : p * s;
}

// Largest element of x[0:n]; NaNs are skipped here but flagged, so the row's result is NaN.
static inline float block_max(const float* x, int64_t n, int* has_nan) {
  vf acc = (vf){} - INFINITY;
  vi bad = {};
  int64_t j = 0;
  #pragma GCC unroll $unroll
  for (; j + LANES <= n; j += LANES) {
    vf v; std::memcpy(&v, x + j, sizeof v);
    acc = v > acc ? v : acc;
    bad |= (v != v);
  }
  float m = -INFINITY;
  int nan = 0;
  for (int k = 0; k < LANES; ++k) { m = acc[k] > m ? acc[k] : m; nan |= bad[k]; }
  for (; j < n; ++j) { float v = x[j]; m = v > m ? v : m; nan |= (v != v); }
  *has_nan |= nan;
  return m;
}

// log-sum-exp of one row in a single sweep: a block's max is taken while it is in L1, and the
// running sum is rescaled only when the max grows. bfloat16 logits are rounded in place first.
static float row_lse(float* x, int64_t V) {
  float m = -INFINITY, s = 0.f;
  int has_nan = 0;
  for (int64_t b = 0; b < V; b += BLOCK) {
    const int64_t n = std::min<int64_t>(BLOCK, V - b);
    float* xb = x + b;
    if (ROUND_BF16) {
      #pragma GCC ivdep
      #pragma GCC unroll $unroll
      for (int64_t j = 0; j < n; ++j) xb[j] = round_bf16(xb[j]);
    }
    const float bm = block_max(xb, n, &has_nan);
    if (bm > m) { s *= fexp(m - bm); m = bm; }
    if (m == -INFINITY) continue;  // every logit so far is -inf: nothing to add yet
    float bs = 0.f;
    #pragma GCC ivdep
    #pragma GCC unroll $unroll
    for (int64_t j = 0; j < n; ++j) bs += fexp(xb[j] - m);
    s += bs;
  }
  return has_nan ? NAN : m + std::log(s);
}

// x <- scale * (softmax(x) - one_hot(t)), from the row's log-sum-exp; rounded as eager's
// bfloat16 gradient is before its matmuls.
static inline void row_grad(float* x, int64_t V, int64_t t, float lse, float scale) {
  const float xt = x[t];
  #pragma GCC ivdep
  #pragma GCC unroll $unroll
  for (int64_t j = 0; j < V; ++j) x[j] = as_stored(fexp(x[j] - lse) * scale);
  x[t] = as_stored(fexp(xt - lse) * scale - scale);
}

// One chunk of rows: per-row loss and log-sum-exp; with want_grad the gradient of
// scale * loss replaces the logits. Ignored rows (target < 0) get loss 0 and a zero gradient.
extern "C" void lce_forward(float* logits, const int64_t* targets, int64_t rows, int64_t V, float scale,
                            int want_grad, float* loss, float* lse, int nthreads) {
  #pragma omp parallel for schedule($omp_kind, 1) num_threads(nthreads)
  for (int64_t r = 0; r < rows; ++r) {
    float* x = logits + r * V;
    const int64_t t = targets[r];
    if (t < 0) {
      loss[r] = 0.f;
      lse[r] = 0.f;
      if (want_grad) std::memset(x, 0, sizeof(float) * V);
      continue;
    }
    const float l = row_lse(x, V);
    lse[r] = l;
    loss[r] = l - x[t];
    if (want_grad) row_grad(x, V, t, l, scale);
  }
}

// Recomputed logits of a chunk -> their gradient, each row with its own upstream scale.
extern "C" void lce_backward(float* logits, const int64_t* targets, const float* lse, const float* row_scale,
                             int64_t rows, int64_t V, int nthreads) {
  #pragma omp parallel for schedule($omp_kind, 1) num_threads(nthreads)
  for (int64_t r = 0; r < rows; ++r) {
    float* x = logits + r * V;
    const int64_t t = targets[r];
    if (t < 0) { std::memset(x, 0, sizeof(float) * V); continue; }
    if (ROUND_BF16) {
      #pragma GCC ivdep
      #pragma GCC unroll $unroll
      for (int64_t j = 0; j < V; ++j) x[j] = round_bf16(x[j]);
    }
    row_grad(x, V, t, lse[r], row_scale[r]);
  }
}
"""

SPACE = Space(
    params={
        "chunk_rows": (128, 256, 512, 1024, 2048),
        "block": (256, 1024, 4096),
        "vec_bits": (128, 256),
        "unroll": (1, 2, 4),
        "omp_kind": ("static", "dynamic"),
    },
    default={"chunk_rows": 512, "block": 1024, "vec_bits": 256, "unroll": 2, "omp_kind": "static"},
)


def _render(schedule, dtype):
    return render(TEMPLATE, schedule, dtype, round_bf16=int(dtype == "bfloat16"))


def _project(h, weight, bias, out):
    """The chunk's logits into ``out`` (a module-level name so tests can watch chunk sizes)."""
    if bias is None:
        return torch.mm(h, weight.t(), out=out)
    return torch.addmm(bias, h, weight.t(), out=out)


def reference(hidden, weight, bias, labels, ignore_index=-100, reduction="mean"):
    """Float64-capable reference: eager logits (rounded to the input dtype) and cross entropy
    in float32, or in float64 for float64 inputs."""
    logits = F.linear(hidden, weight, bias)
    logits = logits if logits.dtype == torch.float64 else logits.float()
    return F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction=reduction)


def supported(hidden, weight, bias):
    """2-D hidden rows and a (vocab, hidden) weight of one float32/bfloat16 dtype on the CPU."""
    return shapes_ok(hidden, weight, bias) and _dispatch.native_ok(KERNEL, hidden, weight, bias)


def shapes_ok(hidden, weight, bias):
    """2-D hidden rows and a (vocab, hidden) weight (and a (vocab,) bias) of one dtype."""
    if not all(isinstance(t, torch.Tensor) for t in (hidden, weight)):
        return False
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.size(1) != weight.size(1):
        return False
    if hidden.numel() == 0 or weight.numel() == 0 or weight.dtype != hidden.dtype:
        return False
    return bias is None or (bias.shape == (weight.size(0),) and bias.dtype == weight.dtype)


def _floats(t):
    """``t`` for a float32 GEMM: itself when float32, else a float32 copy."""
    if t is None or t.dtype == torch.float32:
        return t
    return t.float()


class _Chunks:
    """The GEMMs around the compiled pass, over one reused logits buffer."""

    def __init__(self, hidden, weight, bias, rows):
        self.hidden, self.rows = hidden, rows
        self.weight, self.bias = _floats(weight.contiguous()), _floats(bias)
        self.buffer = torch.empty(min(rows, hidden.size(0)), weight.size(0), dtype=torch.float32)

    def __iter__(self):
        n = self.hidden.size(0)
        for start in range(0, n, self.rows):
            stop = min(n, start + self.rows)
            h = self.operand(self.hidden[start:stop])
            logits = self.buffer[: stop - start]
            _project(h, self.weight, self.bias, logits)
            yield start, stop, h, logits

    @staticmethod
    def operand(t):
        """A chunk of hidden rows as the GEMMs take it (float32 here)."""
        return _floats(t)

    def accumulate(self, start, h, grad_logits, grads):
        """Add a chunk's gradient of the logits into the hidden, weight and bias gradients."""
        grad_hidden, grad_weight, grad_bias = grads
        if grad_hidden is not None:
            torch.mm(grad_logits, self.weight, out=grad_hidden[start : start + h.size(0)])
        if grad_weight is not None:
            if start == 0:
                torch.mm(grad_logits.t(), h, out=grad_weight)
            else:
                grad_weight.addmm_(grad_logits.t(), h)
        if grad_bias is not None:
            grad_bias.add_(grad_logits.sum(0, dtype=torch.float32))


def _empty_grads(hidden, weight, wanted):
    """float32 gradient accumulators for the inputs that need one (the weight's is written by
    the first chunk, so it starts empty unless there is no chunk)."""
    n, d = hidden.shape
    want_h, want_w, want_b = wanted
    return (
        torch.empty(n, d, dtype=torch.float32) if want_h else None,
        (torch.empty if n else torch.zeros)(weight.shape, dtype=torch.float32) if want_w else None,
        torch.zeros(weight.size(0), dtype=torch.float32) if want_b else None,
    )


def _finish(grads, factor, like):
    """Scaled gradients in the dtypes of the tensors they belong to."""
    out = []
    for g, t in zip(grads, like):
        if g is None:
            out.append(None)
            continue
        if factor != 1.0:
            g.mul_(factor)
        out.append(g.to(t.dtype))
    return tuple(out)


def _counted_rows(hidden, targets):
    """The rows with a target, or None when that is every row. Ignored rows add nothing to
    the loss or the gradients, so their GEMM work is skipped."""
    keep = (targets >= 0).nonzero().squeeze(1)
    return None if keep.numel() == targets.numel() else keep


def _rows(t, keep):
    return t if keep is None else t.index_select(0, keep)


def _spread(t, keep, n):
    """Values of the counted rows back at their places among ``n`` rows, zero elsewhere."""
    if keep is None or t is None:
        return t
    return torch.zeros((n,) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device).index_copy_(0, keep, t)


def _forward_rows(hidden, weight, bias, targets, scale, want_any, wanted, fwd, rows):
    """Losses, log-sum-exps and (with ``want_any``) gradients of rows that all have a target."""
    n = hidden.size(0)
    chunks = _Chunks(hidden, weight, bias, rows)
    losses = torch.empty(n, dtype=torch.float32)
    lse = torch.empty(n, dtype=torch.float32)
    grads = _empty_grads(hidden, weight, wanted) if want_any else None
    for start, stop, h, logits in chunks:
        fwd(_dispatch.ptr(logits), _dispatch.ptr(targets[start:stop]), _dispatch.i64(stop - start), _dispatch.i64(logits.size(1)),
            _dispatch.f32(scale), int(want_any), _dispatch.ptr(losses[start:stop]), _dispatch.ptr(lse[start:stop]), _dispatch.threads())
        if want_any:
            chunks.accumulate(start, h, logits, grads)
    return losses, lse, grads


class LinearCrossEntropyFunction(torch.autograd.Function):
    """Per-row losses of ``cross_entropy(hidden @ weight.T + bias, targets)``; targets < 0 are ignored.

    ``scale`` is the upstream gradient the forward assumes for every counted row (1/count
    for a mean): the forward already forms the gradients for it.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, scale, wanted, fns, rows):
        n = hidden.size(0)
        keep = _counted_rows(hidden, targets)
        h, t = _rows(hidden, keep), _rows(targets, keep)
        want_any = any(wanted)
        losses, lse, grads = _forward_rows(h, weight, bias, t, scale, want_any, wanted, fns[0], rows)
        _dispatch.CALLS[KERNEL.name] += 1
        _dispatch.save_for_backward(ctx, hidden, weight, bias, t, lse, keep)
        ctx.grads = (_spread(grads[0], keep, n), *grads[1:]) if want_any else None
        ctx.scale32 = torch.tensor(scale, dtype=torch.float32).item()
        ctx.bwd, ctx.rows = fns[1], rows
        return _spread(losses, keep, n)

    @staticmethod
    def _second_order(ctx, grad_losses):
        hidden, weight, bias, targets, _, keep = ctx.saved_tensors
        ctx.grads = None
        grads = reference_grads(lambda h, w, b: row_losses(h, w, b, all_targets(targets, keep, h.size(0)))[0], (hidden, weight, bias),
                                ctx.needs_input_grad[:3], (grad_losses,))
        return (*grads, None, None, None, None, None)

    @staticmethod
    @differentiable_backward(_second_order.__func__)
    def backward(ctx, grad_losses):
        hidden, weight, bias, targets, lse, keep = ctx.saved_tensors
        # Ignored rows get zero gradient whatever grad_losses holds there (a mean over zero
        # tokens hands back NaN), as cross_entropy's backward does.
        counted = _rows(grad_losses.float(), keep)
        like = (hidden, weight, bias)
        nones = (None,) * 5
        grads, ctx.grads = ctx.grads, None  # released, so autograd may keep them without a copy
        if grads is not None:
            if counted.numel() == 0:
                return (*_finish(grads, 1.0, like), *nones)
            first = counted[0].item()
            if bool((counted == first).all()):
                return (*_finish(grads, first / ctx.scale32, like), *nones)
        wanted = tuple(ctx.needs_input_grad[:3])
        grads = _recompute(_rows(hidden, keep), weight, bias, targets, lse, counted.contiguous(), wanted, ctx.bwd, ctx.rows)
        return (*_finish((_spread(grads[0], keep, hidden.size(0)), *grads[1:]), 1.0, like), *nones)


def all_targets(counted, keep, n):
    """The targets of all ``n`` rows (-1 where ignored) from those of the counted rows ``keep``."""
    return counted if keep is None else torch.full((n,), -1, dtype=counted.dtype).index_copy_(0, keep, counted)


def row_losses(hidden, weight, bias, targets):
    """``(per-row losses, logits)`` in torch ops, differentiable again: the kernel's formulation
    (the logits rounded to the inputs' dtype, the loss over them in float32, or float64 for
    float64 inputs; 0 for rows whose target is -1)."""
    logits = F.linear(hidden, weight, bias)
    wide = logits if logits.dtype == torch.float64 else logits.float()
    return F.cross_entropy(wide, targets, ignore_index=-1, reduction="none"), logits


def _recompute(hidden, weight, bias, targets, lse, row_scale, wanted, bwd, rows):
    """Gradients for an upstream gradient that differs between rows: logits again per chunk."""
    chunks = _Chunks(hidden, weight, bias, rows)
    grads = _empty_grads(hidden, weight, wanted)
    for start, stop, h, logits in chunks:
        bwd(_dispatch.ptr(logits), _dispatch.ptr(targets[start:stop]), _dispatch.ptr(lse[start:stop]), _dispatch.ptr(row_scale[start:stop]),
            _dispatch.i64(stop - start), _dispatch.i64(logits.size(1)), _dispatch.threads())
        chunks.accumulate(start, h, logits, grads)
    _dispatch.CALLS[KERNEL.name] += 1
    return grads


def targets_for(labels, ignore_index, vocab):
    """int64 targets with -1 for ignored rows; out-of-range labels raise as cross_entropy does."""
    labels = labels.long()
    valid = labels != ignore_index
    bad = valid & ((labels < 0) | (labels >= vocab))
    if bool(bad.any()):
        raise RuntimeError(f"cross entropy target {labels[bad][0].item()} is out of bounds for {vocab} classes")
    return torch.where(valid, labels, labels.new_full((), -1)).contiguous()


def linear_cross_entropy_rows(hidden, weight, bias, labels, ignore_index=-100, scale=1.0, max_rows=None, schedule=None):
    """Per-row losses (float32; 0 for ignored rows) of the compiled kernel, or None when it
    cannot run here. ``scale`` is the upstream gradient expected per counted row: 1/count
    for a mean, 1 for a sum; another one costs the backward a recomputation of the logits.
    ``max_rows`` bounds the rows of a logits chunk."""
    if _dispatch.on_gpu(hidden, weight, bias):
        fn = gpu_function("linear_cross_entropy_rows", hidden, weight, bias, schedule)
        return None if fn is None else fn(hidden, weight, bias, labels, ignore_index, scale, max_rows)
    if not supported(hidden, weight, bias):
        return None
    n, d = hidden.shape
    vocab = weight.size(0)
    workload = {"tokens": n, "hidden": d, "vocab": vocab}
    if schedule is None:
        schedule = schedules.lookup(KERNEL, dict(workload, dtype=_dispatch.dtype_name(hidden.dtype)))
    fwd = _dispatch.function(KERNEL, "lce_forward", hidden.dtype, workload, schedule)
    bwd = _dispatch.function(KERNEL, "lce_backward", hidden.dtype, workload, schedule)
    if fwd is None or bwd is None:
        return None
    targets = targets_for(labels, ignore_index, vocab)
    rows = chunk_rows(schedule, max_rows)
    return LinearCrossEntropyFunction.apply(hidden.contiguous(), weight, bias, targets, float(scale), wanted_grads(hidden, weight, bias),
                                            (fwd, bwd), rows)


def gpu_function(symbol, hidden, weight, bias, schedule):
    """The Triton ``symbol`` for these tensors, or None (the caller runs the reference)."""
    if not shapes_ok(hidden, weight, bias):
        return None
    workload = {"tokens": hidden.size(0), "hidden": hidden.size(1), "vocab": weight.size(0)}
    return _dispatch.gpu_function(KERNEL, symbol, hidden.dtype, workload, schedule)


def chunk_rows(schedule, max_rows):
    """Rows of a logits chunk: the schedule's, bounded by the caller's ``max_rows``."""
    return max(1, min(schedule["chunk_rows"], max_rows or schedule["chunk_rows"]))


def wanted_grads(hidden, weight, bias):
    """Which of hidden, weight and bias want a gradient (none with grad mode off)."""
    grad_on = torch.is_grad_enabled()
    return tuple(bool(grad_on and t is not None and t.requires_grad) for t in (hidden, weight, bias))


def make_case(workload, seed=0, device="cpu"):
    """Inputs for ``workload`` on ``device``; ``run(schedule)`` is the mean loss with its hidden
    and weight gradients, ``eager`` the same through ``F.linear`` and ``F.cross_entropy``."""
    dtype = TORCH_DTYPE[workload["dtype"]]
    n, d, vocab = workload["tokens"], workload["hidden"], workload["vocab"]
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g).to(device, dtype)
    weight = (torch.randn(vocab, d, generator=g) * 2 / d ** 0.5).to(device, dtype)
    labels = torch.randint(0, vocab, (n,), generator=g)
    labels[torch.rand(n, generator=g) < 0.1] = -100
    labels = labels.to(device)

    def run(schedule, backward=True):
        h = hidden.detach().requires_grad_(backward)
        w = weight.detach().requires_grad_(backward)
        count = max(1, int((labels != -100).sum()))
        loss = linear_cross_entropy_rows(h, w, None, labels, -100, 1.0 / count, schedule=schedule).sum() / count
        if backward:
            loss.backward()
            return loss, h.grad, w.grad
        return (loss,)

    def eager(backward=True):
        h = hidden.detach().requires_grad_(backward)
        w = weight.detach().requires_grad_(backward)
        loss = reference(h, w, None, labels)
        if backward:
            loss.backward()
            return loss, h.grad, w.grad
        return (loss,)

    def check(outputs):
        h = hidden.double().cpu().requires_grad_(True)
        w = weight.double().cpu().requires_grad_(True)
        loss = reference(h, w, None, labels.cpu())
        loss.backward()
        for name, a, e in zip(("loss", "grad hidden", "grad weight"), outputs, (loss, h.grad, w.grad)):
            # gradients are O(1/tokens) per element: compare them relative to their largest
            s = max(e.abs().max().item(), 1e-30) if name != "loss" else 1.0
            assert_matches(a.double().cpu() / s, e / s, workload["dtype"], f"linear_cross_entropy {name}")

    return run, eager, check


KERNEL = register(Kernel(
    name="linear_cross_entropy",
    doc=__doc__.strip().splitlines()[0],
    api=("linear_cross_entropy",),
    signature={"linear_cross_entropy": ("hidden", "lm_head", "labels", "ignore_index", "shift", "reduction", "return_logits", "logits_dtype", "loss_dtype", "divide_by")},
    switch="linear_cross_entropy",
    space=SPACE,
    workload_fields=("tokens", "hidden", "vocab", "dtype"),
    size_axes=("tokens",),
    # bench:crossover, 2 threads, this machine: its bytes are the weight's at any token count, and its time is the products' (0.85-1.18x eager from 2 to 8192 tokens): the floor would not separate anything
    cpu_min_bytes=CpuFloors(inference=0, training=0),
    render=_render,
    reference=reference,
    make_case=make_case,
    bytes_moved=lambda w: (w["tokens"] + w["vocab"]) * w["hidden"] * (4 if w["dtype"] == "float32" else 2) + 12 * w["tokens"],
    example_workloads=tuple(
        {"tokens": n, "hidden": d, "vocab": v, "dtype": "float32"}
        for n, d, v in ((8192, 768, 32000), (8192, 768, 50257), (8192, 2048, 32000), (4096, 1024, 50257), (8192, 2048, 49152))
    ),
    # its point is memory (no full logits), whatever the size
    gpu_min_bytes=0,
    cuda_space=Space(
        params={"chunk_rows": (256, 512, 1024), "block_v": (1024, 2048, 4096, 8192), "num_warps": (4, 8, 16)},
        default={"chunk_rows": 1024, "block_v": 4096, "num_warps": 8},
        # at least four logits a thread per step, so that loads can be vectorised
        constraints=("block_v >= 128 * num_warps",),
    ),
))
