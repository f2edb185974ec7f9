"""Every Triton kernel compiles for a Hopper GPU (sm_90), on a machine without one.

Triton's interpreter runs the kernels as numpy and lets through what compiled Triton refuses
(a global that is not constexpr, a type that differs between branches, a shape the layout
cannot take). Here a child process, with the interpreter off, stands a driver in for the
missing device that names an sm_90 target, and turns each launch into a compilation through
ptxas: the kernels' test workloads at the default and a sampled schedule run forward and
backward (the outputs are never computed), so every specialisation they launch is compiled.
"""

import os
import random
import subprocess
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TRITON = os.path.join(ROOT, ".cache", "triton")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device compiles the kernels when the other GPU tests run them")
def test_every_triton_kernel_compiles_for_sm90(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "ADOPT_TRITON_INTERPRET")}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "native"), TRITON, env.get("PYTHONPATH", "")])
    p = subprocess.run([sys.executable, __file__], capture_output=True, text=True, env=env, timeout=600)
    if p.returncode == 3:
        pytest.skip(p.stdout.strip().splitlines()[-1])
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    assert "compiled" in p.stdout, p.stdout


def _compile_only():
    """Launches compile and return without running (no device to run them on)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        print("Triton is not installed (scripts/setup-python.sh --hf installs it)")
        sys.exit(3)
    try:
        from triton.backends.compiler import GPUTarget
        from triton.runtime.driver import driver
        from triton.runtime.jit import JITFunction
    except ImportError as e:
        print(f"this Triton lays out its runtime otherwise ({e})")
        sys.exit(3)

    class Hopper:
        """What a launch asks of the driver before it compiles, answered for an H100/H200."""

        def get_current_target(self):
            return GPUTarget("cuda", 90, 32)

        def get_current_device(self):
            return 0

        def get_current_stream(self, device=None):
            return 0

    driver.set_active(Hopper())
    launch = JITFunction.run
    count = [0]

    def compile_only(self, *args, grid, warmup, **kwargs):
        count[0] += 1
        return launch(self, *args, grid=grid, warmup=True, **kwargs)

    JITFunction.run = compile_only
    return count


def main():
    if not hasattr(torch.Tensor, "untyped_storage"):  # torch 1.x: what Triton's binder reads
        torch.Tensor.untyped_storage = lambda self: self.storage().untyped()
    count = _compile_only()
    from adopt_kernels import gpu, registry
    from adopt_kernels import kernels as _kernels  # noqa: F401

    # CPU tensors stand in for CUDA ones (the kernels read only their dtypes and addresses)
    gpu.interpreting = lambda: True
    for name, kernel in sorted(registry.KERNELS.items()):
        if kernel.cuda_space is None:
            continue
        for w in gpu.module(kernel).TEST_WORKLOADS:
            schedules = [dict(kernel.cuda_space.default), kernel.cuda_space.sample(random.Random(name), w)]
            for s in schedules:
                run, _eager, _check = kernel.make_case(w, seed=1)
                try:
                    run(s)
                except Exception as e:
                    print(f"{name} at {w}, schedule {s}:")
                    raise e
    print(f"{count[0]} launches compiled for sm_90")


if __name__ == "__main__":
    main()
