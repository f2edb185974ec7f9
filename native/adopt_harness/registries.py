"""Import-time registries set aside while a rewritten file is imported beside its original.

Many packages register a module's functions or classes by name when it is imported (torchvision's
`register_model` into BUILTIN_MODELS, timm's model entrypoints, a base class's `__init_subclass__`
table) and refuse a second entry under the same name. A rewrite loaded beside its original repeats
every registration, so it would fail to import for a reason that says nothing about the rewrite.

While the rewrite is imported, each registry (a dict held by a loaded module, at module level or as
an attribute of a module-level object) that holds objects the original module defines has those
entries taken out; afterwards those entries are put back and what the rewrite itself registered
(objects its module defines) is taken out again, so the original stays what the package sees and
the rewrite's own registrations leave no trace. Entries that other code added meanwhile stay: the
rewrite's import may be the first to import another module of the package, whose registrations
the package keeps as it would after any import. The rewritten classes themselves are taken from
the rewritten module, built and compared as any others.
"""
import contextlib
import inspect
import sys
import types


def _defined_in(module):
    """ids of the functions and classes `module` defines (the values a registry would hold)."""
    name = module.__name__
    return {id(o) for o in vars(module).values()
            if (inspect.isfunction(o) or inspect.isclass(o)) and getattr(o, "__module__", None) == name}


def _dicts_of(module):
    """The plain dicts a module holds: its globals' values, and their attributes one level down
    (a registry object's table, such as transformers' `_extra_content`). Types are read with
    type(), never isinstance, and attributes past any __getattr__: a lazy or deprecated object
    (torch.distributed.reduce_op) would warn or load something when asked for its __class__."""
    try:
        values = list(vars(module).values())
    except TypeError:
        return
    for v in values:
        kind = type(v)
        if issubclass(kind, dict):
            yield v
        elif not issubclass(kind, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)):
            try:
                attrs = object.__getattribute__(v, "__dict__")
            except Exception:  # no instance dict (slots, a C object)
                continue
            if type(attrs) is dict:
                yield from (a for a in list(attrs.values()) if issubclass(type(a), dict))


def registries_holding(module):
    """Each dict of a loaded module (other than a module namespace) that holds something `module`
    defines, with the keys that hold it."""
    own = _defined_in(module)
    if not own:
        return []
    found, seen = [], set()
    for m in list(sys.modules.values()):
        if m is None:
            continue
        for d in _dicts_of(m):
            if id(d) in seen:
                continue
            seen.add(id(d))
            try:
                keys = [k for k, v in list(d.items()) if id(v) in own]
            except Exception:  # a dict subclass whose items() misbehaves is no registry of ours
                continue
            if keys:
                found.append((d, keys))
    return found


def _made_by(value, module_name):
    """Whether a registry's value is something the module named `module_name` defines: one of its
    functions or classes, or an instance of one of its classes."""
    if inspect.isfunction(value) or inspect.isclass(value):
        return getattr(value, "__module__", None) == module_name
    return getattr(type(value), "__module__", None) == module_name


def _restore(d, before, keys, rewrite):
    """`d` after the block: the rewrite's own entries out (or back to what the key held before),
    then the original's entries (`keys`) back as they were; every other entry as the block left it."""
    if rewrite is not None:
        for k, v in list(d.items()):
            if _made_by(v, rewrite):
                if k in before:
                    d[k] = before[k]
                else:
                    del d[k]
    for k in keys:
        d[k] = before[k]


@contextlib.contextmanager
def set_aside(original, rewrite=None):
    """Within the block, registries hold none of `original`'s entries; after it, each holds them
    again, and none of the module named `rewrite` (imported in the block), whose registrations
    under a new name are dropped and under an existing one undone. Entries the block added
    otherwise are kept."""
    if original is None:
        yield
        return
    saved = []
    for d, keys in registries_holding(original):
        saved.append((d, dict(d), keys))
        for k in keys:
            d.pop(k, None)
    try:
        yield
    finally:
        for d, before, keys in saved:
            _restore(d, before, keys, rewrite)
