"""What the element-wise Triton kernels share: the activations and their derivatives in float32,
and the tiling of a (rows, n) matrix into blocks of rows by columns.

The activations are written so that their tails saturate as torch's do (no inf / inf or
0 * inf), since the pass that computes them also writes what the caller keeps.
"""

import triton
import triton.language as tl

SILU, GELU, GELU_TANH = 0, 1, 2
ACT_CODES = {"silu": SILU, "gelu": GELU, "gelu_tanh": GELU_TANH}

# constexpr: compiled Triton reads no other globals (the interpreter does not object)
_SQRT_HALF = tl.constexpr(0.7071067811865476)
_INV_SQRT_2PI = tl.constexpr(0.3989422804014327)
_TWO_K_TANH = tl.constexpr(1.5957691216057308)  # 2 * sqrt(2 / pi): 0.5 * (1 + tanh(u)) = sigmoid(2u)
_CUBE = tl.constexpr(0.044715)


@triton.jit
def _logistic(z):
    """sigmoid(z) and 1 - sigmoid(z), the second without cancelling where sigmoid is near 1."""
    e = tl.exp(-z)
    s = 1.0 / (1.0 + e)
    # e is inf where z is very negative: s is then 0 and its complement 1 (the clamp keeps the
    # branch not taken from computing inf * 0)
    return s, tl.where(e < 1.0, tl.minimum(e, 1.0) * s, 1.0 - s)


@triton.jit
def act_value(x, ACT: tl.constexpr):
    """silu, exact GELU or tanh GELU of float32 ``x``."""
    if ACT == 0:
        s, _ = _logistic(x)
        y = x * s
    elif ACT == 1:
        y = 0.5 * x * (1.0 + tl.math.erf(x * _SQRT_HALF))
    else:
        s, _ = _logistic(_TWO_K_TANH * (x + _CUBE * x * x * x))
        y = x * s
    return y


@triton.jit
def act_grad(x, ACT: tl.constexpr):
    """The derivative of :func:`act_value` at float32 ``x``."""
    if ACT == 0:
        s, sc = _logistic(x)
        g = s + x * s * sc
    elif ACT == 1:
        g = 0.5 * (1.0 + tl.math.erf(x * _SQRT_HALF)) + x * _INV_SQRT_2PI * tl.exp(-0.5 * x * x)
    else:
        s, sc = _logistic(_TWO_K_TANH * (x + _CUBE * x * x * x))
        g = s + x * s * sc * _TWO_K_TANH * (1.0 + 3.0 * _CUBE * x * x)
    return g


@triton.jit
def tile(pid, n, PER: tl.constexpr, BLOCK: tl.constexpr):
    """The first row (int64) and the columns of program ``pid`` of a grid that walks blocks of
    PER rows by BLOCK columns, the columns fastest (neighbouring programs share rows)."""
    blocks = tl.cdiv(n, BLOCK)
    row0 = (pid // blocks).to(tl.int64) * PER
    cols = (pid % blocks) * BLOCK + tl.arange(0, BLOCK)
    return row0, cols


def programs(rows, n, per, block):
    """The grid of :func:`tile`."""
    return (triton.cdiv(rows, per) * triton.cdiv(n, block),)
