"""Run-time switches shared by every guard."""

import functools

import torch

from .. import environ

ENV_VAR = "ADOPT_DISABLE"


def _recorders():
    """The checks, present in this torch, that say a graph is being recorded rather than run."""
    found = [torch.jit.is_tracing, torch.onnx.is_in_onnx_export]
    try:
        from torch.fx._symbolic_trace import is_fx_tracing
        found.append(is_fx_tracing)
    except ImportError:
        pass
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None) or getattr(getattr(torch, "_dynamo", None), "is_compiling", None)
    if compiling is not None:
        found.append(compiling)
    return tuple(found)


_RECORDERS = _recorders()


def recording():
    """True while torch records a graph instead of running the code: ``torch.jit.trace``,
    ``torch.onnx.export``, ``torch.fx.symbolic_trace``, ``torch.compile``. The compiled kernels
    write their results through pointers that none of these sees (a traced graph would keep the
    product and lose the fused bias and GELU), and the guards' checks cannot run on FX's proxies,
    so every guard is False then: the original code runs, and is what the graph records."""
    return any(check() for check in _RECORDERS)


@functools.lru_cache(maxsize=16)
def _disabled_names(raw):
    return frozenset(part.strip().lower() for part in raw.split(",") if part.strip())


def enabled(name):
    """False when ``$ADOPT_DISABLE`` (comma-separated) names ``name`` or ``all``, and while torch
    records a graph (:func:`recording`).

    The variable is read on every call, so a process can switch kernels off without a restart
    and tests can flip it with ``monkeypatch.setenv``. (The rewritten code calls this: its
    signature is part of the package's interface.)
    """
    return all_enabled(name)


def all_enabled(*names):
    """:func:`enabled` for several names at once, the variable read once."""
    if recording():
        return False
    raw = environ.get(ENV_VAR)
    if not raw:
        return True
    disabled = _disabled_names(raw)
    return not ("all" in disabled or any(name.lower() in disabled for name in names))
