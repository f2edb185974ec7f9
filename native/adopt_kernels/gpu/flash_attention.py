"""Blocked attention in Triton: ``softmax(q @ k^T * scale + bias + mask) @ v`` with online softmax.

Each program holds a block of query rows of one (batch, head) and streams the key and value
blocks through it: scores in float32 from the tensor cores, scale, additive bias and mask,
boolean keep-mask and bottom-right causal mask, a running maximum and sum per row, the output
accumulated in float32; the L x S probabilities never exist. With a causal mask the key blocks
past a query block's last visible key are not visited. The forward saves a log-sum-exp per row;
the backward (``_flash_attention_bwd``) recomputes the probabilities from it.

Dropout keeps a probability where its key's sixteen bits of Philox clear the threshold of
``dropout_p`` (``_philox.py``: eight keys a generator call, the counters of query row ``r`` of
``(batch, head)`` starting at ``((batch * heads + head) * L + r) * ceil(S / 8)``), so the backward
regenerates the mask and :func:`dropout_keep` gives it to a reference. The seed is one draw of
torch's generator.

Numerics: float32 inputs multiply in three-pass TF32 (float32 accuracy on the tensor cores);
bfloat16 and float16 inputs multiply in their own dtype with float32 sums, and the probabilities
are rounded to it before they multiply the values (as eager code casts them to the values'
dtype). A row with every key masked gives NaN, as eager softmax does.

Schedule (``cuda_space`` of the kernel): ``block_m`` query rows per forward program (with
``num_warps``), ``block_n`` keys per step, ``num_stages`` the software pipeline's depth (forward
and backward); ``bwd_block`` the rows a backward program holds (keys for dK and dV, queries for
dQ, with ``bwd_warps``), ``bwd_step`` the rows it streams per step.
"""

import os

import torch
import triton
import triton.language as tl

from ..kernels._common import threshold16
from ._philox import kept16, launch
from . import first_order

LOG2E = tl.constexpr(1.4426950408889634)
# float32 products: three TF32 passes keep float32 accuracy ("ieee" is the exact, slower choice)
FP32_DOT = "tf32x3"


@triton.jit
def _op(x, REF, F32: tl.constexpr):
    """``x`` as a ``tl.dot`` operand in the dtype ``REF`` points to; in float32 where the
    interpreter runs bfloat16 (its numpy product cannot take it), after the same rounding."""
    y = x.to(REF.dtype.element_ty)
    if F32:
        y = y.to(tl.float32)
    return y


@triton.jit
def _tile(P, ST, b, h, idx, n, cols, ncols, F32: tl.constexpr):
    """The rows ``idx`` (< n) and columns ``cols`` (< ncols) of a (batch, head, row, column)
    tensor with strides ``ST`` over the first three, as a ``tl.dot`` operand: ``idx`` and
    ``cols`` broadcast to the tile's shape, so either orientation can be read."""
    x = tl.load(P + b * ST[0] + h * ST[1] + idx.to(tl.int64) * ST[2] + cols, mask=(idx < n) & (cols < ncols), other=0.0)
    return _op(x, P, F32)


@triton.jit
def _program(H, BLOCK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    """This program's (batch * heads + head, batch, head) as int64, the rows of its block
    (the first grid axis counts blocks), the columns of a key and of a value."""
    bh = tl.program_id(1).to(tl.int64)
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    return bh, bh // H, bh % H, rows, tl.arange(0, BLOCK_D), tl.arange(0, BLOCK_DV)


@triton.jit
def _key_end(L, S, BLOCK: tl.constexpr, CAUSAL: tl.constexpr):
    """The end of the keys this program's block of BLOCK query rows visits: with a causal mask,
    keys past its last row's limit are all masked."""
    end = S
    if CAUSAL:
        end = tl.minimum(S, (tl.program_id(0) + 1) * BLOCK + S - L)
    return end


@triton.jit
def _mask_rows(MS, b, h, rows):
    """The int64 offsets of each query row's row in the bias, the mask and the keep-mask
    (``MS``: their strides over the scores), shaped as ``rows``."""
    return (b * MS[0][0] + h * MS[0][1] + rows * MS[0][2], b * MS[1][0] + h * MS[1][1] + rows * MS[1][2],
            b * MS[2][0] + h * MS[2][1] + rows * MS[2][2])


@triton.jit
def _masked(s, rows, cols, L, S, scale, MASKS, offsets, MS,
            HAS_BIAS: tl.constexpr, HAS_ADD: tl.constexpr, HAS_KEEP: tl.constexpr, CAUSAL: tl.constexpr):
    """Raw scores ``s`` scaled, biased and masked: -inf where a key is dropped by the keep-mask,
    lies past the causal limit or past the last key. ``rows`` and ``cols`` broadcast to ``s``
    (either orientation); ``offsets`` are :func:`_mask_rows`' for ``rows``."""
    inside = (rows < L) & (cols < S)
    s = s * scale
    if HAS_BIAS:
        s += tl.load(MASKS[0] + offsets[0] + cols * MS[0][3], mask=inside, other=0.0).to(tl.float32)
    if HAS_ADD:
        s += tl.load(MASKS[1] + offsets[1] + cols * MS[1][3], mask=inside, other=0.0).to(tl.float32)
    keep = cols < S
    if HAS_KEEP:
        keep = keep & (tl.load(MASKS[2] + offsets[2] + cols * MS[2][3], mask=inside, other=1) != 0)
    if CAUSAL:
        keep = keep & (cols <= rows + (S - L))
    return tl.where(keep, s, float("-inf"))


@triton.jit
def _kept(seed, bh, rows, col0, L, S, thr, R: tl.constexpr, C: tl.constexpr, JOIN: tl.constexpr):
    """Where dropout keeps the [R, C] scores of query ``rows`` (int64) and keys ``col0 ..``."""
    return kept16(seed, ((bh * L + rows) * ((S + 7) // 8))[:, None], col0, thr, R, C, JOIN)


@triton.jit
def _dropped(x, kept, p_drop):
    """``x`` where dropout keeps the score, scaled by ``1 / (1 - p)``; else 0."""
    return tl.where(kept, x * (1.0 / (1.0 - p_drop)), 0.0)


@triton.jit(do_not_specialize=["thr", "seed"])
def _fwd(Q, K, V, MASKS, O, LSE, QS, KS, VS, MS, H, L, S, D, DV, scale, p_drop, thr, seed,
         HAS_BIAS: tl.constexpr, HAS_ADD: tl.constexpr, HAS_KEEP: tl.constexpr, CAUSAL: tl.constexpr,
         DROPOUT: tl.constexpr, F32: tl.constexpr, PREC: tl.constexpr, JOIN: tl.constexpr,
         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    # QS, KS, VS: strides of q, k and v over (batch, head, row), 0 where shared
    bh, b, h, rows, d, dv = _program(H, BLOCK_M, BLOCK_D, BLOCK_DV)
    rows64 = rows.to(tl.int64)
    q = _tile(Q, QS, b, h, rows[:, None], L, d[None, :], D, F32)
    offsets = _mask_rows(MS, b, h, rows64[:, None])
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    for start in range(0, _key_end(L, S, BLOCK_M, CAUSAL), BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        s = tl.dot(q, _tile(K, KS, b, h, cols[None, :], S, d[:, None], D, F32), input_precision=PREC)
        s = _masked(s, rows[:, None], cols[None, :], L, S, scale, MASKS, offsets, MS, HAS_BIAS, HAS_ADD, HAS_KEEP, CAUSAL)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # a row masked so far keeps a finite reference point, so exp gives 0, not NaN
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2((s - m_use[:, None]) * LOG2E)
        alpha = tl.exp2((m_i - m_use) * LOG2E)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        if DROPOUT:
            p = _dropped(p, _kept(seed, bh, rows64, start, L, S, thr, BLOCK_M, BLOCK_N, JOIN), p_drop)
        v = _tile(V, VS, b, h, cols[:, None], S, dv[None, :], DV, F32)
        acc = tl.dot(_op(p, V, F32), v, acc, input_precision=PREC)
        m_i = m_new
    empty = m_i == float("-inf")  # every key masked: NaN, as eager softmax gives
    l_use = tl.where(empty, 1.0, l_i)
    out = tl.where(empty[:, None], float("nan"), acc / l_use[:, None])
    tl.store(O + (bh * L + rows64)[:, None] * DV + dv[None, :], out.to(O.dtype.element_ty), mask=(rows < L)[:, None] & (dv < DV)[None, :])
    # each row's maximum and log-sum apart, (2, B * H, L): their sum rounded to one float loses the
    # log to the maximum's magnitude in a row masked throughout by a huge finite value (float32's
    # minimum, -1e9), and the backward would rebuild its probabilities as 1 instead of 1 / S
    tl.store(LSE + bh * L + rows64, tl.where(empty, float("nan"), m_i), mask=rows < L)
    tl.store(LSE + tl.num_programs(1).to(tl.int64) * L + bh * L + rows64, tl.where(empty, float("nan"), tl.log(l_use)), mask=rows < L)


@triton.jit(do_not_specialize=["thr", "seed"])
def _keep_pattern(OUT, S, seed, thr, BLOCK: tl.constexpr, JOIN: tl.constexpr):
    # one query row of one (batch, head) per program on the first axis, BLOCK keys per program on the second
    row = tl.program_id(0).to(tl.int64) + tl.zeros([1], tl.int64)
    col0 = tl.program_id(1) * BLOCK
    cols = col0 + tl.arange(0, BLOCK)[None, :]
    kept = _kept(seed, 0, row, col0, 1, S, thr, 1, BLOCK, JOIN)
    tl.store(OUT + row[:, None] * S + cols, kept.to(tl.int8), mask=cols < S)


def dropout_keep(seed, batch, heads, q_len, k_len, p, device="cpu"):
    """The kernels' dropout mask for ``seed``, True where a probability is kept, (batch, heads,
    q_len, k_len): the same Philox draws the kernels make."""
    out = torch.empty(batch * heads * q_len, k_len, dtype=torch.int8, device=device)
    launch(_keep_pattern, (batch * heads * q_len, triton.cdiv(k_len, 128)), out, k_len, seed, threshold16(p), BLOCK=128)
    return out.view(batch, heads, q_len, k_len).bool()


def interpreted():
    """True when Triton runs its interpreter (numpy) instead of compiling."""
    return os.environ.get("TRITON_INTERPRET") == "1"


# what a compiled launch passes for the flags :func:`interpreted` sets otherwise (read by
# compile_check, which compiles what a GPU would launch)
COMPILED_FLAGS = {"F32": False}


def block(n):
    """A head dimension padded to a power of two, at least a tensor-core tile."""
    return max(16, triton.next_power_of_2(n))


class Launch:
    """What every kernel of one attention call shares: tensors, expanded strides, flags."""

    def __init__(self, q, k, v, bias, mask, keep, scale, causal, dropout_p, seed):
        from ..kernels.flash_attention import _mask_arg

        B, H, L, D = q.shape
        self.q, self.k, self.v = q, k, v
        self.B, self.H, self.L, self.S, self.D, self.DV = B, H, L, k.size(2), D, v.size(3)
        self.scores = (B, H, L, self.S)
        self.masks = [_mask_arg(t, self.scores, widen=False) for t in (bias, mask, keep)]
        self.scale, self.causal, self.p_drop, self.seed = float(scale), bool(causal), float(dropout_p), int(seed)
        self.kstrides = k.expand(B, H, self.S, D).stride()[:3]
        self.vstrides = v.expand(B, H, self.S, self.DV).stride()[:3]

    def mask_args(self):
        """The masks (q where absent) and their strides over the scores."""
        return tuple(t if t is not None else self.q for t, _ in self.masks), tuple(strides for _, strides in self.masks)

    def strides(self):
        """Strides of q, k and v over (batch, head, row), 0 where k or v is shared."""
        return self.q.stride()[:3], self.kstrides, self.vstrides

    def flags(self):
        q = self.q
        return dict(HAS_BIAS=self.masks[0][0] is not None, HAS_ADD=self.masks[1][0] is not None, HAS_KEEP=self.masks[2][0] is not None,
                    CAUSAL=self.causal, DROPOUT=self.p_drop > 0, F32=interpreted() and q.dtype == torch.bfloat16,
                    PREC=FP32_DOT if q.dtype == torch.float32 else "tf32", BLOCK_D=block(self.D), BLOCK_DV=block(self.DV))

    def sizes(self):
        return [self.H, self.L, self.S, self.D, self.DV, self.scale, self.p_drop, threshold16(self.p_drop), self.seed]


def forward(run, schedule):
    """Output and log-sum-exp of one call."""
    q = run.q
    out = torch.empty(run.B, run.H, run.L, run.DV, dtype=q.dtype, device=q.device)
    lse = torch.empty(2, run.B * run.H, run.L, dtype=torch.float32, device=q.device)
    bm = schedule["block_m"]
    masks, mask_strides = run.mask_args()
    launch(
        _fwd, (triton.cdiv(run.L, bm), run.B * run.H), q, run.k, run.v, masks, out, lse, *run.strides(), mask_strides, *run.sizes(), **run.flags(),
        BLOCK_M=bm, BLOCK_N=schedule["block_n"], num_warps=schedule["num_warps"], num_stages=schedule["num_stages"])
    return out, lse


class _FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, bias, mask, keep, scale, causal, dropout_p, seed, schedule):
        run = Launch(q, k, v, bias, mask, keep, scale, causal, dropout_p, seed)
        out, lse = forward(run, schedule)
        ctx.save_for_backward(q, k, v, out, lse, *(t for t, _ in run.masks))
        ctx.run, ctx.schedule = run, schedule
        # the shapes and dtypes a learned bias or float mask takes its gradient in
        ctx.learned = tuple((t.shape, t.dtype) if want else None for t, want in ((bias, ctx.needs_input_grad[3]), (mask, ctx.needs_input_grad[4])))
        return out

    @staticmethod
    @first_order("attention")
    def backward(ctx, dout):
        from . import _flash_attention_bwd

        q, k, v, out, lse, *_ = ctx.saved_tensors
        grads = _flash_attention_bwd.backward(ctx.run, out, lse, dout, ctx.schedule, ctx.learned)
        return grads + (None,) * 6


def flash_attention(q, k, v, scale=None, bias=None, mask=None, keep=None, is_causal=False, dropout_p=0.0, seed=None, *, schedule):
    """The attention of 4-D (batch, heads, length, head_dim) tensors in Triton; the arguments are
    those of the kernel module's ``flash_attention``, which has checked them."""
    from ..kernels.flash_attention import _unit_last, dropout_seed, keep_and_mask

    q, k, v = (_unit_last(t) for t in (q, k, v))
    scale = q.size(-1) ** -0.5 if scale is None else float(scale)
    mask, keep = keep_and_mask(mask, keep)
    if dropout_p > 0 and seed is None:
        seed = dropout_seed()
    return _FlashAttention.apply(q, k, v, bias, mask, keep, scale, bool(is_causal), float(dropout_p), seed or 0, schedule)


# the functions the kernel module routes CUDA tensors to
ENTRIES = ("flash_attention",)

# small odd shapes for the kernel tests (the interpreter runs them on a CPU); "mask" and
# "dropout" pick the case's masks and dropout (kernels/flash_attention.py's make_case)
TEST_WORKLOADS = (
    {"batch": 1, "heads": 2, "q_len": 37, "k_len": 45, "head_dim": 16, "dtype": "float32"},
    {"batch": 2, "heads": 2, "q_len": 33, "k_len": 50, "head_dim": 32, "dtype": "bfloat16", "mask": "bool"},
    {"batch": 1, "heads": 2, "q_len": 40, "k_len": 47, "head_dim": 80, "dtype": "float32", "mask": "bias+keep+causal"},
    {"batch": 1, "heads": 2, "q_len": 33, "k_len": 49, "head_dim": 16, "dtype": "bfloat16", "mask": "causal", "dropout": 0.25},
)
