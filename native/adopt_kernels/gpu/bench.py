"""Times each Triton kernel against the eager code it replaces, on a CUDA device.

    python -m adopt_kernels.gpu.bench [KERNEL ...] [--repeats N]

For every example workload of a kernel with a GPU path, in float32 and bfloat16, at the
default schedule: the forward alone and the forward with its backward, the kernel's and the
eager code's (``make_case``'s ``run`` and ``eager``), as the median of N timed calls after
warm-up. One JSON line per measurement, with the forward's bandwidth where the kernel says
how many bytes a fused pass moves (``bytes_moved``): an H200 reads and writes about 4.8 TB/s.
"""

import argparse
import json
import statistics
import sys

import torch


def _median_ms(fn, repeats):
    for _ in range(3):  # compilation, autotuning of the eager ops, caches
        fn()
    # events around each call, read after one synchronisation at the end
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) for start, end in events)


def measure(kernel, workload, repeats):
    """Milliseconds of the kernel and of the eager code, forward and forward + backward."""
    run, eager, _check = kernel.make_case(workload, seed=0, device="cuda")
    schedule = dict(kernel.cuda_space.default)
    row = {"kernel": kernel.name, "workload": workload}
    for backward in (False, True):
        step = "train" if backward else "forward"
        row[f"{step}_ms"] = round(_median_ms(lambda: run(schedule, backward=backward), repeats), 4)
        row[f"{step}_eager_ms"] = round(_median_ms(lambda: eager(backward=backward), repeats), 4)
    if kernel.bytes_moved is not None:
        row["forward_GBps"] = round(kernel.bytes_moved(workload) / row["forward_ms"] / 1e6, 1)
    row["forward_speedup"] = round(row["forward_eager_ms"] / row["forward_ms"], 2)
    row["train_speedup"] = round(row["train_eager_ms"] / row["train_ms"], 2)
    return row


def main(argv=None):
    from .. import registry
    from .. import kernels as _kernels  # noqa: F401  (registers every kernel)

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kernels", nargs="*", help="kernel names (default: every kernel with a GPU path)")
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    names = args.kernels or sorted(k for k, v in registry.KERNELS.items() if v.cuda_space is not None)
    for name in names:
        kernel = registry.KERNELS[name]
        for w in kernel.example_workloads:
            for dtype in ("float32", "bfloat16"):
                try:
                    row = measure(kernel, dict(w, dtype=dtype), args.repeats)
                except Exception as e:  # one failure does not hide the other measurements
                    row = {"kernel": name, "workload": dict(w, dtype=dtype), "error": f"{type(e).__name__}: {e}"[:500]}
                print(json.dumps(row), flush=True)
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
