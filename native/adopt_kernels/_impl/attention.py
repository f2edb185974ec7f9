"""Scaled dot-product attention with the semantics of the eager code it replaces."""

import functools
import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from .. import _dispatch, registry
from .modules import is_plain
from .switches import enabled

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _torch_version():
    return tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2])


# Looked up at call time through this module so tests can stand in a fake on torch 1.13.
_sdpa = getattr(F, "scaled_dot_product_attention", None)
# The ``scale`` argument arrived in torch 2.1, a release after SDPA itself.
_sdpa_takes_scale = _torch_version() >= (2, 1)


def attention_supported(q, k, v, mask=None, head_mask=None, output_attentions=False):
    """Guard for :func:`attention`: False where the original code must run.

    A head mask or returned attention probabilities need the probability tensor the fused
    kernel never materialises; the (batch, heads, length, head_dim) layout and the
    (batch * heads, length, head_dim) one are accepted, with keys and values that broadcast
    against the queries' leading dimensions (a memory shared by the batch).
    """
    if not enabled("attention"):
        return False
    if head_mask is not None or output_attentions:
        return False
    if not (isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor) and isinstance(v, torch.Tensor)) or q.dim() not in (3, 4):
        return False
    if not (2 <= k.dim() <= q.dim() and 2 <= v.dim() <= q.dim()):
        return False
    lead = q.shape[:-2]
    if k.shape[:-2] == lead and v.shape[:-2] == lead:  # the common case, without broadcast_shapes' cost
        return True
    # keys and values shared across the batch (a learned memory) broadcast as matmul does
    try:
        torch.broadcast_shapes(lead, k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        return False
    return True


def _causal_keep(q_len, k_len, device):
    """Boolean (q_len, k_len) mask, True where allowed, aligned to the bottom-right corner.

    With cached keys (k_len > q_len) the last query is the newest token and sees every key.
    """
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(diagonal=k_len - q_len)


@functools.lru_cache(maxsize=8)
def _causal_pattern(q_len, k_len, device):
    return _causal_keep(q_len, k_len, device)


def _fill_as_causal_flag(q, k, mask, fills, is_causal, bias):
    """``(fills, is_causal)`` with a fill over a bottom-right causal buffer (GPT-2's
    ``torch.where(bias[..., :L, :S], scores, finfo.min)``) turned into ``is_causal``, which lets a
    kernel skip the blocks above the diagonal instead of reading an L x S mask.

    Exact only where every query row keeps a key that wins the softmax over the filled ones: a
    fill of -inf, or the dtype's minimum (which, added to a mask, saturates to -inf or stays the
    minimum) with no row whose visible keys are all masked to that minimum too; rows see at least
    one key (L <= S); one fill, no bias. Anything else keeps its fills."""
    if len(fills) != 1 or bias is not None or q.dim() != 4:
        return fills, is_causal
    where, value, keeps = fills[0]
    q_len, k_len = q.size(-2), k.size(-2)
    if q_len > k_len or where.dim() < 2 or tuple(where.shape[-2:]) != (q_len, k_len) or where.numel() != q_len * k_len:
        return fills, is_causal
    v = _fill_number(value)
    if v is None or not (v == -math.inf or v == torch.finfo(q.dtype).min):
        return fills, is_causal
    kept = where.reshape(q_len, k_len)
    if not torch.equal(kept if keeps else ~kept, _causal_pattern(q_len, k_len, q.device)):
        return fills, is_causal
    if v != -math.inf and mask is not None and not _rows_see_an_unmasked_key(mask, q_len, k_len):
        return fills, is_causal
    return [], True


def _rows_see_an_unmasked_key(mask, q_len, k_len):
    """Whether every query row has a causally visible key the mask leaves above -1e30 (a
    boolean mask: keeps)."""
    usable = mask if mask.dtype == torch.bool else mask > -1e30
    if usable.dim() >= 2 and usable.size(-2) == 1:
        # one mask row for all queries: the first query, which sees the fewest keys, decides
        return bool(usable[..., : k_len - q_len + 1].any(-1).all())
    if usable.dim() >= 2 and usable.size(-2) != q_len:
        return False  # a mask that does not broadcast as (..., L, S) here: the fills stay
    return bool((usable & _causal_pattern(q_len, k_len, usable.device)).any(-1).all())


def _fill(scores, fills):
    """The scores with each fill written in: ``masked_fill``/``where`` as the original applies
    them, after the scale and before an additive mask. A fill is ``(where, value, keeps)``:
    ``where`` marks the scores kept (``keeps``, torch.where's form) or the ones replaced."""
    for where, value, keeps in fills:
        replaced = ~where if keeps else where
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            scores = torch.where(replaced, value.to(scores.dtype), scores)
        else:
            # a number or a 0-d tensor, which may live on the CPU as the original's may
            scores = scores.masked_fill(replaced, value)
    return scores


def _reference(q, k, v, mask, scale, dropout_p, training, is_causal, softmax_dtype=None, fills=(), bias=None):
    scores = torch.matmul(q, k.transpose(-2, -1))
    if softmax_dtype is None and scores.dtype in _LOW_PRECISION:
        scores = scores.float()
    if isinstance(scale, torch.Tensor) or scale != 1.0:
        scores = scores * scale
    if bias is not None:
        scores = scores + bias
    scores = _fill(scores, fills)
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = torch.where(mask, scores, scores.new_tensor(-math.inf))
        else:
            scores = scores + mask
    if is_causal:
        keep = _causal_keep(q.size(-2), k.size(-2), q.device)
        scores = torch.where(keep, scores, scores.new_tensor(-math.inf))
    return _softmax_times_values(scores, v, softmax_dtype, dropout_p, training)


def _softmax_times_values(scores, v, softmax_dtype, dropout_p, training):
    if softmax_dtype is not None:
        # where the original casts: after the scale, fills and mask, right before the softmax
        scores = scores.to(softmax_dtype)
    # in the dtype of the values, as the original must cast them to multiply (GPT-Neo computes
    # its scores from float32 queries and keys, then casts the probabilities to value.dtype)
    probs = torch.softmax(scores, dim=-1).to(v.dtype)
    if isinstance(dropout_p, nn.Module):
        # a dropout module that must be called (see _dropout_of): as the original calls it
        probs = dropout_p(probs)
    elif training and dropout_p > 0:
        probs = F.dropout(probs, dropout_p, training=True)
    return torch.matmul(probs, v)


def _dropout_of(dropout, training):
    """``(dropout_p, training)`` for :func:`attention` given ``dropout_p=dropout``: a number as it
    is; for a plain ``nn.Dropout`` its ``p`` and its own mode (which decides in the original,
    MC dropout's ``.train()`` on the dropout modules of a model in eval mode included); for a
    plain ``nn.Identity`` (dropout switched off by swapping the module) no dropout. Any other
    module, or one that calling would do more than its forward (hooks of its own or global
    module hooks, a forward set on the instance), is given back as it is: the probabilities are
    then computed as the original does and passed through it."""
    if not isinstance(dropout, nn.Module):
        return dropout, training
    if is_plain(dropout, nn.Dropout):
        return dropout.p, dropout.training
    if is_plain(dropout, nn.Identity):
        return 0.0, False
    return dropout, training


def _fill_number(value):
    if isinstance(value, torch.Tensor):
        return float(value.item()) if value.numel() == 1 else None
    return float(value) if isinstance(value, (int, float)) else None


def _fills_as_mask(q, mask, fills):
    """``mask`` with the fills folded in, so that adding it to the unfilled scores gives what
    filling then adding gives; None where that cannot be made exact.

    A fill of -inf is a boolean "keep" mask. A fill no larger than -1e30 is an additive one in
    float32/bfloat16: a score is below half a unit in the last place of such a number, so
    ``score + fill`` rounds to ``fill``, fully masked rows included (they stay uniform).
    Any other fill (float16's -65504, -1e4) is left to the eager path."""
    for where, value, keeps in fills:
        v = _fill_number(value)
        if v is None:
            return None
        if v == -math.inf:
            mask = _with_kept(mask, where if keeps else ~where)
        elif v <= -1e30 and q.dtype in (torch.float32, torch.bfloat16) and v >= torch.finfo(q.dtype).min:
            # two launches, no negated copy of the mask
            if keeps:
                added = torch.full(where.shape, v, dtype=q.dtype, device=q.device).masked_fill_(where, 0.0)
            else:
                added = torch.zeros(where.shape, dtype=q.dtype, device=q.device).masked_fill_(where, v)
            mask = _with_added(mask, added)
        else:
            return None
    return mask


def _with_kept(mask, keep):
    """``mask`` (None, boolean "keep" or additive) that also masks out where ``keep`` is False."""
    if mask is None:
        return keep
    if mask.dtype == torch.bool:
        return mask & keep
    return torch.where(keep, mask, mask.new_tensor(-math.inf))


def _with_added(mask, added):
    """``mask`` (None, boolean "keep" or additive) with a float term added: an additive mask."""
    if mask is None:
        return added
    if mask.dtype == torch.bool:
        return torch.where(mask, added, added.new_tensor(-math.inf))
    return added + mask


def _sdpa_arguments(q, k, v, mask, scale, is_causal, fills=(), bias=None):
    """Keyword arguments making SDPA compute :func:`_reference`, or None if it cannot."""
    if _sdpa is None:
        return None
    if fills:
        if not _fold_keeps_gradients(q, k, bias, mask, fills):
            return None
        mask = _fills_as_mask(q, mask, fills)
        if mask is None:
            return None
    if bias is not None:
        # added before the fills, which the mask now holds: a score plus its bias is what a fill
        # of -inf or of float32's minimum replaces or absorbs, as it was without the bias
        if bias.dtype != q.dtype:
            return None
        mask = _with_added(mask, bias)
    if not (q.dtype == k.dtype == v.dtype and q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        return None
    kwargs = {}
    if scale != 1.0 / math.sqrt(q.size(-1)):
        if not _sdpa_takes_scale:
            return None
        kwargs["scale"] = scale
    if mask is not None and mask.dim() < 2:
        return None
    if mask is not None and mask.dtype != torch.bool and mask.dtype != q.dtype:
        # SDPA wants a float mask in the query's dtype; casting a float32 mask of finfo.min
        # to half would turn it into -inf and change fully masked rows.
        return None
    if is_causal:
        if mask is None and q.size(-2) == k.size(-2):
            kwargs["is_causal"] = True
        else:
            # SDPA's own causal mask is aligned top-left and cannot be combined with attn_mask.
            mask = _with_kept(mask, _causal_keep(q.size(-2), k.size(-2), q.device))
    if mask is not None:
        if mask.dim() and mask.size(-1) > 1 and mask.stride(-1) != 1:
            # SDPA's fused kernels take a mask whose rows are contiguous and otherwise fall back
            # to the float32 math path (T5's position bias is a permuted embedding): one copy of
            # the mask costs far less
            mask = mask.contiguous()
        kwargs["attn_mask"] = mask
    return kwargs


def _as_four_dims(q, k, v, tensors):
    """(batch, heads, length, head_dim) views of q, k and v, or None. A 3-D call's batch becomes
    the heads of a batch of one, so masks of up to three dimensions broadcast as they did."""
    if q.dim() not in (3, 4) or any(t is not None and t.dim() > q.dim() for t in tensors):
        return None
    if not all(2 <= t.dim() <= q.dim() for t in (k, v)):
        return None
    return tuple(t.reshape((1,) * (4 - t.dim()) + tuple(t.shape)) for t in (q, k, v))


def _compiled_masks(q, k, bias, mask, fills):
    """(additive, boolean keep) masks equal to the fills then ``mask``; None where the fills
    cannot be folded exactly (see :func:`_fills_as_mask`)."""
    added, kept = (mask, None) if mask is None or mask.dtype != torch.bool else (None, mask)
    if fills:
        folded = _fills_as_mask(q, None, fills)
        if folded is None:
            return None
        if folded.dtype == torch.bool:
            kept = folded if kept is None else kept & folded
        else:
            if not _fold_keeps_gradients(q, k, bias, mask, fills):
                return None
            # the fill's value absorbs the scores it replaces; the mask is added after it
            added = folded if added is None else folded + added
    return added, kept


def _fold_keeps_gradients(q, k, bias, mask, fills):
    """Whether folding the fills into an additive mask (the kernels' and SDPA's form) gives the
    gradients eager code does: yes without a finite fill or without gradients to record, else where
    every query row keeps a key (see :func:`_every_row_keeps_a_key`)."""
    if all(_fill_number(value) == -math.inf for _, value, _ in fills):
        return True  # a -inf fill is a boolean mask: its scores never carry probability
    if not torch.is_grad_enabled() or not any(t is not None and t.requires_grad for t in (q, k, bias)):
        return True
    return _every_row_keeps_a_key(mask, fills)


def _keyless_row_with_gradients(q, k, v, mask, bias, is_causal, fills=()):
    """Whether gradients are recorded and some query row has no key left: a boolean mask with a
    row all False, causal masking with more queries than keys (bottom-right aligned), or -inf
    fills (``masked_fill(m, -inf)``, ``where(keep, s, -inf)``) that replace a whole row."""
    if not torch.is_grad_enabled() or not any(t is not None and t.requires_grad for t in (q, k, v, bias)):
        return False
    if is_causal and q.size(-2) > k.size(-2):
        return True
    if isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and mask.numel() > 0 and not bool(mask.any(-1).all()):
        return True
    return any(_fill_number(value) == -math.inf for _, value, _ in fills) and not _every_row_keeps_a_key(mask, fills)


def _every_row_keeps_a_key(mask, fills):
    """Whether every query row keeps a key (no fill replaces it) that the mask leaves above -1e30.

    A finite fill folded into an additive mask gives the forward exactly, but in a row with no such
    key (a left-padded row under GPT-2's causal fill) the replaced scores tie with the kept ones
    and carry probability: eager's ``where`` passes them (and a bias under them) no gradient, the
    kernel's add would."""
    replaced = None
    for where, _, keeps in fills:
        hit = ~where if keeps else where
        replaced = hit if replaced is None else replaced | hit
    usable = ~replaced
    try:
        # a mask with no huge value leaves every key the fills keep (the common case, checked on
        # the mask alone rather than on its broadcast against the fills)
        huge = mask is not None and bool((~mask).any() if mask.dtype == torch.bool else (mask <= -1e30).any())
        if huge:
            usable = usable & (mask if mask.dtype == torch.bool else mask > -1e30)
        return bool(usable.any(-1).all())
    except RuntimeError:  # shapes that broadcast only against the scores: the reference decides
        return False


def _via_sdpa(q, k, v, mask, scale, is_causal, fills, bias):
    kwargs = _sdpa_arguments(q, k, v, mask, scale, is_causal, fills, bias)
    return None if kwargs is None else _sdpa(q, k, v, **kwargs)


def _bf16_to_original():
    """Whether bfloat16 attention on this CPU runs the original code: where the CPU multiplies
    bfloat16 natively, torch's bfloat16 products beat the kernel, which computes in float32
    (at 4 x 12 x 512 x 64, forward+backward 61.8 ms eager against 96.7 ms on AVX512-BF16)."""
    from .. import _dispatch, target

    if not target.native_bf16_products():
        return False
    _dispatch.say_once("attention-bf16", "attention: bfloat16 runs the original code on this CPU "
                                         "(native bfloat16 products beat the kernel's float32 ones)")
    return True


def _compiled(q, k, v, mask, scale, is_causal, fills, bias, softmax_dtype, dropout_p):
    """The compiled flash attention where it computes what :func:`_reference` does, else None:
    the C++ kernel on the CPU, the Triton one on CUDA (float16 too).

    Float32 and bfloat16 compute their scores and softmax in float32, as the original does
    (bfloat16 scores are upcast); dropout draws its mask from a counter-based generator seeded by
    one draw of torch's generator, not from ``F.dropout``'s stream."""
    from .. import _dispatch

    gpu = _dispatch.on_gpu(q, k, v)
    if isinstance(scale, torch.Tensor) or not (gpu or q.device.type == "cpu"):
        return None
    if q.dtype not in ((torch.float32, torch.bfloat16, torch.float16) if gpu else (torch.float32, torch.bfloat16)):
        return None
    if not gpu and q.dtype == torch.bfloat16 and _bf16_to_original():
        return None
    if softmax_dtype is not None and softmax_dtype != torch.float32:
        return None
    masks = _compiled_masks(q, k, bias, mask, fills)
    if masks is None:
        return None
    four = _as_four_dims(q, k, v, (bias, *masks))
    if four is None:
        return None
    from ..kernels import flash_attention as kernel

    out = kernel.flash_attention(*four, scale, bias=bias, mask=masks[0], keep=masks[1], is_causal=is_causal, dropout_p=dropout_p)
    return out if out is None or q.dim() == 4 else out.squeeze(0)


def _compiled_scores(q, k, v, mask, scale, is_causal, fills, bias, softmax_dtype, dropout_p, training):
    """The scores in BLAS with the scale and mask added in place, the compiled softmax (causal
    folded in), then the values in BLAS: for a float32 CPU call whose additive mask takes a
    gradient (a learned position bias) in a layout the blocked kernel cannot take (more than
    four dimensions); None elsewhere. Four-dimensional ones, T5's among them, run the blocked
    kernel, whose backward writes the mask's gradient.

    Adding in place to the product, which nothing else reads, is what T5 itself does: autograd's
    add hands the mask the scores' gradient without a copy (the masked softmax kernel writes a
    second gradient array for the mask, measured 14% slower over the whole attention at 512)."""
    if fills or bias is not None or isinstance(scale, torch.Tensor) or softmax_dtype not in (None, torch.float32):
        return None
    if mask is None or not mask.requires_grad or not torch.is_grad_enabled() or mask.dtype != torch.float32:
        return None
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in (q, k, v)):
        return None
    from ..kernels import softmax as kernel

    scores = torch.matmul(q, k.transpose(-2, -1))
    if not kernel.supported(scores, None, is_causal) or torch.broadcast_shapes(scores.shape, mask.shape) != scores.shape:
        return None
    if scale != 1.0:
        scores.mul_(scale)
    probs = kernel.softmax(scores.add_(mask), 1.0, is_causal=is_causal)
    if probs is None:
        return None
    if training and dropout_p > 0:
        probs = F.dropout(probs, dropout_p, training=True)
    return torch.matmul(probs, v)


def attention(
    q,
    k,
    v,
    mask=None,
    scale=None,
    dropout_p=0.0,
    training=False,
    is_causal=False,
    mask_heads=None,
    mask_added=False,
    softmax_dtype=None,
    cast_dtype=None,
    bias=None,
    keep=None,
    keep_fill=None,
    fill_mask=None,
    fill_value=None,
):
    """Replaces ``softmax(q @ k.transpose(-2, -1) * scale + mask, dim=-1)``, dropout, ``@ v``.

    ``scale`` None means ``1 / sqrt(head_dim)``; it may be a tensor that broadcasts against the
    scores (a learned per-head scale); ``mask`` is additive (float) or boolean with
    True meaning keep (SDPA's convention); ``is_causal`` adds a bottom-right aligned causal
    mask; ``softmax_dtype`` is the dtype the original's softmax computes in (its ``dtype=``),
    ``cast_dtype`` the dtype the original casts the scores to right before it (XLM's
    ``softmax(scores.float())``), the first of the two that is given;
    ``mask_added`` says the original adds ``mask`` to the scores (a boolean one then counts
    1 where True, not "keep"); ``mask_heads`` says the inputs are (batch * heads, L, D) and the mask is added to the
    scores viewed as (batch, heads, L, S). Half/bfloat16 scores go through the softmax in float32. Dropout applies only when
    ``training``. ``dropout_p`` may also be the dropout module the original calls on the
    probabilities (the rewrite passes it, not its ``p``): a plain ``nn.Dropout`` gives its ``p``
    and, in place of ``training``, its own mode; a plain ``nn.Identity`` no dropout; any other
    module, or one with hooks, is called on the probabilities computed as the original computes
    them (no fused kernel), so that it runs exactly as it did. On the CPU, float32 and
    bfloat16 run the compiled blocked attention (``kernels/flash_attention.py``) wherever its arguments fit, dropout included; bfloat16 not
    where the CPU multiplies it natively (AVX512-BF16, AMX), as torch's own products are faster there. On CUDA,
    torch's fused SDPA runs first where it computes the same thing without dropout (it measured
    faster); the Triton kernel (float16 too) takes dropout in training and the forms SDPA cannot
    take. The kernels' dropout mask comes from a counter-based generator
    seeded by one draw of torch's generator, so it differs from the ``F.dropout`` draw of eager
    code (``ADOPT_DISABLE=native`` restores that). Elsewhere dropout is drawn with ``F.dropout``
    on the probabilities, as eager code does, and the fused SDPA kernel is used whenever no
    dropout is applied.

    ``bias`` is added to the scaled scores before anything else (Bloom's ALiBi, GPT-NeoX's
    ``baddbmm`` input); ``keep``/``keep_fill`` replace ``torch.where(keep, scores, keep_fill)`` and
    ``fill_mask``/``fill_value`` replace ``scores.masked_fill(fill_mask, fill_value)``, in that
    order, on the scaled scores before ``mask`` is added (a causal buffer, as GPT-2 and nanoGPT
    write it).

    One known difference: a query row whose boolean mask is all False gives NaN in eager code
    (and on the reference path) but zeros from SDPA on torch >= 2.5.
    """
    if softmax_dtype is None:
        softmax_dtype = cast_dtype
    dropout_p, training = _dropout_of(dropout_p, training)
    fills = []
    if keep is not None:
        fills.append((keep.bool(), keep_fill, True))
    if fill_mask is not None:
        fills.append((fill_mask.bool(), fill_value, False))
    if mask is not None and not isinstance(mask, torch.Tensor):
        # a number added to every score (`scores + 0.5`)
        mask = torch.as_tensor(mask, dtype=q.dtype, device=q.device)
    if mask_added and mask is not None and mask.dtype == torch.bool:
        # the original adds the mask to the scores: True counts 1, as eager promotion does
        mask = mask.to(q.dtype)
    if bias is not None and not isinstance(bias, torch.Tensor):
        bias = torch.as_tensor(bias, dtype=q.dtype, device=q.device)
    if mask_heads is not None and q.dim() == 3:
        # (batch * heads, L, D): a bias is added to the scores in that layout (Bloom's ALiBi),
        # the fills and the mask to their (batch, heads, L, S) view
        heads = int(mask_heads)
        batch = q.size(0) // heads
        flat_bias = bias is None or (bias.dim() == 3 and bias.size(0) in (1, q.size(0)))
        # values may already be (batch, heads, S, D): the probabilities' 4-D view multiplies them
        # (GPT-NeoX), and the output keeps that layout
        v4 = v if v.dim() == 4 and tuple(v.shape[:2]) == (batch, heads) else v.reshape(batch, heads, v.size(1), v.size(2)) if v.dim() == 3 and v.size(0) == q.size(0) else None
        if k.dim() == 3 and k.size(0) == q.size(0) and v4 is not None and flat_bias:
            q4, k4 = (t.reshape(batch, heads, t.size(1), t.size(2)) for t in (q, k))
            bias4 = None if bias is None else bias.expand(q.size(0), bias.size(1), bias.size(2)).reshape(batch, heads, bias.size(1), bias.size(2))
            out = attention(
                q4, k4, v4, mask=mask, scale=scale, dropout_p=dropout_p, training=training, is_causal=is_causal,
                softmax_dtype=softmax_dtype, bias=bias4, keep=keep, keep_fill=keep_fill, fill_mask=fill_mask, fill_value=fill_value,
            )
            return out if v.dim() == 4 else out.reshape(q.size(0), q.size(1), v.size(2))
        # keys or values shared across the batch: the eager computation, view for view
        scores = torch.matmul(q, k.transpose(-2, -1))
        if softmax_dtype is None and scores.dtype in _LOW_PRECISION:
            scores = scores.float()
        scores = scores * scale if scale is not None else scores / math.sqrt(q.size(-1))
        if bias is not None:
            scores = scores + bias
        scores = _fill(scores.view(batch, heads, scores.size(1), scores.size(2)), fills)
        if mask is not None:
            scores = scores + mask
        if v.dim() != 4:
            scores = scores.reshape(q.size(0), scores.size(2), scores.size(3))
        return _softmax_times_values(scores, v, softmax_dtype, dropout_p, training)
    if scale is None:
        scale = 1.0 / math.sqrt(q.size(-1))
    if isinstance(scale, torch.Tensor):
        # a learned per-head scale (Swin v2's logit_scale, shape (heads, 1, 1)) is constant
        # along a query row: it scales q. Any other tensor scale takes the reference path.
        if scale.numel() == 1 or (scale.dim() >= 2 and scale.size(-1) == 1 and scale.size(-2) == 1):
            q = q * scale.to(q.dtype)
            scale = 1.0
        else:
            return _reference(q, k, v, mask, scale, dropout_p, training, is_causal, softmax_dtype, fills=fills, bias=bias)
    if isinstance(dropout_p, nn.Module) or (softmax_dtype is not None and softmax_dtype != q.dtype and q.dtype not in _LOW_PRECISION):
        # a dropout module to call on the probabilities; `softmax(scores, dtype=torch.float32)`
        # on float64 scores rounds them to float32 first
        return _reference(q, k, v, mask, scale, dropout_p, training, is_causal, softmax_dtype, fills=fills, bias=bias)
    fills, is_causal = _fill_as_causal_flag(q, k, mask, fills, is_causal, bias)
    if _keyless_row_with_gradients(q, k, v, mask, bias, is_causal, fills):
        # eager code gives a query row with no key left NaN and, masking with where or
        # masked_fill, passes it no gradient; the kernels' additive form would carry that NaN
        # into the gradients of q and of every key
        return _reference(q, k, v, mask, scale, dropout_p, training, is_causal, softmax_dtype, fills=fills, bias=bias)
    applies_dropout = training and dropout_p > 0
    # On a GPU torch's fused attention (flash, cuDNN) ran 1.65-1.9x faster than the Triton kernel
    # on an H200: it goes first where it computes the same thing. With dropout it would draw
    # another mask than F.dropout's, so the Triton kernel (dropout fused) takes those calls.
    sdpa_first = q.is_cuda and not applies_dropout
    on = enabled("attention")
    if on and sdpa_first:
        out = _via_sdpa(q, k, v, mask, scale, is_causal, fills, bias)
        if out is not None:
            return out
    if on:
        # a call below the blocked kernel's floor (a decoded token) skips the checks only it needs;
        # its bytes as the kernel counts them: q and k at q's head count (grouped keys included)
        moved = 2 * q.element_size() * (q.numel() + q.numel() // max(1, q.size(-2)) * k.size(-2))
        # shapes the fusion cannot repay at any size (one query row: kernels/flash_attention.py)
        why = None if applies_dropout or torch.is_grad_enabled() else registry.KERNELS["flash_attention"].inference_to_torch({"q_len": q.size(-2)})
        if not _dispatch.small("flash_attention", moved, q, True if applies_dropout else None, why):
            out = _compiled(q, k, v, mask, scale, is_causal, fills, bias, softmax_dtype, dropout_p if applies_dropout else 0.0)
            if out is not None:
                return out
        out = _compiled_scores(q, k, v, mask, scale, is_causal, fills, bias, softmax_dtype, dropout_p, applies_dropout)
        if out is not None:
            return out
    if on and not applies_dropout and not sdpa_first:
        out = _via_sdpa(q, k, v, mask, scale, is_causal, fills, bias)
        if out is not None:
            return out
    return _reference(q, k, v, mask, scale, dropout_p, training, is_causal, softmax_dtype, fills=fills, bias=bias)
