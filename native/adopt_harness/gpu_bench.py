"""The Triton kernels on a CUDA device: each against the eager torch composite it replaces, and
each GPU schedule space measured exhaustively for the tuner's replay.

For every kernel with a ``cuda_space`` and each of its example workloads, grown until a forward
moves at least ``--min-mib`` (small GPU launches measure the launch, not the kernel): every legal
schedule is checked against the float64 reference and timed, interleaved over ``--repeats``
rounds, with CUDA events around enough calls to fill a millisecond; the eager composite is timed
in the same rounds. The physical limit is a device-to-device copy measured in the same run:
``bw_fraction`` is the bytes a fused forward must move over its time as a fraction of it. At
each kernel's first workload the best schedule is also timed against ``torch.compile`` of the
eager composite (``--no-vs-compiled`` skips it: compiling takes tens of seconds a kernel).

Compiling is most of the cost of a GPU space, so ``--jobs`` processes compile every schedule first
(Triton's on-disk cache then serves the measuring process). ``--deadline-s`` stops starting new
work past that many seconds, so one short run on a GPU machine always writes what it has.

Usage: python -m adopt_harness.gpu_bench [--kernels a,b] [--dtype bfloat16] [--workloads 5] [--workload JSON ...]
       [--repeats 5] [--min-mib 128] [--replay-out DIR] [--json OUT] [--jobs N] [--deadline-s S]
       [--no-vs-compiled] [--interpret]
Ends with one JSON line.
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import statistics
import sys
import time

import torch

from adopt_kernels import _dispatch, registry, target
from adopt_harness.kernels_bench import own_workloads
from adopt_harness.linear_ce_bench import cuda_peak
from adopt_harness.rounds import in_round
from adopt_harness.measure import template_hash
from adopt_kernels import kernels as _kernels  # noqa: F401  (registers them)

# batch before the lengths (unlike measure.py's shrinking): growing an attention's q_len alone
# would change its shape, not only its size
SCALABLE = ("rows", "tokens", "params", "batch", "seq", "q_len")


def _leading(workload):
    return next((f for f in SCALABLE if isinstance(workload.get(f), int)), None)


def grown(kernel, workload, min_bytes, limit=64):
    """``workload`` with its leading size doubled until a forward moves ``min_bytes``."""
    field = _leading(workload)
    if field is None or kernel.bytes_moved is None:
        return workload
    w, factor = dict(workload), 1
    while kernel.bytes_moved(w) < min_bytes and factor < limit:
        factor *= 2
        w[field] = workload[field] * factor
    return w


DEVICE = "cuda"  # "cpu" with --interpret: the same flow through Triton's interpreter (a dry run)


def tiny(workload):
    """The interpreter's stand-in for a workload: its leading size cut to a handful of rows."""
    field = _leading(workload)
    return workload if field is None else dict(workload, **{field: min(workload[field], 4)})


def gpu_seconds(fn, inner):
    if DEVICE == "cpu":
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        return (time.perf_counter() - t) / inner
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(inner):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / inner


def inner_count(fn, min_s=1e-3):
    one = max(gpu_seconds(fn, 1), 1e-6)
    return max(1, min(200, int(-(-min_s // one))))


def interleaved(variants, repeats):
    """Median seconds per variant, round-robin over ``repeats`` rounds (drift hits all alike),
    every other round backwards (rounds.py)."""
    inner = {k: inner_count(fn) for k, fn in variants.items()}
    times = {k: [] for k in variants}
    for r in range(repeats):
        for k, fn in in_round(variants, r):
            times[k].append(gpu_seconds(fn, inner[k]))
    return {k: statistics.median(v) for k, v in times.items()}, times


def copy_bandwidth(nbytes=1 << 30):
    src = torch.ones(nbytes // 4, device=DEVICE)
    dst = torch.empty_like(src)
    t, _ = interleaved({"copy": lambda: dst.copy_(src)}, 7)
    return 2 * nbytes / t["copy"]


def _compile_one(task):
    """Runs one schedule once in a fresh process: Triton compiles it into its on-disk cache.
    Returns (error or None, seconds of that first run: mostly the compile)."""
    name, workload, schedule = task
    try:
        run, _eager, _check = registry.KERNELS[name].make_case(workload, seed=0, device="cuda")
        torch.cuda.synchronize()
        t = time.perf_counter()
        run(schedule)
        torch.cuda.synchronize()
        return None, time.perf_counter() - t
    except Exception as e:  # the measuring process records the failure itself
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}", 0.0


def precompile(kernel, workloads, schedules, jobs):
    """Compiles every schedule at every workload in ``jobs`` processes. Returns the wall seconds and,
    per schedule, the seconds of its first run at the first workload (the replay's compile cost)."""
    t0 = time.perf_counter()
    tasks = [(kernel.name, w, s) for w in workloads for s in schedules]
    if jobs <= 1 or len(tasks) < 4 or DEVICE != "cuda":
        return 0.0, {}
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        answers = list(pool.map(_compile_one, tasks))
    per = {json.dumps(s, sort_keys=True): {"seconds": round(secs, 3), "cached": False, "error": err}
           for (_n, _w, s), (err, secs) in zip(tasks[: len(schedules)], answers[: len(schedules)])}
    return time.perf_counter() - t0, per


def measure_space(kernel, workload, schedules, repeats):
    """Every schedule at ``workload``: checked, then timed interleaved with the eager composite."""
    run, eager, check = kernel.make_case(workload, seed=0, device=DEVICE)
    status, errors, fns = {}, {}, {}
    for s in schedules:
        key = json.dumps(s, sort_keys=True)
        fell_back = _dispatch.FALLBACKS[kernel.name]
        try:
            check(run(s))
        except Exception as e:  # a schedule that fails is recorded and never chosen
            status[key] = "wrong" if isinstance(e, AssertionError) else "crash"
            errors[key] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            continue
        if _dispatch.FALLBACKS[kernel.name] != fell_back:
            status[key], errors[key] = "compile_error", "the device could not take this schedule; the default ran instead"
            continue
        status[key] = "ok"
        fns[key] = (lambda s=s: run(s))
    both, samples = interleaved({**fns, "eager": lambda: eager(True)}, repeats)
    results = []
    for s in schedules:
        key = json.dumps(s, sort_keys=True)
        ok = status[key] == "ok"
        results.append({"schedule": s, "status": status[key], "median_s": both[key] if ok else None,
                        "times_s": [round(t, 9) for t in samples[key]] if ok else [],
                        **({"error": errors[key]} if key in errors else {})})
    ok = [r for r in results if r["status"] == "ok"]
    summary = None
    if ok:
        best = min(ok, key=lambda r: r["median_s"])["schedule"]
        default = dict(kernel.cuda_space.default)
        fwd, _ = interleaved({"eager": lambda: eager(False), "best": lambda: run(best, False),
                              "default": lambda: run(default, False)}, repeats)
        summary = {"best_schedule": best, "eager_fwd_ms": fwd["eager"] * 1e3, "kernel_fwd_ms": fwd["best"] * 1e3,
                   "eager_fwdbwd_ms": both["eager"] * 1e3, "kernel_fwdbwd_ms": both[json.dumps(best, sort_keys=True)] * 1e3,
                   "speedup_fwd": fwd["eager"] / fwd["best"], "speedup_fwd_default": fwd["eager"] / fwd["default"],
                   "speedup_fwdbwd": both["eager"] / both[json.dumps(best, sort_keys=True)],
                   "speedup_default": (both["eager"] / both[json.dumps(default, sort_keys=True)]
                                       if status.get(json.dumps(default, sort_keys=True)) == "ok" else None)}
    return results, summary


def vs_compiled(kernel, workload, schedule, repeats):
    """Forward+backward at one workload against ``torch.compile`` of the eager composite the kernel
    replaces: the peer a user would reach for. Compiling takes tens of seconds a workload, so the
    caller asks for one."""
    if not hasattr(torch, "compile"):
        return {"error": f"torch {torch.__version__} has no torch.compile"}
    run, eager, _check = kernel.make_case(workload, seed=0, device=DEVICE)
    try:
        compiled = torch.compile(eager, dynamic=False)
        t0 = time.perf_counter()
        compiled(True)
        compiled(True)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        compile_s = time.perf_counter() - t0
    except Exception as e:  # the comparison must not lose the kernel's own figures
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
    times, _ = interleaved({"ours": lambda: run(schedule, True), "compiled": lambda: compiled(True), "eager": lambda: eager(True)}, repeats)
    return {"workload": workload, "kernel_fwdbwd_ms": times["ours"] * 1e3, "compiled_fwdbwd_ms": times["compiled"] * 1e3,
            "eager_fwdbwd_ms": times["eager"] * 1e3, "speedup_vs_compiled": times["compiled"] / times["ours"],
            "compiled_over_eager": times["compiled"] / times["eager"], "compile_s": compile_s}


def bench_kernel(kernel, args, copy_bw, fingerprint, deadline):
    space = kernel.cuda_space
    workloads = []
    for w in args.own or kernel.example_workloads:
        # --dtype replaces an example's dtype and fills in one a workload of one's own leaves out
        if args.dtype in kernel.dtypes + ("float16",) and ("dtype" not in w if args.own else "dtype" in w):
            w = dict(w, dtype=args.dtype)
        w = grown(kernel, w, args.min_mib << 20) if DEVICE == "cuda" else tiny(w)
        if w not in workloads:
            workloads.append(w)
    workloads = workloads[: args.workloads]
    # constraints may name workload fields: the union of what is legal at each workload
    legal_all = []
    for w in workloads:
        legal_all += [s for s in space.enumerate(w) if s not in legal_all]
    compile_s, per_schedule = precompile(kernel, workloads, legal_all, args.jobs)
    entries, rows = [], []
    for w in workloads:
        if time.perf_counter() > deadline:
            print(f"  {kernel.name}: deadline reached, {w} not measured", file=sys.stderr)
            break
        legal = [s for s in legal_all if space.legal(s, w)]
        results, summary = measure_space(kernel, w, legal, args.repeats)
        entries.append({"workload": w, "example_workload": w, "runs_per_sample": 1, "results": results})
        if summary:
            summary["bw_fraction"] = kernel.bytes_moved(w) / (summary["kernel_fwd_ms"] / 1e3) / copy_bw if kernel.bytes_moved else None
            rows.append({"workload": w, **summary})
            wl = ",".join(f"{k}={v}" for k, v in w.items() if k != "dtype")
            bw = f"{summary['bw_fraction']:.0%}" if summary["bw_fraction"] is not None else "-"
            print(f"{kernel.name:<16} {wl:<40} {summary['eager_fwd_ms']:8.3f} {summary['kernel_fwd_ms']:8.3f} {summary['speedup_fwd']:6.2f} "
                  f"{summary['eager_fwdbwd_ms']:9.3f} {summary['kernel_fwdbwd_ms']:8.3f} {summary['speedup_fwdbwd']:6.2f} "
                  f"{summary['speedup_default'] or float('nan'):6.2f} {bw:>5}  ok {sum(r['status'] == 'ok' for r in results)}/{len(results)}", flush=True)
        else:
            print(f"{kernel.name:<16} {w}: no schedule passed its check: {results[0].get('error') if results else 'no legal schedule'}", flush=True)
    if args.replay_out and entries:
        data = {"format": "adopt-replay/1", "kernel": kernel.name, "target": fingerprint, "template_hash": template_hash(kernel, args.dtype, "cuda"),
                "space": space.to_json(), "fixed": {}, "repeats": args.repeats, "threads": None, "clock": "cuda-events",
                "compile_s": per_schedule, "compile_wall_s": compile_s, "workloads": entries}
        os.makedirs(args.replay_out, exist_ok=True)
        with open(os.path.join(args.replay_out, f"{kernel.name}.cuda-{fingerprint['key']}.json"), "w", encoding="utf-8") as f:
            json.dump(data, f, sort_keys=True)
            f.write("\n")
    peer = None
    if args.vs_compiled and rows and time.perf_counter() < deadline:
        peer = vs_compiled(kernel, rows[0]["workload"], rows[0]["best_schedule"], args.repeats)
        if "error" in peer:
            print(f"  {kernel.name} vs torch.compile: not measured ({peer['error']})", flush=True)
        else:
            print(f"  {kernel.name} vs torch.compile (first workload, forward+backward): ours {peer['kernel_fwdbwd_ms']:.3f} ms, "
                  f"compiled {peer['compiled_fwdbwd_ms']:.3f} ms (x{peer['speedup_vs_compiled']:.2f}), eager {peer['eager_fwdbwd_ms']:.3f} ms; "
                  f"compiling took {peer['compile_s']:.0f} s", flush=True)
    memory = memory_sweep(kernel, args.dtype) if DEVICE == "cuda" and time.perf_counter() < deadline else []
    if kernel.name == "flash_attention" and DEVICE == "cuda" and time.perf_counter() < deadline:
        try:
            memory.append({"vs_sdpa": attention_vs_sdpa(args.repeats)})
        except Exception as e:  # the comparison must not lose the kernel's own figures
            print(f"  attention vs SDPA failed: {type(e).__name__}: {e}", flush=True)
    med = lambda key: statistics.median(r[key] for r in rows if r[key] is not None) if any(r[key] is not None for r in rows) else None  # noqa: E731
    return {"memory": memory, "vs_compiled": peer, "speedup_fwd": med("speedup_fwd"), "speedup_fwdbwd": med("speedup_fwdbwd"), "speedup_default": med("speedup_default"),
            "bw_fraction": med("bw_fraction"), "compile_s": compile_s, "workloads": rows}


# Peak memory against sequence length (attention) and vocabulary (linear + cross-entropy): what
# the fused kernels exist to keep linear, or a fraction of eager's.
MEMORY_SWEEPS = {
    "flash_attention": [{"batch": 1, "heads": 12, "q_len": n, "k_len": n, "head_dim": 64} for n in (1024, 2048, 4096, 8192)],
    "linear_cross_entropy": [{"tokens": 8192, "hidden": h, "vocab": v} for h, v in ((768, 32000), (768, 50257), (2048, 32000))],
}


def attention_vs_sdpa(repeats):
    """The blocked attention against torch's own fused attention (SDPA picks flash or cuDNN on a
    recent GPU): forward+backward, bf16, a padding mask and causal. What decides whether a
    rewritten model should call it on this device rather than hand the work to SDPA."""
    from adopt_kernels.kernels import flash_attention as fa
    import torch.nn.functional as F

    rows = []
    for (b, h, n, d), form in [((4, 12, 1024, 64), "padding"), ((2, 12, 4096, 64), "padding"),
                               ((4, 32, 2048, 128), "causal"), ((2, 16, 4096, 128), "causal")]:
        g = torch.Generator(device=DEVICE).manual_seed(0)
        q, k, v = (torch.randn(b, h, n, d, device=DEVICE, dtype=torch.bfloat16, generator=g).requires_grad_() for _ in range(3))
        dy = torch.randn(b, h, n, d, device=DEVICE, dtype=torch.bfloat16, generator=g)
        keep = torch.ones(b, 1, 1, n, dtype=torch.bool, device=DEVICE)
        keep[..., int(n * 0.9):] = False
        causal = form == "causal"

        def ours():
            out = fa.flash_attention(q, k, v, keep=None if causal else keep, is_causal=causal)
            out.backward(dy)

        def sdpa():
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if causal else keep, is_causal=causal)
            out.backward(dy)

        times, _ = interleaved({"ours": ours, "sdpa": sdpa}, repeats)
        rows.append({"shape": [b, h, n, d], "form": form, "ours_ms": times["ours"] * 1e3, "sdpa_ms": times["sdpa"] * 1e3,
                     "ours_over_sdpa": times["ours"] / times["sdpa"]})
        print(f"  attention vs SDPA  b={b} h={h} n={n} d={d} {form:<8} ours {times['ours'] * 1e3:8.3f} ms, SDPA {times['sdpa'] * 1e3:8.3f} ms "
              f"(ours/SDPA {times['ours'] / times['sdpa']:.2f})", flush=True)
    return rows


def memory_sweep(kernel, dtype):
    rows = []
    for w in MEMORY_SWEEPS.get(kernel.name, ()):
        w = dict(w, dtype=dtype)
        run, eager, _check = kernel.make_case(w, seed=0, device=DEVICE)
        default = dict(kernel.cuda_space.default)
        ours, theirs = cuda_peak(lambda: run(default)), cuda_peak(lambda: eager(True))
        times, _ = interleaved({"eager": lambda: eager(True), "ours": lambda: run(default)}, 3)
        rows.append({"workload": w, "peak_mib": ours / 2**20, "eager_peak_mib": theirs / 2**20, "memory_ratio": ours / max(1, theirs),
                     "time_ratio": times["ours"] / times["eager"]})
        wl = ",".join(f"{k}={v}" for k, v in w.items() if k != "dtype")
        print(f"  memory {kernel.name:<16} {wl:<44} peak {ours / 2**20:9.1f} MiB, eager {theirs / 2**20:9.1f} MiB "
              f"(x{ours / max(1, theirs):.3f}); time ours/eager {times['ours'] / times['eager']:.2f}", flush=True)
    return rows


def _median_peer(results):
    ratios = [r["vs_compiled"]["speedup_vs_compiled"] for r in results if (r.get("vs_compiled") or {}).get("speedup_vs_compiled")]
    return statistics.median(ratios) if ratios else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kernels", default="")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--workloads", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-mib", type=int, default=128)
    p.add_argument("--replay-out", default="")
    p.add_argument("--json", default="")
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    p.add_argument("--deadline-s", type=float, default=float("inf"))
    p.add_argument("--interpret", action="store_true", help="a dry run on the CPU through Triton's interpreter (tiny sizes)")
    p.add_argument("--no-vs-compiled", dest="vs_compiled", action="store_false",
                   help="skip the comparison with torch.compile of the eager composite (at each kernel's first workload)")
    p.add_argument("--workload", action="append", default=[], metavar="JSON",
                   help='a workload of its own instead of the examples (one --kernels), grown like them: '
                        '\'{"batch": 1, "heads": 12, "q_len": 1024, "k_len": 1024, "head_dim": 64, "dropout": 0.1}\'')
    args = p.parse_args(argv)
    try:
        args.own = own_workloads(args.workload, [n for n in args.kernels.split(",") if n])
    except ValueError as e:
        print(f"adopt gpu_bench: {e}", file=sys.stderr)
        return 2
    global DEVICE
    os.environ["ADOPT_TRITON_MIN_BYTES"] = "0"  # the kernels themselves are measured, whatever the size
    if args.interpret:
        DEVICE = "cpu"
        os.environ["TRITON_INTERPRET"] = os.environ["ADOPT_TRITON_INTERPRET"] = "1"
    elif not torch.cuda.is_available():
        print("adopt gpu_bench: no CUDA device; the Triton kernels are checked on the CPU by native/tests/test_gpu_kernels.py", file=sys.stderr)
        return 2
    deadline = time.perf_counter() + args.deadline_s
    names = [n for n in args.kernels.split(",") if n] or sorted(k for k, v in registry.KERNELS.items() if v.cuda_space is not None)
    unknown = [n for n in names if n not in registry.KERNELS or registry.KERNELS[n].cuda_space is None]
    if unknown:
        print(f"adopt gpu_bench: no Triton kernel for {', '.join(unknown)}", file=sys.stderr)
        return 2
    fingerprint = target.fingerprint("cuda") if DEVICE == "cuda" else {"device": "cuda", "gpu": "Triton interpreter", "triton": None, "key": "interpreter"}
    copy_bw = copy_bandwidth()
    print(f"{fingerprint['gpu']}, torch {torch.__version__}, Triton {fingerprint['triton']}; copy bandwidth {copy_bw / 1e9:.0f} GB/s; {args.dtype}")
    print(f"{'kernel':<16} {'workload':<40} {'eager fwd':>8} {'ours':>8} {'x fwd':>6} {'eager f+b':>9} {'ours':>8} {'x f+b':>6} {'x dflt':>6} {'bw':>5}")
    results = {}
    for name in names:
        if time.perf_counter() > deadline:
            print(f"  deadline reached before {name}", file=sys.stderr)
            break
        try:
            results[name] = bench_kernel(registry.KERNELS[name], args, copy_bw, fingerprint, deadline)
        except Exception as e:  # one kernel's failure must not lose the others' figures
            print(f"{name}: FAILED {type(e).__name__}: {e}", flush=True)
            results[name] = {"error": f"{type(e).__name__}: {e}"}
    done = [r for r in results.values() if r.get("speedup_fwdbwd")]
    summary = {"device": fingerprint["gpu"], "dtype": args.dtype, "copy_gbps": copy_bw / 1e9,
               "median_speedup_fwdbwd": statistics.median(r["speedup_fwdbwd"] for r in done) if done else None,
               "median_speedup_vs_compiled": _median_peer(results.values()),
               "kernels": {k: {kk: v for kk, v in r.items() if kk not in ("workloads", "memory")} for k, r in results.items()}}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({**summary, "detail": results}, f, indent=1)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
