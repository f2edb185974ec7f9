"""The compiled masked softmax against the float64 reference: outputs and gradients (of the
input and of an additive mask), odd shapes, every mask kind, schedules sampled from its space,
the public ``softmax``'s dispatch, and a negative control."""

import math

import pytest
import torch

import adopt_kernels as ak
from adopt_kernels import _dispatch
from adopt_kernels.kernels import _common
from adopt_kernels.kernels import softmax as K
from checks import sampled_schedules

SHAPES = [(3, 5, 123), (1, 7), (2, 9, 80), (17, 1000), (4, 3, 1)]


def _mask(kind, shape, g):
    q_len, n = (shape[-2] if len(shape) > 1 else 1), shape[-1]
    if kind == "additive":  # broadcast over all leading dimensions but the first
        lead = (shape[0],) + (1,) * (len(shape) - 2) if len(shape) > 1 else ()
        return torch.randn(*lead, n, generator=g)
    if kind == "bool":
        keep = torch.rand(*shape[:-1], n, generator=g) > 0.3
        keep[..., 0] = True
        return keep
    if kind == "padding":  # one value per key, shared by every row
        return torch.zeros(n).masked_fill_(torch.arange(n) >= max(1, n - n // 4), torch.finfo(torch.float32).min)
    assert kind is None and q_len > 0
    return None


def _run(fn, x, dy, mask):
    """Output, input gradient and (for an additive mask) mask gradient of ``fn(x, mask)``."""
    x = x.detach().requires_grad_(True)
    additive = mask is not None and mask.is_floating_point()
    if additive:
        mask = mask.detach().requires_grad_(True)
    y = fn(x, mask)
    y.backward(dy)
    return y, x.grad, mask.grad if additive else None


def check_float64(shape, kind, dtype, schedule=None, device="cpu", mask_dtype=torch.float32):
    """The kernel's output and gradients (inputs on ``device``) against float64; it must run."""
    g = torch.Generator().manual_seed(sum(shape))
    t = K.TORCH_DTYPE[dtype]
    x = (3 * torch.randn(shape, generator=g)).to(t)
    dy = torch.randn(shape, generator=g).to(t)
    mask = _mask(None if kind == "causal" else kind, shape, g)
    if mask is not None and mask.is_floating_point():
        mask = mask.to(mask_dtype)
    causal = kind == "causal"
    before = _dispatch.CALLS["softmax"]
    on = mask.to(device) if mask is not None else None
    got = _run(lambda a, m: K.softmax(a, 0.7, m, causal, schedule=schedule), x.to(device), dy.to(device), on)
    assert _dispatch.CALLS["softmax"] == before + 1, "the kernel did not run"
    wide = mask.double() if mask is not None and mask.is_floating_point() else mask
    want = _run(lambda a, m: K.reference(a, 0.7, m, causal), x.double(), dy.double(), wide)
    for name, a, e in zip(("output", "grad x", "grad mask"), got, want):
        if e is None:
            assert a is None
            continue
        # a mask's gradient sums over the rows it broadcasts to
        scale = (x.numel() / e.numel()) ** 0.5 if name == "grad mask" else 1.0
        assert a.dtype == (mask_dtype if name == "grad mask" else t)
        K.assert_matches(a.cpu().double() / scale, e / scale, dtype, name)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", [None, "additive", "bool", "padding", "causal"])
def test_forward_and_gradients_match_float64(dtype, shape, kind):
    if kind == "causal" and len(shape) < 2:
        pytest.skip("causal needs a query axis")
    check_float64(shape, kind, dtype)


def test_a_fully_masked_row_is_nan_as_in_eager_softmax():
    x = torch.randn(3, 6)
    keep = torch.ones(3, 6, dtype=torch.bool)
    keep[1] = False
    y = K.softmax(x, 1.0, keep)
    eager = torch.softmax(x.masked_fill(~keep, -math.inf), dim=-1)
    assert torch.isnan(y[1]).all() and torch.isnan(eager[1]).all()
    torch.testing.assert_close(y[[0, 2]], eager[[0, 2]])
    # a finite fill leaves the row uniform, as it does in eager code
    y = K.softmax(x, 1.0, torch.zeros(3, 6).masked_fill(~keep, torch.finfo(torch.float32).min))
    torch.testing.assert_close(y[1], torch.full((6,), 1 / 6))


def test_non_contiguous_input_and_a_mask_with_strided_rows():
    x = torch.randn(4, 50, 3).transpose(1, 2)
    mask = torch.randn(50, 4).t().unsqueeze(1)  # (4, 1, 50), last-dimension stride 4
    torch.testing.assert_close(K.softmax(x, 0.5, mask), K.reference(x, 0.5, mask))



@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("kind", [None, "additive", "causal"])
@pytest.mark.parametrize("vec_bits", [128, 256, 512])  # 512: AVX-512's streaming stores where the CPU has them
def test_streaming_stores(dtype, kind, vec_bits, monkeypatch):
    """Outputs past the size threshold are streamed: rows of 123 (and 80) values start off any
    alignment, so each has an unaligned head, streamed vectors and a tail."""
    monkeypatch.setattr(_common, "STREAM_BYTES", 0)
    schedule = dict(K.SPACE.default, vec_bits=vec_bits)
    _dispatch.library(K.KERNEL, schedule, dtype)  # built as asked: a failed build raises, never falls back unseen
    for shape in ((3, 5, 123), (2, 9, 80)):
        check_float64(shape, kind, dtype, schedule=schedule)


def test_negative_control_a_wrong_streamed_vector_fails_the_check(monkeypatch):
    # the streamed vectors one element off: only the streamed path carries the slip
    monkeypatch.setattr(_common, "STREAM_BYTES", 0)
    wrong = K.TEMPLATE.replace("vstream((float*)(yr + j), vload(z + j) * inv)", "vstream((float*)(yr + j), vload(z + j + 1) * inv)")
    assert wrong != K.TEMPLATE
    try:
        with monkeypatch.context() as m:
            m.setattr(K, "TEMPLATE", wrong)
            _dispatch.forget()
            with pytest.raises(AssertionError, match="output"):
                check_float64((3, 5, 123), None, "float32")
        _dispatch.forget()
        check_float64((3, 5, 123), None, "float32")  # the template as it is, streamed, passes
    finally:
        _dispatch.forget()


@pytest.mark.parametrize("schedule", sampled_schedules(K.SPACE, 4), ids=str)
def test_every_sampled_schedule_gives_the_same_result(schedule):
    run, _, check = K.make_case({"rows": 37, "n": 123, "dtype": "float32"}, seed=3)
    check(run(schedule))


def check_public_route(x, other_dtypes=()):
    """``ak.softmax`` over the last axis of the 3-d ``x`` (and of ``x`` cast to ``other_dtypes``)
    runs the kernel; over another axis, with a dtype cast, or in float64 torch's own softmax."""
    before = _dispatch.CALLS["softmax"]
    torch.testing.assert_close(ak.softmax(x, dim=2).cpu(), torch.softmax(x.cpu(), dim=-1))
    for dtype in other_dtypes:
        ak.softmax(x.to(dtype))
    ran = before + 1 + len(other_dtypes)
    assert _dispatch.CALLS["softmax"] == ran
    ak.softmax(x, dim=1)
    ak.softmax(x, dtype=torch.float64)
    ak.softmax(x.double())
    assert _dispatch.CALLS["softmax"] == ran


def test_the_public_softmax_takes_the_compiled_path_where_it_can():
    check_public_route(torch.randn(3, 5, 7))


def test_unsupported_inputs_take_the_reference_path(monkeypatch):
    x = torch.randn(4, 8)
    assert K.softmax(x.double()) is None
    assert K.softmax(x, mask=torch.zeros(8, dtype=torch.float64)) is None
    assert K.softmax(x, mask=torch.zeros(3, 8)) is None
    assert K.softmax(x, mask=torch.zeros(2, 4, 8)) is None  # would broadcast the input up
    assert K.softmax(torch.randn(8), is_causal=True) is None
    assert K.softmax(torch.randn(0, 8)) is None
    monkeypatch.setenv("ADOPT_DISABLE", "native")
    assert K.softmax(x) is None
    before = _dispatch.CALLS["softmax"]
    torch.testing.assert_close(ak.softmax(x), torch.softmax(x, dim=-1))
    assert _dispatch.CALLS["softmax"] == before


LIBM = dict(K.SPACE.default, math="libm")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("kind", [None, "additive", "bool", "causal"])
def test_the_library_exp_matches_float64(dtype, kind):
    shape = (2, 3, 37, 45)
    g = torch.Generator().manual_seed(11)
    t = K.TORCH_DTYPE[dtype]
    x = (3 * torch.randn(shape, generator=g)).to(t)
    dy = torch.randn(shape, generator=g).to(t)
    mask = _mask(None if kind == "causal" else kind, shape, g)
    got = _run(lambda a, m: K.softmax(a, 0.7, m, kind == "causal", schedule=LIBM), x, dy, mask)
    wide = mask.double() if mask is not None and mask.is_floating_point() else mask
    want = _run(lambda a, m: K.reference(a, 0.7, m, kind == "causal"), x.double(), dy.double(), wide)
    for name, a, e in zip(("output", "grad x"), got, want):
        K.assert_matches(a.double(), e, dtype, name)


def test_the_library_exp_keeps_a_fully_masked_row_nan():
    x = torch.randn(3, 6)
    keep = torch.ones(3, 6, dtype=torch.bool)
    keep[1] = False
    y = K.softmax(x, 1.0, keep, schedule=LIBM)
    assert torch.isnan(y[1]).all()
    torch.testing.assert_close(y[[0, 2]], torch.softmax(x, dim=-1)[[0, 2]])


def test_negative_control_a_wrong_library_exp_fails_the_check(monkeypatch):
    # exp2 for exp in the math=libm branch alone: the polynomial schedules would not notice it
    monkeypatch.setattr(K, "TEMPLATE", K.TEMPLATE.replace("float e = std::exp(z[j] - m); z[j] = e; sl += e;",
                                                          "float e = std::exp2(z[j] - m); z[j] = e; sl += e;"))
    _dispatch.forget()
    try:
        run, _, check = K.make_case({"rows": 9, "n": 40, "dtype": "float32"}, seed=1)
        check(run(None))
        with pytest.raises(AssertionError):
            check(run(LIBM))
    finally:
        monkeypatch.undo()
        _dispatch.forget()


def test_negative_control_a_wrong_template_fails_the_check(monkeypatch):
    # the backward's row sum subtracted with the wrong sign
    monkeypatch.setattr(K, "TEMPLATE", K.TEMPLATE.replace("vload(gr + j) - dot", "vload(gr + j) + dot"))
    _dispatch.forget()
    try:
        run, _, check = K.make_case({"rows": 9, "n": 40, "dtype": "float32"}, seed=1)
        with pytest.raises(AssertionError):
            check(run(None))
    finally:
        monkeypatch.undo()
        _dispatch.forget()
