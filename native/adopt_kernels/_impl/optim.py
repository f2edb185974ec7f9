import inspect

import torch

from .switches import enabled


def _accepts(optimizer_cls, name):
    try:
        return name in inspect.signature(optimizer_cls.__init__).parameters
    except (TypeError, ValueError):
        return False


def _tensors(params):
    """The tensors in ``params``, or None when they cannot be seen without consuming them.

    A one-shot iterator (``model.parameters()``) may be the very object handed to the
    optimizer, so it is never iterated here.
    """
    if isinstance(params, torch.Tensor):
        return [params]
    if not isinstance(params, (list, tuple)):
        return None
    tensors = []
    for item in params:
        if isinstance(item, dict):
            group = item.get("params")
            if isinstance(group, torch.Tensor):
                tensors.append(group)
            elif isinstance(group, (list, tuple)):
                tensors.extend(group)
            else:
                return None
        else:
            tensors.append(item)
    return tensors


def optimizer_kwargs(optimizer_cls, params):
    """Extra keyword arguments for a ``torch.optim.Adam``/``AdamW`` constructor.

    ``{'fused': True}`` when the class takes ``fused`` and every parameter is a floating-point
    CUDA tensor; else ``{'foreach': True}`` when the class takes ``foreach`` (it works on any
    device); else ``{}``. Other optimizer classes get ``{}``.
    """
    if not enabled("optimizer_kwargs"):
        return {}
    if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, (torch.optim.Adam, torch.optim.AdamW))):
        return {}
    tensors = _tensors(params)
    if (
        tensors
        and _accepts(optimizer_cls, "fused")
        and all(isinstance(t, torch.Tensor) and t.is_cuda and t.is_floating_point() for t in tensors)
    ):
        return {"fused": True}
    if _accepts(optimizer_cls, "foreach"):
        return {"foreach": True}
    return {}
