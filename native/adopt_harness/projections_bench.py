"""Stacked projections (``adopt_kernels.fused_qkv``) against three separate linear layers.

Forward and backward of q, k and v projections of one input (the gradients of all three outputs
and of the input), at a few (tokens, width) workloads, side by side: the variants alternate
within each round, the median of ``--repeats`` rounds is kept, one thread count for both.
Prints a table and ends with one JSON line (per workload: separate_ms, stacked_ms, speedup).

Usage: python -m adopt_harness.projections_bench [--threads N] [--repeats 15]
       [--shapes 788x768,2048x768,2048x512]
"""
import argparse
import json
import os
import statistics
import time

import torch
from torch import nn

import adopt_kernels
from adopt_harness import blas_setting
from adopt_harness.rounds import in_round
from adopt_kernels.threads import set_threads


def _case(tokens, width, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Linear(width, width) for _ in range(3)]
    x = torch.randn(4, tokens // 4, width)
    grads = [torch.randn(4, tokens // 4, width) for _ in range(3)]

    def separate():
        xl = x.detach().requires_grad_()
        torch.autograd.backward([layer(xl) for layer in layers], grads)

    def stacked():
        xl = x.detach().requires_grad_()
        torch.autograd.backward(list(adopt_kernels.fused_qkv(xl, *layers)), grads)

    return {"separate": separate, "stacked": stacked}, layers


def measure(tokens, width, repeats):
    variants, layers = _case(tokens, width)
    for fn in variants.values():  # warm-up: allocations, BLAS threads
        fn()
        fn()
    times = {k: [] for k in variants}
    for r in range(repeats):
        for k, fn in in_round(variants, r):
            for layer in layers:
                layer.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"tokens": tokens, "width": width, "separate_ms": med["separate"] * 1e3, "stacked_ms": med["stacked"] * 1e3,
            "speedup": med["separate"] / med["stacked"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--shapes", default="788x768,2048x768,2048x512", help="TOKENSxWIDTH,... (tokens a multiple of 4)")
    blas_setting.add_option(p)
    args = p.parse_args(argv)
    blas = blas_setting.apply(args)
    set_threads(args.threads)
    # the stacked column stacks at any row count (below 32 CPU rows the API runs the layers apart)
    os.environ["ADOPT_CPU_MIN_BYTES"] = "0"
    rows = [measure(*map(int, s.split("x")), args.repeats) for s in args.shapes.split(",") if s]
    print(f"stacked projections (fused_qkv) vs three linear layers, forward+backward, {args.threads} threads, median of {args.repeats}; BLAS: {blas}")
    print(f"{'tokens':>7} {'width':>6} {'separate ms':>12} {'stacked ms':>11} {'speed-up':>9}")
    for r in rows:
        print(f"{r['tokens']:>7} {r['width']:>6} {r['separate_ms']:>12.1f} {r['stacked_ms']:>11.1f} {r['speedup']:>8.2f}x")
    print(json.dumps({"bench": "projections", "threads": args.threads, "blas": blas, "repeats": args.repeats, "workloads": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
