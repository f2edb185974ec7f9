"""Language-model head and cross entropy without the full logits tensor."""

import torch
import torch.nn.functional as F

from .modules import is_plain_linear
from .switches import enabled

# Logit elements computed at once (rows * vocabulary): 2**25 float32 values are 128 MiB, small
# next to a model's activations, yet 256 rows even for a 128k vocabulary, enough for the
# matmuls to stay efficient.
CHUNK_ELEMENTS = 1 << 25
_REDUCTIONS = ("mean", "sum", "none")
# The kernel's own matmul, apart from F.linear so tests can watch the chunk sizes it is given.
_linear = F.linear


def _chunk_rows(vocab):
    return max(1, CHUNK_ELEMENTS // max(1, vocab))


def _kernel_dtype(hidden):
    """Whether a kernel takes ``hidden``'s dtype: float32 and bfloat16, and float16 on the
    Triton kernel's device."""
    from .._dispatch import on_gpu

    return hidden.dtype in (torch.float32, torch.bfloat16) or (hidden.dtype == torch.float16 and on_gpu(hidden))


def _compute_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


class _LinearCrossEntropy(torch.autograd.Function):
    """Per-row ``cross_entropy(hidden @ weight.T + bias, labels)`` in row chunks.

    Forward keeps only each row's log-sum-exp; backward recomputes one chunk of logits at a
    time, so peak memory holds a chunk of logits instead of all of them.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, ignore_index):
        compute = _compute_dtype(hidden.dtype)
        valid = labels != ignore_index
        # Ignored rows gather a placeholder class; out-of-range labels still fail in gather.
        targets = labels.masked_fill(~valid, 0)
        losses = torch.empty(hidden.size(0), dtype=compute, device=hidden.device)
        lse = torch.empty_like(losses)
        rows = _chunk_rows(weight.size(0))
        for start in range(0, hidden.size(0), rows):
            stop = start + rows
            logits = _linear(hidden[start:stop], weight, bias).to(compute)
            chunk_lse = torch.logsumexp(logits, dim=-1)
            target_logit = logits.gather(1, targets[start:stop, None]).squeeze(1)
            lse[start:stop] = chunk_lse
            losses[start:stop] = chunk_lse - target_logit
        losses = losses.masked_fill(~valid, 0.0)
        from .._dispatch import save_for_backward

        save_for_backward(ctx, hidden, weight, bias, targets, valid, lse)
        return losses

    @staticmethod
    def backward(ctx, grad_losses):
        hidden, weight, bias, targets, valid, lse = ctx.saved_tensors
        compute = lse.dtype
        # Ignored rows get zero gradient whatever grad_losses holds there (a mean over zero
        # tokens hands back NaN), matching cross_entropy's backward.
        row_scale = torch.where(valid, grad_losses.to(compute), grad_losses.new_zeros((), dtype=compute))
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=compute, device=weight.device) if need_weight else None
        grad_bias = torch.zeros(weight.size(0), dtype=compute, device=weight.device) if need_bias else None
        rows = _chunk_rows(weight.size(0))
        for start in range(0, hidden.size(0), rows):
            stop = start + rows
            h = hidden[start:stop]
            logits = _linear(h, weight, bias).to(compute)
            grad_logits = torch.exp(logits - lse[start:stop, None])
            grad_logits.scatter_add_(
                1, targets[start:stop, None], grad_logits.new_full((grad_logits.size(0), 1), -1.0)
            )
            grad_logits.mul_(row_scale[start:stop, None])
            if need_hidden:
                # In the weight's dtype, as the original's backward does: no float32 copy of a
                # half-precision weight per chunk.
                grad_hidden[start:stop] = (grad_logits.to(weight.dtype) @ weight).to(hidden.dtype)
            if need_weight:
                grad_weight.addmm_(grad_logits.t(), h.to(compute))
            if need_bias:
                grad_bias.add_(grad_logits.sum(0))
        if need_weight:
            grad_weight = grad_weight.to(weight.dtype)
        if need_bias:
            grad_bias = grad_bias.to(bias.dtype)
        return grad_hidden, grad_weight, grad_bias, None, None


def _compiled(hidden, lm_head, labels, ignore_index, count, logits_dtype=None, return_logits=False):
    """Per-row losses (and the logits, with ``return_logits``) from the compiled kernel, or None
    where it cannot run.

    The kernel forms the gradients in its forward for the upstream gradient a mean (1/count)
    or a sum (1) hands each counted row; any other upstream gradient still comes out right.
    """
    from ..kernels import linear_ce as kernel
    from ..kernels import linear_ce_logits as with_logits

    scale = 1.0 / max(1, int(count)) if count is not None else 1.0
    rows = _chunk_rows(lm_head.weight.size(0))
    if return_logits:
        return with_logits.linear_cross_entropy_logits_rows(
            hidden, lm_head.weight, lm_head.bias, labels, ignore_index, scale, logits_dtype, max_rows=rows
        )
    return kernel.linear_cross_entropy_rows(*_as_autocast_multiplies(hidden, lm_head), labels, ignore_index, scale, max_rows=rows)


def _as_autocast_multiplies(hidden, lm_head):
    """``(hidden, weight, bias)`` as the head's matmul takes them: on the Triton kernel's device
    with autocast on, cast to autocast's dtype as ``F.linear`` would cast them (the gradients
    flow back through the casts to float32 weights), so that a model trained under autocast
    takes the kernel instead of the reference; else as they are."""
    from .._dispatch import on_gpu
    from .products import _AUTOCAST_ELIGIBLE, _autocast_dtype

    tensors = (hidden, lm_head.weight, lm_head.bias)
    dtype = _autocast_dtype(hidden.device.type) if on_gpu(hidden) else False
    if not dtype:
        return tensors
    return tuple(t if t is None or t.dtype not in _AUTOCAST_ELIGIBLE else t.to(dtype) for t in tensors)


def _reference(hidden, lm_head, labels, ignore_index, shift, reduction, logits_dtype=None, return_logits=False, loss_dtype=None):
    """The eager code: the head's logits (cast when the caller's code casts them), then
    cross entropy over them (cast to ``loss_dtype`` for the loss alone when given), shifted by
    one position when ``shift``."""
    logits = lm_head(hidden)
    if logits_dtype is not None:
        logits = logits.to(logits_dtype)
    returned = logits
    if loss_dtype is not None:
        logits = logits.to(loss_dtype)
    if shift:
        logits = logits[..., :-1, :]
        labels = labels[..., 1:]
    loss = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=ignore_index, reduction=reduction
    )
    return (loss, returned) if return_logits else loss


def _reduce(losses, labels, shift, reduction, count):
    if reduction == "none":
        if shift:
            losses = losses.reshape(labels.shape)[..., :-1].reshape(-1)
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    return total / count


def linear_cross_entropy(hidden, lm_head, labels, ignore_index=-100, shift=True, reduction="mean", return_logits=False, logits_dtype=None, loss_dtype=None, divide_by=None):
    """Replaces::

        logits = lm_head(hidden)
        loss = F.cross_entropy(logits[..., :-1, :].reshape(-1, V), labels[..., 1:].reshape(-1),
                               ignore_index=ignore_index, reduction=reduction)

    (without the shift when ``shift=False``). Logits are produced and consumed a chunk of
    tokens at a time, so neither the full logits nor their gradient is ever held. On the CPU
    in float32/bfloat16 a compiled kernel does it, and on CUDA (also float16) a Triton one,
    skipping rows whose label is ignored and forming the gradients during the forward pass;
    elsewhere the logits are recomputed in backward. The loss is accumulated in float32
    (float64 for float64 inputs), as models that call ``logits.float()`` before the loss do.

    With ``return_logits`` it returns ``(loss, logits)``, the logits cast to ``logits_dtype``
    when given (the code replaced calls ``logits.float()``): they are computed once and
    returned, while the log-softmax and the logits' gradient are still never held whole; a
    gradient reaching the returned logits is back-propagated too. The loss then has the
    logits' dtype, as cross entropy over them gives it, unless ``loss_dtype`` is given: the
    loss is then taken over the logits cast to it (transformers' loss helpers call
    ``logits.float()`` for the loss alone), while the returned logits keep their own dtype.

    ``divide_by`` (with ``reduction="sum"``) divides the summed loss by a token count the
    caller gives (transformers' ``num_items_in_batch``), moved to the loss's device when a
    tensor.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if divide_by is not None and reduction != "sum":
        raise ValueError(f"divide_by divides a summed loss; reduction is {reduction!r}")
    out = _linear_cross_entropy(hidden, lm_head, labels, ignore_index, shift, reduction, return_logits, logits_dtype, loss_dtype)
    if divide_by is None:
        return out
    loss, logits = out if return_logits else (out, None)
    if torch.is_tensor(divide_by):
        divide_by = divide_by.to(loss.device)
    loss = loss / divide_by
    return (loss, logits) if return_logits else loss


def _linear_cross_entropy(hidden, lm_head, labels, ignore_index, shift, reduction, return_logits, logits_dtype, loss_dtype):
    # the replaced code moves the labels to the logits' device (model parallelism)
    labels = labels.to(hidden.device)
    if not (enabled("linear_cross_entropy") and is_plain_linear(lm_head)):
        return _reference(hidden, lm_head, labels, ignore_index, shift, reduction, logits_dtype, return_logits, loss_dtype)
    given = labels
    if shift:
        # Shifting the labels instead of the hidden states avoids copying the hidden states;
        # the last position of each sequence gets ignore_index and contributes nothing.
        padding = labels.new_full(labels.shape[:-1] + (1,), ignore_index)
        labels = torch.cat((labels[..., 1:], padding), dim=-1)
    flat_hidden = hidden.reshape(-1, hidden.size(-1))
    flat_labels = labels.reshape(-1)
    count = (flat_labels != ignore_index).sum() if reduction == "mean" else None
    if return_logits:
        out = _with_logits(hidden, lm_head, labels, ignore_index, count, logits_dtype)
        if out is None:
            return _reference(hidden, lm_head, given, ignore_index, shift, reduction, logits_dtype, True, loss_dtype)
        losses, logits = out
        return _reduce(losses, labels, shift, reduction, count).to(loss_dtype or _loss_dtype_of(logits)), logits
    losses = None
    if _kernel_dtype(hidden):
        losses = _compiled(flat_hidden, lm_head, flat_labels, ignore_index, count)
    if losses is None:
        losses = _LinearCrossEntropy.apply(flat_hidden, lm_head.weight, lm_head.bias, flat_labels, ignore_index)
    loss = _reduce(losses, labels, shift, reduction, count)
    return loss if loss_dtype is None else loss.to(loss_dtype)


def _loss_dtype_of(logits):
    """The dtype cross entropy over ``logits`` gives: theirs, except under autocast for their
    device, which computes the loss in float32 (as eager ``F.cross_entropy`` returns it)."""
    on = torch.is_autocast_cpu_enabled() if logits.device.type == "cpu" else torch.is_autocast_enabled()
    return torch.float32 if on and logits.dtype in (torch.float16, torch.bfloat16) else logits.dtype


def _with_logits(hidden, lm_head, labels, ignore_index, count, logits_dtype):
    """Per-row losses and the logits (shaped as the head gives them) from the compiled kernel;
    None where it cannot run, and the caller runs the eager code: the logits are held either
    way, so the chunked torch path would save little."""
    if not _kernel_dtype(hidden) or logits_dtype not in (None, hidden.dtype, torch.float32):
        return None
    flat_hidden = hidden.reshape(-1, hidden.size(-1))
    out = _compiled(flat_hidden, lm_head, labels.reshape(-1), ignore_index, count, logits_dtype, True)
    if out is None:
        return None
    losses, logits = out
    return losses, logits.reshape(hidden.shape[:-1] + (logits.size(-1),))
