"""Run-time switches shared by every guard."""

import functools

from .. import environ

ENV_VAR = "ADOPT_DISABLE"


@functools.lru_cache(maxsize=16)
def _disabled_names(raw):
    return frozenset(part.strip().lower() for part in raw.split(",") if part.strip())


def enabled(name):
    """False when ``$ADOPT_DISABLE`` (comma-separated) names ``name`` or ``all``.

    The variable is read on every call, so a process can switch kernels off without a restart
    and tests can flip it with ``monkeypatch.setenv``. (The rewritten code calls this: its
    signature is part of the package's interface.)
    """
    return all_enabled(name)


def all_enabled(*names):
    """:func:`enabled` for several names at once, the variable read once."""
    raw = environ.get(ENV_VAR)
    if not raw:
        return True
    disabled = _disabled_names(raw)
    return not ("all" in disabled or any(name.lower() in disabled for name in names))
