"""Per-model time limits: a model that hangs is reported as not runnable and the run goes on."""
import contextlib
import signal


class Timeout(Exception):
    pass


def _alarm(_signum, _frame):
    raise Timeout(f"timed out after {_alarm.seconds}s")


@contextlib.contextmanager
def deadline(seconds):
    """Raises Timeout in the body after `seconds` (whole seconds, main thread only)."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    _alarm.seconds = seconds
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def extend(seconds):
    """Restarts the running deadline with a new length (the rewritten model's own budget); does
    nothing outside a deadline (an alarm with no handler would end the process)."""
    if signal.getsignal(signal.SIGALRM) is not _alarm:
        return
    _alarm.seconds = seconds
    signal.alarm(seconds)
