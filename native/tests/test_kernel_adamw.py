"""The compiled Adam/AdamW step against torch's optimizers and a float64 reference: both
weight-decay forms, bfloat16 parameters with float32 moments, odd tensor sizes, groups the
kernel refuses, checkpoints loaded both ways, sampled schedules, and a negative control."""

import copy

import pytest
import torch
from torch import nn

from adopt_kernels import _dispatch
from adopt_kernels._impl.optim import FusedAdam, FusedAdamW, fused_optimizer_class, optimizer_kwargs
from adopt_kernels.kernels import adamw as K
from checks import sampled_schedules

CALLS = "adamw"
# sizes that are multiples of no chunk or vector width
SHAPES = [(37, 123), (123,), (5, 3, 7), (1,), (70001,)]


def params(dtype=torch.float32, seed=0, shapes=SHAPES):
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(s, generator=g).to(dtype)) for s in shapes]


def set_grads(ps, seed):
    g = torch.Generator().manual_seed(seed)
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g).to(p.dtype)


def run_steps(opt, ps, steps=3, seed=10):
    for i in range(steps):
        set_grads(ps, seed + i)
        opt.step()


@pytest.mark.parametrize("cls,fused,wd", [(torch.optim.AdamW, FusedAdamW, 0.1), (torch.optim.AdamW, FusedAdamW, 0.0),
                                          (torch.optim.Adam, FusedAdam, 0.1), (torch.optim.Adam, FusedAdam, 0.0)])
def test_steps_match_torch(cls, fused, wd):
    a, b = params(), params()
    ref, opt = cls(a, lr=0.01, weight_decay=wd), fused(b, lr=0.01, weight_decay=wd)
    before = _dispatch.CALLS[CALLS]
    run_steps(ref, a)
    run_steps(opt, b)
    assert _dispatch.CALLS[CALLS] == before + 3  # one call per group and step
    # float32 updates round and fuse where torch's do: equal to the bit, not just close
    for p, q in zip(a, b):
        assert torch.equal(q, p)
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(opt.state[q][key], ref.state[p][key])
        assert opt.state[q]["step"].item() == 3.0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("decoupled", [True, False])
def test_one_step_matches_float64(dtype, decoupled):
    run, _, check = K.make_case({"params": 100_003, "tensors": 0, "dtype": dtype}, seed=2, decoupled=decoupled)
    check(run(None))


def test_bfloat16_parameters_keep_float32_moments():
    ps = params(torch.bfloat16)
    opt = FusedAdamW(ps, lr=0.01)
    start = [p.detach().double() for p in ps]
    set_grads(ps, 3)
    opt.step()
    for p, p0 in zip(ps, start):
        state = opt.state[p]
        assert p.dtype == torch.bfloat16 and state["exp_avg"].dtype == torch.float32
        want, m, v = K.reference(p0, p.grad.double(), torch.zeros_like(p0), torch.zeros_like(p0), 1, 0.01, 0.9, 0.999, 1e-8, 0.01, True)
        K.assert_matches(p.double(), want, "bfloat16", "param")
        K.assert_matches(state["exp_avg"].double(), m, "float32", "exp_avg")
        K.assert_matches(state["exp_avg_sq"].double(), v, "float32", "exp_avg_sq")


def test_refused_groups_are_stepped_by_torch():
    a, b = params(seed=1), params(seed=1)
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:4], "amsgrad": True}, {"params": ps[4:], "maximize": True}]  # noqa: E731
    ref, opt = torch.optim.AdamW(groups(a), lr=0.01), FusedAdamW(groups(b), lr=0.01)
    before = _dispatch.CALLS[CALLS]
    run_steps(ref, a)
    run_steps(opt, b)
    assert _dispatch.CALLS[CALLS] == before + 3  # only the first group
    for p, q in zip(a, b):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
    assert "max_exp_avg_sq" in opt.state[b[2]]


def test_unsupported_tensors_and_switches(monkeypatch):
    for ps in (params(torch.float64), [p.detach().t().requires_grad_() for p in params(shapes=[(4, 6)])]):
        opt = FusedAdamW(ps, lr=0.01)
        before = _dispatch.CALLS[CALLS]
        run_steps(opt, ps, steps=1)
        assert _dispatch.CALLS[CALLS] == before
    for name in ("native", "fused_optimizer"):
        monkeypatch.setenv("ADOPT_DISABLE", name)
        ps = params()
        before = _dispatch.CALLS[CALLS]
        run_steps(FusedAdamW(ps, lr=0.01), ps, steps=1)
        assert _dispatch.CALLS[CALLS] == before
        assert fused_optimizer_class(torch.optim.AdamW) is torch.optim.AdamW
    monkeypatch.delenv("ADOPT_DISABLE")
    sparse = nn.Parameter(torch.zeros(5))
    sparse.grad = torch.zeros(5).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        FusedAdamW([sparse]).step()


def test_missing_and_strided_gradients_and_closure():
    a, b = params(), params()
    for ps in (a, b):
        set_grads(ps, 7)
        ps[1].grad = None
        ps[0].grad = ps[0].grad.t().contiguous().t()  # same values, column-major
    ref, opt = torch.optim.AdamW(a, lr=0.01), FusedAdamW(b, lr=0.01)
    assert opt.step(closure=lambda: 42.0) == 42.0
    ref.step()
    assert len(opt.state[b[1]]) == 0
    for p, q in zip(a, b):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_checkpoints_load_both_ways(dtype):
    a, b = params(dtype), params(dtype)
    opt = FusedAdamW(a, lr=0.01)
    run_steps(opt, a, steps=2)
    ref = torch.optim.AdamW(b, lr=0.01)
    with torch.no_grad():
        for p, q in zip(a, b):
            q.copy_(p)
    ref.load_state_dict(opt.state_dict())
    assert ref.state_dict()["state"].keys() == opt.state_dict()["state"].keys()
    back = FusedAdamW(a, lr=0.01)
    back.load_state_dict(opt.state_dict())
    for p in a:  # float32 moments of bfloat16 parameters survive the round trip exactly
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(back.state[p][key], opt.state[p][key])
    if dtype == torch.float32:
        run_steps(ref, b, steps=2, seed=20)
        run_steps(back, a, steps=2, seed=20)
        for p, q in zip(a, b):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    else:  # torch's bfloat16 moments are taken up by the fused step
        torch_opt = FusedAdamW(b, lr=0.01)
        torch_opt.load_state_dict(ref.state_dict())
        run_steps(torch_opt, b, steps=1)
        assert torch_opt.state[b[0]]["exp_avg"].dtype == torch.float32


def test_class_choice_and_kwargs():
    assert fused_optimizer_class(torch.optim.AdamW) is FusedAdamW
    assert fused_optimizer_class(torch.optim.Adam) is FusedAdam
    assert fused_optimizer_class(torch.optim.SGD) is torch.optim.SGD
    ps = params()
    opt = FusedAdamW(ps, lr=0.01, **optimizer_kwargs(FusedAdamW, ps))
    assert opt.param_groups[0]["foreach"] is True
    assert isinstance(opt, torch.optim.AdamW)



@pytest.mark.parametrize("schedule", sampled_schedules(K.SPACE, 4), ids=str)
def test_every_sampled_schedule_gives_the_same_result(schedule):
    run, _, check = K.make_case({"params": 300_007, "tensors": 0, "dtype": "float32"}, seed=3)
    check(run(schedule))


def test_negative_control_a_wrong_template_fails_the_check(monkeypatch):
    # the second moment fed g instead of g*g
    wrong = K.TEMPLATE.replace("std::fma(h.one_minus_beta2 * gi, gi,", "std::fma(h.one_minus_beta2, gi,")
    assert wrong != K.TEMPLATE
    monkeypatch.setattr(K, "TEMPLATE", wrong)
    _dispatch.forget()
    try:
        run, _, check = K.make_case({"params": 5000, "tensors": 0, "dtype": "float32"}, seed=1)
        with pytest.raises(AssertionError):
            check(run(None))
    finally:
        monkeypatch.undo()
        _dispatch.forget()
