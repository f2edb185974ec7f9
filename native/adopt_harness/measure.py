"""The tuner's measurer: build and time schedules of one kernel at one workload.

The TypeScript tuner (``src/tune/measurer.ts``) sends a batch request as JSON on stdin::

    {"op": "measure" | "retime", "kernel": "rms_norm", "workload": {"rows": 4096, "n": 768, "dtype": "float32"},
     "schedules": [{...}, ...], "check": true | [bool, ...], "warmup": 1, "repeats": 5,
     "timeout_s": 30, "threads": 2, "seed": 0, "imports": ["module.that.registers.a.kernel"]}

For each schedule this process renders and compiles the kernel (compile seconds recorded
apart; a failure is ``compile_error``), then a CHILD process (``--child``, one per batch,
restarted after a failure) runs it: warm-up, the output checked against the float64
reference where asked (every new configuration), then ``repeats`` timed runs and their
median. A child that dies is ``crash``, one that runs past ``timeout_s`` is killed and is
``timeout``, a check that fails is ``wrong``; none of these is ever chosen. ``retime`` times
the given finalists interleaved (A B C A B C ...), since these machines are noisy.

Progress goes to stdout as JSON lines (``{"progress": i, "of": n, ...}``); the last line is
the result: ``{"kernel", "template_hash", "target", "workload", "results": [{schedule, status,
median_s, times_s, compile_s, cached, error}]}``.

``--exhaustive`` measures every legal schedule of a space for a few workloads and writes the
replay files the tuner's benchmark reads (``fixtures/tuning/replay/``)::

    python -m adopt_harness.measure --exhaustive --kernels rms_norm,softmax --out fixtures/tuning/replay
"""

import argparse
import hashlib
import importlib
import json
import os
import select
import statistics
import subprocess
import sys
import time
import traceback

from adopt_harness.rounds import in_round

STATUSES = ("ok", "compile_error", "crash", "timeout", "wrong")
# "cpu" is the process's CPU time: at one thread it is the run's own time, without the time other
# processes held the core (on a loaded machine wall time mostly measures them); "wall" is latency.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


class HarnessError(RuntimeError):
    """The measurer itself failed (a malformed request or command): no schedule is to blame, so
    the batch stops and nothing of it is reported as a schedule's result."""


def _whole(request, name, default, least):
    value = request.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise HarnessError(f"request field {name!r} must be a whole number of at least {least}, not {value!r}")
    return value


def check_request(request):
    """Raises HarnessError for a request no schedule could be measured under (before any is)."""
    if not isinstance(request, dict):
        raise HarnessError("the request is not a JSON object")
    if request.get("op", "measure") not in ("measure", "retime"):
        raise HarnessError(f"unknown op {request.get('op')!r}")
    if not isinstance(request.get("kernel"), str):
        raise HarnessError("request field 'kernel' must be a kernel name")
    if not isinstance(request.get("workload"), dict):
        raise HarnessError("request field 'workload' must be an object")
    if not isinstance(request.get("schedules"), list) or not all(isinstance(s, dict) for s in request["schedules"]):
        raise HarnessError("request field 'schedules' must be a list of objects")
    _whole(request, "warmup", 1, 0)
    _whole(request, "repeats", 5, 1)
    if request.get("seed") is not None:
        _whole(request, "seed", None, 0)
    if request.get("threads") is not None:
        _whole(request, "threads", None, 1)
    timeout = request.get("timeout_s", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise HarnessError(f"request field 'timeout_s' must be a positive number of seconds, not {timeout!r}")
    if request.get("clock", "wall") not in CLOCKS:
        raise HarnessError(f"request field 'clock' must be one of {', '.join(sorted(CLOCKS))}, not {request.get('clock')!r}")


def _emit(obj, stream=None):
    stream = stream or sys.stdout
    stream.write(json.dumps(obj, sort_keys=True) + "\n")
    stream.flush()


def _load_registry(imports=()):
    from adopt_kernels import registry
    from adopt_kernels import kernels as _kernels  # noqa: F401  (registers them)

    for name in imports or ():
        importlib.import_module(name)
    return registry


def template_hash(kernel, dtype, device="cpu"):
    """A hash of the source rendered for the portable default schedule (on a GPU, of the kernel's
    Triton module): it changes when the template does, and not with the machine's default."""
    if device == "cuda":
        from adopt_kernels import gpu

        with open(gpu.source_path(kernel), "rb") as f:
            return hashlib.sha256(f.read() + dtype.encode()).hexdigest()[:16]
    source = kernel.source(dict(kernel.space.portable_default), dtype) if kernel.render else kernel.name
    return hashlib.sha256(source.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- the child: runs and times


def _child_main():
    """Reads one JSON command a line from stdin, answers one line on stdout (kept for answers)."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # prints of kernels or torch must not garble the protocol
    from adopt_kernels.threads import set_threads  # BLAS's threads too: a kernel may call products

    state = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["op"] == "init":
                registry = _load_registry(cmd.get("imports"))
                kernel = registry.KERNELS[cmd["kernel"]]
                if cmd.get("threads"):
                    set_threads(int(cmd["threads"]))
                device = cmd.get("device") or "cpu"
                # the compiled kernel is what is tuned, at any size (no floor hands it to torch)
                os.environ["ADOPT_TRITON_MIN_BYTES" if device != "cpu" else "ADOPT_CPU_MIN_BYTES"] = "0"
                run, _eager, check = kernel.make_case(dict(cmd["workload"]), cmd.get("seed") or 0, **_device_arg(device))
                state.update(kernel=kernel, run=run, check=check, registry=registry, sync=_synchronizer(device))
                _emit({"ok": True}, out)
            elif cmd["op"] == "run":
                bad = _bad_run(cmd)
                _emit({"harness": bad} if bad else _child_run(state, cmd), out)
            else:
                _emit({"harness": f"unknown op {cmd['op']!r}"}, out)
        except Exception as e:  # noqa: BLE001  (reported to the parent, which records it)
            _emit({"status": "crash", "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}, out)
    return 0


def _bad_run(cmd):
    """Why a run command is malformed (the harness's fault, not the schedule's), or None."""
    if not isinstance(cmd.get("schedule"), dict):
        return "run command without a schedule"
    for name in ("warmup", "repeats", "inner"):
        v = cmd.get(name, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            return f"run command field {name!r} must be a whole number, not {v!r}"
    if cmd.get("clock", "wall") not in CLOCKS:
        return f"run command field 'clock' must be one of {', '.join(sorted(CLOCKS))}, not {cmd.get('clock')!r}"
    return None


def _child_run(state, cmd):
    run, check, registry = state["run"], state["check"], state["registry"]
    schedule = cmd["schedule"]
    for _ in range(int(cmd.get("warmup", 0))):
        run(schedule)
    if cmd.get("check"):
        from adopt_kernels import _dispatch

        before, fell_back = registry.compiled_calls(), sum(_dispatch.FALLBACKS.values())
        outputs = run(schedule)
        if sum(_dispatch.FALLBACKS.values()) != fell_back:
            return {"status": "compile_error", "error": "the device could not take this schedule (the default ran instead)"}
        if registry.compiled_calls() == before and not cmd.get("allow_fallback"):
            return {"status": "crash", "error": "the compiled path did not run (the reference ran instead)"}
        try:
            check(outputs)
        except AssertionError as e:
            return {"status": "wrong", "error": str(e).splitlines()[0][:300] if str(e) else "check failed"}
    clock = CLOCKS[cmd.get("clock", "wall")]
    # a sample of ``inner`` back-to-back runs, so that one sample outlasts the clock's jitter and a
    # short preemption; its time is per run
    inner = max(1, int(cmd.get("inner", 1)))
    sync = state["sync"]
    times = []
    for _ in range(int(cmd.get("repeats", 1))):
        sync()
        t = clock()
        for _ in range(inner):
            run(schedule)
        sync()
        times.append((clock() - t) / inner)
    return {"status": "ok", "times_s": times}


def _device_arg(device):
    """make_case's device: CUDA's, or the CPU standing in for it under Triton's interpreter."""
    if device == "cpu":
        return {}
    from adopt_kernels import gpu

    return {"device": "cpu" if gpu.interpreting() else device}


def _synchronizer(device):
    """What makes a timed region end when the device's work does (GPU launches return at once)."""
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.synchronize
    return lambda: None


class Child:
    """One child process for a kernel and workload; restarted after a crash or a hang."""

    def __init__(self, request):
        self.request = request
        self.proc = None

    def _start(self):
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen([sys.executable, "-m", "adopt_harness.measure", "--child"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True, bufsize=1)
        init = {"op": "init", "kernel": self.request["kernel"], "workload": self.request["workload"], "seed": self.request.get("seed") or 0,
                "threads": self.request.get("threads"), "imports": self.request.get("imports") or [], "device": self.request.get("device")}
        r = self.ask(init,
                     self.request.get("init_timeout_s", 120))
        if r.get("ok") is not True:
            self.stop()
            raise RuntimeError(f"the measuring child did not start: {r.get('error', r)}")

    def ask(self, cmd, timeout):
        if self.proc is None or self.proc.poll() is not None:
            if cmd["op"] != "init":
                self._start()
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.stop()
            return {"status": "crash", "error": "the child died before the command"}
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.stop()
            return {"status": "timeout", "error": f"ran past {timeout:g} s; killed"}
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.proc = None
            return {"status": "crash", "error": f"the child died (exit {code})"}
        return json.loads(line)

    def reinit(self, workload):
        """The same child, another workload (a crash restarts it with this one)."""
        self.request = dict(self.request, workload=workload)
        if self.proc is None or self.proc.poll() is not None:
            self._start()
            return
        r = self.ask({"op": "init", "kernel": self.request["kernel"], "workload": workload, "seed": self.request.get("seed") or 0,
                      "threads": self.request.get("threads"), "imports": self.request.get("imports") or [],
                      "device": self.request.get("device")}, 120)
        if r.get("ok") is not True:
            self.stop()
            raise RuntimeError(f"the measuring child did not take workload {workload}: {r.get('error', r)}")

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


# ---------------------------------------------------------------- the parent: builds, asks, reports


def compile_schedule(kernel, schedule, dtype):
    """(seconds, cached, error): builds the library of one schedule into the kernel cache."""
    from adopt_kernels import _build

    if kernel.render is None:
        return 0.0, True, None
    try:
        source = kernel.source(schedule, dtype)
        cached = os.path.exists(_build.library_path(source))
        t = time.perf_counter()
        _build.build(source)
        return time.perf_counter() - t, cached, None
    except Exception as e:  # noqa: BLE001  (any failure to build is a compile_error)
        return 0.0, False, f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


def measure(request, progress=None):
    """Runs a ``measure`` or ``retime`` request; returns the result object."""
    check_request(request)
    registry = _load_registry(request.get("imports"))
    kernel = registry.KERNELS.get(request["kernel"])
    if kernel is None:
        raise KeyError(f"unknown kernel {request['kernel']!r}; known: {', '.join(sorted(registry.KERNELS))}")
    workload = dict(request["workload"])
    dtype = workload.get("dtype", "float32")
    device = request.get("device") or "cpu"
    try:
        space = kernel.space_for(device)
    except KeyError as e:
        raise KeyError(f"{e.args[0]} (targets: {', '.join(kernel.targets)})") from None
    schedules = [dict(s) for s in request["schedules"]]
    checks = request.get("check", True)
    checks = [bool(checks)] * len(schedules) if not isinstance(checks, list) else [bool(c) for c in checks]
    timeout = float(request.get("timeout_s", 30))
    results = [{"schedule": s, "status": None, "median_s": None, "times_s": [], "compile_s": 0.0, "cached": True, "error": None}
               for s in schedules]
    for r in results:
        if not space.legal(r["schedule"], workload):
            r.update(status="compile_error", error="not a legal schedule of this space at this workload")
            continue
        if device != "cpu":
            continue  # Triton compiles at the first (warm-up) run
        secs, cached, err = compile_schedule(kernel, r["schedule"], dtype)
        r.update(compile_s=secs, cached=cached)
        if err:
            r.update(status="compile_error", error=err)
    child = Child(request)
    try:
        if request.get("op", "measure") == "retime":
            _retime(child, request, results, timeout)
        else:
            for i, (r, chk) in enumerate(zip(results, checks)):
                if r["status"] is None:
                    cmd = {"op": "run", "schedule": r["schedule"], "check": chk, "warmup": request.get("warmup", 1),
                           "repeats": request.get("repeats", 5), "allow_fallback": request.get("allow_fallback", False),
                           "clock": request.get("clock", "wall")}
                    _record(r, child.ask(cmd, timeout))
                if progress:
                    progress({"progress": i + 1, "of": len(results), "result": r})
    finally:
        child.stop()
    return {"kernel": kernel.name, "workload": workload, "template_hash": template_hash(kernel, dtype, device), "op": request.get("op", "measure"),
            "results": results}


def _record(result, answer):
    if "harness" in answer:
        raise HarnessError(f"the measuring child refused a command: {answer['harness']}")
    result["status"] = answer.get("status", "crash")
    if result["status"] == "ok":
        result["times_s"] = result["times_s"] + answer["times_s"]
        result["median_s"] = statistics.median(result["times_s"])
    else:
        # a failure is recorded against the schedule for good: it says why, even where the run did not
        result["error"] = answer.get("error") or f"{result['status']} without a message from the run"
        result["median_s"] = None


def _retime(child, request, results, timeout):
    """Finalists timed round-robin: one run of each per round, every other round backwards
    (rounds.py), after a warm-up (and check) round."""
    live = [r for r in results if r["status"] is None]
    for r in live:
        answer = child.ask({"op": "run", "schedule": r["schedule"], "check": bool(request.get("check", False)),
                            "warmup": request.get("warmup", 1), "repeats": 0, "allow_fallback": request.get("allow_fallback", False)}, timeout)
        if "harness" in answer or answer.get("status") != "ok":
            _record(r, answer)
        else:
            r["status"] = "ok"
    for n in range(int(request.get("repeats", 5))):
        for r in in_round(live, n):
            if r["status"] == "ok":
                _record(r, child.ask({"op": "run", "schedule": r["schedule"], "check": False, "warmup": 0, "repeats": 1,
                                      "allow_fallback": True, "clock": request.get("clock", "wall")}, timeout))


def target_fingerprint(device="cpu"):
    from adopt_kernels import target

    return target.fingerprint(device)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--request", default="-", help="the request JSON file ('-': stdin)")
    p.add_argument("--info", action="store_true", help="print this target's fingerprint and every kernel's template hash")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="the target --info describes")
    p.add_argument("--exhaustive", action="store_true", help="measure whole spaces into replay files")
    p.add_argument("--kernels", default="rms_norm,softmax,layer_norm,adamw,gated_act,bias_gelu,rope,flash_attention")
    p.add_argument("--workloads", type=int, default=5)
    p.add_argument("--fix", default="", help="parameters held at one value in spaces larger than --full-below (NAME=VALUE,...)")
    p.add_argument("--full-below", type=int, default=48, help="spaces of at most this many schedules are measured whole")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds over the space; the median is kept")
    p.add_argument("--min-sample-ms", type=float, default=20.0, help="runs per timed sample: enough for the default schedule to take this long")
    p.add_argument("--keep-omp", action="store_true", help="measure the OpenMP schedule parameters at one thread too (held at their default otherwise)")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                   help="what a run's time is: cpu (process CPU time; right at --threads 1 on a loaded machine) or wall")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--jobs", type=int, default=2, help="compilers run at once")
    p.add_argument("--max-run-ms", type=float, default=40.0, help="shrink a workload until its default run takes at most this")
    p.add_argument("--shrink", default="", help="the workload field to halve first (default: the first of rows, tokens, params, seq, q_len, batch the kernel has)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--out", default="fixtures/tuning/replay")
    args = p.parse_args(argv)
    if args.child:
        return _child_main()
    if args.info:
        registry = _load_registry()
        kernels = {n: k for n, k in sorted(registry.KERNELS.items()) if args.device in k.targets}
        _emit({"target": target_fingerprint(args.device),
               "templates": {n: {d: template_hash(k, d, args.device) for d in k.dtypes + (("float16",) if args.device == "cuda" else ())}
                             for n, k in kernels.items()}})
        return 0
    if args.exhaustive:
        from adopt_harness.exhaustive import exhaustive  # it builds on this module's child and builds

        return exhaustive(args)
    try:
        text = sys.stdin.read() if args.request == "-" else open(args.request, encoding="utf-8").read()
        request = json.loads(text)
        result = measure(request, progress=_emit)
        result["target"] = target_fingerprint(request.get("device", "cpu"))
    except Exception as e:  # noqa: BLE001  (the caller reads the last line either way)
        _emit({"error": f"{type(e).__name__}: {e}"})
        return 1
    _emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
