"""Triton kernels for CUDA devices, one module per kernel, named as the kernel is.

Nothing here imports Triton until a CUDA tensor reaches a kernel: the registry keeps each
kernel's GPU schedule space as data (``Kernel.cuda_space``), and :func:`module` imports
``adopt_kernels.gpu.<name>`` on first use. Where Triton or CUDA is missing the caller runs the
reference, and the reason is said once.

Each module defines, for every API function of its kernel, a function of the same name that
takes the same arguments plus ``schedule`` (a dict legal in ``cuda_space``), and ``TEST_WORKLOADS``:
small odd shapes the kernel tests run. ``$ADOPT_TRITON_INTERPRET=1`` (with ``$TRITON_INTERPRET=1``)
routes CPU tensors through these modules under Triton's interpreter, so the kernels are checked
on machines without a GPU.
"""

import importlib
import os

from .. import environ

_modules = {}
_unavailable = {}


def interpreting():
    """True when CPU tensors go through the Triton kernels in Triton's interpreter (tests)."""
    return environ.get("ADOPT_TRITON_INTERPRET") == "1" and environ.get("TRITON_INTERPRET") == "1"


def triton_state():
    """None when Triton kernels can run here, else why not."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Triton is not installed"
    if interpreting():
        return None
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device"
    if torch.cuda.get_device_capability() < (8, 0):
        return "the GPU is older than sm_80 (the kernels use bfloat16 and TF32 instructions)"
    return None


def source_path(kernel):
    """The file of ``kernel``'s Triton module (read for its template hash without importing it)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{kernel.name}.py")


def module(kernel):
    """The Triton module of ``kernel``; raises ImportError saying why it cannot be had."""
    if kernel.name in _modules:
        return _modules[kernel.name]
    if kernel.name in _unavailable:
        raise ImportError(_unavailable[kernel.name])
    if kernel.cuda_space is None:
        raise ImportError(f"{kernel.name} has no Triton kernel")
    why = triton_state()
    if why is not None:
        _unavailable[kernel.name] = why
        raise ImportError(why)
    if interpreting():
        _interpreter_on_torch1()
    mod = importlib.import_module(f"{__name__}.{kernel.name}")
    _modules[kernel.name] = mod
    return mod


def give_up(kernel, why):
    """Switch ``kernel``'s Triton module off for this process (it failed to build or launch)."""
    _modules.pop(kernel.name, None)
    _unavailable[kernel.name] = why


def _interpreter_on_torch1():
    """Triton's interpreter reads a tensor's ``untyped_storage()``, which torch 1.x spells
    ``storage().untyped()``: lend it that name (only where it is missing, only when interpreting)."""
    import torch

    if not hasattr(torch.Tensor, "untyped_storage"):
        torch.Tensor.untyped_storage = lambda self: self.storage().untyped()


def first_order(switch):
    """Decorator of a Triton Function's ``backward``: its gradients come from Triton kernels,
    which autograd cannot differentiate again, so a backward run with ``create_graph=True`` (a
    gradient penalty, a Hessian-vector product) is refused with the remedy instead of giving
    second-order gradients of zero (the CPU Functions' ``differentiable_backward``, with a
    refusal for its second order)."""
    from ..kernels._common import differentiable_backward

    def refuse(_ctx, *_grads):
        raise RuntimeError(
            f"adopt_kernels: the Triton kernel behind {switch!r} has no second-order gradients "
            f"(a backward with create_graph=True); ADOPT_DISABLE={switch} runs the torch code, which has them"
        )

    return differentiable_backward(refuse)
