"""Compiling Triton kernels for a GPU that is not here: Triton's own compiler, and the ptxas it
ships, for Hopper (sm_90). What Triton's interpreter accepts and the compiler would refuse
(layouts, joins, integer types) then shows on a machine without a GPU, as do the registers and
spills of the widest schedules.

The compiler cannot run where the interpreter is switched on (the kernels are interpreted
functions there), so :func:`compile_variants` runs it in a child process:
``python triton_compile.py MODULE`` reads the variants as JSON on stdin and prints one line of
JSON per variant.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def variant(fn, signature, constexprs, num_warps=4):
    """One compilation: the kernel's name in its module, the types of its runtime arguments
    (``*bf16``, ``i32``, ``fp32``...), its constexprs, the warps."""
    return {"fn": fn, "signature": signature, "constexprs": constexprs, "num_warps": num_warps}


def compile_variants(module, variants, timeout=600):
    """Compile ``variants`` of ``adopt_kernels.gpu.<module>`` for sm_90 in a child process;
    returns one dict per variant: ``error`` (None when it compiled), ``registers``, ``spills``
    (bytes stored)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "ADOPT_TRITON_INTERPRET")}
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "native"), os.path.join(ROOT, ".cache", "triton"),
                                         env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, os.path.abspath(__file__), module], input=json.dumps(variants), env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"the compiler's process failed:\n{done.stderr[-4000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


# the spill stores a variant may need before its schedule counts as too wide (bytes a thread)
SPILL_LIMIT = 512


def check_compiles(module, variants):
    """Every variant compiles for sm_90, none spilling more than :data:`SPILL_LIMIT`; skips where
    this Triton has no CUDA backend with its ptxas."""
    import pytest

    triton = pytest.importorskip("triton")
    if not os.path.exists(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")):
        pytest.skip("this Triton ships no ptxas")
    results = compile_variants(module, variants)
    assert len(results) == len(variants), results
    failed = [f"{r['fn']} {r['constexprs']} warps={r['num_warps']}: {r['error']}" for r in results if r["error"]]
    assert not failed, "\n".join(failed)
    spilled = [f"{r['fn']} {r['constexprs']} warps={r['num_warps']}: {r['spills']} bytes" for r in results
               if (r["spills"] or 0) > SPILL_LIMIT]
    assert not spilled, "spills:\n" + "\n".join(spilled)


def _ptxas_usage(ptx, ptxas):
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.ptx")
        with open(src, "w", encoding="utf-8") as f:
            f.write(ptx)
        err = subprocess.run([ptxas, "-arch=sm_90a", "-v", src, "-o", os.path.join(d, "k.o")],
                             capture_output=True, text=True).stderr
    regs = re.search(r"Used (\d+) registers", err)
    spills = re.search(r"(\d+) bytes spill stores", err)
    return int(regs.group(1)) if regs else None, int(spills.group(1)) if spills else None


def _main(module):
    import importlib

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    mod = importlib.import_module(f"adopt_kernels.gpu.{module}")
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    for v in json.load(sys.stdin):
        fn = getattr(mod, v["fn"])
        consts = v["constexprs"]
        sig = {a: "constexpr" if a in consts else v["signature"][a] for a in fn.arg_names}
        out = {"fn": v["fn"], "constexprs": consts, "num_warps": v["num_warps"], "error": None,
               "registers": None, "spills": None}
        try:
            k = triton.compile(ASTSource(fn, sig, constexprs=consts), target=GPUTarget("cuda", 90, 32),
                               options={"num_warps": v["num_warps"]})
            out["registers"], out["spills"] = _ptxas_usage(k.asm["ptx"], ptxas)
        except Exception as e:  # noqa: BLE001  (every failure is a finding)
            out["error"] = f"{type(e).__name__}: {str(e)[:2000]}"
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1])
