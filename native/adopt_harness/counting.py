"""The one fast-path counter. While it is active, every call a rewritten model makes into the
functions of `adopt_kernels` a rewrite calls (the kernel registry's `fast_path_api`) is counted,
and so are the compiled kernels that ran (`adopt_kernels._dispatch.CALLS`, per kernel) and the
attention calls that reached torch's SDPA. A "verified" result carries these counts, so it says
whether the fast path ran and whether a compiled kernel ran inside it.
"""
import collections


def _kernels():
    try:
        import adopt_kernels
        from adopt_kernels import _dispatch, registry
        from adopt_kernels._impl import attention as attention_impl
    except ImportError:
        return None
    return adopt_kernels, _dispatch, registry, attention_impl


class FastPathCounter:
    """Context manager; `kernel` limits the fast-path count to that one function (a rule's callee,
    as `_adopt.softmax` or `softmax`). Wrapped functions are restored on exit."""

    def __init__(self, kernel=None):
        self.kernel = kernel.split(".")[-1] if kernel else None
        self.calls = 0
        self.sdpa = 0
        self._saved = []
        self._compiled_before = collections.Counter()
        self._compiled_after = None
        self._found = _kernels()

    def __enter__(self):
        if self._found is None:
            return self
        adopt_kernels, dispatch, registry, attention_impl = self._found
        names = [self.kernel] if self.kernel else list(registry.fast_path_api())
        for name in names:
            fn = getattr(adopt_kernels, name, None)
            if callable(fn):
                self._wrap(adopt_kernels, name, fn, "calls")
        if getattr(attention_impl, "_sdpa", None) is not None:
            self._wrap(attention_impl, "_sdpa", attention_impl._sdpa, "sdpa")
        self._compiled_before = collections.Counter(dispatch.CALLS)
        return self

    def _wrap(self, owner, name, fn, field):
        def counting(*args, **kwargs):
            setattr(self, field, getattr(self, field) + 1)
            return fn(*args, **kwargs)

        self._saved.append((owner, name, fn))
        setattr(owner, name, counting)

    def __exit__(self, *exc):
        if self._found is not None:
            self._compiled_after = collections.Counter(self._found[1].CALLS)
        for owner, name, fn in reversed(self._saved):
            setattr(owner, name, fn)
        self._saved = []
        return False

    def compiled(self):
        """Compiled-kernel calls since entry, per kernel name (only those that ran)."""
        if self._found is None:
            return {}
        after = self._compiled_after if self._compiled_after is not None else self._found[1].CALLS
        return {k: after[k] - self._compiled_before[k] for k in sorted(after) if after[k] > self._compiled_before[k]}

    def result(self):
        """The counts a harness result carries; fast_path_calls is -1 where adopt_kernels does not import."""
        compiled = self.compiled()
        return {
            "fast_path_calls": self.calls if self._found is not None else -1,
            "sdpa_calls": self.sdpa,
            "compiled_calls": sum(compiled.values()),
            "compiled_kernels": compiled,
        }


def compiled_kernel_of(function):
    """The compiled kernel (registry name) that serves an adopt_kernels function, or None."""
    found = _kernels()
    if found is None:
        return None
    registry = found[2]
    name = function.split(".")[-1]
    return next((k.name for k in registry.KERNELS.values() if name in k.api), None)
