"""Fused linear + cross-entropy against eager: time and peak memory of forward + backward.

Four variants on the same inputs, at one workload (tokens x hidden -> vocab):
  eager          F.linear then F.cross_entropy (mean, 10% of labels ignored)
  kernel         adopt_kernels' compiled linear + cross-entropy (the logits never held)
  eager+logits   the same eager code, its logits kept as a model returning them keeps them
  kernel+logits  the kernel variant that returns the logits (linear_cross_entropy(return_logits=True))
Time: the median of interleaved repeats, at one thread count for all. Peak memory: each variant
runs once in a process of its own whose peak resident size is reset after the inputs are made
(/proc/self/clear_refs), so what is counted is what the run adds; on CUDA (``--device cuda``, the
Triton kernel) the allocator's peak above the inputs, in this process, each run synchronised.
Prints a table and ends with one JSON line.

Usage: python -m adopt_harness.linear_ce_bench [--tokens 8192] [--hidden 768] [--vocab 32000]
       [--threads N] [--repeats 3] [--dtype float32] [--variants eager,kernel] [--device cpu]
(--variants: a subset, for a run at a size where each pass takes minutes; a ratio needs its
baseline, so a logits variant brings eager+logits and the kernel brings eager.)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from adopt_harness import blas_setting
from adopt_harness.rounds import in_round
from adopt_kernels.kernels import linear_ce as K
from adopt_kernels.threads import set_threads
from adopt_kernels.kernels import linear_ce_logits as KL


def make_inputs(tokens, hidden, vocab, dtype, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(tokens, hidden, generator=g).to(device, dtype)
    w = (torch.randn(vocab, hidden, generator=g) * 2 / hidden ** 0.5).to(device, dtype)
    labels = torch.randint(0, vocab, (tokens,), generator=g)
    labels[torch.rand(tokens, generator=g) < 0.1] = -100
    return h, w, labels.to(device)


def variants(h, w, labels):
    count = max(1, int((labels != -100).sum()))

    def leaves():
        return h.detach().requires_grad_(True), w.detach().requires_grad_(True)

    def eager(keep_logits):
        def run():
            x, v = leaves()
            logits = F.linear(x, v)
            loss = F.cross_entropy(logits.float(), labels)
            loss.backward()
            return (loss, logits) if keep_logits else (loss,)
        return run

    def kernel():
        x, v = leaves()
        loss = K.linear_cross_entropy_rows(x, v, None, labels, -100, 1.0 / count).sum() / count
        loss.backward()
        return (loss,)

    def kernel_logits():
        x, v = leaves()
        losses, logits = KL.linear_cross_entropy_logits_rows(x, v, None, labels, -100, 1.0 / count, torch.float32 if h.dtype == torch.float32 else None)
        loss = losses.sum() / count
        loss.backward()
        return loss, logits

    return {"eager": eager(False), "kernel": kernel, "eager+logits": eager(True), "kernel+logits": kernel_logits}


VARIANTS = ("eager", "kernel", "eager+logits", "kernel+logits")


def baseline(variant):
    return "eager+logits" if variant.endswith("+logits") else "eager"


def chosen(spec, parser):
    """The variants named in ``spec`` (all when empty), each with the baseline its ratio needs."""
    names = [n.strip() for n in spec.split(",") if n.strip()] or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    keep = set(names) | {baseline(n) for n in names}
    return [v for v in VARIANTS if v in keep]


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def probe(args, variant):
    """Peak resident bytes one run of ``variant`` adds above its inputs, in a fresh process
    (a forked one would inherit OpenMP's threads and hang in the first GEMM)."""
    cmd = [sys.executable, "-m", "adopt_harness.linear_ce_bench", "--probe", variant] + [
        f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("tokens", "hidden", "vocab", "threads", "dtype", "variants", "blas_core")]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the memory probe of {variant} failed: {out.stderr.strip()[-300:]}")
    return int(out.stdout.strip().splitlines()[-1])


def cuda_peak(run):
    """Bytes the CUDA allocator's peak rises above what is allocated before ``run``."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = run()
    torch.cuda.synchronize()
    del out
    return torch.cuda.max_memory_allocated() - base


def _probe_main(args, runs):
    base = _status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak resident size starts again from the current one
    out = runs[args.probe]()
    del out
    print(_status("VmHWM:") - base)


def timed(runs, repeats, sync=lambda: None):
    """Median seconds per variant, the variants interleaved in each round (every other round
    backwards: rounds.py) after a warm-up;
    ``sync`` waits for the device before each clock reading."""
    times = {k: [] for k in runs}
    for fn in runs.values():
        fn()
    for r in range(repeats):
        for k, fn in in_round(runs, r):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--variants", default="", help="comma-separated subset of: " + ", ".join(VARIANTS))
    p.add_argument("--probe", default="", help=argparse.SUPPRESS)
    blas_setting.add_option(p)
    args = p.parse_args(argv)
    blas = blas_setting.apply(args)
    wanted = chosen(args.variants, p)
    set_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    h, w, labels = make_inputs(args.tokens, args.hidden, args.vocab, getattr(torch, args.dtype), device=args.device)
    runs = {k: fn for k, fn in variants(h, w, labels).items() if k in wanted}
    if args.probe:
        return _probe_main(args, runs)
    cuda = args.device == "cuda"
    peaks = {k: cuda_peak(fn) if cuda else probe(args, k) for k, fn in runs.items()}
    secs = timed(runs, args.repeats, torch.cuda.synchronize if cuda else lambda: None)
    where = torch.cuda.get_device_name() if cuda else f"{args.threads} threads"
    print(f"linear + cross-entropy, {args.tokens} tokens x {args.hidden} -> {args.vocab}, {args.dtype}, {where}, median of {args.repeats}; BLAS: {blas}")
    print(f"{'variant':<15}{'fwd+bwd s':>11}{'vs eager':>10}{'peak MiB':>11}{'vs eager':>10}")
    rows = {}
    for k in runs:
        base = baseline(k)
        rows[k] = {"seconds": secs[k], "peak_bytes": peaks[k], "time_ratio": secs[k] / secs[base], "memory_ratio": peaks[k] / max(1, peaks[base])}
        print(f"{k:<15}{secs[k]:>11.3f}{rows[k]['time_ratio']:>10.2f}{peaks[k] / 2**20:>11.0f}{rows[k]['memory_ratio']:>10.3f}")
    print(json.dumps({"tokens": args.tokens, "hidden": args.hidden, "vocab": args.vocab, "dtype": args.dtype, "threads": args.threads, "blas": blas,
                      "device": args.device, "variants": rows}))


if __name__ == "__main__":
    main()
