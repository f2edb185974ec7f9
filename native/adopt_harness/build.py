"""The one model builder: loading an original and its rewrite side by side, and building a tiny
instance of a model class from the size table (sizes.py).

Every entry point (pair, file, HF, speed) loads and builds through here, so "built tiny" means
the same thing in `rules test`, `rewrite --verify` and `bench --hf --verify`.
"""
import importlib
import importlib.util
import inspect
import math
import os
import re
import sys
import uuid

from torch import nn

from adopt_harness.sizes import CONFIG_SIZES, CONSTRUCTOR_SIZES, HEAD_DIM
from adopt_harness.dropout import DROPOUT_WORDS
from adopt_harness.registries import set_aside


# ---------------------------------------------------------------- loading

def package_of(path):
    """(package name, directory to put on sys.path) when the file sits in a package."""
    parts = []
    d = os.path.dirname(os.path.abspath(path))
    while os.path.exists(os.path.join(d, "__init__.py")):
        parts.insert(0, os.path.basename(d))
        d = os.path.dirname(d)
    return (".".join(parts), d) if parts else (None, os.path.dirname(os.path.abspath(path)))


def fresh_name(path, package, tag="adopt"):
    """A module name inside `package` (or at top level) that nothing has used."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return f"{package + '.' if package else ''}{tag}_{stem}_{uuid.uuid4().hex[:8]}"


def load_as(path, package, tag="adopt", name=None):
    """Imports `path` as a fresh module inside `package` (or at top level), so its relative
    imports resolve the way the original's do."""
    name = name or fresh_name(path, package, tag)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = package or ""
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load(path, as_original, package_from=None):
    """An original is imported under its package name where it has one; a rewritten file is loaded
    as a sibling of the original (`package_from`), so both see the same package, with the
    package's registries of the original's names set aside meanwhile (registries.py)."""
    package, top = package_of(package_from or path)
    if top not in sys.path:
        sys.path.insert(0, top)
    stem = os.path.splitext(os.path.basename(package_from or path))[0]
    if as_original and package:
        try:
            return importlib.import_module(f"{package}.{stem}")
        except ModuleNotFoundError as e:
            if e.name != f"{package}.{stem}":
                raise
    if as_original or not package:
        return load_as(path, package)
    name = fresh_name(path, package)
    with set_aside(_imported_original(package, stem), rewrite=name):
        return load_as(path, package, name=name)


def _imported_original(package, stem):
    """The package's own module of this name, once the package is imported (its __init__ may
    import the module and so fill the registries a rewrite beside it would collide with)."""
    try:
        importlib.import_module(package)
    except Exception:  # the rewrite's own import then reports what is wrong, in its words
        return None
    return sys.modules.get(f"{package}.{stem}")


def module_classes(module):
    return [n for n, o in vars(module).items() if inspect.isclass(o) and issubclass(o, nn.Module) and o.__module__ == module.__name__]


# ---------------------------------------------------------------- configs

def _set(config, key, value):
    try:
        setattr(config, key, value)
    except (AttributeError, NotImplementedError, ValueError):
        pass  # some configs refuse a size (a read-only alias): keep theirs


def _plain_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def shrink(config, depth=0):
    """A transformers config shrunk in place to the size table, dropout off, sub-configs too."""
    for key, value in CONFIG_SIZES.items():
        if hasattr(config, key) and _plain_int(getattr(config, key)):
            _set(config, key, value)
    for key in list(vars(config)):
        v = getattr(config, key)
        if any(w in key for w in DROPOUT_WORDS) and isinstance(v, float):
            _set(config, key, 0.0)
        elif depth < 2 and hasattr(v, "to_dict") and hasattr(v, "model_type"):
            shrink(v, depth + 1)  # text_config, vision_config, encoder, decoder
    if hasattr(config, "head_dim") and _plain_int(getattr(config, "head_dim")):
        _set(config, "head_dim", HEAD_DIM)
    return config


def _shrink_plain(config):
    """A dataclass or plain config object: the sizes it has, and its dropout off."""
    for k, v in CONSTRUCTOR_SIZES.items():
        if _plain_int(getattr(config, k, None)):
            setattr(config, k, v)
    for k, v in list(vars(config).items()):
        if "drop" in k and isinstance(v, float):
            setattr(config, k, 0.0)


def _annotated_classes(annotation):
    """Names of the classes an annotation names: one class, or each member of a union
    (`CLIPVisionConfig | CLIPTextConfig`: a layer shared by two towers takes either config)."""
    if inspect.isclass(annotation) and not getattr(annotation, "__args__", None):
        return {annotation.__name__}
    if isinstance(annotation, str):
        return set(re.findall(r"[A-Za-z_]\w*", annotation)) - {"None", "Optional", "Union"}
    return {a.__name__ for a in getattr(annotation, "__args__", ()) if inspect.isclass(a) and a is not type(None)}


def config_for(module, cls, param, overrides, tiny=True):
    """The config a constructor parameter needs: the class's config_class, or a *Config class of the
    file that builds without arguments; shrunk when `tiny`, then the caller's overrides."""
    want = _annotated_classes(param.annotation)
    config_class = getattr(cls, "config_class", None)
    candidates = [config_class] if inspect.isclass(config_class) else []
    candidates += [o for n, o in vars(module).items() if inspect.isclass(o) and (n in want or n.endswith("Config"))]
    if want:
        candidates.sort(key=lambda c: c.__name__ not in want)
    for c in candidates:
        try:
            config = c()
        except TypeError:
            continue
        if tiny and hasattr(config, "to_dict"):
            shrink(config)
        elif tiny:
            _shrink_plain(config)
        for k, v in overrides.items():
            setattr(config, k, v)
        return config
    raise RuntimeError(f"cannot build {cls.__name__}: its parameter '{param.name}' needs a config and the file defines none that builds without arguments")


# ---------------------------------------------------------------- constructors

def _wants_config(p):
    return "config" in p.name or (inspect.isclass(p.annotation) and p.annotation.__name__.endswith("Config"))


def _only_varargs(fn):
    kinds = [p.kind for p in list(inspect.signature(fn).parameters.values())[1:]]
    return bool(kinds) and all(k in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD) for k in kinds)


def init_signature(cls):
    """The signature of the constructor the class's author wrote. A class decorator that replaces
    __init__ with a `(self, *args, **kwargs)` wrapper without functools.wraps (the `kernels`
    package's use_kernelized_func does) hides it; the wrapped __init__ is then the function of
    that name the wrapper closes over."""
    init = cls.__init__
    if inspect.isfunction(init) and _only_varargs(init):
        inner = [c.cell_contents for c in (init.__closure__ or ()) if inspect.isfunction(getattr(c, "cell_contents", None))]
        wrapped = [f for f in inner if f.__name__ == "__init__" and not _only_varargs(f)]
        if len(wrapped) == 1:
            init = wrapped[0]
    return inspect.signature(init)


def constructor_kwargs(module, name, overrides, tiny=True, sizes=None):
    """Keyword arguments that build class `name` of `module`: the caller's overrides first, then
    `sizes` (a plan of size_plans), then a config where one is asked for, then the size table (for
    a defaulted size only when `tiny`)."""
    cls = getattr(module, name)
    kwargs = {}
    for p in list(init_signature(cls).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name in overrides:
            kwargs[p.name] = overrides[p.name]
        elif sizes and p.name in sizes:
            kwargs[p.name] = sizes[p.name]
        elif _wants_config(p) and (p.default is inspect.Parameter.empty or tiny):
            rest = {k: v for k, v in overrides.items() if k not in kwargs}
            kwargs[p.name] = config_for(module, cls, p, rest, tiny)
        elif p.default is not inspect.Parameter.empty:
            if tiny and p.name in CONSTRUCTOR_SIZES and _plain_int(p.default):
                kwargs[p.name] = CONSTRUCTOR_SIZES[p.name]
        elif p.name in CONSTRUCTOR_SIZES:
            kwargs[p.name] = CONSTRUCTOR_SIZES[p.name]
        else:
            raise RuntimeError(f"cannot build {name}: no value for its parameter '{p.name}' (give one with --config '{{\"{p.name}\": ...}}')")
    return kwargs


# Sized parameters that are not widths (an index, a count of classes, ids or positions): a plan
# that scales widths together leaves them at the size table's value.
_NOT_WIDTHS = frozenset({"vocab_size", "num_embeddings", "num_classes", "num_labels", "max_position_embeddings", "block_size",
                         "seq_len", "max_seq_len", "padding_idx", "layer_idx", "layer_id"})
# A class is built at its own defaults only where no sized default is above this: a layer of this
# width is still small (a 256 x 256 Linear is 65k weights).
MAX_DEFAULT_SIZE = 256
# Weights a class built from a plan other than the size table's may have.
MAX_PLAN_PARAMETERS = 2_000_000


def _sized_defaults(module, name, overrides):
    """The class's defaulted int parameters that the size table would change: name -> default."""
    out = {}
    for p in list(init_signature(getattr(module, name)).parameters.values())[1:]:
        if p.name in overrides or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or _wants_config(p):
            continue
        if _plain_int(p.default) and _plain_int(CONSTRUCTOR_SIZES.get(p.name)) and CONSTRUCTOR_SIZES[p.name] != p.default:
            out[p.name] = p.default
    return out


def size_plans(module, name, overrides):
    """Sizes to build class `name` with, in the order to try them, as (description, sizes for
    constructor_kwargs): the size table's (None); the class's own widths scaled down together by
    one factor, so relations between them hold (a ResNet bottleneck's residual needs
    `planes * expansion == inplanes`, which the table's equal sizes break); the class's own
    defaults, where all of them are small. A later plan is tried only where the one before it
    cannot be built or fed."""
    plans = [("the size table", None)]
    defaults = _sized_defaults(module, name, overrides)
    widths = {k: v for k, v in defaults.items() if k not in _NOT_WIDTHS and CONSTRUCTOR_SIZES[k] >= 8 and v > 0}
    if widths:
        room = min(v // CONSTRUCTOR_SIZES[k] for k, v in widths.items())
        common = math.gcd(*widths.values())
        k = max((d for d in range(1, max(room, 1) + 1) if common % d == 0), default=1)
        if k > 1:
            scaled = {n: v // k for n, v in widths.items()}
            plans.append((f"its own widths over {k} ({', '.join(f'{n}={v}' for n, v in scaled.items())})", scaled))
    if defaults and max(defaults.values()) <= MAX_DEFAULT_SIZE:
        plans.append((f"its own defaults ({', '.join(f'{n}={v}' for n, v in defaults.items())})", dict(defaults)))
    return plans


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


def config_of(kwargs):
    """The config object among constructor arguments, if any (the input finder reads its sizes)."""
    return next((v for v in kwargs.values() if hasattr(v, "__dict__") and not isinstance(v, nn.Module) and not inspect.isclass(v)
                 and not hasattr(v, "shape")), None)
