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
    and tests can flip it with ``monkeypatch.setenv``.
    """
    raw = environ.get(ENV_VAR)
    if not raw:
        return True
    disabled = _disabled_names(raw)
    return not ("all" in disabled or name.lower() in disabled)
