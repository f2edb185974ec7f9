"""Each compiled kernel against the eager torch composite it replaces, side by side.

For every kernel in the registry and each of its example workloads: the eager composite, the
kernel at its default schedule and at the best schedule found among a sample of its space
(every sampled schedule is checked against the float64 reference before it may win), timed
interleaved (A B C, C B A, ...) after warm-up, medians reported. The physical limit is a copy
of a large buffer measured in the same run: ``bw_fraction`` is the bytes a fused forward must
move over its time, as a fraction of that copy's bandwidth. Both sides use the same number of
threads, the machine's core count unless ``--threads`` says otherwise.

A kernel writes its outputs into new tensors. With the system's malloc every such tensor larger
than its mmap threshold is fresh pages, each faulted in at first touch, and so is every eager
intermediate: the header also prints the bandwidth of a copy into a new tensor, to show that
cost. ``--keep-freed-memory`` has malloc reuse freed blocks (``adopt_kernels.memory``), for both
sides alike, so that the fraction measures the kernel's loops rather than the page faults.

Usage: python -m adopt_harness.kernels_bench [--kernels a,b] [--threads N] [--repeats 7]
       [--sample 8] [--workloads 2] [--clock wall|cpu] [--min-sample-ms 0] [--keep-freed-memory] [--json OUT]
       [--workload JSON ...]
Ends with one JSON line.
"""

import argparse
import json
import math
import os
import random
import statistics
import sys
import time

import torch

from adopt_harness import blas_setting
from adopt_harness.rounds import in_round
from adopt_kernels import _dispatch, memory, registry, threads
from adopt_kernels import kernels as _kernels  # noqa: F401  (registers them)


# wall time, or the process's CPU time: with one thread on an oversubscribed machine the latter
# counts the work done, not the time slices other processes took
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _time(fn, clock):
    t = clock()
    fn()
    return clock() - t


def interleaved(variants, repeats, warmup=1, clock=time.perf_counter, min_sample_s=0.0):
    """Median seconds per call of each variant, timed round-robin so drift hits them alike, every
    other round backwards (rounds.py). A sample times enough calls in a row that the fastest
    variant's reaches ``min_sample_s`` (at most 64), the same count for every variant: one
    millisecond call is at the mercy of a time slice taken by another process."""
    calls = 1
    for w in range(warmup):
        took = {k: _time(fn, clock) for k, fn in variants.items()}
        if w == warmup - 1 and min_sample_s > 0:
            calls = max(1, min(64, math.ceil(min_sample_s / max(min(took.values()), 1e-9))))
    times = {k: [] for k in variants}
    for r in range(repeats):
        for k, fn in in_round(variants, r):
            times[k].append(_time(lambda fn=fn: [fn() for _ in range(calls)], clock) / calls)
    return {k: statistics.median(v) for k, v in times.items()}


def own_workloads(texts, kernels):
    """The workloads ``--workload`` gave (JSON objects, for exactly one kernel), or a ValueError
    saying what is wrong with them."""
    try:
        own = [json.loads(w) for w in texts]
    except json.JSONDecodeError as e:
        raise ValueError(f"--workload is not JSON: {e}") from None
    if own and (len(kernels) != 1 or not all(isinstance(w, dict) for w in own)):
        raise ValueError("--workload takes a JSON object and exactly one kernel in --kernels")
    return own


def kernel_names(text, tool):
    """The kernels ``--kernels`` names (all of them when empty), or a ValueError naming the
    unknown ones, for ``tool``'s message."""
    names = [n for n in text.split(",") if n] or sorted(registry.KERNELS)
    unknown = [n for n in names if n not in registry.KERNELS]
    if unknown:
        raise ValueError(f"adopt {tool}: unknown kernel(s) {', '.join(unknown)}; known: {', '.join(sorted(registry.KERNELS))}")
    return names


def keeps_freed_memory(asked, tool):
    """Switches malloc to keep freed blocks when ``asked``; a ValueError where it cannot."""
    if asked and not memory.keep_freed_memory():
        raise ValueError(f"adopt {tool}: --keep-freed-memory: this C library cannot keep freed memory (not glibc)")


def finish(summary, detail, path):
    """Writes the summary and the detail to ``path`` (when given) and ends with the summary's JSON line."""
    if path:
        with open(path, "w") as f:
            json.dump({**summary, "detail": detail}, f, indent=1)
    print(json.dumps(summary))
    return 0


def copy_bandwidth(repeats, nbytes=256 << 20, clock=time.perf_counter):
    """Bytes moved per second by a copy into an existing tensor (the limit) and into a new one."""
    src = torch.ones(nbytes // 4)
    dst = torch.empty_like(src)
    t = interleaved({"copy": lambda: dst.copy_(src), "clone": src.clone}, repeats, clock=clock)
    return 2 * nbytes / t["copy"], 2 * nbytes / t["clone"]


def best_schedule(kernel, workload, run, check, sample, seed=0, clock=time.perf_counter):
    """The fastest of the default and ``sample`` random legal schedules that pass the check."""
    rng = random.Random(seed)
    candidates = [dict(kernel.space.default)]
    for _ in range(sample * 3):
        if len(candidates) > sample:
            break
        s = kernel.space.sample(rng, workload)
        if s not in candidates:
            candidates.append(s)
    timed = {}
    for s in candidates:
        try:
            check(run(s))
        except Exception as e:  # a schedule that fails is reported and never chosen
            print(f"  {kernel.name} {s}: rejected ({type(e).__name__}: {str(e).splitlines()[0][:100]})", file=sys.stderr)
            continue
        timed[tuple(sorted(s.items()))] = s
    medians = interleaved({k: (lambda s=s: run(s)) for k, s in timed.items()}, 3, clock=clock)
    return timed[min(medians, key=medians.get)]


def bench_workload(kernel, workload, args, copy_bw):
    run, eager, check = kernel.make_case(workload, seed=0)
    check(run(None))
    clock = CLOCKS[args.clock]
    best = best_schedule(kernel, workload, run, check, args.sample, clock=clock)
    default = dict(kernel.space.default)
    # where this machine's default is a target default (512-bit vectors on AVX-512), the portable
    # one (what a CPU of another level runs) is timed beside it: the target default's own gain
    portable = dict(kernel.space.portable_default)
    schedules = {"default": default, "best": best, **({"portable": portable} if portable != default else {})}
    if "portable" in schedules:
        check(run(portable))
    sample_s = args.min_sample_ms / 1e3
    fwd = interleaved({"eager": lambda: eager(False), **{k: (lambda s=s: run(s, False)) for k, s in schedules.items()}},
                      args.repeats, clock=clock, min_sample_s=sample_s)
    both = interleaved({"eager": lambda: eager(True), **{k: (lambda s=s: run(s, True)) for k, s in schedules.items()}},
                       args.repeats, clock=clock, min_sample_s=sample_s)
    bw = kernel.bytes_moved(workload) / fwd["best"] / copy_bw if kernel.bytes_moved else None
    return {
        "workload": workload,
        "best_schedule": best,
        "eager_fwd_ms": fwd["eager"] * 1e3,
        "kernel_fwd_ms": fwd["best"] * 1e3,
        "eager_fwdbwd_ms": both["eager"] * 1e3,
        "kernel_fwdbwd_ms": both["best"] * 1e3,
        "speedup_fwd": fwd["eager"] / fwd["best"],
        "speedup_fwdbwd": both["eager"] / both["best"],
        "speedup_default": both["eager"] / both["default"],
        "speedup_portable": both["eager"] / both["portable"] if "portable" in both else None,
        "bw_fraction": bw,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kernels", default="")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--sample", type=int, default=6, help="random schedules tried besides the default")
    p.add_argument("--workloads", type=int, default=2, help="example workloads per kernel")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="cpu: the process's CPU time (meaningful with --threads 1 on a busy machine)")
    p.add_argument("--min-sample-ms", type=float, default=0.0,
                   help="each sample times enough calls in a row to last this long (the fastest variant's; 0: one "
                        "call): steadier for millisecond kernels, whose repeated calls then find their data in cache")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="malloc reuses freed blocks for both sides (no page faults for reused memory)")
    p.add_argument("--json", default="")
    p.add_argument("--workload", action="append", default=[], metavar="JSON",
                   help='a workload of its own instead of the examples (one --kernels): \'{"batch": 4, "heads": 8, ...}\'')
    blas_setting.add_option(p)
    args = p.parse_args(argv)
    threads.set_threads(args.threads)
    os.environ[_dispatch.CPU_MIN_BYTES_ENV] = "0"  # the kernels themselves are timed, whatever the size
    try:
        names = kernel_names(args.kernels, "bench:kernels")
        try:
            own = own_workloads(args.workload, names)
        except ValueError as e:
            raise ValueError(f"adopt bench:kernels: {e}") from None
        keeps_freed_memory(args.keep_freed_memory, "bench:kernels")
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    malloc = "kept" if memory.kept() else "system"
    blas = blas_setting.apply(args)
    copy_bw, clone_bw = copy_bandwidth(args.repeats, clock=CLOCKS[args.clock])
    said = "keeps freed memory" if malloc == "kept" else "the system's"
    print(f"threads {args.threads} (eager and kernels alike), {args.clock} clock; copy bandwidth {copy_bw / 1e9:.1f} GB/s "
          f"(into a new tensor {clone_bw / 1e9:.1f} GB/s); malloc: {said}; BLAS: {blas}")
    print(f"{'kernel':<18} {'workload':<34} {'eager fwd':>9} {'ours':>8} {'x fwd':>6} {'eager f+b':>9} {'ours':>8} {'x f+b':>6} {'x dflt':>6} {'x port':>6} {'bw':>5}")
    results = {}
    for name in names:
        kernel = registry.KERNELS[name]
        rows = []
        for w in own or kernel.example_workloads[: args.workloads]:
            # a workload of one's own keeps the dtype it names; the examples take --dtype
            w = dict(w) if "dtype" in w and own else dict(w, dtype=args.dtype) if args.dtype in kernel.dtypes else dict(w)
            r = bench_workload(kernel, w, args, copy_bw)
            rows.append(r)
            wl = ",".join(f"{k}={v}" for k, v in w.items() if k != "dtype")
            bw = f"{r['bw_fraction']:.0%}" if r["bw_fraction"] is not None else "-"
            port = f"{r['speedup_portable']:.2f}" if r["speedup_portable"] is not None else "-"
            print(f"{name:<18} {wl:<34} {r['eager_fwd_ms']:9.2f} {r['kernel_fwd_ms']:8.2f} {r['speedup_fwd']:6.2f} "
                  f"{r['eager_fwdbwd_ms']:9.2f} {r['kernel_fwdbwd_ms']:8.2f} {r['speedup_fwdbwd']:6.2f} {r['speedup_default']:6.2f} {port:>6} {bw:>5}")
        med = lambda key: statistics.median(r[key] for r in rows) if rows and rows[0][key] is not None else None  # noqa: E731
        results[name] = {
            "speedup_fwd": med("speedup_fwd"), "speedup_fwdbwd": med("speedup_fwdbwd"),
            "speedup_default": med("speedup_default"), "speedup_portable": med("speedup_portable"), "bw_fraction": med("bw_fraction"),
            "workloads": rows,
        }
    summary = {
        "threads": args.threads, "clock": args.clock, "dtype": args.dtype, "malloc": malloc, "blas": blas, "copy_gbps": copy_bw / 1e9,
        "clone_gbps": clone_bw / 1e9,
        "median_speedup_fwdbwd": statistics.median(r["speedup_fwdbwd"] for r in results.values()) if results else None,
        "kernels": {k: {kk: v for kk, v in r.items() if kk != "workloads"} for k, r in results.items()},
    }
    return finish(summary, results, args.json)


if __name__ == "__main__":
    sys.exit(main())
