"""The schedule spaces' real parameters: a vector width of 0 builds scalar code (the vectoriser
off), the baseline the AVX2 widths are measured against, and computes what the vectorised builds
compute; the OpenMP schedule of rope and flash attention is set at call time, so one build
serves every kind and chunk."""

import pytest

from adopt_kernels.kernels import adamw, flash_attention, gated_act, layer_norm, rms_norm, rope
from adopt_kernels.kernels._common import vec_pragma

# small workloads with ragged sizes, so that vector tails run too
CASES = {
    "rms_norm": (rms_norm, {"rows": 37, "n": 123, "dtype": "float32"}),
    "layer_norm": (layer_norm, {"rows": 33, "n": 200, "dtype": "float32"}),
    "adamw": (adamw, {"params": 30_011, "tensors": 0, "dtype": "float32"}),
    "gated_act": (gated_act, {"rows": 9, "n": 301, "act": "silu", "dtype": "float32"}),
    "rope": (rope, {"batch": 2, "heads": 4, "kv_heads": 2, "seq": 9, "dim": 16, "interleaved": 0, "dtype": "float32"}),
}


def test_vec_bits_zero_turns_the_vectoriser_off_and_the_widths_prefer_theirs():
    assert vec_pragma(0) == '#pragma GCC optimize("no-tree-vectorize")'
    assert vec_pragma(128) == '#pragma GCC target("prefer-vector-width=128")'
    assert vec_pragma(256) == '#pragma GCC target("prefer-vector-width=256")'


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_space_offers_scalar_code_and_renders_it(name):
    module, _ = CASES[name]
    kernel = module.KERNEL
    assert 0 in kernel.space.params["vec_bits"]
    scalar = kernel.source(dict(kernel.space.default, vec_bits=0), "float32")
    wide = kernel.source(dict(kernel.space.default, vec_bits=256), "float32")
    assert "no-tree-vectorize" in scalar and "prefer-vector-width" not in scalar
    assert "prefer-vector-width=256" in wide and "no-tree-vectorize" not in wide


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_scalar_build_computes_what_the_reference_computes(name):
    module, workload = CASES[name]
    run, _, check = module.make_case(workload, seed=5)
    check(run(dict(module.KERNEL.space.default, vec_bits=0)))


@pytest.mark.parametrize("module, other", [(rope, {"omp_kind": "dynamic", "chunk": 32}), (flash_attention, {"omp_kind": "static"})])
def test_the_openmp_schedule_is_applied_at_call_time(module, other):
    space = module.KERNEL.space
    assert set(space.omp.values()) == set(other)
    default = dict(space.default)
    assert module.KERNEL.source(default, "float32") == module.KERNEL.source(dict(default, **other), "float32")
    assert "schedule(runtime)" in module.KERNEL.source(default, "float32")
