"""Schedule files: the tuned schedule of each kernel per workload, read by the dispatcher.

``adopt tune`` and ``adopt rewrite --tune`` write them; a rewritten module loads the file
beside it with :func:`use`, and ``$ADOPT_SCHEDULES`` names one for the whole process. The
format is JSON::

    {"format": "adopt-schedules/1", "target": {...fingerprint...},
     "entries": [{"kernel": "layer_norm", "workload": {"rows": 4096, "n": 768, "dtype": "float32"},
                  "schedule": {"block": 8, ...}}]}

A file that cannot be read, names an unknown kernel or carries an illegal schedule gets one
warning and the default schedule for what it cannot supply; it never changes results, since
every legal schedule computes the same thing.

A file tuned for another target (its ``target.key`` is not this machine's fingerprint: another
CPU, compiler or torch) gets one warning naming both, and none of its entries is used: its
schedules were the fastest there, which says little of here (the tuner never uses another
target's records either), and the defaults are what this target was built around. ``adopt tune``
here writes this target's own. A file that names no target key (written by hand) is used as it is.
"""

import json
import math
import os
import threading
import warnings

from .registry import KERNELS
from .target import vector_level

FORMAT = "adopt-schedules/1"
_lock = threading.Lock()
_entries = {}  # kernel -> list of (workload, schedule)
_loaded_paths = set()
_lookup_cache = {}


class ScheduleFileWarning(UserWarning):
    pass


def _warn(msg):
    warnings.warn(f"adopt_kernels: {msg}", ScheduleFileWarning, stacklevel=3)


def read(path):
    """Entries of a schedule file as ``((kernel, device), workload, schedule)``, validated against
    the registry's space for the file's target device; problems are warnings."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        _warn(f"cannot read schedule file {path}: {e}; default schedules are used")
        return []
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), list):
        _warn(f"{path} is not an adopt schedule file (format {FORMAT!r}); default schedules are used")
        return []
    target = data.get("target")
    device = target.get("device", "cpu") if isinstance(target, dict) else "cpu"
    if not _for_this_target(path, target, device):
        return []
    flags = target.get("flags") if isinstance(target, dict) and isinstance(target.get("flags"), list) else ()
    level = vector_level(flags) if device == "cpu" else None
    good = []
    for i, e in enumerate(data["entries"]):
        where = f"{path}: entry {i}"
        if not isinstance(e, dict) or not all(isinstance(e.get(k), dict) for k in ("workload", "schedule")):
            _warn(f"{where} is malformed; skipped")
            continue
        kernel = KERNELS.get(e.get("kernel"))
        if kernel is None:
            _warn(f"{where} names unknown kernel {e.get('kernel')!r}; skipped")
            continue
        try:
            space = kernel.space_for(device)
        except KeyError:
            _warn(f"{where}: {kernel.name} has no {device} kernel; skipped")
            continue
        schedule = e["schedule"]
        file_default = space.default_for(level)
        # a file tuned before the space gained a parameter keeps its tuned values; the new
        # parameter takes its default on the file's target (the schedule its measurements ran)
        added = [k for k in space.params if k not in schedule]
        if added and set(schedule) < set(space.params):
            schedule = {**{k: file_default[k] for k in added}, **schedule}
        if not space.legal(schedule, e["workload"]):
            _warn(f"{where}: schedule {e['schedule']} is not legal for {kernel.name}; its default is used")
            continue
        if added:
            _warn(f"{where}: schedule for {kernel.name} predates its parameter(s) {', '.join(added)}; their defaults are used")
        good.append(((kernel.name, device), e["workload"], schedule))
    return good


def _here(device):
    """This machine's target key on ``device``; None where it has no such device."""
    from . import target as _target

    try:
        return _target.fingerprint(device)["key"]
    except Exception:  # noqa: BLE001  (no such device here: its entries could never be looked up)
        return None


def _for_this_target(path, target, device):
    """Whether a file's entries may be used here (a warning says why not, once per file)."""
    key = target.get("key") if isinstance(target, dict) else None
    if not isinstance(key, str):
        return True
    here = _here(device)
    if here is None:
        return False
    if key != here:
        _warn(f"{path} was tuned for target {key}, not this one ({here}: another CPU, compiler or torch); "
              f"its schedules are not used here, the defaults are (adopt tune on this machine writes its own)")
        return False
    return True


def describe(path):
    """What a schedule file holds for this machine: its target, this target, and how many entries
    are used here (``adopt kernels status`` prints it)."""
    out = {"path": os.path.abspath(path), "exists": os.path.exists(path), "target": None, "here": None, "entries": 0, "used": 0}
    if not out["exists"]:
        return out
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        out["error"] = f"cannot read it: {e}"
        return out
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), list):
        out["error"] = f"not an adopt schedule file (format {FORMAT!r})"
        return out
    target = data.get("target") if isinstance(data.get("target"), dict) else {}
    device = target.get("device", "cpu")
    out.update(target=target.get("key"), here=_here(device), device=device, entries=len(data["entries"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["used"] = len(read(path))
    return out


SCHEDULE_FILE = "adopt-schedules.json"


def use(path):
    """Load a schedule file (once per path) into this process's table.

    Given a module's ``__file__`` (a ``.py`` path), loads the ``adopt-schedules.json`` beside it:
    what the import block of a module rewritten with ``adopt rewrite --tune`` calls. A missing
    file is not an error (the module may have been copied without it): defaults are used.
    """
    if path.endswith(".py"):
        path = os.path.join(os.path.dirname(path), SCHEDULE_FILE)
    path = os.path.abspath(path)
    with _lock:
        if path in _loaded_paths:
            return
        _loaded_paths.add(path)
    if not os.path.exists(path):
        return
    for key, workload, schedule in read(path):
        with _lock:
            _entries.setdefault(key, []).append((workload, schedule))
            _lookup_cache.clear()


def clear():
    with _lock:
        _entries.clear()
        _loaded_paths.clear()
        _lookup_cache.clear()


def _distance(a, b):
    if a.get("dtype") != b.get("dtype"):
        return math.inf
    d = 0.0
    for k, v in a.items():
        if k == "dtype":
            continue
        w = b.get(k)
        if not isinstance(v, (int, float)) or not isinstance(w, (int, float)):
            if v != w:
                return math.inf
            continue
        d += abs(math.log2(max(v, 1)) - math.log2(max(w, 1)))
    return d


def lookup(kernel, workload, device="cpu"):
    """The schedule for ``workload`` on ``device``: an exact entry, else the nearest entry of the
    same dtype legalised for this workload, else the kernel's default (legalised likewise)."""
    env = os.environ.get("ADOPT_SCHEDULES")
    if env:
        use(env)
    key = (kernel.name, device, tuple(sorted(workload.items())))
    hit = _lookup_cache.get(key)
    if hit is not None:
        return hit
    space = kernel.space_for(device)
    best, best_d = None, math.inf
    for w, s in _entries.get((kernel.name, device), ()):
        d = 0.0 if w == workload else _distance(workload, w)
        if d < best_d:
            best, best_d = s, d
    schedule = space.default_at(workload) if best is None else space.legalise(best, workload)
    _lookup_cache[key] = schedule
    return schedule


def main(argv=None):
    """``python -m adopt_kernels.schedules FILE``: describe() of the file as one JSON line."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    print(json.dumps(describe(args[0]) if args else {"error": "usage: python -m adopt_kernels.schedules FILE"}))
    return 0 if args else 2


def write(path, target, entries):
    """Write a schedule file atomically; ``entries`` are dicts with kernel, workload, schedule."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"format": FORMAT, "target": target, "entries": entries}, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    raise SystemExit(main())
