"""Adam/AdamW step: one pass over parameter, gradient and both moments per element.

torch's for-loop and foreach implementations make eight or more passes over parameter-sized
tensors per step (one per arithmetic op, with temporaries); this reads each of the four once
and writes three back, for all the tensors of a parameter group in one call. The arithmetic
is torch's, in its order: decoupled weight decay (AdamW) or L2 on the gradient (Adam),
``m = beta1*m + (1-beta1)*g``, ``v = beta2*v + (1-beta2)*g*g``,
``p -= step_size * m / (sqrt(v)/sqrt(1-beta2^t) + eps)`` with ``step_size = lr/(1-beta1^t)``,
rounded and fused as torch's CPU ops do, so float32 results equal torch's to the bit.
bfloat16 parameters keep float32 moments and are rounded once per step.

Schedule: ``chunk`` elements per OpenMP work item (the group's tensors are cut into chunks so
that small and large tensors spread over threads alike), ``vec_bits`` the vector width (0: not vectorised),
``unroll`` the inner loop's unroll factor, ``omp_kind`` the OpenMP schedule kind.
"""

import importlib
import math

import torch

from .. import _dispatch
from ..registry import CpuFloors, Kernel, register, Space
from ._common import TORCH_DTYPE, assert_matches, render

TEMPLATE = r"""
$vec_pragma
typedef $scalar_t scalar_t;
#define CHUNK $chunk

// branch-free round-to-nearest-even, so that the bfloat16 store vectorises
static inline void put(float* p, int64_t i, float v) { p[i] = v; }
static inline void put(bf16_t* p, int64_t i, float v) {
  uint32_t u; std::memcpy(&u, &v, 4);
  uint32_t r = ((u & 0x7fffffffu) > 0x7f800000u) ? (u | 0x400000u) : (u + 0x7fffu + ((u >> 16) & 1u));
  p[i] = (bf16_t)(r >> 16);
}

struct Hyper {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay;
};

// MODE 0: no weight decay; 1: L2 added to the gradient (Adam); 2: decoupled (AdamW).
// Each value is rounded where torch's for-loop step rounds it, and fused exactly where torch's
// CPU kernels fuse (add with alpha and addcmul are fused multiply-adds there), so that the
// float32 results are torch's to the bit; contraction is off so nothing else gets fused.
template <int MODE>
__attribute__((optimize("fp-contract=off")))
static void update(scalar_t* __restrict p, const scalar_t* __restrict g, float* __restrict m, float* __restrict v,
                   int64_t n, const Hyper& h, float neg_step_size, float bc2_sqrt) {
  #pragma GCC ivdep
  #pragma GCC unroll $unroll
  for (int64_t i = 0; i < n; ++i) {
    float pi = load_f(p, i);
    float gi = load_f(g, i);
    if (MODE == 1) gi = std::fma(pi, h.weight_decay, gi);
    if (MODE == 2) pi = pi * h.decay;
    const float mi = std::fma(gi, h.one_minus_beta1, m[i] * h.beta1);
    const float vi = std::fma(h.one_minus_beta2 * gi, gi, v[i] * h.beta2);
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / bc2_sqrt + h.eps;
    put(p, i, pi + (neg_step_size * mi) / denom);
  }
}

// n tensors given by address; first_chunk (n + 1 entries) is scratch for where each tensor's
// chunks start, filled here so that the chunking always matches the compiled CHUNK
extern "C" void adam_step(const int64_t* params, const int64_t* grads, const int64_t* exp_avgs, const int64_t* exp_avg_sqs,
                          const int64_t* sizes, int64_t* first_chunk, const float* neg_step_sizes, const float* bc2_sqrts,
                          int64_t n, float beta1, float one_minus_beta1, float beta2, float one_minus_beta2, float eps,
                          float weight_decay, float decay, int mode, int nthreads) {
  const Hyper h = {beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay};
  first_chunk[0] = 0;
  for (int64_t t = 0; t < n; ++t) first_chunk[t + 1] = first_chunk[t] + (sizes[t] + CHUNK - 1) / CHUNK;
  const int64_t total = first_chunk[n];
  #pragma omp parallel for schedule(runtime) num_threads(nthreads)
  for (int64_t c = 0; c < total; ++c) {
    const int64_t t = std::upper_bound(first_chunk, first_chunk + n + 1, c) - first_chunk - 1;
    const int64_t begin = (c - first_chunk[t]) * (int64_t)CHUNK;
    const int64_t len = std::min<int64_t>(CHUNK, sizes[t] - begin);
    scalar_t* p = (scalar_t*)params[t] + begin;
    const scalar_t* g = (const scalar_t*)grads[t] + begin;
    float* m = (float*)exp_avgs[t] + begin;
    float* v = (float*)exp_avg_sqs[t] + begin;
    if (mode == 2) update<2>(p, g, m, v, len, h, neg_step_sizes[t], bc2_sqrts[t]);
    else if (mode == 1) update<1>(p, g, m, v, len, h, neg_step_sizes[t], bc2_sqrts[t]);
    else update<0>(p, g, m, v, len, h, neg_step_sizes[t], bc2_sqrts[t]);
  }
}
"""

SPACE = Space(
    params={
        "chunk": (4096, 16384, 65536, 262144),
        "vec_bits": (0, 128, 256, 512),
        "unroll": (1, 2, 4, 8),
        "omp_kind": ("static", "dynamic", "guided"),
        "omp_chunk": (1, 2, 4, 8),
    },
    default={"chunk": 65536, "vec_bits": 256, "unroll": 2, "omp_kind": "static", "omp_chunk": 1},
    omp={"kind": "omp_kind", "chunk": "omp_chunk"},
    # 512-bit vectors on AVX-512 CPUs: 5% less time (docs/kernels.md)
    target_defaults={"avx512": {"vec_bits": 512}},
)

MODES = {"none": 0, "l2": 1, "decoupled": 2}


def _render(schedule, dtype):
    return render(TEMPLATE, schedule, dtype)


def reference(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """One Adam/AdamW update of a single tensor, as torch's for-loop implementation writes it,
    in the dtype of the given tensors (float64 for a reference). Returns the new values."""
    p, g, m, v = param.clone(), grad.clone(), exp_avg.clone(), exp_avg_sq.clone()
    if decoupled:
        p.mul_(1 - lr * weight_decay)
    elif weight_decay != 0:
        g = g.add(p, alpha=weight_decay)
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    step_size = lr / (1 - beta1 ** step)
    denom = (v.sqrt() / math.sqrt(1 - beta2 ** step)).add_(eps)
    p.addcdiv_(m, denom, value=-step_size)
    return p, m, v


def tensor_ok(p, grad, state, gpu=False):
    """A parameter the compiled step takes: dense contiguous float32/bfloat16 on the CPU (with
    ``gpu``, float32/bfloat16/float16 on the Triton kernel's device), its gradient of the same
    dtype and shape, float32-castable moments of its shape."""
    dtypes = (torch.float32, torch.bfloat16, torch.float16) if gpu else (torch.float32, torch.bfloat16)
    if (p.device.type != "cpu" and not gpu) or p.dtype not in dtypes or not p.is_contiguous():
        return False
    if grad.is_sparse or grad.dtype != p.dtype or grad.shape != p.shape or grad.device != p.device:
        return False
    for key in ("exp_avg", "exp_avg_sq"):
        s = state.get(key)
        if s is not None and (not isinstance(s, torch.Tensor) or s.shape != p.shape or s.device != p.device or not s.is_floating_point()):
            return False
    return True


def step_function(dtype, workload, schedule=None, gpu=False):
    """The compiled group step for parameters of ``dtype`` (with ``gpu``, the Triton one), or
    None (reference path)."""
    if gpu:
        return _dispatch.gpu_function(KERNEL, "apply_step", dtype, workload, schedule)
    return _dispatch.function(KERNEL, "adam_step", dtype, workload, schedule)


def workload_of(params):
    return {"params": sum(p.numel() for p in params), "tensors": len(params)}


def _addresses(tensors):
    return torch.tensor([t.data_ptr() for t in tensors], dtype=torch.int64)


def apply_step(fn, params, grads, exp_avgs, exp_avg_sqs, steps, lr, betas, eps, weight_decay, mode):
    """One compiled update of same-dtype tensors; ``steps`` are the step numbers after this
    step's increment. Moments are float32 and contiguous; gradients contiguous. ``fn`` is a
    :func:`step_function`. Returns the updated tensors: the parameters, then the first and the
    second moments."""
    if _dispatch.on_gpu(*params):
        return fn(params, grads, exp_avgs, exp_avg_sqs, steps, lr, betas, eps, weight_decay, mode)
    beta1, beta2 = betas
    sizes = [p.numel() for p in params]
    step_sizes = torch.tensor([-(lr / (1 - beta1 ** s)) for s in steps], dtype=torch.float32)
    bc2 = torch.tensor([math.sqrt(1 - beta2 ** s) for s in steps], dtype=torch.float32)
    pa, ga, ma, va = (_addresses(ts) for ts in (params, grads, exp_avgs, exp_avg_sqs))
    size_t, start_t = torch.tensor(sizes, dtype=torch.int64), torch.empty(len(sizes) + 1, dtype=torch.int64)
    f = _dispatch.f32
    fn(_dispatch.ptr(pa), _dispatch.ptr(ga), _dispatch.ptr(ma), _dispatch.ptr(va), _dispatch.ptr(size_t), _dispatch.ptr(start_t),
       _dispatch.ptr(step_sizes), _dispatch.ptr(bc2), _dispatch.i64(len(params)), f(beta1), f(1 - beta1), f(beta2), f(1 - beta2),
       f(eps), f(weight_decay), f(1 - lr * weight_decay), MODES[mode], _dispatch.threads())
    _dispatch.CALLS[KERNEL.name] += 1
    return (*params, *exp_avgs, *exp_avg_sqs)


def mode_of(decoupled, weight_decay):
    if decoupled:
        return "decoupled"  # torch multiplies by 1 - lr*wd even when wd is 0: an exact no-op
    return "l2" if weight_decay != 0 else "none"


# the tensor shapes of one BERT-base encoder layer, hidden 768
_LAYER = ((768, 768), (768,)) * 4 + ((768,), (768,), (3072, 768), (3072,), (768, 3072), (768,), (768,), (768,))


def parameter_shapes(total):
    """Shapes of a BERT-like parameter list of about ``total`` elements."""
    shapes, n = [], 0
    while n < total:
        for s in _LAYER:
            k = math.prod(s)
            if n + k > total:
                shapes.append((total - n,))
                return shapes
            shapes.append(s)
            n += k
    return shapes


def shapes_of(workload):
    """The tensor shapes of ``workload``: BERT-like (:func:`parameter_shapes`), unless ``tensors``
    (above 1) asks for another count; then that many flat tensors of uneven sizes."""
    shapes = parameter_shapes(workload["params"])
    k, total = workload.get("tensors", 0), workload["params"]
    if k <= 1 or k == len(shapes):
        return shapes
    cuts = [total * (i * (i + 1) // 2) // (k * (k + 1) // 2) for i in range(k + 1)]
    return [(b - a,) for a, b in zip(cuts, cuts[1:])]


def _copies(params, ms, vs, moment_dtype):
    return [t.clone() for t in params], [t.to(moment_dtype, copy=True) for t in ms], [t.to(moment_dtype, copy=True) for t in vs]


def _refill(work, params, ms, vs):
    for dst, src in zip(work, (params, ms, vs)):
        for d, s in zip(dst, src):
            d.copy_(s)
    return work


def make_case(workload, seed=0, decoupled=True, device="cpu"):
    """A parameter list of ``workload['params']`` elements at step 3 on ``device``;
    ``run(schedule)`` applies one compiled step, ``eager`` torch's foreach AdamW, ``check``
    compares with float64."""
    dtype = TORCH_DTYPE[workload["dtype"]]
    g = torch.Generator().manual_seed(seed)
    shapes = shapes_of(workload)
    params = [torch.randn(s, generator=g).to(device, dtype) for s in shapes]
    grads = [torch.randn(s, generator=g).to(device, dtype) for s in shapes]
    ms = [(0.1 * torch.randn(s, generator=g)).to(device) for s in shapes]
    vs = [(0.01 * torch.rand(s, generator=g)).to(device) for s in shapes]
    gpu = _dispatch.on_gpu(*params)
    hyper = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    mode = mode_of(decoupled, hyper["weight_decay"])

    # Working copies are allocated once and refilled before each step (the step is in place):
    # both sides pay the same refill, which a timing of run against eager includes.
    work = {"kernel": _copies(params, ms, vs, torch.float32), "eager": _copies(params, ms, vs, dtype)}

    def run(schedule, backward=True):
        schedule = schedule or dict((KERNEL.cuda_space if gpu else SPACE).default)
        p, m, v = _refill(work["kernel"], params, ms, vs)
        fn = step_function(dtype, workload_of(p), schedule, gpu=gpu)
        out = apply_step(fn, p, grads, m, v, [3] * len(p), mode=mode, **hyper)
        k = len(p)
        return out[:k], out[k : 2 * k], out[2 * k :]

    def eager(backward=True):
        p, m, v = _refill(work["eager"], params, ms, vs)
        # the functional forms live in submodules that `import torch` does not load on torch 1.13
        opt = importlib.import_module("torch.optim.adamw").adamw if decoupled else importlib.import_module("torch.optim.adam").adam
        b1, b2 = hyper["betas"]
        opt(p, grads, m, v, [], [torch.tensor(2.0) for _ in p], foreach=True, amsgrad=False, beta1=b1, beta2=b2, lr=hyper["lr"],
            weight_decay=hyper["weight_decay"], eps=hyper["eps"], maximize=False)
        return p, m, v

    def check(outputs):
        b1, b2 = hyper["betas"]
        for i, (p, m, v) in enumerate(zip(*outputs)):
            want = reference(params[i].double().cpu(), grads[i].double().cpu(), ms[i].double().cpu(), vs[i].double().cpu(), 3,
                             hyper["lr"], b1, b2, hyper["eps"], hyper["weight_decay"], decoupled)
            for name, a, e in zip(("param", "exp_avg", "exp_avg_sq"), (p, m, v), want):
                assert_matches(a.double().cpu(), e, workload["dtype"] if name == "param" else "float32", f"adam {name} {i}")

    return run, eager, check


KERNEL = register(Kernel(
    name="adamw",
    doc=__doc__.strip().splitlines()[0],
    api=("FusedAdam", "FusedAdamW"),
    signature={"FusedAdam": ("params", "lr", "betas", "eps", "weight_decay", "amsgrad"),
               "FusedAdamW": ("params", "lr", "betas", "eps", "weight_decay", "amsgrad")},
    switch="fused_optimizer",
    space=SPACE,
    workload_fields=("params", "tensors", "dtype"),
    size_axes=("params",),
    # bench:crossover, 2 threads, this machine: faster than foreach AdamW at every size measured (1.6-2.1x down to 244 parameters)
    cpu_min_bytes=CpuFloors(inference=0, training=0),
    render=_render,
    reference=reference,
    make_case=make_case,
    # parameter read and written, gradient read, both float32 moments read and written
    bytes_moved=lambda w: w["params"] * (3 * (4 if w["dtype"] == "float32" else 2) + 16),
    example_workloads=tuple(
        {"params": n, "tensors": len(parameter_shapes(n)), "dtype": "float32"}
        for n in (1_000_000, 7_087_872, 21_000_000, 85_054_464, 110_000_000)
    ),
    # one pass over the whole parameter group: never a small call
    gpu_min_bytes=0,
    cuda_space=Space(
        params={"block": (1024, 2048, 4096, 8192), "num_warps": (2, 4, 8, 16)},
        default={"block": 2048, "num_warps": 8},
        # four to sixteen elements a thread: vectorised loads; more spill registers (four streams
        # of 64-bit addresses per element). The widest, 8192 over 16 warps, still spills ~700 bytes
        # when compiled for sm_90: the tuner measures what that costs
        constraints=("block >= 128 * num_warps", "block <= 512 * num_warps"),
    ),
))
