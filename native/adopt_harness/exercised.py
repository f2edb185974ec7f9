"""Whether a rewrite's own code ran while a class was checked.

A class can compare equal with its rewrite only because the rewritten site never ran: a loss
computed only when labels are given, an optimizer built in a training function no class calls.
Such a class checks nothing about the rewrite, so it is reported as not exercised, never as
verified.

The rewrite's own code is the lines of the rewritten file that the original does not have. Where
those lines call an adopt_kernels fast-path function, the fast-path counter says whether they ran
(a guard line runs also when it falls back to the original code, so its line alone proves
nothing). Other rewrites (a hand-written rule's expression, an optimizer class swapped in) are
exercised when one of their lines ran, which a line tracer restricted to the rewritten file sees.
"""
import difflib
import os
import re
import sys

_CALL = re.compile(r"_adopt\.([A-Za-z_]\w*)\s*\(")


def new_lines(original_text, rewritten_text):
    """1-based numbers of the rewritten file's lines that are not the original's."""
    a, b = original_text.splitlines(), rewritten_text.splitlines()
    found = set()
    for tag, _i1, _i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag in ("replace", "insert"):
            found.update(range(j1 + 1, j2 + 1))
    return found


def calls_fast_path(rewritten_text, lines, api):
    """Whether any of `lines` calls one of the fast-path functions `api`."""
    text = rewritten_text.splitlines()
    return any(m.group(1) in api for n in lines if n <= len(text) for m in _CALL.finditer(text[n - 1]))


class LineProbe:
    """Records which of the given lines (real path → line numbers) run while it is active (this
    thread only)."""

    def __init__(self, lines):
        self.lines = {os.path.realpath(p): frozenset(n) for p, n in lines.items() if n}
        self.ran = set()
        self._previous = None
        self._codes = {}

    def _local_for(self, wanted, path):
        def local(frame, event, arg):
            if event == "line" and frame.f_lineno in wanted:
                self.ran.add((path, frame.f_lineno))
            return local
        return local

    def _global(self, frame, event, arg):
        code = frame.f_code
        hit = self._codes.get(code, False)
        if hit is False:
            path = os.path.realpath(code.co_filename)
            wanted = self.lines.get(path)
            hit = self._codes[code] = self._local_for(wanted, path) if wanted else None
        return hit

    def __enter__(self):
        self._previous = sys.gettrace()
        if self.lines:
            sys.settrace(self._global)
        return self

    def __exit__(self, *exc):
        sys.settrace(self._previous)
        return False


class Probe:
    """One class's check of one rewrite: a line probe where the rewrite calls no fast-path function."""

    def __init__(self, lines, fast):
        self.fast = fast
        self.probe = LineProbe({} if fast else lines)

    def __enter__(self):
        self.probe.__enter__()
        return self

    def __exit__(self, *exc):
        return self.probe.__exit__(*exc)

    def exercised(self, fast_path_calls):
        return fast_path_calls > 0 if self.fast else bool(self.probe.ran)


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _package_root(path):
    top = None
    d = os.path.dirname(os.path.abspath(path))
    while os.path.exists(os.path.join(d, "__init__.py")):
        top, d = d, os.path.dirname(d)
    return top


def _pairs(original_path, rewritten_path, own_package):
    """(original, rewritten) files to diff: the two given, or with `own_package` (a helper module
    checked through a file of a rewritten copy of its package) every module of the two packages."""
    if not own_package:
        return [(original_path, rewritten_path)]
    a, b = _package_root(original_path), _package_root(rewritten_path)
    if not a or not b:
        return [(original_path, rewritten_path)]
    pairs = []
    for d, _dirs, files in os.walk(b):
        for name in files:
            if name.endswith(".py"):
                mine = os.path.join(d, name)
                theirs = os.path.join(a, os.path.relpath(mine, b))
                if os.path.exists(theirs):
                    pairs.append((theirs, mine))
    return pairs


def probe_for(original_path, rewritten_path, api, own_package=False):
    """A factory of Probes for one rewritten file (and, with `own_package`, the rest of its
    package), or None where the files cannot be read."""
    lines, fast = {}, False
    try:
        for before_path, after_path in _pairs(original_path, rewritten_path, own_package):
            after = _read(after_path)
            new = new_lines(_read(before_path), after)
            if new:
                lines[after_path] = new
                fast = fast or calls_fast_path(after, new, api)
    except (OSError, UnicodeDecodeError):
        return None
    return lambda: Probe(lines, fast)
