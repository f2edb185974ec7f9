"""The one input finder: what to feed a model, for every entry point.

- `shaped`: the caller gives the input shape (`rules test`, `adopt verify --shape`).
- `find_inputs`: a plain nn.Module; candidates from the module the model starts with (ids for an
  embedding, images for a convolution, features for a Linear), the first the original accepts.
- `for_transformers`: a transformers model class, from its forward signature and config
  (hf_inputs.make_inputs), at tiny sizes for verification or at benchmark sizes for timing.
"""
import inspect

import torch
from torch import nn

from adopt_harness.deadline import Timeout
from adopt_harness.hf_inputs import NoInputs, make_inputs

__all__ = ["NoInputs", "find_inputs", "for_transformers", "shaped", "timing_inputs"]


def shaped(shape, dtype):
    return torch.randn(*shape, dtype=dtype)


def for_transformers(cls, config, batch=2, seq=7):
    return make_inputs(cls, config, batch=batch, seq=seq)


def timing_inputs(config, seq, batch, device, image=False):
    """Inputs at benchmark sizes: images of the config's size, or token ids from 3 up (no padding
    token, so position ids stay inside the table)."""
    if image:
        return {"pixel_values": torch.randn(batch, 3, config.image_size, config.image_size, device=device)}
    return {"input_ids": torch.randint(3, config.vocab_size, (batch, seq), device=device)}


_LEAVES = (nn.Embedding, nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)


def first_leaf(model):
    for m in model.modules():
        if isinstance(m, _LEAVES):
            return m
        if type(m).__name__ == "Conv1D" and hasattr(m, "weight"):  # transformers' transposed Linear
            return m
    return None


def _widths(model, leaf, config):
    if isinstance(leaf, nn.Linear):
        yield leaf.in_features
    if type(leaf).__name__ == "Conv1D":
        yield leaf.weight.shape[0]
    if isinstance(leaf, nn.LayerNorm):
        yield leaf.normalized_shape[-1]
    for key in ("hidden_size", "d_model", "n_embd", "dim", "embed_dim"):
        if isinstance(getattr(config, key, None), int):
            yield getattr(config, key)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            yield m.in_features
    # a module holding its own weight (an RMSNorm written by hand): the width it scales
    for p in model.parameters():
        if p.dim() == 1:
            yield p.shape[0]


def input_candidates(model, config):
    """Input tensors to try, most likely first, from the module the model starts with."""
    leaf = first_leaf(model)
    if isinstance(leaf, nn.Embedding):
        yield "ids", lambda: torch.randint(0, min(leaf.num_embeddings, 99), (2, 7))
    if isinstance(leaf, (nn.Conv2d, nn.BatchNorm2d)):
        c = leaf.in_channels if isinstance(leaf, nn.Conv2d) else leaf.num_features
        yield "image", lambda: torch.randn(2, c, 16, 16)
        yield "image32", lambda: torch.randn(2, c, 32, 32)
        size = getattr(config, "image_size", None)
        if isinstance(size, int) and size not in (16, 32):  # a patch embedding that checks the size it was built for
            yield f"image{size}", lambda: torch.randn(2, c, size, size)
    if isinstance(leaf, nn.Conv1d):
        yield "signal", lambda: torch.randn(2, leaf.in_channels, 16)
    if isinstance(leaf, nn.Conv3d):
        yield "video", lambda: torch.randn(2, leaf.in_channels, 4, 16, 16)
    seen = set()
    for d in _widths(model, leaf, config):
        if d not in seen:
            seen.add(d)
            yield f"float(2,7,{d})", (lambda d=d: torch.randn(2, 7, d))
    if config is not None and isinstance(getattr(config, "vocab_size", None), int):
        yield "ids", lambda: torch.randint(0, min(config.vocab_size, 99), (2, 7))


LABEL_KEYWORDS = ("labels", "targets")


def label_keyword(model, x):
    """The forward's labels parameter (`labels=`, nanoGPT's `targets=`) where the model is fed
    token ids `x`: a language model's loss, and a rewrite of its head and loss (the fused linear +
    cross-entropy), run only with it."""
    if not isinstance(x, torch.Tensor) or x.is_floating_point() or x.dim() != 2:
        return None
    params = inspect.signature(model.forward).parameters
    return next((k for k in LABEL_KEYWORDS if k in params and params[k].kind is not inspect.Parameter.POSITIONAL_ONLY), None)


def required_inputs(model):
    """The forward's required positional parameters; where every one is optional (an embedding
    taking `input_ids=None, inputs_embeds=None`), its first."""
    params = [p for p in inspect.signature(model.forward).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [p for p in params if p.default is inspect.Parameter.empty] or params[:1]


def _allows_none(p):
    """A parameter whose annotation admits None (`Tensor | None`, Optional[Tensor])."""
    a = p.annotation
    if a is inspect.Parameter.empty:
        return False
    if isinstance(a, str):
        return "None" in a or "Optional" in a
    return type(None) in getattr(a, "__args__", ())


def _head_dims(config, width):
    """Widths a rotary table may have: the config's head width, the hidden width over the heads,
    and the rotated part of a head where only part is rotated."""
    heads = next((getattr(config, k) for k in ("num_attention_heads", "n_head", "num_heads") if isinstance(getattr(config, k, None), int)), None)
    base = [d for d in (getattr(config, "head_dim", None), width // heads if heads else None) if isinstance(d, int) and d > 0]
    factor = getattr(config, "partial_rotary_factor", None)
    dims = base + ([int(d * factor) for d in base] if isinstance(factor, float) else [])
    return list(dict.fromkeys(d for d in dims if d > 0))


def _typed_rests(model, x, config):
    """Arguments after the first by what they are, positionally: a (cos, sin) pair for
    `position_embeddings` (transformers' attention and decoder layers take the rotary table from
    their caller, often as an optional parameter), None for a required one whose annotation allows
    it (an attention mask), the default for an optional one before it, else a tensor like the
    first. Empty when the forward has neither a rotary table nor a parameter that may be None."""
    params = [p for p in inspect.signature(model.forward).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][1:]
    names = [p.name for p in params]
    required = [i for i, p in enumerate(params) if p.default is inspect.Parameter.empty]
    end = max([*required, names.index("position_embeddings") if "position_embeddings" in names else -1]) + 1
    if x.dim() != 3 or config is None or end == 0:
        return []
    pairs = [None]
    if "position_embeddings" in names[:end]:
        b, t = x.shape[0], x.shape[1]
        pairs = [(torch.randn(b, t, d, dtype=x.dtype), torch.randn(b, t, d, dtype=x.dtype)) for d in _head_dims(config, x.shape[-1])]
    out = []
    for pair in pairs:
        rest = [pair if p.name == "position_embeddings" else p.default if p.default is not inspect.Parameter.empty
                else None if _allows_none(p) else x.clone() for p in params[:end]]
        if pair is not None or any(r is None for r, p in zip(rest, params) if p.default is inspect.Parameter.empty):
            out.append(rest)
    return out


def _accepts(model, inputs):
    with torch.no_grad():
        model.eval()
        model(*inputs)


def _describe(rest):
    def one(r):
        if isinstance(r, tuple):
            return f"({', '.join(str(tuple(t.shape)) for t in r)})"
        return str(tuple(r.shape)) if hasattr(r, "shape") else repr(r)
    return ", ".join(one(r) for r in rest)


def find_inputs(model, config, dtype):
    """The first candidate the original accepts, with a label. Further required tensor arguments get
    the same kind, or a float tensor of another size the model's layers take (a residual of
    another width)."""
    req = required_inputs(model)
    if not req:
        raise RuntimeError(f"{type(model).__name__}.forward takes no positional input")
    candidates = list(input_candidates(model, config))
    floats = [make for label, make in candidates if label.startswith("float")]
    tried = []
    for label, make in candidates:
        torch.manual_seed(3)
        x = make()
        if x.is_floating_point():
            x = x.to(dtype)
        rests = [[x.clone() if x.is_floating_point() else x for _ in req[1:]]]
        if len(req) > 1:
            for other in floats:
                y = other().to(dtype)
                if y.shape != x.shape:
                    rests.append([y.clone() for _ in req[1:]])
        rests = rests[:4] + (_typed_rests(model, x, config) if x.is_floating_point() else [])
        for rest in rests:
            inputs = [x] + rest
            try:
                _accepts(model, inputs)
                return inputs, label + ("" if rest is rests[0] else f" + {_describe(rest)}")
            except Timeout:
                raise
            except Exception as e:  # the next candidate may fit
                tried.append(f"{label}: {type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}")
    raise RuntimeError(f"no input the model accepts ({'; '.join(tried[:4]) or 'no candidate'})")
