"""Environment variables read on every kernel call, cheaply.

The switches (``$ADOPT_DISABLE``, the size floors, Triton's interpreter) are read afresh on every
call, so a process can change them without a restart and tests can set them with
``monkeypatch.setenv``. ``os.environ.get`` encodes the name and goes through the generic mapping
code each time: about a microsecond, and a decoded token makes dozens of such reads per layer.
This reads the mapping's own dictionary with the name encoded once, which is what
``os.environ.get`` does underneath, at a tenth of the cost.
"""

import os

_environ = os.environ
# CPython's os.environ keeps its variables, encoded, in ``_data``; elsewhere the plain lookup
_data = getattr(_environ, "_data", None)
_keys = {}
_decoded = {}


def get(name, default=None):
    """``os.environ.get(name, default)``."""
    if _data is None:
        return _environ.get(name, default)
    key = _keys.get(name)
    if key is None:
        key = _keys[name] = _environ.encodekey(name)
    raw = _data.get(key)
    if raw is None:
        return default
    value = _decoded.get(raw)
    if value is None:
        if len(_decoded) > 256:  # values a process sets one after another: keep the cache small
            _decoded.clear()
        value = _decoded[raw] = _environ.decodevalue(raw)
    return value
