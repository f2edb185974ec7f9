"""Checks that a module may be bypassed by a fused formulation."""

import functools
import importlib

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
    return runs_its_forward(mod)


def runs_its_forward(mod):
    """True when calling ``mod`` runs its class's ``forward`` and nothing else: no hooks of its
    own (forward, forward-pre, backward), no global module hooks, no forward set on the
    instance. A rewrite that computes what a module computes without calling it (an activation
    or a dropout read off the module) may stand in for it only then."""
    if "forward" in mod.__dict__:
        return False
    for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
        if getattr(mod, name, None):
            return False
    return not _global_hooks_present()


def is_plain_linear(mod):
    return is_plain(mod, nn.Linear)


def is_plain_conv1d(mod):
    """transformers' ``Conv1D`` (GPT-2's linear layer, weight stored (in, out), computing
    ``addmm(bias, x, weight)``), exactly that class and nothing in the way. Only a module whose
    class comes from transformers is looked at, so nothing is imported for any other."""
    if type(mod).__name__ != "Conv1D" or type(mod).__module__ != "transformers.pytorch_utils":
        return False
    cls = _class_named("transformers.pytorch_utils.Conv1D")
    return cls is not None and is_plain(mod, cls) and getattr(mod, "bias", None) is not None and mod.weight.dim() == 2


@functools.lru_cache(maxsize=None)
def _class_named(qualname):
    """The class a dotted name refers to (``torch.nn.BatchNorm2d``), or None when it cannot be
    imported: the longest importable module prefix, then attributes."""
    parts = qualname.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return None
        return obj if isinstance(obj, type) else None
    return None


def built_as(mod, qualname):
    """True when ``mod`` was built by exactly the class ``qualname`` names (or is, for a class
    of the rewritten file itself, whose module name depends on how that file is imported).

    A layer class passed as a parameter (``norm_layer=nn.BatchNorm2d``) may be replaced by the
    caller; a rewrite that relies on the default checks the class actually built, so a
    subclass or any other layer runs the original code.
    """
    cls = qualname if isinstance(qualname, type) else _class_named(qualname)
    return cls is not None and type(mod) is cls


def built_with(mod, qualname, *args, as_set=(), **kwargs):
    """True when calling ``mod`` computes what the constructor call the rewrite read,
    ``qualname(*args, **kwargs)``, builds: that class's own ``forward`` (no subclass overriding
    it, no hooks) and every setting as that call leaves it.

    A rewrite that computes a module's work without calling it (an attention's ``nn.Softmax``,
    a loss module) bakes in what ``__init__`` gave it. A user may change that afterwards: set
    ``attend.dim = 1`` or ``loss_fct.ignore_index = 0``, give the loss class weights, or put
    another module in its place (``model.attend = RecordingSoftmax()``). Any of these makes
    this False, so the original code runs. The settings compared are the instance's plain
    attributes (its ``__dict__`` less ``training`` and private names) and which of its
    parameters and buffers are None, against an instance built from the same arguments.
    ``as_set`` names keyword arguments whose values ``__init__`` computed from its own scope
    (``ignore_index=config.pad_token_id``): they are taken as the module holds them now, and the
    code the rewrite runs reads them off the module too.
    """
    cls = _class_named(qualname) if isinstance(qualname, str) else qualname
    if cls is None or _shadows_torch(cls) or not is_plain(mod, cls):
        return False
    for name in as_set:
        if name not in vars(mod):
            return False
        kwargs[name] = vars(mod)[name]
    try:
        want = _settings_built(cls, args, tuple(sorted(kwargs.items())))
    except TypeError:  # unhashable arguments: nothing to compare against
        return False
    return want is not None and _same_settings(_settings(mod), want)


@functools.lru_cache(maxsize=256)
def _shadows_torch(cls):
    """A project's class named as a ``torch.nn`` class but not derived from it (a ``Softmax``
    with a learned temperature): a rule's pattern names torch's class, and matched this one by
    its name alone, so the rewrite does not stand in for it."""
    same = getattr(nn, cls.__name__, None)
    return isinstance(same, type) and same is not cls and not issubclass(cls, same)


@functools.lru_cache(maxsize=256)
def _settings_built(cls, args, kwargs):
    try:
        return _settings(cls(*args, **dict(kwargs)))
    except Exception:  # the constructor refuses these arguments here (another torch version)
        return None


def _settings(mod):
    plain = {k: v for k, v in vars(mod).items() if not k.startswith("_") and k != "training"}
    slots = {f"parameter {k}": v is None for k, v in mod._parameters.items()}
    slots.update({f"buffer {k}": v is None for k, v in mod._buffers.items()})
    return plain, slots, tuple(mod._modules)


_PLAIN = (bool, int, float, str, type(None))


def _same_settings(have, want):
    (plain, slots, modules), (want_plain, want_slots, want_modules) = have, want
    if slots != want_slots or modules != want_modules or plain.keys() != want_plain.keys():
        return False
    return all(_same_value(plain[k], want_plain[k]) for k in plain)


def _same_value(a, b):
    # a tensor or any other object set on the module is not a setting that can be compared
    # with a fresh instance's: the rewrite does not stand in for it
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return isinstance(a, _PLAIN) and type(a) is type(b) and a == b
