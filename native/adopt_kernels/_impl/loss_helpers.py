"""Whether a model's ``self.loss_function`` is one of transformers' language-model losses, and
the ``linear_cross_entropy`` settings that compute what it computes.

Current transformers models call ``self.loss_function(logits=logits, labels=labels,
vocab_size=..., **kwargs)``, a property of ``PreTrainedModel`` that returns a helper chosen by
the model's ``loss_type`` (or one a user set). Only two helpers are read here, by identity:
``ForCausalLMLoss`` (labels padded with ``ignore_index`` and shifted by one position, the same
as dropping the logits' last position) and ``ForMaskedLMLoss`` (no shift). Both cast the logits
to float32 for the loss alone and reduce through ``fixed_cross_entropy``: a mean over counted
tokens, or with ``num_items_in_batch`` a sum divided by it. Any other helper, or keywords that
change what the helper computes in a way the kernel does not (``shift_labels``), answer None,
and the caller's guard runs the original code.
"""

import inspect
import sys

import torch

from .modules import is_plain_linear

_MODULE = "transformers.loss.loss_utils"

# The helpers' parameters as read (transformers 5.x), with whether the labels are shifted: a
# helper of another signature belongs to a version whose meaning was not read here.
_HELPERS = {
    "ForCausalLMLoss": (("logits", "labels", "vocab_size", "num_items_in_batch", "ignore_index", "shift_labels"), True),
    "ForMaskedLMLoss": (("logits", "labels", "vocab_size", "num_items_in_batch", "ignore_index"), False),
}
_REDUCER = ("source", "target", "num_items_in_batch", "ignore_index")
# the helpers' own arguments: given again through the keywords, the call raises
_DATA = ("logits", "labels", "vocab_size")

# transformers' helper -> whether its signature is the one read (checked once per helper)
_read = {}


def _params(fn):
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    names = tuple(n for n, p in sig.parameters.items() if p.kind is not p.VAR_KEYWORD)
    takes_more = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    return names if takes_more else None


def _shift_of(fn):
    """True (causal, shifted) or False (masked) when ``fn`` is transformers' own helper with
    the parameters read here, reducing through its own ``fixed_cross_entropy``; else None."""
    module = sys.modules.get(_MODULE)
    name = getattr(fn, "__name__", None)
    if module is None or name not in _HELPERS or getattr(module, name, None) is not fn:
        return None
    params, shift = _HELPERS[name]
    if fn not in _read:
        reducer = getattr(fn, "__globals__", {}).get("fixed_cross_entropy")
        _read[fn] = _params(fn) == params and reducer is getattr(module, "fixed_cross_entropy", None) and _params(reducer) == _REDUCER
    return shift if _read[fn] else None


def causal_lm_loss(loss_function, lm_head, vocab_size, kwargs):
    """The ``linear_cross_entropy`` keywords (``shift``, ``ignore_index``, ``reduction``,
    ``loss_dtype``, ``divide_by``) that compute ``loss_function(logits=lm_head(hidden),
    labels=labels, vocab_size=vocab_size, **kwargs)``, or None when they would not: the helper is
    not transformers' causal- or masked-LM loss, the head is not a plain Linear with
    ``vocab_size`` outputs, or the keywords hold what the kernel does not compute."""
    shift = _shift_of(loss_function)
    if shift is None or not is_plain_linear(lm_head) or not isinstance(vocab_size, int):
        return None
    if lm_head.weight.size(0) != vocab_size or any(k in kwargs for k in _DATA):
        return None
    if shift and kwargs.get("shift_labels") is not None:
        return None
    ignore_index = kwargs.get("ignore_index", -100)
    if not isinstance(ignore_index, int):
        return None
    n = kwargs.get("num_items_in_batch")
    out = {"shift": shift, "ignore_index": ignore_index, "reduction": "mean" if n is None else "sum", "loss_dtype": torch.float32}
    if n is not None:
        out["divide_by"] = n
    return out
