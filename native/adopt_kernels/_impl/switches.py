"""Run-time switches shared by every guard."""

import functools

from .. import environ

ENV_VAR = "ADOPT_DISABLE"


@functools.lru_cache(maxsize=16)
def _disabled_names(raw):
    return frozenset(part.strip().lower() for part in raw.split(",") if part.strip())


def enabled(*names):
    """False when ``$ADOPT_DISABLE`` (comma-separated) names ``all`` or any of ``names``.

    The variable is read on every call (once for all the names), so a process can switch
    kernels off without a restart and tests can flip it with ``monkeypatch.setenv``.
    """
    raw = environ.get(ENV_VAR)
    if not raw:
        return True
    disabled = _disabled_names(raw)
    return not ("all" in disabled or any(name.lower() in disabled for name in names))
