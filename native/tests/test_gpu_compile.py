"""Every Triton kernel compiles for Hopper (sm_90) on a machine without a GPU.

Triton's interpreter runs the kernels as numpy and lets through what compiled Triton refuses (a
global that is not constexpr, a ``tl.dot`` too narrow, more shared memory than a block has).
Here :mod:`adopt_kernels.gpu.compile_check` compiles, with the ptxas Triton ships, every launch
that each kernel's test workloads make in the interpreter, forward and backward, at the default
schedule and at one end of the kernel's schedule space (the widest and the narrowest taking
turns); the LayerNorm and softmax flags their cases leave out (no affine parameters, float16,
masks of every kind, rows as wide as each takes) are launched besides. None may fail to compile,
nor spill more than :data:`SPILL_LIMIT` bytes. The negative control, a kernel only the compiler
rejects, is in test_gpu_compile_check.py.
"""

import traceback

import pytest
import torch

if torch.cuda.is_available():
    pytest.skip("a CUDA device is here: the kernel tests launch compiled kernels on it", allow_module_level=True)

from test_gpu_kernels import GPU_KERNELS, _module, _triton_path  # noqa: E402,F401  (the interpreter set up)

import triton  # noqa: E402
from adopt_kernels import registry  # noqa: E402
from adopt_kernels.gpu import compile_check  # noqa: E402

# the interpreter computes the outputs, which nothing here reads: its overflows are no finding
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
# the spilled bytes (stores and loads) a thread may need before its schedule counts as too wide
SPILL_LIMIT = 1024
# attention spills at its default schedule already (some 600 bytes in bfloat16, 3.7 KB in float32
# at a head dimension of 80): compile_check reports it, this test does not bound it
SPILLING = ("flash_attention.", "_flash_attention_bwd.")


@pytest.fixture(scope="module")
def compiled():
    """Every kernel's launches compiled in one pass, so that the compiles of one kernel overlap
    the interpreter's runs of the next: kernel -> (its results, those a fallback excuses, what its
    runs raised or None)."""
    try:
        triton.knobs.nvidia.ptxas.path
    except RuntimeError as e:
        pytest.skip(f"this Triton has no ptxas to compile with ({e})")
    launched = {}
    with pytest.MonkeyPatch.context() as mp, compile_check.checking() as check:
        # what conftest's and test_gpu_kernels' fixtures set for a test, for the whole pass
        mp.delenv("ADOPT_DISABLE", raising=False)
        mp.setenv("ADOPT_TRITON_MIN_BYTES", "0")
        mp.setenv("ADOPT_TRITON_INTERPRET", "1")
        for name in GPU_KERNELS:
            before, excused, raised = set(check.keys()), set(), None
            try:
                launch(name, check, excused, mp)
            except Exception:  # noqa: BLE001 - the kernel's own test reports it
                raised = traceback.format_exc()
            launched[name] = ([k for k in check.keys() if k not in before], excused, raised)
        results = check.results
    return {name: ([results[k] for k in keys], [results[k] for k in excused], raised)
           for name, (keys, excused, raised) in launched.items()}


def schedules(space, workload, widest):
    """The default and the legal schedule at one end of the space (each parameter's values are
    listed in order): the widest tiles and most warps, or the narrowest and fewest."""
    rank = lambda s: sum(space.params[k].index(v) for k, v in s.items())  # noqa: E731
    end = (max if widest else min)(space.enumerate(workload), key=rank, default=None)
    return [dict(space.default)] + ([end] if end not in (None, space.default) else [])


def launch(name, check, excused, monkeypatch):
    """Each test workload at the default and at one end of the space, the ends taking turns (a
    test workload each), then the flags the cases leave out."""
    kernel = registry.KERNELS[name]
    mod = _module(kernel)
    for i, w in enumerate(mod.TEST_WORKLOADS):
        for schedule in schedules(kernel.cuda_space, w, widest=i % 2 == 1):
            before = set(check.keys())
            run, _eager, _check = kernel.make_case(w, seed=1, device="cpu")
            run(schedule)
            # the spaces bound shared memory for 16-bit tiles; a float32 schedule past the
            # device's runs the default instead (the dispatcher's fallback), compiled here too
            if schedule != kernel.cuda_space.default and w.get("dtype") == "float32":
                excused.update(k for k in check.keys() if k not in before)
    if name in FLAGS:
        FLAGS[name](mod, monkeypatch)


def _grad(*tensors):
    return [t.requires_grad_() if t is not None else None for t in tensors]


def layer_norm_flags(mod, monkeypatch):
    # (dtype, n, p, weight, bias, schedule): rows of 16384 (the widest a GPU takes), dropout off
    # and at a high rate, weight or bias alone, float16
    for dtype, n, p, w, b, schedule in (
            (torch.float32, 16000, 0.0, False, False, {"rows": 1, "bwd_rows": 64, "num_warps": 16}),
            (torch.bfloat16, 16000, 0.7, True, True, {"rows": 1, "bwd_rows": 16, "num_warps": 16}),
            (torch.bfloat16, 8000, 0.25, True, True, {"rows": 1, "bwd_rows": 256, "num_warps": 8}),
            (torch.bfloat16, 1000, 0.25, True, True, {"rows": 4, "bwd_rows": 256, "num_warps": 4}),
            (torch.float32, 1000, 0.0, False, True, {"rows": 2, "bwd_rows": 64, "num_warps": 4}),
            (torch.float16, 500, 0.7, True, False, {"rows": 2, "bwd_rows": 16, "num_warps": 2})):
        x, res, weight, bias = _grad(torch.randn(3, n, dtype=dtype), torch.randn(3, n, dtype=dtype),
                                     torch.ones(n, dtype=dtype) if w else None, torch.zeros(n, dtype=dtype) if b else None)
        mod.dropout_add_layer_norm(x, res, weight, bias, 1e-5, p, seed=3, schedule=schedule).sum().backward()
    mod.keep_factors(2, 200, 0.7, 3, device="cpu")
    # where this Triton cannot compile tl.join the kernels draw their words column by column
    from adopt_kernels.gpu import _philox

    monkeypatch.setattr(_philox, "_join", False)
    for n in (200, 500):
        x, res, weight = _grad(torch.randn(3, n, dtype=torch.float16), torch.randn(3, n, dtype=torch.float16),
                               torch.ones(n, dtype=torch.float16))
        mod.dropout_add_layer_norm(x, res, weight, None, 1e-5, 0.7, seed=3,
                                   schedule={"rows": 2, "bwd_rows": 16, "num_warps": 2}).sum().backward()
    mod.keep_factors(2, 200, 0.25, 3, device="cpu")


def softmax_flags(mod, monkeypatch):
    # (dtype, shape, mask: (dtype, shape) or None, causal, schedule): masks additive and boolean,
    # per column and per row, their gradients in float32 or their own dtype, causal, rows of
    # 32768 whole and longer ones looped, float16
    bf16, f16, f32 = torch.bfloat16, torch.float16, torch.float32
    for dtype, shape, mask, causal, schedule in (
            (f32, (2, 5, 300), (f32, (5, 300)), True, {"rows": 4, "block": 0, "num_warps": 4}),
            (f32, (2, 5, 1000), (f32, (2, 5, 1000)), True, {"rows": 2, "block": 0, "num_warps": 4}),
            (bf16, (2, 20000), (torch.bool, (2, 1)), False, {"rows": 1, "block": 0, "num_warps": 16}),
            (bf16, (2, 20000), (bf16, (20000,)), False, {"rows": 1, "block": 0, "num_warps": 16}),
            (f16, (20, 100), None, False, {"rows": 16, "block": 0, "num_warps": 1}),
            (bf16, (1, 3, 5000), (bf16, (1, 3, 5000)), True, {"rows": 1, "block": 4096, "num_warps": 2}),
            (f16, (2, 1100), (torch.bool, (1100,)), False, {"rows": 1, "block": 1024, "num_warps": 1})):
        x = torch.randn(shape, dtype=dtype, requires_grad=True)
        if mask is not None and mask[0] == torch.bool:
            mask = torch.rand(mask[1]) > 0.1
        elif mask is not None:
            mask = torch.randn(mask[1], dtype=mask[0], requires_grad=True)
        mod.softmax(x, 0.5, mask, causal, schedule=schedule).float().sum().backward()


FLAGS = {"layer_norm": layer_norm_flags, "softmax": softmax_flags}


@pytest.mark.parametrize("name", GPU_KERNELS)
def test_compiles_for_sm90(name, compiled):
    results, excused, raised = compiled[name]
    assert raised is None, raised
    assert results, "no Triton launch was seen"
    failed = [r for r in results if not r["ok"]
              and not (r in excused and r["error"].startswith("OutOfResources: out of resource: shared memory"))]
    assert not failed, "\n\n".join(map(compile_check.describe, failed))
    spilled = [f"{r['kernel']} {r['spills']} bytes, num_warps={r['num_warps']}: {r['spec']}" for r in results
               if (r["spills"] or 0) > SPILL_LIMIT and not r["kernel"].startswith(SPILLING)]
    assert not spilled, "spills:\n" + "\n".join(spilled)
