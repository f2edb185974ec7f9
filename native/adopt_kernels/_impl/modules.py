"""Checks that a module may be bypassed by a fused formulation."""

from torch import nn
from torch.nn.modules import module as _module


def _global_hooks_present():
    return any(
        getattr(_module, name, None)
        for name in (
            "_global_forward_hooks",
            "_global_forward_pre_hooks",
            "_global_backward_hooks",
            "_global_backward_pre_hooks",
        )
    )


def is_plain(mod, cls):
    """True when calling ``mod`` is exactly ``cls.forward`` on its own parameters.

    A fused kernel reads the parameters and never calls the module, so it may stand in only
    when nothing else would have run: no hooks (weight_norm, accelerate's offloading), no
    forward replaced on the instance, no subclass with its own forward (quantised layers).
    """
    if not isinstance(mod, cls) or type(mod).forward is not cls.forward:
        return False
    if "forward" in mod.__dict__:
        return False
    for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
        if getattr(mod, name, None):
            return False
    return not _global_hooks_present()


def is_plain_linear(mod):
    return is_plain(mod, nn.Linear)
