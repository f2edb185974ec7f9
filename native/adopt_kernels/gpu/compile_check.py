"""Compile every Triton launch the interpreter tests make for a real GPU (sm_90), on the CPU.

Triton's interpreter runs a kernel as numpy: it accepts what the compiler rejects (``tl.dot``
shapes, layouts, shared memory) and says nothing of registers. Inside :func:`checking` each
``kernel[grid](...)`` it runs is also compiled to a cubin (``ptxas`` needs no GPU), specialised
by Triton's own launcher code from the call's arguments: pointer dtypes, 16-divisible pointers
and ints, ints equal to 1 made constants, constexprs, ``num_warps``, ``num_stages``; a
constexpr the interpreter alone sets is compiled as a GPU launch sets it, from the kernel
module's ``COMPILED_FLAGS``. Each specialisation compiles once, up to :data:`JOBS` at a time.
``python -m adopt_kernels.gpu.compile_check TEST_FILE...`` runs pytest so, prints a table per
kernel and a JSON line, and exits 1 if a launch fails to compile.
"""

import collections
import contextlib
import functools
import importlib
import io
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile

ARCH = 90
# shared memory a block may have, by compute capability: the launcher checks it as it loads a
# kernel onto a device, so a compile alone would pass a kernel that can never launch
SHARED_LIMIT = {80: 166912, 86: 101376, 89: 101376, 90: 232448, 100: 232448, 120: 101376}
# compiling processes at once (each holds a Triton and an LLVM), and requests queued to each
JOBS = min(8, os.cpu_count() or 1)
QUEUED = 4


class Check:
    """The specialisations seen so far and how each compiled."""

    def __init__(self, arch=ARCH, jobs=None):
        from triton.backends.compiler import GPUTarget
        from triton.compiler import make_backend

        self.target = GPUTarget("cuda", arch, 32)
        self.backend = make_backend(self.target)
        self.jobs = max(1, jobs or JOBS)
        self._results = {}  # specialisation key -> result dict
        self._jit = {}  # python function -> a JITFunction of it, for its launcher
        self._workers = []  # (process, its results still to be answered, oldest first)

    @property
    def results(self):
        """Specialisation key -> result dict, once every compile asked for has answered."""
        self.wait()
        return self._results

    def keys(self):
        """The specialisations launched so far, in order, whether or not compiled yet."""
        return list(self._results)

    def launch(self, interpreted, args, kwargs):
        """Compile one launch, unless its specialisation has been compiled already; the result
        returned is filled in as the compile answers (:meth:`wait`)."""
        from triton import knobs
        from triton.runtime.jit import JITFunction, create_function_from_signature

        fn = interpreted.fn
        name = f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__qualname__}"
        # a flag only the interpreter sets (flash attention's bfloat16 products taken in float32)
        # would compile a kernel no GPU launches
        flags = getattr(sys.modules.get(fn.__module__), "COMPILED_FLAGS", {})
        kwargs = {**kwargs, **{k: v for k, v in flags.items() if k in kwargs}}
        try:
            jit = self._jit.get(fn) or self._jit.setdefault(fn, JITFunction(fn, **interpreted.kwargs))
            # what JITFunction.run adds before it binds
            kwargs = dict(kwargs, debug=kwargs.get("debug", jit.debug) or knobs.runtime.debug,
                          instrumentation_mode=knobs.compilation.instrumentation_mode)
            bind = create_function_from_signature(jit.signature, jit.params, self.backend)
            bound, spec, _ = bind(*args, **kwargs)
            options, signature, constexprs, attrs = jit._pack_args(self.backend, kwargs, bound, spec, None)
        except Exception as e:  # noqa: BLE001 - the real launcher would raise it too
            key, options = (name, "bind", repr(e)), None
            spec = ", ".join(f"{k}={_describe(v)}" for k, v in zip(interpreted.arg_names, args))
        else:
            constexprs = {k: _portable(v) for k, v in constexprs.items()}
            key = (name, repr(signature), repr(constexprs), repr(sorted(attrs.items())), repr(options))
            spec = ", ".join(f"{k}{'=' if signature[k] == 'constexpr' else ':'}{_arg(signature[k], v, attrs, (i,))}"
                             for i, (k, v) in enumerate(bound.items()))
        if key in self._results:
            return self._results[key]
        result = self._results[key] = dict(
            kernel=name, spec=spec, num_warps=getattr(options, "num_warps", None), ok=False, regs=None, spills=None,
            num_stages=getattr(options, "num_stages", None), shared=None,
            error=None if options else f"the launcher would not bind these arguments: {key[2]}")
        if options is None:
            return result
        request = (list(sys.path), pickle.dumps((self.target.arch, fn.__module__, fn.__qualname__, signature,
                                                 constexprs, attrs, options.__dict__)))
        self._send(request, result)
        return result

    def _send(self, request, result):
        """Compile in a process of its own: there the kernels (and triton.language's own @jit
        helpers, ``tl.sum`` among them) are compiler functions, not the interpreter's. The
        launch goes on meanwhile; up to ``jobs`` processes compile at once, the least busy
        taking the next request."""
        worker = min(self._workers, key=lambda w: len(w[1]), default=None)
        if worker is None or (worker[1] and len(self._workers) < self.jobs):
            env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "ADOPT_TRITON_INTERPRET")}
            process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve"], env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            worker = (process, collections.deque())
            self._workers.append(worker)
        # a few requests queued ahead of each process keep it busy; more could fill the pipes
        while len(worker[1]) >= QUEUED and worker in self._workers:
            self._answer(worker)
        if worker not in self._workers:
            return self._send(request, result)
        worker[1].append((request, result))
        try:
            pickle.dump(request, worker[0].stdin)
            worker[0].stdin.flush()
        except OSError:  # it has died: what it answered before, then who killed it
            self._drain(worker)

    def _answer(self, worker):
        """Read the oldest answer ``worker`` owes. If it died, the compile it was on is blamed
        and those queued behind it go to another process."""
        process, pending = worker
        try:
            pending[0][1].update(pickle.load(process.stdout))
            pending.popleft()
        except (EOFError, OSError, pickle.UnpicklingError):
            self._workers.remove(worker)
            pending.popleft()[1]["error"] = f"the compiler's process died (exit status {process.wait()})"
            while pending:
                self._send(*pending.popleft())

    def _drain(self, worker):
        while worker[1] and worker in self._workers:
            self._answer(worker)

    def wait(self):
        """Until every compile asked for has answered (a process that died hands its queue on)."""
        while any(pending for _, pending in self._workers):
            self._drain(next(w for w in self._workers if w[1]))

    def close(self):
        self.wait()
        for process, _ in self._workers:
            process.stdin.close()  # its end of input: it returns
            process.wait()
        self._workers = []

    def failures(self):
        return [r for r in self.results.values() if not r["ok"]]

    def summary(self):
        """Per kernel: specialisations, how many failed, the most registers, spilled and shared bytes."""
        rows = {}
        for r in self.results.values():
            row = rows.setdefault(r["kernel"], dict(kernel=r["kernel"], specs=0, failed=0, regs=0, spills=0, shared=0))
            row["specs"] += 1
            row["failed"] += not r["ok"]
            for k in ("regs", "spills", "shared"):
                row[k] = max(row[k], r[k] or 0)
        return sorted(rows.values(), key=lambda row: row["kernel"])

    def report(self):
        lines = [f"{'kernel':32} {'specs':>5} {'result':>10} {'max regs':>8} {'spills':>7} {'shared':>7}"]
        for row in self.summary():
            result = f"{row['failed']} failed" if row["failed"] else "ok"
            lines.append(f"{row['kernel']:32} {row['specs']:5} {result:>10} {row['regs']:8} {row['spills']:7}"
                         f" {row['shared']:7}")
        for r in self.failures():
            lines += ["", "FAILED " + describe(r)]
        for r in self.results.values():
            if r["spills"]:
                lines.append(f"SPILLS {r['kernel']} {r['spills']} bytes ({r['regs']} registers) num_warps="
                             f"{r['num_warps']} num_stages={r['num_stages']}: {r['spec']}")
        lines.append(json.dumps({"arch": f"sm_{self.target.arch}", "kernels": self.summary(),
                                 "failures": [dict(r, error=_tail(r["error"])) for r in self.failures()]}))
        return "\n".join(lines)


def describe(result):
    """A failed compile as a report gives it: the kernel, its specialisation, the compiler's cause."""
    return (f"{result['kernel']} num_warps={result['num_warps']} num_stages={result['num_stages']}\n"
            f"  {result['spec']}\n  " + _tail(result["error"]).replace("\n", "\n  "))


def _describe(v):
    """An argument as a report shows it: a tensor by its shape (its dtype is in the signature)."""
    if isinstance(v, tuple):
        return f"({', '.join(map(_describe, v))})"
    return str(list(v.shape)) if hasattr(v, "data_ptr") and hasattr(v, "shape") else repr(v)


def _arg(ty, v, attrs, path):
    """One argument's specialisation: ``*bf16/16=[7, 80]`` (a 16-aligned pointer), ``i32=7``, ``128``."""
    if isinstance(ty, tuple):
        return f"({', '.join(_arg(t, x, attrs, path + (j,)) for j, (t, x) in enumerate(zip(ty, v)))})"
    return repr(v) if ty == "constexpr" else f"{ty}{'/16' if attrs.get(path) else ''}={_describe(v)}"


def _tail(message, lines=12):
    """A compiler message is long (source excerpt, a traceback, the ptxas command); the cause is at its end."""
    kept = (message or "").strip().splitlines()
    return "\n".join(kept[:2] + (["..."] if len(kept) > lines + 2 else []) + kept[2:][-lines:])


@contextlib.contextmanager
def checking(arch=ARCH, jobs=None):
    """While open, every launch the interpreter runs is also compiled (in up to ``jobs``
    processes, :data:`JOBS` unless given); yields the :class:`Check`."""
    from triton.runtime.interpreter import InterpretedFunction

    check = Check(arch, jobs)
    run = InterpretedFunction.run

    def run_and_compile(self, *args, grid, warmup, **kwargs):
        check.launch(self, args, kwargs)
        return run(self, *args, grid=grid, warmup=warmup, **kwargs)

    InterpretedFunction.run = run_and_compile
    try:
        yield check
    finally:
        InterpretedFunction.run = run
        check.close()


def _portable(value):
    """A constexpr as it can cross to the compiling process: a kernel passed as one goes by name."""
    fn = getattr(value, "fn", None)
    return ("<jit>", fn.__module__, fn.__qualname__) if hasattr(value, "arg_names") and callable(fn) else value


def _find(module, qualname):
    return functools.reduce(getattr, qualname.split("."), importlib.import_module(module))


def _compile(arch, module, qualname, signature, constexprs, attrs, options):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.errors import OutOfResources

    log = io.StringIO()
    try:
        fn = _find(module, qualname)
        constexprs = {k: _find(*v[1:]) if isinstance(v, tuple) and v[:1] == ("<jit>",) else v
                      for k, v in constexprs.items()}
        # ptxas prints its -v report (registers, spills) only when asked, and then to stdout
        with contextlib.redirect_stdout(log):
            kernel = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=GPUTarget("cuda", arch, 32),
                                    options=options)
        if kernel.metadata.shared > SHARED_LIMIT.get(arch, SHARED_LIMIT[ARCH]):
            raise OutOfResources(kernel.metadata.shared, SHARED_LIMIT.get(arch, SHARED_LIMIT[ARCH]), "shared memory")
    except Exception as e:  # noqa: BLE001 - every compiler stage raises its own kind
        return {"error": f"{type(e).__name__}: {e}".strip()}
    log = log.getvalue()
    regs = [int(x) for x in re.findall(r"Used (\d+) registers", log)]
    spills = [int(a) + int(b) for a, b in re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)]
    return {"ok": True, "regs": max(regs, default=None), "spills": max(spills, default=None),
            "shared": kernel.metadata.shared}


def _serve():
    """The compiling process: requests on stdin, answers on what was stdout; whatever else is
    printed goes to stderr, where it cannot garble an answer."""
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    knobs = None
    with tempfile.TemporaryDirectory(prefix="triton-compile-check-") as cache:
        while True:
            try:
                path, request = pickle.load(sys.stdin.buffer)
            except EOFError:
                return
            # the parent's path first: Triton itself may be on it only since a test file put it there
            sys.path[:] = path
            if knobs is None:
                from triton import knobs
                # set, not left to the environment: a test module may export TRITON_INTERPRET as it loads
                knobs.runtime.interpret = False
                # a cache hit skips ptxas, and with it the register report
                knobs.cache.dir, knobs.compilation.always_compile, knobs.nvidia.dump_ptxas_log = cache, True, True
            pickle.dump(_compile(*pickle.loads(request)), answers)
            answers.flush()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--serve"]:
        return _serve()
    # the kernels must be decorated as interpreted ones, so before anything imports them
    os.environ.update(TRITON_INTERPRET="1", ADOPT_TRITON_INTERPRET="1")
    import pytest

    with checking() as check:
        code = pytest.main(["-q", "-p", "no:cacheprovider", *argv])
    print(check.report())
    if not check.results:
        print("no Triton launch was seen: nothing was compiled", file=sys.stderr)
        return 2
    return 1 if check.failures() else int(code)


if __name__ == "__main__":
    sys.exit(main())
