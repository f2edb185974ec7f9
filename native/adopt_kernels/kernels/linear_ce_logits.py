"""Linear + cross entropy that also returns the logits (for forwards that return them too).

The logits are computed once, a chunk of rows at a time, into a reused float32 buffer; each
chunk is copied into the returned logits tensor (in the dtype the caller's code gives them) and
then swept by the same compiled pass as :mod:`.linear_ce`: the loss and, when gradients are
wanted, ``scale * (softmax - one_hot)`` written over the buffer, followed at once by the two
gradient GEMMs of the chunk. So the log-softmax and the gradient of the logits are never held
whole: only the logits the caller asked for are.

The backward scales the gradients formed in the forward by the loss's upstream gradient, and,
when the caller also back-propagates through the returned logits (a z-loss, distillation),
adds that gradient's two GEMMs. An unused output costs nothing (``set_materialize_grads``).
"""

import torch

from .. import _dispatch, schedules
from . import linear_ce as K
from ._common import differentiable_backward, product_operands, reference_grads


def _empty_grads(hidden, weight, wanted):
    n, d = hidden.shape
    want_h, want_w, want_b = wanted
    return (
        torch.zeros(n, d, dtype=torch.float32) if want_h else None,
        torch.zeros(weight.shape, dtype=torch.float32) if want_w else None,
        torch.zeros(weight.size(0), dtype=torch.float32) if want_b else None,
    )


def _add_logits_grad(hidden, weight, grad_logits, grads):
    """The two GEMMs (and the bias sum) of a gradient reaching the returned logits, added to
    ``grads``. Rounded to the inputs' dtype first, as the eager head's backward receives it."""
    grad_hidden, grad_weight, grad_bias = grads
    g = grad_logits.reshape(-1, weight.size(0))
    if hidden.dtype != torch.float32:
        g = g.to(hidden.dtype)
    g = g.float()
    if grad_hidden is not None:
        grad_hidden.addmm_(g, K._floats(weight))
    if grad_weight is not None:
        grad_weight.addmm_(g.t(), K._floats(hidden))
    if grad_bias is not None:
        grad_bias.add_(g.sum(0))


class LinearCrossEntropyLogitsFunction(torch.autograd.Function):
    """``(per-row losses, logits)`` of ``cross_entropy(hidden @ weight.T + bias, targets)``;
    targets < 0 are ignored. ``scale`` is the upstream gradient the forward assumes per
    counted row; ``logits_dtype`` the dtype of the returned logits."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, scale, wanted, fns, rows, logits_dtype):
        ctx.set_materialize_grads(False)
        n, vocab = hidden.size(0), weight.size(0)
        want_any = any(wanted)
        chunks = K._Chunks(hidden, weight, bias, rows)
        logits_out = torch.empty(n, vocab, dtype=logits_dtype)
        losses = torch.empty(n, dtype=torch.float32)
        lse = torch.empty(n, dtype=torch.float32)
        grads = K._empty_grads(hidden, weight, wanted) if want_any else None
        for start, stop, h, buf in chunks:
            # bfloat16 inputs: the logits as the eager bfloat16 head rounds them, even when cast up
            logits_out[start:stop].copy_(buf if hidden.dtype == torch.float32 else buf.to(hidden.dtype))
            fns[0](_dispatch.ptr(buf), _dispatch.ptr(targets[start:stop]), _dispatch.i64(stop - start), _dispatch.i64(vocab),
                   _dispatch.f32(scale), int(want_any), _dispatch.ptr(losses[start:stop]), _dispatch.ptr(lse[start:stop]), _dispatch.threads())
            if want_any:
                chunks.accumulate(start, h, buf, grads)
        _dispatch.CALLS[K.KERNEL.name] += 1
        _dispatch.save_for_backward(ctx, hidden, weight, bias, targets, lse)
        ctx.grads = grads
        ctx.scale32 = torch.tensor(scale, dtype=torch.float32).item()
        ctx.bwd, ctx.rows, ctx.logits_dtype = fns[1], rows, logits_dtype
        return losses, logits_out

    @staticmethod
    def _second_order(ctx, grad_losses, grad_logits):
        hidden, weight, bias, targets, _ = ctx.saved_tensors
        ctx.grads = None

        def losses_and_logits(h, w, b):
            losses, logits = K.row_losses(h, w, b, targets)
            return losses, logits.to(ctx.logits_dtype)

        grads = reference_grads(losses_and_logits, (hidden, weight, bias), ctx.needs_input_grad[:3], (grad_losses, grad_logits))
        return (*grads, None, None, None, None, None, None)

    @staticmethod
    @differentiable_backward(_second_order.__func__)
    def backward(ctx, grad_losses, grad_logits):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        like = (hidden, weight, bias)
        wanted = tuple(ctx.needs_input_grad[:3])
        nones = (None,) * 6
        grads, ctx.grads = ctx.grads, None
        if grad_losses is None:
            grads = None  # the loss is not back-propagated: what the forward formed is unused
            if grad_logits is None:
                return (None, None, None, *nones)
        else:
            grads = _loss_grads(ctx, grads, grad_losses.float(), targets, lse, wanted)
        if grads is None:
            grads = _empty_grads(hidden, weight, wanted)
        if grad_logits is not None:
            _add_logits_grad(hidden, weight, grad_logits, grads)
        return (*K._finish(grads, 1.0, like), *nones)


def _loss_grads(ctx, grads, upstream, targets, lse, wanted):
    """float32 gradients of the losses for ``upstream``: the forward's, scaled, when it is one
    value for every counted row, else recomputed a chunk of logits at a time."""
    hidden, weight, bias = ctx.saved_tensors[:3]
    counted = targets >= 0
    row_scale = torch.where(counted, upstream, torch.zeros((), dtype=torch.float32))
    if grads is not None:
        values = upstream[counted]
        if values.numel() == 0:
            return grads
        first = values[0].item()
        if bool((values == first).all()):
            factor = first / ctx.scale32
            for g in grads:
                if g is not None and factor != 1.0:
                    g.mul_(factor)
            return grads
    return K._recompute(hidden, weight, bias, targets, lse, row_scale.contiguous(), wanted, ctx.bwd, ctx.rows)


def linear_cross_entropy_logits_rows(hidden, weight, bias, labels, ignore_index=-100, scale=1.0, logits_dtype=None, max_rows=None, schedule=None):
    """``(per-row losses, logits)`` from the compiled kernel, or None when it cannot run here.
    Losses are float32 (0 for ignored rows); the logits are ``logits_dtype``, by default the
    dtype ``F.linear`` gives them: the input's, or autocast's where autocast is on (the product
    then runs in it too, as the eager head's does). ``scale`` is the upstream gradient expected per counted row (1/count for a
    mean, 1 for a sum)."""
    if not K.shapes_ok(hidden, weight, bias):
        return None
    # under autocast the head's F.linear multiplies in autocast's dtype and returns its logits in
    # it: so do the kernel and its logits (the casts carry the gradients back, as autocast's do)
    hidden, weight, bias = product_operands(hidden, weight, bias)
    if _dispatch.on_gpu(hidden, weight, bias):
        fn = K.gpu_function("linear_cross_entropy_logits_rows", hidden, weight, bias, schedule)
        return None if fn is None else fn(hidden, weight, bias, labels, ignore_index, scale, logits_dtype, max_rows)
    if not K.supported(hidden, weight, bias):
        return None
    n, d = hidden.shape
    vocab = weight.size(0)
    workload = {"tokens": n, "hidden": d, "vocab": vocab}
    if schedule is None:
        schedule = schedules.lookup(K.KERNEL, dict(workload, dtype=_dispatch.dtype_name(hidden.dtype)))
    fwd = _dispatch.function(K.KERNEL, "lce_forward", hidden.dtype, workload, schedule)
    bwd = _dispatch.function(K.KERNEL, "lce_backward", hidden.dtype, workload, schedule)
    if fwd is None or bwd is None:
        return None
    targets = K.targets_for(labels, ignore_index, vocab)
    dtype = logits_dtype or hidden.dtype
    return LinearCrossEntropyLogitsFunction.apply(hidden.contiguous(), weight, bias, targets, float(scale), K.wanted_grads(hidden, weight, bias),
                                                  (fwd, bwd), K.chunk_rows(schedule, max_rows), dtype)
