"""The compiled RMSNorm against the float64 reference: outputs and gradients, odd shapes,
schedules sampled from its space, and a negative control."""


import pytest
import torch

from adopt_kernels import _dispatch
from adopt_kernels.kernels import rms_norm as K
from checks import sampled_schedules

SHAPES = [(3, 5, 123), (1, 7), (2, 9, 80), (17, 1000)]


def _grads(fn, x, w, dy):
    x = x.detach().requires_grad_(True)
    w = w.detach().requires_grad_(True)
    y = fn(x, w)
    y.backward(dy)
    return y, x.grad, w.grad


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_forward_and_gradients_match_float64(dtype, shape, offset):
    g = torch.Generator().manual_seed(sum(shape))
    t = K.TORCH_DTYPE[dtype]
    x = (3 * torch.randn(shape, generator=g)).to(t)
    w = torch.randn(shape[-1], generator=g).to(t)
    dy = torch.randn(shape, generator=g).to(t)
    before = _dispatch.CALLS["rms_norm"]
    got = _grads(lambda a, b: K.rms_norm(a, b, 1e-6, offset), x, w, dy)
    assert _dispatch.CALLS["rms_norm"] == before + 1
    want = _grads(lambda a, b: K.reference(a, b, 1e-6, offset), x.double(), w.double(), dy.double())
    rows = x.numel() // shape[-1]
    for name, a, e in zip(("output", "grad x", "grad weight"), got, want):
        assert a.dtype == t
        scale = rows ** 0.5 if name == "grad weight" else 1.0  # a sum over rows
        K.assert_matches(a.double() / scale, e / scale, dtype, name)



@pytest.mark.parametrize("schedule", sampled_schedules(K.SPACE, 4), ids=str)
def test_every_sampled_schedule_gives_the_same_result(schedule):
    run, _, check = K.make_case({"rows": 37, "n": 123, "dtype": "float32"}, seed=3)
    check(run(schedule))


def test_unsupported_inputs_take_the_reference_path(monkeypatch):
    x = torch.randn(4, 8)
    assert K.rms_norm(x.double(), None, 1e-6) is None
    assert K.rms_norm(x, torch.ones(8, dtype=torch.float64), 1e-6) is None
    assert K.rms_norm(x, torch.ones(7), 1e-6) is None
    monkeypatch.setenv("ADOPT_DISABLE", "native")
    assert K.rms_norm(x, None, 1e-6) is None


def test_negative_control_a_wrong_template_fails_the_check(monkeypatch):
    # the mean of squares taken over n + 1 elements: a plausible off-by-one
    monkeypatch.setattr(K, "TEMPLATE", K.TEMPLATE.replace("ss / (float)n", "ss / (float)(n + 1)"))
    _dispatch.forget()
    try:
        run, _, check = K.make_case({"rows": 9, "n": 16, "dtype": "float32"}, seed=1)
        with pytest.raises(AssertionError):
            check(run(None))
    finally:
        monkeypatch.undo()
        _dispatch.forget()


@pytest.mark.parametrize("acc", K.SPACE.params["acc"])
@pytest.mark.parametrize("n", [7, 123, 1000])
def test_every_accumulator_count_sums_the_whole_row(acc, n):
    # rows shorter than, and not a multiple of, the partial sums' lanes take the scalar tail
    run, _, check = K.make_case({"rows": 5, "n": n, "dtype": "float32"}, seed=acc)
    check(run(dict(K.SPACE.default, acc=acc, vec_bits=128)))


def test_negative_control_a_partial_sum_left_out_fails_the_check(monkeypatch):
    # the last of the forward's partial sums never added: a plausible slip in the final reduction
    monkeypatch.setattr(K, "TEMPLATE", K.TEMPLATE.replace("for (int l = 0; l < LANES; ++l) ss += s[l];",
                                                          "for (int l = 0; l < LANES - 1; ++l) ss += s[l];", 1))
    _dispatch.forget()
    try:
        run, _, check = K.make_case({"rows": 9, "n": 256, "dtype": "float32"}, seed=1)
        with pytest.raises(AssertionError):
            check(run(dict(K.SPACE.default, acc=2)))
    finally:
        monkeypatch.undo()
        _dispatch.forget()
