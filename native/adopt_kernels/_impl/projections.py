"""Several linear layers reading the same input, computed as one matmul."""

import functools

import torch
import torch.nn.functional as F
from torch import nn

from .. import _dispatch
from .gelu import _EXACT_NAMES, _TANH_NAMES, gelu_kind
from .modules import is_plain, is_plain_linear
from .switches import enabled


# Below this many rows a CPU product over stacked weights streams the same weights as the
# separate products (matrix-vector products, bound by memory), so it saves nothing, while the
# checks and the outputs' copies apart cost: measured at 0.86-0.98 of the separate layers' speed
# at 1-16 rows (hidden 512 and 768, one thread, no_grad). A decoded token is one row per sequence.
STACK_MIN_ROWS = 32


def _few_rows(x):
    """A CPU input of fewer than STACK_MIN_ROWS rows: its layers run as they were written.
    ``$ADOPT_CPU_MIN_BYTES``, where set, decides instead by the input's bytes, as it does for the
    compiled kernels: 0 (verification, the tests) stacks at any size."""
    if not isinstance(x, torch.Tensor) or x.is_cuda or x.dim() == 0 or _dispatch.gpu.interpreting():
        return False
    forced = _dispatch.cpu_floor_override()
    if forced is not None:
        return x.numel() * x.element_size() < forced
    return x.numel() < STACK_MIN_ROWS * x.size(-1)


def _concatenable(layers):
    first = layers[0]
    return all(
        is_plain_linear(layer)
        and layer.in_features == first.in_features
        and layer.weight.dtype == first.weight.dtype
        and layer.weight.device == first.weight.device
        and (layer.bias is None or layer.bias.dtype == first.weight.dtype)
        for layer in layers
    )


def _stacked(layers):
    """Weight and bias of the single linear layer whose output is all of ``layers``' outputs."""
    weight = torch.cat([layer.weight for layer in layers], dim=0)
    if all(layer.bias is None for layer in layers):
        return weight, None
    bias = torch.cat(
        [
            layer.bias if layer.bias is not None else layer.weight.new_zeros(layer.out_features)
            for layer in layers
        ]
    )
    return weight, bias


# Inference runs the layers as they are written: no stacked copy of the weights is kept (or made).
# A kept copy can go stale unseen: an in-place update through ``.data`` (EMA, manual init:
# ``w.data.mul_(0.5)``) changes neither a parameter's version nor its storage, and a check that
# cannot miss one reads every weight, as stacking does. Stacking on every call measured no faster
# than the separate layers on the CPU (no_grad, two threads, paired and interleaved: 0.97-1.24x
# their time at 256-2048 rows, hidden 768, q/k/v and gate/up 768 -> 3072) and 1.0-1.23x the time
# of the kept copy. Training stacks on every call (its backward repays it).


class _StackedLinear(torch.autograd.Function):
    """Forward: one matmul over the stacked weights. Backward: each layer's parameters get the
    gradient of their own output; a layer whose output received no gradient (left unused
    downstream) gets none, as it would from separate calls, rather than zeros, which an
    optimiser would treat differently (weight decay, moments)."""

    @staticmethod
    def forward(ctx, x, layers, *params):
        # params are the layers' weights and biases, passed so that autograd tracks them
        ctx.set_materialize_grads(False)
        weight, bias = _stacked(layers)
        out = F.linear(x, weight, bias)
        # the layers' own weights are saved, not the stacked copy: the backward stacks them
        # again, so that training keeps no second copy of the weights alive between the passes
        _dispatch.save_for_backward(ctx, x, *params[0::2])
        ctx.has_bias = [b is not None for b in params[1::2]]
        widths = [layer.out_features for layer in layers]
        return tuple(part.clone(memory_format=torch.contiguous_format) for part in out.split(widths, dim=-1))

    @staticmethod
    def backward(ctx, *grads):
        x, *weights = ctx.saved_tensors
        if any(g is None for g in grads) or len({g.dtype for g in grads}) != 1:
            return _StackedLinear._backward_per_layer(ctx, x, weights, grads)
        return _StackedLinear._backward_stacked(ctx, x, weights, grads)

    @staticmethod
    def _backward_stacked(ctx, x, weights, grads):
        """Every output has a gradient: two matmuls over the stacked gradient, as the forward's
        one over the stacked weights. Per layer they would be three small matmuls for the input's
        gradient, summed, and three for the weights'; on CPU the projections' forward+backward
        measured 1.07-1.35x faster than separate layers (adopt_harness.projections_bench)."""
        # under autocast the outputs (and so their gradients) are in the autocast dtype while
        # x and the weights were saved as they are: compute in the gradient's dtype and hand
        # back each gradient in its input's dtype, as autograd would
        dtype = grads[0].dtype
        g = torch.cat(grads, dim=-1)
        g2 = g.reshape(-1, g.shape[-1])
        widths = [w.shape[0] for w in weights]
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = g.matmul(torch.cat([w.to(dtype) for w in weights], dim=0)).to(x.dtype)
        want_w = [ctx.needs_input_grad[2 + 2 * i] for i in range(len(weights))]
        want_b = [has_bias and ctx.needs_input_grad[3 + 2 * i] for i, has_bias in enumerate(ctx.has_bias)]
        grad_w = g2.t().matmul(x.reshape(-1, x.shape[-1]).to(dtype)).split(widths, dim=0) if any(want_w) else [None] * len(weights)
        grad_b = g2.sum(0).split(widths) if any(want_b) else [None] * len(weights)
        grad_params = []
        for w, gw, gb, ww, wb in zip(weights, grad_w, grad_b, want_w, want_b):
            grad_params += [gw.to(w.dtype) if ww else None, gb.to(w.dtype) if wb else None]
        return (grad_x, None, *grad_params)

    @staticmethod
    def _backward_per_layer(ctx, x, weights, grads):
        """Some output received no gradient (or the gradients differ in dtype): each layer's
        gradients from its own output."""
        grad_x = None
        grad_params = []
        for i, (g, w, has_bias) in enumerate(zip(grads, weights, ctx.has_bias)):
            if g is None:
                grad_params += [None, None]
                continue
            g2 = g.reshape(-1, g.shape[-1])
            x2 = x.reshape(-1, x.shape[-1]).to(g.dtype)
            if ctx.needs_input_grad[0]:
                gx = g.matmul(w.to(g.dtype))
                grad_x = gx if grad_x is None else grad_x + gx
            grad_w = g2.t().matmul(x2).to(w.dtype) if ctx.needs_input_grad[2 + 2 * i] else None
            grad_b = g2.sum(0).to(w.dtype) if has_bias and ctx.needs_input_grad[3 + 2 * i] else None
            grad_params += [grad_w, grad_b]
        return (None if grad_x is None else grad_x.to(x.dtype), None, *grad_params)


def _concatenated_linear(x, layers):
    """``[layer(x) for layer in layers]`` from a single matmul over stacked weights.

    The outputs are returned as separate contiguous tensors: plain slices of the shared
    result would have other strides than the originals (breaking ``.view`` calls that merge
    the last dimension) and would share one autograd version counter, so an in-place op on
    one output would invalidate the others.
    """
    params = [p for layer in layers for p in (layer.weight, layer.bias)]
    return list(_StackedLinear.apply(x, tuple(layers), *params))


def fused_qkv(x, q_proj, k_proj, v_proj):
    """Replaces ``(q_proj(x), k_proj(x), v_proj(x))`` with one matmul over concatenated weights.

    Output widths may differ (grouped-query attention) and any bias may be None. Layers that
    are not plain ``nn.Linear`` (hooks, quantised subclasses) or that disagree on dtype,
    device or input width are called one by one, and so are the layers of a CPU input of fewer
    than ``STACK_MIN_ROWS`` rows (a decoded token), where stacking saves nothing, of a GPU input,
    and of any call without autograd (inference): the weights are stacked on every call that
    records a graph, and never kept stacked, so an update of any kind (through ``.data`` too)
    is always seen.
    """
    layers = (q_proj, k_proj, v_proj)
    # on a GPU the outputs' copies apart (and, in training, the stacking on every step) cost
    # more launches than the two matmuls saved: measured slower on an H100 (bench:models,
    # forward 1.07-1.24x with stacked weights reused), so the layers run as they were; and so
    # they do in inference (above: no stacked copy is kept, and stacking per call saves nothing)
    if not torch.is_grad_enabled() or x.device.type != "cpu" or _few_rows(x) or not (enabled("fused_qkv") and _concatenable(layers)):
        return tuple(layer(x) for layer in layers)
    return tuple(_concatenated_linear(x, layers))


# Activations known to leave their input untouched: only these may receive a slice of the
# shared gate/up matmul (an in-place activation on a slice is an autograd error).
_OUT_OF_PLACE_MODULES = (
    nn.SiLU,
    nn.GELU,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Identity,
)
_OUT_OF_PLACE_CLASS_NAMES = frozenset(
    {
        "SiLUActivation",
        "GELUActivation",
        "NewGELUActivation",
        "FastGELUActivation",
        "QuickGELUActivation",
        "PytorchGELUTanh",
        "GELUTanh",
        "GELUPytorchTanh",
        "ReLUSquaredActivation",
        "MishActivation",
    }
)
_OUT_OF_PLACE_FUNCTIONS = tuple(
    f
    for f in (
        F.silu,
        F.gelu,
        F.relu,
        F.mish,
        torch.sigmoid,
        torch.tanh,
        torch.relu,
        getattr(torch._C._nn, "gelu", None),
        getattr(torch._C._nn, "silu", None),
    )
    if f is not None
)


def _out_of_place(act):
    if isinstance(act, functools.partial):
        # an activation given its settings (``partial(F.gelu, approximate="tanh")``): out of
        # place as its function is, unless a setting asks for in place
        settings = set(act.keywords) <= {"approximate", "inplace"} and not act.keywords.get("inplace", False)
        return not act.args and settings and _out_of_place(act.func)
    if isinstance(act, _OUT_OF_PLACE_MODULES):
        return not getattr(act, "inplace", False) and "forward" not in act.__dict__
    if isinstance(act, nn.Module):
        return type(act).__name__ in _OUT_OF_PLACE_CLASS_NAMES and "forward" not in act.__dict__
    return any(act is f for f in _OUT_OF_PLACE_FUNCTIONS)


_SILU_FUNCTIONS = tuple(f for f in (F.silu, getattr(torch._C._nn, "silu", None)) if f is not None)
_GELU_KINDS = {"none": "gelu", "tanh": "gelu_tanh"}
# the GELU classes gelu_kind knows by name (it probes other GELU-named classes numerically)
_KNOWN_GELU_CLASSES = _EXACT_NAMES | _TANH_NAMES


def _compiled_activation(act):
    """'silu', 'gelu' or 'gelu_tanh' when the compiled gated kernel computes exactly ``act``;
    None for anything else (hooks, replaced forwards, other activations)."""
    if isinstance(act, str):
        return None
    if isinstance(act, nn.Module):
        if not is_plain(act, type(act)):
            return None
        if (isinstance(act, nn.SiLU) and type(act).forward is nn.SiLU.forward) or type(act).__name__ == "SiLUActivation":
            return "silu"
        # GELU subclasses with their own forward and unknown GELU-named classes would need
        # gelu_kind's numerical probe on every call: they keep the original path
        if isinstance(act, nn.GELU) and type(act).forward is not nn.GELU.forward:
            return None
        if not isinstance(act, nn.GELU) and type(act).__name__ not in _KNOWN_GELU_CLASSES:
            return None
    elif any(act is f for f in _SILU_FUNCTIONS):
        return "silu"
    return _GELU_KINDS.get(gelu_kind(act))


def _compiled_gated(kind, gate, up=None):
    """``act(gate) * up`` from the compiled kernel (``up`` None: the halves of ``gate``), or None."""
    # three arrays of the gate's size move; a stacked gate holds the up half as well
    if _dispatch.small("gated_act", 3 * gate.numel() * gate.element_size() // (1 if up is not None else 2), gate):
        return None
    from ..kernels import gated_act as kernel

    if up is None:
        return kernel.gated_act_stacked(gate, kind)
    return kernel.gated_act(gate, up, kind)


def gated_mlp(x, gate_proj, up_proj, down_proj, act):
    """Replaces ``down_proj(act(gate_proj(x)) * up_proj(x))`` (LLaMA/Mistral-style MLP).

    ``gate_proj`` and ``up_proj`` run as one matmul when they are plain ``nn.Linear`` layers
    of matching dtype and device and ``act`` is known not to modify its input, in a call that
    records a graph (the weights are stacked on every such call, never kept stacked) whose
    input is not a CPU one of fewer than ``STACK_MIN_ROWS`` rows. When ``act`` is
    a plain SiLU or GELU (exact or tanh), on CPU in float32/bfloat16 or on CUDA (Triton, also
    float16), ``act(gate) * up`` is one pass over the matmul's output (and its backward one
    pass writing the gradient of it); any other ``act`` is called as given. ``down_proj`` is
    always called as given.
    """
    on = enabled("gated_mlp")
    # inference keeps no stacked copy of the weights (see above): the projections run apart
    stack = torch.is_grad_enabled() and not _few_rows(x)
    if on and stack and _concatenable((gate_proj, up_proj)) and _out_of_place(act):
        weight, bias = _stacked((gate_proj, up_proj))
        h = F.linear(x, weight, bias)
        kind = _compiled_activation(act)
        if kind is not None and gate_proj.out_features == up_proj.out_features:
            out = _compiled_gated(kind, h)
            if out is not None:
                return down_proj(out)
        gate, up = h.split([gate_proj.out_features, up_proj.out_features], dim=-1)
    else:
        gate, up = gate_proj(x), up_proj(x)
        kind = _compiled_activation(act) if on else None
        out = _compiled_gated(kind, gate, up) if kind is not None else None
        if out is not None:
            return down_proj(out)
    return down_proj(act(gate) * up)


def _stacked_base(gate, up):
    """The ``(..., 2F)`` tensor whose first and second halves ``gate`` and ``up`` are (the two
    results of ``h.chunk(2, dim=-1)``), or None: the compiled kernel then reads both halves in
    place and returns the gradient of that tensor whole."""
    base = gate._base
    if base is None or up._base is not base or not base.is_contiguous() or gate.dim() != base.dim():
        return None
    f = gate.size(-1)
    if base.shape[:-1] != gate.shape[:-1] or base.size(-1) != 2 * f or up.shape != gate.shape:
        return None
    if gate.data_ptr() != base.data_ptr() or up.data_ptr() != base.data_ptr() + f * base.element_size():
        return None
    return base


def gated_act(gate, up, act):
    """Replaces ``act(gate) * up`` where ``gate`` and ``up`` come from one projection split in
    two (``gate, up = proj(x).chunk(2, dim=-1)``: GEGLU, SwiGLU, phi-style ``gate_up_proj``,
    MoE experts' ``F.linear(x, w[i]).chunk(2, dim=-1)``).

    When ``act`` is a plain SiLU or GELU (exact or tanh), on CPU in float32/bfloat16 or on
    CUDA, the product is one compiled (CPU) or Triton (CUDA) pass; the halves of a contiguous
    ``chunk`` are read in place when the gate is the first half. Anything else runs
    ``act(gate) * up`` as given.
    """
    kind = _compiled_activation(act) if enabled("gated_mlp") else None
    if kind is not None:
        base = _stacked_base(gate, up)
        out = _compiled_gated(kind, base) if base is not None else _compiled_gated(kind, gate, up)
        if out is not None:
            return out
    return act(gate) * up
