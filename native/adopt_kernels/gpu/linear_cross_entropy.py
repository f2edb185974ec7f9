"""Linear + cross entropy in Triton: cuBLAS for the projection, one Triton pass per row of a chunk.

Each chunk of rows is projected into one reused logits buffer in the inputs' dtype (bfloat16
and float16 keep the tensor cores and round the logits as the eager head does). One program
per row then sweeps the row in ``block_v`` steps with a running max and sum (the log-sum-exp),
takes the target's logit for the loss, and writes ``scale * (softmax - one_hot)`` over the
logits in place, rounded to their dtype as eager's gradient is. The chunk's two gradient GEMMs
follow at once (dHidden = dLogits @ W, dW += dLogits^T @ hidden), so the backward only scales
what the forward formed, unless the upstream gradient differs between rows; then the logits
are projected again a chunk at a time. Peak memory holds one chunk of logits, never all of them,
and rows whose label is ignored are never projected. The weight's gradient accumulates in
float32 for float32 inputs and, through cuBLAS's in-place GEMM, in the weight's dtype for the
half-precision ones, each chunk's product summed in float32.

The variant that returns the logits as well copies each chunk into the returned tensor before
the pass overwrites it; a gradient reaching the returned logits adds its own two GEMMs.

Schedule (``cuda_space`` of the kernel): ``chunk_rows`` rows per logits chunk (bounded by the
caller's ``max_rows``), ``block_v`` logits per step of a row's sweep, ``num_warps`` per row.
"""

import contextlib

import torch
import triton
import triton.language as tl

from ..kernels import linear_ce as K
from . import first_order


@triton.jit
def _rows(L, T, LOSS, LSE, ROW_SCALE, V, stride, scale, FORWARD: tl.constexpr, WANT_GRAD: tl.constexpr,
          PER_ROW: tl.constexpr, BLOCK_V: tl.constexpr):
    r = tl.program_id(0).to(tl.int64)
    row = L + r * stride
    t = tl.load(T + r)
    counted = t >= 0  # an ignored row (-1) has no loss and a zero gradient
    cols = tl.arange(0, BLOCK_V)
    # Loads and stores run to the padded row end (``stride``, a multiple of 16 elements), so that
    # their masks stay constant over a vector and the accesses are vectorised whatever V is; the
    # padding is read as -inf and what is written there is never read.
    if FORWARD:
        m = tl.full((), float("-inf"), tl.float32)
        s = tl.zeros((), tl.float32)
        for b in range(0, V, BLOCK_V):
            x = tl.load(row + b + cols, mask=b + cols < stride, other=0.0).to(tl.float32)
            x = tl.where(b + cols < V, x, float("-inf"))
            m_new = tl.maximum(m, tl.max(x, axis=0))
            # while every logit so far is -inf the sum stays 0 (exp(-inf - -inf) would be NaN)
            m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
            s = s * tl.exp(m - m_ref) + tl.sum(tl.exp(x - m_ref), axis=0)
            m = m_new
        lse = m + tl.log(s)
        tl.store(LSE + r, lse)
        tl.store(LOSS + r, tl.where(counted, lse - tl.load(row + tl.maximum(t, 0)).to(tl.float32), 0.0))
    else:
        lse = tl.load(LSE + r)
    if WANT_GRAD:
        if PER_ROW:
            sc = tl.load(ROW_SCALE + r)
        else:
            sc = scale
        sc = tl.where(counted, sc, 0.0)
        for b in range(0, V, BLOCK_V):
            idx = b + cols
            x = tl.load(row + idx, mask=idx < stride, other=0.0).to(tl.float32)
            g = tl.exp(x - lse) * sc
            g = tl.where(idx == t, g - sc, g)
            tl.store(row + idx, g.to(L.dtype.element_ty), mask=idx < stride)


def _sweep(logits, targets, losses, lse, scale, schedule, forward=True, want_grad=True, row_scale=None):
    """The row pass over a chunk of logits (rows with a target only)."""
    rows, vocab = logits.shape
    if rows == 0:
        return
    _rows[(rows,)](logits, targets, losses if forward else lse, lse, row_scale if row_scale is not None else lse,
                   vocab, logits.stride(0), float(scale), FORWARD=forward, WANT_GRAD=want_grad,
                   PER_ROW=row_scale is not None, BLOCK_V=schedule["block_v"], num_warps=schedule["num_warps"])


class _Chunks(K._Chunks):
    """The GEMMs around the row pass, over one reused logits buffer in the inputs' dtype, its
    rows padded to a multiple of 16 elements (aligned rows for the row pass and for cuBLAS)."""

    def __init__(self, hidden, weight, bias, rows):
        self.hidden, self.weight, self.bias, self.rows = hidden, weight, bias, rows
        vocab = weight.size(0)
        padded = -(-vocab // 16) * 16
        # zeroed once when padded: the row pass then never meets garbage (NaN, inf) in the padding
        make = torch.zeros if padded != vocab else torch.empty
        self.buffer = make(min(rows, hidden.size(0)), padded, dtype=hidden.dtype, device=hidden.device)[:, :vocab]

    @staticmethod
    def operand(t):
        return t  # half precision stays so: cuBLAS multiplies it on the tensor cores


def _empty_grads(hidden, weight, wanted, zero=False):
    """Gradient accumulators for the inputs that need one: the hidden's and the weight's in
    their dtype (float32 GEMM accumulation inside each chunk), the bias's in float32. The
    weight's is written by the first chunk, so it starts empty unless there is no chunk."""
    n, d = hidden.shape
    want_h, want_w, want_b = wanted
    on = dict(device=hidden.device)
    return (
        (torch.zeros if zero else torch.empty)(n, d, dtype=hidden.dtype, **on) if want_h else None,
        (torch.empty if n and not zero else torch.zeros)(weight.shape, dtype=weight.dtype, **on) if want_w else None,
        torch.zeros(weight.size(0), dtype=torch.float32, **on) if want_b else None,
    )


def _forward_rows(hidden, weight, bias, targets, scale, wanted, schedule, rows, logits_out=None):
    """Losses, log-sum-exps and (when any gradient is wanted) gradients of rows that all have a
    target; with ``logits_out``, each chunk's logits copied there first."""
    n = hidden.size(0)
    want_any = any(wanted)
    losses = torch.empty(n, dtype=torch.float32, device=hidden.device)
    lse = torch.empty(n, dtype=torch.float32, device=hidden.device)
    grads = _empty_grads(hidden, weight, wanted) if want_any else None
    chunks = _Chunks(hidden, weight, bias, rows)
    for start, stop, h, logits in chunks:
        if logits_out is not None:
            logits_out[start:stop].copy_(logits)
        _sweep(logits, targets[start:stop], losses[start:stop], lse[start:stop], scale, schedule, want_grad=want_any)
        if want_any:
            chunks.accumulate(start, h, logits, grads)
    return losses, lse, grads


def _recompute(hidden, weight, bias, targets, lse, row_scale, wanted, schedule, rows):
    """Gradients for an upstream gradient that differs between rows: the logits again per chunk."""
    chunks = _Chunks(hidden, weight, bias, rows)
    grads = _empty_grads(hidden, weight, wanted)
    for start, stop, h, logits in chunks:
        _sweep(logits, targets[start:stop], None, lse[start:stop], 0.0, schedule, forward=False,
               row_scale=row_scale[start:stop])
        chunks.accumulate(start, h, logits, grads)
    return grads


def _scaled(grads, upstream, scale32, recompute):
    """The forward's gradients scaled for ``upstream`` (float32, counted rows), when it is one
    value for every row; else ``recompute(row_scale)``."""
    if upstream.numel() == 0:
        return grads
    first = upstream[0].item()
    if grads is not None and bool((upstream == first).all()):
        factor = first / scale32
        for g in grads:
            if g is not None and factor != 1.0:
                g.mul_(factor)
        return grads
    return recompute(upstream.contiguous())


def _finish(grads, like):
    return tuple(None if g is None else g.to(t.dtype) for g, t in zip(grads, like))


@contextlib.contextmanager
def _plain(device):
    """Autocast off, so that the kernel's GEMMs take the dtypes they are given (and their
    ``out=``), and ``device`` current: Triton launches on the current device."""
    with torch.autocast(device.type, enabled=False):
        if device.type != "cuda":
            yield
            return
        with torch.cuda.device(device):
            yield


class _LinearCrossEntropy(torch.autograd.Function):
    """Per-row losses of ``cross_entropy(hidden @ weight.T + bias, targets)``; targets < 0 are
    ignored. ``scale`` is the upstream gradient the forward assumes for every counted row."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, scale, wanted, schedule, rows):
        n = hidden.size(0)
        keep = K._counted_rows(hidden, targets)
        h, t = K._rows(hidden, keep), K._rows(targets, keep)
        losses, lse, grads = _forward_rows(h, weight, bias, t, scale, wanted, schedule, rows)
        ctx.save_for_backward(hidden, weight, bias, t, lse, keep)
        ctx.grads = (K._spread(grads[0], keep, n), *grads[1:]) if grads is not None else None
        ctx.scale32 = torch.tensor(scale, dtype=torch.float32).item()
        ctx.schedule, ctx.rows = schedule, rows
        return K._spread(losses, keep, n)

    @staticmethod
    @first_order("linear_cross_entropy")
    def backward(ctx, grad_losses):
        with _plain(grad_losses.device):
            return _LinearCrossEntropy.gradients(ctx, grad_losses)

    @staticmethod
    def gradients(ctx, grad_losses):
        hidden, weight, bias, targets, lse, keep = ctx.saved_tensors
        # ignored rows get zero gradient whatever grad_losses holds there, as cross_entropy's backward
        counted = K._rows(grad_losses.float(), keep)
        grads, ctx.grads = ctx.grads, None
        wanted = tuple(ctx.needs_input_grad[:3])
        h = K._rows(hidden, keep)

        def recompute(row_scale):
            g = _recompute(h, weight, bias, targets, lse, row_scale, wanted, ctx.schedule, ctx.rows)
            return (K._spread(g[0], keep, hidden.size(0)), *g[1:])

        if counted.numel() == 0:
            grads = grads if grads is not None else _empty_grads(hidden, weight, wanted, zero=True)
        else:
            grads = _scaled(grads, counted, ctx.scale32, recompute)
        return (*_finish(grads, (hidden, weight, bias)), *(None,) * 5)


class _LinearCrossEntropyLogits(torch.autograd.Function):
    """``(per-row losses, logits)``, the logits in ``logits_dtype``. Every row is projected (its
    logits are returned); ignored rows (target -1) get no loss and a zero gradient."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, scale, wanted, schedule, rows, logits_dtype):
        ctx.set_materialize_grads(False)
        logits = torch.empty(hidden.size(0), weight.size(0), dtype=logits_dtype, device=hidden.device)
        losses, lse, grads = _forward_rows(hidden, weight, bias, targets, scale, wanted, schedule, rows, logits)
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.grads, ctx.scale32 = grads, torch.tensor(scale, dtype=torch.float32).item()
        ctx.schedule, ctx.rows = schedule, rows
        return losses, logits

    @staticmethod
    @first_order("linear_cross_entropy")
    def backward(ctx, grad_losses, grad_logits):
        with _plain(ctx.saved_tensors[0].device):
            return _LinearCrossEntropyLogits.gradients(ctx, grad_losses, grad_logits)

    @staticmethod
    def gradients(ctx, grad_losses, grad_logits):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        wanted = tuple(ctx.needs_input_grad[:3])
        grads, ctx.grads = ctx.grads, None
        if grad_losses is None:
            grads = None  # the loss is not back-propagated: what the forward formed is unused
        else:
            counted = targets >= 0
            upstream = grad_losses.float()
            row_scale = torch.where(counted, upstream, torch.zeros((), dtype=torch.float32, device=upstream.device))
            grads = _scaled(grads, upstream[counted], ctx.scale32,
                            lambda _: _recompute(hidden, weight, bias, targets, lse, row_scale.contiguous(), wanted,
                                                 ctx.schedule, ctx.rows))
        if grads is None:
            grads = _empty_grads(hidden, weight, wanted, zero=True)
        if grad_logits is not None:
            _add_logits_grad(hidden, weight, grad_logits, grads)
        return (*_finish(grads, (hidden, weight, bias)), *(None,) * 6)


def _add_logits_grad(hidden, weight, grad_logits, grads):
    """The two GEMMs (and the bias sum) of a gradient reaching the returned logits, added to
    ``grads``, in the inputs' dtype as the eager head's backward takes it."""
    grad_hidden, grad_weight, grad_bias = grads
    g = grad_logits.reshape(-1, weight.size(0)).to(hidden.dtype)
    if grad_hidden is not None:
        grad_hidden.addmm_(g, weight)
    if grad_weight is not None:
        grad_weight.addmm_(g.t(), hidden)
    if grad_bias is not None:
        grad_bias.add_(g.sum(0, dtype=torch.float32))


def linear_cross_entropy_rows(hidden, weight, bias, labels, ignore_index=-100, scale=1.0, max_rows=None, *, schedule):
    targets = K.targets_for(labels, ignore_index, weight.size(0))
    with _plain(hidden.device):
        return _LinearCrossEntropy.apply(hidden.contiguous(), weight, bias, targets, float(scale),
                                         K.wanted_grads(hidden, weight, bias), schedule, K.chunk_rows(schedule, max_rows))


def linear_cross_entropy_logits_rows(hidden, weight, bias, labels, ignore_index=-100, scale=1.0, logits_dtype=None, max_rows=None,
                                     *, schedule):
    targets = K.targets_for(labels, ignore_index, weight.size(0))
    with _plain(hidden.device):
        return _LinearCrossEntropyLogits.apply(hidden.contiguous(), weight, bias, targets, float(scale),
                                               K.wanted_grads(hidden, weight, bias), schedule, K.chunk_rows(schedule, max_rows),
                                               logits_dtype or hidden.dtype)


# the functions the kernel modules route CUDA tensors to
ENTRIES = ("linear_cross_entropy_rows", "linear_cross_entropy_logits_rows")

# small odd shapes for the kernel tests (the interpreter runs them on a CPU); the second vocabulary
# spans several blocks of every block_v but the largest
TEST_WORKLOADS = (
    {"tokens": 37, "hidden": 24, "vocab": 301, "dtype": "float32"},
    {"tokens": 29, "hidden": 16, "vocab": 5000, "dtype": "bfloat16"},
)
