"""Where each compiled CPU kernel starts to beat the eager code it replaces, by call size.

A compiled call pays a fixed cost before its loops run (the API's checks, the schedule lookup,
the autograd Function, the ctypes call, waking OpenMP's threads): some tens of microseconds that
eager torch code does not pay. Below some size that cost is more than the fusion saves, and the
dispatcher hands such calls to the torch code (``cpu_min_bytes`` in each kernel's registration,
``$ADOPT_CPU_MIN_BYTES``). This benchmark measures where that size lies on this machine.

For each kernel it takes an example workload and scales the axes that grow with the tokens
(``size_axes`` in the registration) down by powers of two, to one row. At each size the
kernel's entry point (``adopt_kernels.kernels.*``: its checks, schedule lookup and dispatch,
the compiled path forced on whatever the floor; not the public function's own guards) and the
eager composite are timed interleaved, forward only (inputs that need no gradient: no autograd
graph, as in generation) and
forward + backward, each sample long enough (``--min-sample-ms``) that microsecond calls are
timed in bulk. The crossover is the smallest size from which the kernel is faster at every larger
size measured; the table also says what the registered floor does at each size: a call it hands
to torch that the kernel would have run faster is counted as lost.

A decoded token is another ladder: attention's one query row against a key cache of any
length. ``--workload`` gives the example to start from and ``--axes`` the axes that shrink:
``--kernels flash_attention --workload '{"batch": 1, "heads": 32, "q_len": 1, "k_len": 4096,
"head_dim": 64, "dtype": "float32"}' --axes k_len``.

Usage: python -m adopt_harness.crossover_bench [--kernels a,b] [--threads N] [--repeats 7]
       [--steps 12] [--workload JSON] [--axes a,b] [--min-sample-ms 20] [--keep-freed-memory] [--json OUT]
Ends with one JSON line.
"""

import argparse
import json
import os
import sys

from adopt_harness import blas_setting
from adopt_harness.kernels_bench import CLOCKS, finish, interleaved, keeps_freed_memory, kernel_names
from adopt_kernels import _dispatch, memory, registry, threads
from adopt_kernels import kernels as _kernels  # noqa: F401  (registers them)


def ladder(kernel, workload, steps, axes=None):
    """``workload`` and its copies with every size axis (or those of ``axes``) divided by 2, 4, ...
    (at least 1), up to ``steps`` sizes, largest first; sizes that repeat (an axis already at 1)
    are dropped."""
    out, seen = [], set()
    for k in range(steps):
        w = dict(workload)
        for axis in axes or kernel.size_axes:
            w[axis] = max(1, workload[axis] >> k)
        key = tuple(sorted(w.items()))
        if key not in seen:
            seen.add(key)
            out.append(w)
    return out


def crossover(points, key):
    """The bytes of the smallest point from which ``key`` (eager time over kernel time) stays
    above 1 at every larger point; None when the kernel loses at the largest point."""
    found = None
    for p in sorted(points, key=lambda p: -p["bytes"]):
        if p[key] <= 1.0:
            break
        found = p["bytes"]
    return found


# a float64 reference above this many bytes moved costs more than the timing (linear + CE's
# vocabulary product); those sizes only check that the compiled path ran
CHECK_BELOW_BYTES = 16 << 20


def checked_case(kernel, workload, smallest):
    """``make_case``'s run and eager, after one compiled run that is checked against the
    reference (where affordable) and shown to have taken the compiled path."""
    run, eager, check = kernel.make_case(workload, seed=0)
    before = _dispatch.CALLS[kernel.name]
    out = run(None)
    if _dispatch.CALLS[kernel.name] == before:
        raise RuntimeError(f"{kernel.name} at {workload}: the compiled path did not run (no compiler, or a build failed: see above)")
    if smallest or kernel.bytes_moved(workload) <= CHECK_BELOW_BYTES:
        check(out)
    return run, eager


def measure_point(kernel, workload, args, smallest):
    clock, sample_s = CLOCKS[args.clock], args.min_sample_ms / 1e3
    # forward only as inference runs it (no dropout, no graph); forward + backward as training
    run, eager = checked_case(kernel, {**workload, **kernel.inference_fields}, smallest)
    fwd = interleaved({"eager": lambda: eager(False), "ours": lambda: run(None, False)}, args.repeats, clock=clock, min_sample_s=sample_s)
    run, eager = checked_case(kernel, workload, smallest) if kernel.inference_fields else (run, eager)
    both = interleaved({"eager": lambda: eager(True), "ours": lambda: run(None, True)}, args.repeats, clock=clock, min_sample_s=sample_s)
    return {
        "workload": workload,
        "bytes": kernel.bytes_moved(workload),
        "eager_fwd_us": fwd["eager"] * 1e6, "ours_fwd_us": fwd["ours"] * 1e6,
        "eager_fwdbwd_us": both["eager"] * 1e6, "ours_fwdbwd_us": both["ours"] * 1e6,
        "speedup_fwd": fwd["eager"] / fwd["ours"], "speedup_fwdbwd": both["eager"] / both["ours"],
    }


def to_torch(kernel, point, mode, floor):
    """Whether the public API hands this call to torch: below the mode's floor, or, without
    autograd, at a shape the kernel's registration sends there at any size (``inference_to_torch``:
    attention's one query row)."""
    shaped = kernel is not None and mode == "inference" and kernel.inference_to_torch is not None
    if shaped and kernel.inference_to_torch(point["workload"]):
        return True
    return point["bytes"] < floor


def judge_floors(points, floors, kernel=None):
    """Per mode (inference: forward only; training: forward + backward), the sizes the dispatcher
    hands to torch although the kernel was faster there, and the sizes it leaves on the kernel
    although eager was faster."""
    out = {}
    for mode, key, floor in (("inference", "speedup_fwd", floors.inference), ("training", "speedup_fwdbwd", floors.training)):
        out[mode] = {
            "floor_bytes": floor,
            "handed_to_torch_but_faster": sum(1 for p in points if to_torch(kernel, p, mode, floor) and p[key] > 1.0),
            "kept_but_slower": sum(1 for p in points if not to_torch(kernel, p, mode, floor) and p[key] < 1.0),
        }
    return out


def given_ladder(names, workload, axes):
    """(the workload given as JSON or None, the axes named or None), refused with the reason
    where they do not fit the kernel."""
    given = None
    if workload:
        if len(names) != 1:
            raise ValueError("bench:crossover: --workload gives one kernel's workload: name that kernel alone with --kernels")
        try:
            given = json.loads(workload)
        except json.JSONDecodeError as e:
            raise ValueError(f"bench:crossover: --workload is not JSON: {e}") from None
        fields = registry.KERNELS[names[0]].workload_fields
        missing = [f for f in fields if f not in given] if isinstance(given, dict) else list(fields)
        if missing:
            raise ValueError(f"bench:crossover: --workload lacks {', '.join(missing)} (a {names[0]} workload has {', '.join(fields)})")
    named = [a for a in axes.split(",") if a] or None
    for name in names:
        kernel = registry.KERNELS[name]
        base = given or kernel.example_workloads[0]
        sizes = [f for f in kernel.workload_fields if isinstance(base.get(f), int) and not isinstance(base.get(f), bool) and base[f] > 0]
        bad = [a for a in named or kernel.size_axes if a not in sizes]
        if bad:
            raise ValueError(f"bench:crossover: {name} has no size axis {', '.join(bad)} in that workload "
                             f"(its positive whole-number fields: {', '.join(sizes)})")
    return given, named


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kernels", default="")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--steps", type=int, default=12, help="sizes per kernel, halving from the example workload")
    p.add_argument("--workload-index", type=int, default=0, help="which of the kernel's example workloads to scale down")
    p.add_argument("--workload", default="", help="the example to scale down, as JSON (one kernel): instead of --workload-index")
    p.add_argument("--axes", default="", help="the axes that shrink (comma-separated); default: the kernel's size axes")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    p.add_argument("--min-sample-ms", type=float, default=20.0,
                   help="each sample times enough calls in a row to last this long (at most 64 calls)")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="malloc reuses freed blocks for both sides (no page faults for reused memory)")
    p.add_argument("--json", default="")
    blas_setting.add_option(p)
    args = p.parse_args(argv)
    try:
        names = kernel_names(args.kernels, "bench:crossover")
        keeps_freed_memory(args.keep_freed_memory, "bench:crossover")
        given, axes = given_ladder(names, args.workload, args.axes)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    threads.set_threads(args.threads)
    blas = blas_setting.apply(args)
    os.environ[_dispatch.CPU_MIN_BYTES_ENV] = "0"  # the kernel is timed at every size; the floor is judged, not applied
    print(f"threads {args.threads} (eager and kernels alike), {args.clock} clock, samples of >= {args.min_sample_ms:g} ms; "
          f"malloc: {'kept' if memory.kept() else 'the system' + chr(39) + 's'}; BLAS: {blas}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print(f"{'kernel':<16} {'workload':<44} {'bytes':>10} {'eager fwd':>10} {'ours':>9} {'x fwd':>6} {'eager f+b':>10} {'ours':>9} {'x f+b':>6}  floors send it to (inference/training)")
    results = {}
    for name in names:
        kernel = registry.KERNELS[name]
        base = given or kernel.example_workloads[min(args.workload_index, len(kernel.example_workloads) - 1)]
        floors = _dispatch.registered_floors(kernel)
        points = []
        sizes = ladder(kernel, base, args.steps, axes)
        for w in sizes:
            pt = measure_point(kernel, w, args, smallest=w is sizes[-1])
            points.append(pt)
            wl = ",".join(f"{k}={v}" for k, v in w.items() if k != "dtype")
            side = "/".join("torch" if to_torch(kernel, pt, mode, f) else "kernel" for mode, f in zip(("inference", "training"), floors))
            print(f"{name:<16} {wl:<44} {_dispatch.size_text(pt['bytes']):>10} {pt['eager_fwd_us']:10.1f} {pt['ours_fwd_us']:9.1f} {pt['speedup_fwd']:6.2f} "
                  f"{pt['eager_fwdbwd_us']:10.1f} {pt['ours_fwdbwd_us']:9.1f} {pt['speedup_fwdbwd']:6.2f}  {side}", flush=True)
        results[name] = {
            "crossover_bytes_fwd": crossover(points, "speedup_fwd"),
            "crossover_bytes_fwdbwd": crossover(points, "speedup_fwdbwd"),
            **judge_floors(points, floors, kernel),
            "points": points,
        }
    summary = {
        "threads": args.threads, "clock": args.clock, "malloc": "kept" if memory.kept() else "system", "blas": blas,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "kernels": {k: {kk: v for kk, v in r.items() if kk != "points"} for k, r in results.items()},
    }
    print()
    print("crossover: the smallest size from which the kernel wins at every larger size; lost: sizes the floor hands to torch "
          "where the kernel won; slow kept: sizes it leaves on the kernel where eager won")
    print(f"{'kernel':<16} {'crossover fwd':>14} {'inference floor':>16} {'lost':>5} {'slow kept':>9} "
          f"{'crossover f+b':>14} {'training floor':>15} {'lost':>5} {'slow kept':>9}")
    for k, r in summary["kernels"].items():
        fmt = lambda b: _dispatch.size_text(b) if b is not None else "never"  # noqa: E731
        inf, tr = r["inference"], r["training"]
        print(f"{k:<16} {fmt(r['crossover_bytes_fwd']):>14} {fmt(inf['floor_bytes']):>16} {inf['handed_to_torch_but_faster']:>5} "
              f"{inf['kept_but_slower']:>9} {fmt(r['crossover_bytes_fwdbwd']):>14} {fmt(tr['floor_bytes']):>15} "
              f"{tr['handed_to_torch_but_faster']:>5} {tr['kept_but_slower']:>9}")
    return finish(summary, results, args.json)


if __name__ == "__main__":
    sys.exit(main())
