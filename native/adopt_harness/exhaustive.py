"""Whole schedule spaces measured for replay: every legal schedule of a kernel at a few workloads,
written as the replay files the tuner's benchmark reads (``fixtures/tuning/replay/``). Run through
``python -m adopt_harness.measure --exhaustive`` (its options are measure.py's); each workload is
shrunk until the default schedule runs within ``--max-run-ms``, every source is built once, and the
schedules are timed in interleaved rounds by one child process, as the tuner's measurer times them."""

import concurrent.futures
import json
import os
import statistics
import sys
import time

from adopt_harness.measure import Child, _emit, _load_registry, compile_schedule, target_fingerprint, template_hash
from adopt_harness.rounds import in_round

SCALABLE = ("rows", "tokens", "params", "seq", "q_len", "batch")
MIN_SIZE = {"rows": 256, "tokens": 256, "seq": 256, "q_len": 256, "params": 1 << 16, "batch": 1}


def _shrink(kernel, workload, child, max_run_s, prefer="", taken=()):
    """Halves the workload's leading size (its first field among SCALABLE, or ``prefer``) until the
    default schedule runs within ``max_run_s``; where that lands on a workload already ``taken``,
    the size before the last halving (so that every example stays a workload of its own)."""
    field = _shrink_field(kernel, workload, prefer)
    tried = []
    while True:
        tried.append(workload)
        done = _shrunk_enough(kernel, workload, child, max_run_s, field)
        if done:
            for w in reversed(tried):
                if w not in taken:
                    return w
            return workload
        workload = dict(workload, **{field: workload[field] // 2})
        if field == "q_len" and "k_len" in workload:
            workload["k_len"] = workload["q_len"]


def _shrink_field(kernel, workload, prefer=""):
    """The field ``_shrink`` halves: ``prefer``, else the first of SCALABLE the kernel has, in
    SCALABLE's order (attention lists batch before q_len, and a batch of 1 cannot be halved)."""
    fields = ([prefer] if prefer else []) + [f for f in SCALABLE if f in kernel.workload_fields]
    return next((f for f in fields if f in SCALABLE and isinstance(workload.get(f), int)), None)


def _shrunk_enough(kernel, workload, child, max_run_s, field):
    child.reinit(workload)
    answer = child.ask({"op": "run", "schedule": dict(kernel.space.default), "check": False, "warmup": 1, "repeats": 3,
                        "allow_fallback": True, "clock": child.request.get("clock", "wall")}, 120)
    if answer.get("status") != "ok" or field is None or statistics.median(answer["times_s"]) <= max_run_s:
        return True
    return workload[field] // 2 < MIN_SIZE.get(field, 1)


def _runs_per_sample(kernel, child, min_sample_s, clock):
    """How many runs one timed sample holds so that it lasts at least ``min_sample_s`` (from the
    default schedule's median of three)."""
    answer = child.ask({"op": "run", "schedule": dict(kernel.space.default), "check": False, "warmup": 1, "repeats": 3,
                        "allow_fallback": True, "clock": clock}, 120)
    if answer.get("status") != "ok":
        return 1
    one = max(statistics.median(answer["times_s"]), 1e-6)
    return max(1, int(-(-min_sample_s // one)))


def _held_at_one_thread(kernel, threads):
    """At one thread the call-time OpenMP schedule (kind, chunk) only reorders one thread's own
    loop: it does not change the code, so it cannot move the time for a reason. Such parameters are
    held at their default when measuring at one thread."""
    if threads != 1:
        return {}
    return {name: kernel.space.default[name] for name in kernel.space.omp.values() if name in kernel.space.params}


def _subspace(kernel, fixed):
    names = [n for n in kernel.space.params if n not in fixed]
    params = {n: list(kernel.space.params[n]) for n in names}
    for n, v in fixed.items():
        params[n] = [v]
    return params


def exhaustive(args):
    registry = _load_registry()
    target = target_fingerprint("cpu")
    fixed = {}
    for item in filter(None, args.fix.split(",")):
        name, _, value = item.partition("=")
        fixed[name] = int(value) if value.lstrip("-").isdigit() else value
    os.makedirs(args.out, exist_ok=True)
    summary = {}
    for name in [n for n in args.kernels.split(",") if n]:
        t0 = time.perf_counter()
        kernel = registry.KERNELS[name]
        fix = {k: v for k, v in fixed.items() if k in kernel.space.params and v in kernel.space.params[k]}
        if len(kernel.space.params) > 0 and _space_size(kernel) <= args.full_below:
            fix = {}
        if not args.keep_omp:
            fix.update(_held_at_one_thread(kernel, args.threads))
        workloads = []  # float32 throughout (one compile per schedule); a bfloat16 example is taken at float32
        for w in kernel.example_workloads:
            w = dict(w, dtype="float32") if "dtype" in w else dict(w)
            if w not in workloads:
                workloads.append(w)
        workloads = workloads[: args.workloads]
        base = {"kernel": name, "seed": 0, "threads": args.threads, "imports": [], "clock": args.clock}
        load_start = _load_avg()
        all_legal = [s for s in kernel.space.enumerate() if all(s[k] == v for k, v in fix.items())]
        compile_s = _compile_all(kernel, all_legal, args.jobs)
        entries = []
        child = Child(dict(base, workload=workloads[0]))
        try:
            for i, w in enumerate(workloads):
                w2 = _shrink(kernel, w, child, args.max_run_ms / 1000.0, args.shrink, [e["workload"] for e in entries])
                if any(e["workload"] == w2 for e in entries):
                    _emit({"progress": name, "workload": w2, "skipped": "the same as an earlier workload once shrunk"}, sys.stderr)
                    continue
                child.reinit(w2)
                inner = _runs_per_sample(kernel, child, args.min_sample_ms / 1000.0, args.clock)
                legal = [s for s in all_legal if kernel.space.legal(s, w2)]
                res = _exhaustive_workload(kernel, legal, child, args, check=(i == 0), inner=inner)
                entries.append({"workload": w2, "example_workload": w, "runs_per_sample": inner, "results": res})
                _emit({"progress": name, "workload": w2, "measured": len(res)}, sys.stderr)
        finally:
            child.stop()
        data = {"format": "adopt-replay/1", "kernel": name, "target": target, "template_hash": template_hash(kernel, "float32"),
                "space": {"params": _subspace(kernel, fix), "default": {**kernel.space.default, **fix}, "constraints": list(kernel.space.constraints)},
                "fixed": fix, "repeats": args.repeats, "threads": args.threads, "clock": args.clock,
                "load_avg": {"start": load_start, "end": _load_avg()}, "compile_s": compile_s, "workloads": entries,
                "seconds": time.perf_counter() - t0}
        path = os.path.join(args.out, f"{name}.{target['device']}-{target['key']}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=None, sort_keys=True)
            f.write("\n")
        summary[name] = {"path": path, "configs": len(all_legal), "workloads": len(entries), "seconds": round(data["seconds"], 1)}
        _emit({"progress": name, **summary[name]}, sys.stderr)
    _emit({"exhaustive": summary, "target": target})
    return 0


def _load_avg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _space_size(kernel):
    n = 1
    for v in kernel.space.params.values():
        n *= len(v)
    return n


def _compile_all(kernel, schedules, jobs):
    """Builds every distinct source (float32), ``jobs`` at a time; returns {schedule key: seconds}.
    Schedules that differ only in their call-time OpenMP schedule share one build: the first of
    them is charged its seconds, the rest are ``cached``."""
    first = {}
    for s in schedules:
        first.setdefault(kernel.source(s, "float32") if kernel.render else kernel.name, s)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {src: pool.submit(compile_schedule, kernel, s, "float32") for src, s in first.items()}
        built = {src: f.result() for src, f in futures.items()}
    out = {}
    for s in schedules:
        src = kernel.source(s, "float32") if kernel.render else kernel.name
        secs, cached, err = built[src]
        shared = first[src] is not s
        out[_key(s)] = {"seconds": 0.0 if shared else round(secs, 3), "cached": cached or shared, "error": err}
    return out


def _key(schedule):
    return json.dumps(schedule, sort_keys=True)


def _exhaustive_workload(kernel, legal, child, args, check, inner=1):
    """Every legal schedule at the child's workload: a (checked) warm-up, then ``repeats`` interleaved
    rounds, every other one backwards (rounds.py)."""
    status, errors = {}, {}
    times = {_key(s): [] for s in legal}
    for s in legal:
        a = child.ask({"op": "run", "schedule": s, "check": check, "warmup": 1, "repeats": 0}, args.timeout)
        status[_key(s)] = a.get("status", "crash")
        if status[_key(s)] != "ok":
            errors[_key(s)] = a.get("error")
    for n in range(args.repeats):
        for s in in_round(legal, n):
            if status[_key(s)] != "ok":
                continue
            a = child.ask({"op": "run", "schedule": s, "check": False, "warmup": 0, "repeats": 1, "allow_fallback": True,
                           "clock": args.clock, "inner": inner}, args.timeout)
            if a.get("status") == "ok":
                times[_key(s)].extend(a["times_s"])
            else:
                status[_key(s)], errors[_key(s)] = a.get("status", "crash"), a.get("error")
    out = []
    for s in legal:
        k = _key(s)
        ok = status[k] == "ok" and times[k]
        out.append({"schedule": s, "status": status[k], "median_s": statistics.median(times[k]) if ok else None,
                    "times_s": [round(t, 7) for t in times[k]], **({"error": errors[k]} if k in errors else {})})
    return out
