"""The one input finder: what to feed a model, for every entry point.

- `shaped`: the caller gives the input shape (`rules test`, `adopt verify --shape`).
- `find_inputs`: a plain nn.Module; candidates from the module the model starts with (ids for an
  embedding, images for a convolution, features for a Linear), the first the original accepts.
- `for_transformers`: a transformers model class, from its forward signature and config
  (hf_inputs.make_inputs), at tiny sizes for verification or at benchmark sizes for timing.
"""
import ast
import inspect
import itertools
import textwrap

import torch
from torch import nn

from adopt_harness.deadline import Timeout
from adopt_harness.hf_inputs import NoInputs, make_inputs
from adopt_harness.text import first_line

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


# ---------------------------------------------------------------- what each forward input feeds

# Layers whose weights say what they take, by layout: channels first (images, signals, videos),
# features last (a Linear or a norm over the last dimension), or ids (an embedding).
_IMAGE = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.InstanceNorm2d)
_SIGNAL = (nn.Conv1d, nn.ConvTranspose1d, nn.InstanceNorm1d)
_VIDEO = (nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d, nn.InstanceNorm3d)
_INPUT_LAYERS = (nn.Embedding, nn.Linear, nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d) + _IMAGE + _SIGNAL + _VIDEO


def _is_input_layer(m):
    return isinstance(m, _INPUT_LAYERS) or (type(m).__name__ == "Conv1D" and hasattr(m, "weight"))


def _channels(layer):
    for key in ("in_channels", "num_features", "num_channels"):
        if isinstance(getattr(layer, key, None), int):
            return getattr(layer, key)
    return None


# calls that hand a tensor on with its layout (activations, dropout, casts): the layer after them
# still says what the input is
_PASS_ON = frozenset({
    "silu", "gelu", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "mish", "sigmoid", "tanh", "hardswish",
    "hardsigmoid", "softplus", "dropout", "contiguous", "float", "double", "half", "to", "type_as", "clone", "detach"})
_MAX_DEPTH = 4


def _source_tree(fn):
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(fn))))
    except (OSError, TypeError, SyntaxError, ValueError):  # built in, or made at run time
        return None


def _positional(fn, bound):
    """The names of `fn`'s positional parameters, without `self` where it is a method."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return names[1:] if bound else names


def _attribute_of(owner, node):
    """What `self.a.b` or `self.a[0]` in `owner`'s code is, or None."""
    if isinstance(node, ast.Name):
        return owner if node.id == "self" else None
    if isinstance(node, ast.Attribute):
        base = _attribute_of(owner, node.value)
        try:
            return getattr(base, node.attr, None) if base is not None else None
        except Exception:  # a property that cannot run before the forward does
            return None
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int):
        base = _attribute_of(owner, node.value)
        try:
            return base[node.slice.value] if isinstance(base, (nn.Sequential, nn.ModuleList)) else None
        except IndexError:
            return None
    return None


class _Feeds:
    """Reads the source of a forward (or a method or function it calls) for the first call a
    parameter is handed to, following it into submodules: `self.temb_proj(F.silu(temb))` says temb
    is what a Linear takes, `self.res(x, temb)` what ResBlock's forward takes as its first input."""

    def __init__(self, owner, fn, name, depth):
        self.owner, self.fn, self.depth = owner, fn, depth
        self.derived = {name}
        self.loops = {}  # loop variable -> the module list it walks

    def _free(self, m):
        # a module without weights (an activation, dropout, pooling) hands on its input's layout
        return isinstance(m, nn.Module) and next(m.parameters(), None) is None and not isinstance(m, (nn.ModuleList, nn.Sequential))

    def passes(self, node):
        """Whether `node` is the parameter, or it handed on unchanged in layout."""
        if isinstance(node, ast.Name):
            return node.id in self.derived
        if not isinstance(node, ast.Call):
            return False
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        if name in _PASS_ON:
            if isinstance(f, ast.Attribute) and self.passes(f.value):
                return True  # x.float()
            return bool(node.args) and self.passes(node.args[0])  # F.silu(x)
        return self._free(self._module(f)) and bool(node.args) and self.passes(node.args[0])

    def _module(self, f):
        if isinstance(f, ast.Name) and f.id in self.loops:
            return self.loops[f.id]
        return _attribute_of(self.owner, f)

    def callee(self, call, index):
        """What calling `call.func` with the parameter at position `index` says about it."""
        target = self._module(call.func)
        if isinstance(target, nn.Module):
            return _module_feeds(target, index, self.depth + 1)
        if inspect.ismethod(target) and isinstance(target.__self__, nn.Module) and not target.__func__.__module__.startswith("torch"):  # self._helper(x)
            names = _positional(target.__func__, bound=True)
            return _feeds(target.__self__, target.__func__, names[index], self.depth + 1) if index < len(names) else None
        if isinstance(call.func, ast.Name):
            f = getattr(self.fn, "__globals__", {}).get(call.func.id)
            # a function of the model's own code (a sinusoidal timestep embedding): not torch's
            if inspect.isfunction(f) and not (f.__module__ or "").startswith("torch"):
                return ("function", f)
        return None

    def expression(self, node):
        """The first call in `node`, in evaluation order, that takes the parameter."""
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Lambda, ast.FunctionDef)):
                continue
            found = self.expression(child)
            if found:
                return found
        if isinstance(node, ast.Call) and not self.passes(node):
            index = next((i for i, a in enumerate(node.args) if self.passes(a)), None)
            if index is not None:
                return self.callee(node, index) or "unknown"
        return None

    def statements(self, body):
        for stmt in body:
            if isinstance(stmt, ast.For) and isinstance(stmt.target, (ast.Name, ast.Tuple)):
                it, target = stmt.iter, stmt.target
                if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "enumerate" and it.args:
                    it = it.args[0]
                    target = target.elts[-1] if isinstance(target, ast.Tuple) and len(target.elts) == 2 else None
                seq = _attribute_of(self.owner, it)
                if isinstance(target, ast.Name) and isinstance(seq, (nn.ModuleList, nn.Sequential)) and len(seq):
                    self.loops[target.id] = seq[0]
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and stmt is not self.top:
                continue
            for field, value in ast.iter_fields(stmt):
                if field in ("targets", "target"):
                    continue
                parts = value if isinstance(value, list) else [value]
                stmts = [p for p in parts if isinstance(p, ast.stmt)]
                found = self.statements(stmts) if stmts else None
                for p in parts:
                    if found:
                        break
                    if isinstance(p, ast.AST) and not isinstance(p, ast.stmt):
                        found = self.expression(p)
                if found:
                    return found
            self._bind(stmt)
        return None

    def _bind(self, stmt):
        """`h = F.silu(x)` makes h the parameter too; `x = x.flatten(2)` makes x something else."""
        if isinstance(stmt, ast.Assign):
            names = [t.id for t in stmt.targets if isinstance(t, ast.Name)]
            for n in names:
                (self.derived.add if self.passes(stmt.value) else self.derived.discard)(n)

    def run(self):
        tree = _source_tree(self.fn)
        if tree is None or not tree.body or not isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
            return None
        self.top = tree.body[0]
        found = self.statements(self.top.body)
        return None if found == "unknown" else found


def _feeds(owner, fn, name, depth=0):
    """("layer", module) for the layer with weights the parameter `name` of `fn` (a method of
    `owner`) is first handed to, ("function", f) for a function of the model's own code, or None
    where its source does not say."""
    if depth > _MAX_DEPTH:
        return None
    return _Feeds(owner, fn, name, depth).run()


def _module_feeds(m, index, depth):
    if _is_input_layer(m):
        return ("layer", m) if index == 0 else None
    if isinstance(m, nn.Sequential):
        for child in m:
            if next(child.parameters(), None) is not None:
                return _module_feeds(child, index, depth)
        return None
    forward = getattr(type(m), "forward", None)
    if forward is None or depth > _MAX_DEPTH or type(m).__module__.startswith("torch."):
        return None
    names = _positional(forward, bound=True)
    return _feeds(m, forward, names[index], depth) if index < len(names) else None


def feeds(model, name):
    """What the forward's parameter `name` is first handed to (see _feeds); None where unknown."""
    try:
        return _feeds(model, type(model).forward, name)
    except RecursionError:
        return None


def first_layer(model):
    """The layer that says what the model's first input is: the one its forward hands that input
    to, else the first such layer registered."""
    req = required_inputs(model)
    found = feeds(model, req[0].name) if req else None
    if found and found[0] == "layer":
        return found[1]
    return next((m for m in model.modules() if _is_input_layer(m)), None)


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


# token counts tried after 7 where 7 does not fit: squares, for a layer that folds tokens into a
# window or a grid of patches (16 = 4 x 4, 64 = 8 x 8)
_SQUARE_TOKENS = (16, 64)


def input_candidates(model, config):
    """Input tensors to try, most likely first, from the layer the model's input is handed to."""
    leaf = first_layer(model)
    c = _channels(leaf)
    if isinstance(leaf, nn.Embedding):
        yield "ids", lambda: torch.randint(0, min(leaf.num_embeddings, 99), (2, 7))
    if isinstance(leaf, _IMAGE + (nn.GroupNorm,)):
        yield "image", lambda: torch.randn(2, c, 16, 16)
        yield "image32", lambda: torch.randn(2, c, 32, 32)
        size = getattr(config, "image_size", None)
        if isinstance(size, int) and size not in (16, 32):  # a patch embedding that checks the size it was built for
            yield f"image{size}", lambda: torch.randn(2, c, size, size)
    if isinstance(leaf, nn.BatchNorm1d):
        yield f"float(2,{c})", lambda: torch.randn(2, c)
    if isinstance(leaf, _SIGNAL + (nn.GroupNorm, nn.BatchNorm1d)):
        yield "signal", lambda: torch.randn(2, c, 16)
    if isinstance(leaf, _VIDEO):
        yield "video", lambda: torch.randn(2, c, 4, 16, 16)
    if isinstance(leaf, nn.LayerNorm) and len(leaf.normalized_shape) > 1:
        shape = tuple(leaf.normalized_shape)
        yield f"float(2,{','.join(map(str, shape))})", lambda: torch.randn(2, *shape)
    seen = []
    for d in _widths(model, leaf, config):
        if d not in seen:
            seen.append(d)
            yield f"float(2,7,{d})", (lambda d=d: torch.randn(2, 7, d))
    if isinstance(leaf, nn.LayerNorm) and len(leaf.normalized_shape) == 1:
        d = leaf.normalized_shape[0]  # a norm over the channels of a channels-last image (ConvNeXt)
        yield f"image(2,8,8,{d})", lambda: torch.randn(2, 8, 8, d)
    for t in _SQUARE_TOKENS:
        for d in seen[:2]:
            yield f"float(2,{t},{d})", (lambda d=d, t=t: torch.randn(2, t, d))
    if config is not None and isinstance(getattr(config, "vocab_size", None), int):
        yield "ids", lambda: torch.randint(0, min(config.vocab_size, 99), (2, 7))


def _like(leaf, x):
    """Tensors of the layout `leaf` takes, sized to go with the first input `x` (its batch, and
    its tokens or pixels where it has them): a further input of a forward."""
    b = x.shape[0]
    c = _channels(leaf)
    if isinstance(leaf, nn.Embedding):
        top = min(leaf.num_embeddings, 99)
        shapes = [(b, x.shape[1]), (b,)] if x.dim() == 2 and not x.is_floating_point() else [(b,), (b, 7)]
        return [torch.randint(0, top, s) for s in shapes]
    if isinstance(leaf, (nn.Linear, nn.LayerNorm)) or type(leaf).__name__ == "Conv1D":
        d = leaf.in_features if isinstance(leaf, nn.Linear) else leaf.normalized_shape[-1] if isinstance(leaf, nn.LayerNorm) else leaf.weight.shape[0]
        shapes = [(b, x.shape[1], d), (b, d)] if x.dim() == 3 else [(b, d), (b, 7, d)]
        return [torch.randn(*s) for s in shapes]
    if isinstance(leaf, _IMAGE + (nn.GroupNorm,)):
        hw = tuple(x.shape[2:]) if x.dim() == 4 else (16, 16)
        return [torch.randn(b, c, *hw)] + ([torch.randn(b, c, 16)] if isinstance(leaf, nn.GroupNorm) else [])
    if isinstance(leaf, nn.BatchNorm1d):
        return [torch.randn(b, c), torch.randn(b, c, 16)]
    if isinstance(leaf, _SIGNAL):
        return [torch.randn(b, c, x.shape[2] if x.dim() == 3 else 16)]
    if isinstance(leaf, _VIDEO):
        return [torch.randn(b, c, *(tuple(x.shape[2:]) if x.dim() == 5 else (4, 16, 16)))]
    return []


# combinations of further inputs tried per first input
_MAX_COMBINATIONS = 6


def _further_inputs(model, req, x):
    """Lists of further inputs to try with `x`, from what each further parameter is handed to: a
    layer's own layout, integer timesteps (and float ones) for a function of the model's own code
    (a sinusoidal embedding), then a copy of `x`. Empty where no parameter says anything."""
    options, said = [], False
    for p in req[1:]:
        found = feeds(model, p.name)
        these = []
        if found and found[0] == "layer":
            these = _like(found[1], x)
        elif found and found[0] == "function":
            these = [torch.randint(0, 1000, (x.shape[0],)), torch.rand(x.shape[0]) * 1000]
        said = said or bool(these)
        these = [t.to(x.dtype) if t.is_floating_point() and x.is_floating_point() else t for t in these]
        options.append(these + [x.clone() if x.is_floating_point() else x])
    if not said:
        return []
    return [list(c) for c in itertools.islice(itertools.product(*options), _MAX_COMBINATIONS)]


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


def _shapes(rest):
    return [(tuple(t.shape), t.dtype) if isinstance(t, torch.Tensor) else repr(t) for t in rest]


# tries named in the reason when nothing fits, each clipped to its first line
_TRIES_SHOWN = 4


def find_inputs(model, config, dtype, shape=None):
    """The first candidate the original accepts, with a label. Further required tensor arguments get
    what the layer each is handed to takes (a timestep projection's (batch, width)), integer
    timesteps where a function of the model's own code takes them, the same kind as the first, or
    a float tensor of another size the model's layers take (a residual of another width). With
    `shape` (the caller's), the first input is a float tensor of that shape and nothing else."""
    req = required_inputs(model)
    if not req:
        raise RuntimeError(f"{type(model).__name__}.forward takes no positional input")
    if shape:
        candidates = [(f"shape({','.join(map(str, shape))})", lambda: torch.randn(*shape))]
    else:
        candidates = list(input_candidates(model, config))
    floats = [make for label, make in candidates if label.startswith("float")]
    tried = []
    for label, make in candidates:
        torch.manual_seed(3)
        x = make()
        if x.is_floating_point():
            x = x.to(dtype)
        plain = [x.clone() if x.is_floating_point() else x for _ in req[1:]]
        rests = [r for r in (_further_inputs(model, req, x) if len(req) > 1 else []) if _shapes(r) != _shapes(plain)] + [plain]
        if len(req) > 1:
            others = []
            for other in floats:
                y = other().to(dtype)
                if y.shape != x.shape:
                    others.append([y.clone() for _ in req[1:]])
            rests += others[:3]
        rests += _typed_rests(model, x, config) if x.is_floating_point() else []
        for rest in rests:
            inputs = [x] + rest
            described = label + ("" if rest is plain else f" + {_describe(rest)}")
            try:
                _accepts(model, inputs)
                return inputs, described
            except Timeout:
                raise
            except Exception as e:  # the next candidate may fit
                tried.append((described, first_line(e, 120)))
    raise RuntimeError(f"no input the model accepts ({_tried(tried)})")


def _tried(tried):
    """The first few tries and what each raised, one per distinct error."""
    shown, seen = [], set()
    for described, error in tried:
        if error not in seen and len(shown) < _TRIES_SHOWN:
            seen.add(error)
            shown.append(f"{described}: {error}")
    more = len(tried) - len(shown)
    return "; ".join(shown) + (f"; {more} more tried" if more > 0 else "") if shown else "no candidate"
