"""The Triton rotary embedding (on a CUDA device, else in Triton's interpreter) against float64:
layouts, position ids, schedules, float16; and, in the interpreter, the compiled CPU kernel's
own layout and routing cases, through the public ``apply_rope`` and ``apply_rope_interleaved``."""

import random
import types

import pytest
import torch

from test_gpu_kernels import DEVICE, _triton_path  # noqa: F401  (the interpreter set-up)
from test_kernel_rope import qk, tables

import test_kernel_rope as cpu_cases
from adopt_kernels import _dispatch
from adopt_kernels.kernels import rope as kernel
from adopt_kernels.kernels._common import assert_matches

CPU_CASES = (
    "test_half_split_per_batch_tables", "test_half_split_position_ids", "test_interleaved_full_width_tables_and_one_tensor",
    "test_interleaved_half_width_tables", "test_key_tables_of_its_own", "test_one_tensor", "test_only_one_output_used",
    "test_position_out_of_range_raises_like_the_original", "test_table_changed_before_backward_is_an_error",
    "test_tables_already_broadcastable", "test_transposed_projections_and_shared_positions",
    "test_unsupported_inputs_take_the_original_path",
)


def _copy(fn):
    """``fn`` as a function of its own, so that marking it here leaves the CPU kernel's test as it is."""
    out = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    out.__dict__.update({k: list(v) if isinstance(v, list) else v for k, v in fn.__dict__.items()})
    return pytest.mark.skipif(DEVICE != "cpu", reason="the CPU kernel's cases build CPU tensors")(out)


# the CPU kernel's cases, run here with the Triton path switched on (in the interpreter)
for _name in CPU_CASES:
    globals()[_name] = _copy(getattr(cpu_cases, _name))


def _check(q, k, cos, sin, schedule=None, dtype="float32", **kw):
    """The Triton path on DEVICE against the composite in float64: outputs and gradients."""
    to = dict(device=DEVICE)
    q, k, cos, sin = (t.to(**to) for t in (q, k, cos, sin))
    kw = {n: v.to(**to) if isinstance(v, torch.Tensor) else v for n, v in kw.items()}
    leaves = [t.detach().requires_grad_() for t in (q, k)]
    before = _dispatch.CALLS["rope"]
    outs = kernel.rope(*leaves, cos, sin, schedule=schedule, **kw)
    assert _dispatch.CALLS["rope"] == before + 1, "the Triton path did not run"
    dys = [torch.randn(o.shape, generator=torch.Generator().manual_seed(3)).to(o) for o in outs]
    torch.autograd.backward(outs, dys)
    ref = [t.detach().double().requires_grad_() for t in (q, k)]
    interleaved = kw.pop("interleaved", False)
    expected = kernel.reference(*ref, cos.double(), sin.double(), kw.get("position_ids"), kw.get("unsqueeze_dim", 1), interleaved)
    torch.autograd.backward(expected, [d.double() for d in dys])
    for a, e in zip((*outs, leaves[0].grad, leaves[1].grad), (*expected, ref[0].grad, ref[1].grad)):
        assert_matches(a, e, dtype, "rope")


def _schedules():
    space = kernel.KERNEL.cuda_space
    rng = random.Random(7)
    picked = [dict(space.default), dict(space.default, heads_inner=0)]
    while len(picked) < 5:
        s = space.sample(rng, {"dim": 12})
        if s not in picked:
            picked.append(s)
    return picked


@pytest.mark.parametrize("schedule", _schedules(), ids=lambda s: "-".join(str(v) for v in s.values()))
def test_schedules_agree(schedule):
    q, k = qk((2, 3, 7, 20), (2, 1, 7, 20), "float32", seed=4)
    cos, sin = tables(7, 20, torch.float32, batch=2)
    _check(q, k, cos, sin, schedule, unsqueeze_dim=1)
    q, k = qk((2, 7, 3, 12), (2, 7, 3, 12), "bfloat16", seed=5)
    cos, sin = tables(20, 12, torch.bfloat16, half=True)
    _check(q, k, cos, sin, schedule, "bfloat16", interleaved=True, position_ids=torch.arange(7)[None] + 2, unsqueeze_dim=2)


@pytest.mark.parametrize("layout", ["bhtd", "bthd"])
def test_layouts_and_position_ids(layout):
    b, h, kvh, t, d = 2, 4, 2, 9, 24
    q, k = qk((b, t, h, d), (b, t, kvh, d), "bfloat16", seed=6)
    if layout == "bhtd":
        q, k = q.transpose(1, 2), k.transpose(1, 2)
    cos, sin = tables(t + 4, d, torch.bfloat16)
    pos = torch.stack([torch.randperm(t + 4)[:t] for _ in range(b)])
    _check(q, k, cos, sin, dtype="bfloat16", position_ids=pos, unsqueeze_dim=1 if layout == "bhtd" else 2)


def test_float16_transposed_views():
    q, k = qk((2, 5, 3, 16), (2, 5, 1, 16), "float32", seed=7)
    cos, sin = tables(5, 16, torch.float16)
    _check(q.half().transpose(1, 2), k.half().transpose(1, 2), cos, sin, dtype="float16", unsqueeze_dim=0)
