"""The on/off environment variables of the process-wide settings (``memory``, ``idle_threads``):
each is read the same way, at import, and a value that is neither on nor off is reported once."""

from . import _dispatch

ON = ("1", "true", "yes", "on")
OFF = ("", "0", "false", "no", "off")


def from_environment(environ, name, apply, left_alone):
    """Call ``apply()`` when ``environ[name]`` is on and return what it returns; False when the
    variable is unset or off; False with one message (``left_alone`` says what is untouched) for
    anything else."""
    value = environ.get(name, "").strip().lower()
    if value in ON:
        return apply()
    if value not in OFF:
        _dispatch.say_once(f"{name}-value", f"{name}={environ[name]!r} is not 0 or 1; {left_alone}")
    return False
