"""``python -m adopt_kernels.cli build|status|registry``: what ``adopt kernels`` runs.

Prints a human table on stderr and one JSON object as the last stdout line.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

from . import _build, _dispatch, blas_core, idle_threads, memory, registry, target
from . import kernels as _kernels  # noqa: F401  (registers them)
from ._impl.switches import enabled


def _compiled_state(kernel, dtype):
    source = kernel.source(dict(kernel.space.default), dtype)
    return "cached" if os.path.exists(_build.library_path(source)) else "not built"


def _cuda_state():
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "CUDA present, Triton missing: torch formulations run"
    return "CUDA and Triton present"


_PROBE = "import json, adopt_kernels as a; print(json.dumps({'file': a.__file__, 'version': a.__version__}))"


def installed_state():
    """Whether this Python imports adopt_kernels without adopt's checkout on its path.

    That is what rewritten model code sees when it runs outside adopt: without the package its
    guards take the original code, silently, so the status says so.
    """
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if p and os.path.abspath(p) != checkout]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    try:
        r = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env,
                           cwd=os.path.expanduser("~"), timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"importable": False, "error": str(e), "python": sys.executable, "install": checkout}
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return {"importable": False, "error": last, "python": sys.executable, "install": checkout}
    got = json.loads(r.stdout.strip().splitlines()[-1])
    return {"importable": True, "file": got["file"], "version": got["version"], "python": sys.executable,
            "install": checkout}


def _json_number(x):
    """``x`` where JSON can carry it; "inf" (every CPU call to torch) or "nan" as text."""
    return x if x is None or math.isfinite(x) else str(x)


def status():
    cxx = _build.compiler()
    ident = _build.compiler_identity(cxx)
    rows = []
    for name, k in sorted(registry.KERNELS.items()):
        on = enabled("native") and enabled(k.switch)
        state = {d: (_compiled_state(k, d) if ident else "no compiler") for d in k.dtypes}
        floors = _dispatch.registered_floors(k)
        rows.append({"kernel": name, "api": list(k.api), "switch": k.switch, "enabled": on, "cpu": state,
                     "picks": ("compiled kernel" if on and ident else "reference path"),
                     "cpu_floor": {"inference": floors.inference, "training": floors.training}})
    return {
        "command": "status", "ok": True, "compiler": ident, "compiler_command": cxx,
        "cache": _build.cache_dir(), "target": target.fingerprint("cpu"), "cuda": _cuda_state(),
        "disabled": os.environ.get("ADOPT_DISABLE", ""), "kernels": rows, "installed": installed_state(),
        # what $ADOPT_CPU_MIN_BYTES sets for every kernel, or None: each kernel's own floors apply
        "cpu_floor_override": _json_number(_dispatch.cpu_floor_override()),
        "malloc": {"kept": memory.kept(), "glibc": memory.available()},
        "idle_threads": idle_threads.report(), "blas_core": blas_core.report(),
    }


def build(names, dtypes):
    results, ok = [], True
    for name in names:
        k = registry.KERNELS[name]
        for d in dtypes or k.dtypes:
            if d not in k.dtypes:
                continue
            t = time.perf_counter()
            try:
                _dispatch.library(k, dict(k.space.default), d)
                results.append({"kernel": name, "dtype": d, "ok": True, "seconds": round(time.perf_counter() - t, 2)})
            except _build.KernelBuildError as e:
                ok = False
                results.append({"kernel": name, "dtype": d, "ok": False, "error": str(e)})
    return {"command": "build", "ok": ok, "cache": _build.cache_dir(), "built": results}


def main(argv=None):
    try:
        return _main(argv)
    except _build.CacheUnusable as e:
        # status and build both name the cache; neither can say anything true without it
        command = next((a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("-")), "status")
        print(json.dumps({"command": command, "ok": False, "error": str(e)}))
        return 2


def _main(argv):
    p = argparse.ArgumentParser(prog="adopt_kernels.cli")
    p.add_argument("command", choices=("build", "status", "registry"))
    p.add_argument("--kernels", default="")
    p.add_argument("--dtypes", default="")
    p.add_argument("--target", default="cpu", choices=("cpu", "cuda"))
    args = p.parse_args(argv)
    if args.command == "registry":
        print(json.dumps(registry.to_json(), indent=1, sort_keys=True))
        return 0
    if args.command == "status":
        print(json.dumps(status()))
        return 0
    if args.target == "cuda":
        print(json.dumps({"command": "build", "ok": False, "error": f"target cuda: {_cuda_state()}; Triton kernels compile on first use on the GPU"}))
        return 2
    names = [n for n in args.kernels.split(",") if n] or sorted(registry.KERNELS)
    unknown = [n for n in names if n not in registry.KERNELS]
    if unknown:
        print(json.dumps({"command": "build", "ok": False, "error": f"unknown kernel(s): {', '.join(unknown)}; known: {', '.join(sorted(registry.KERNELS))}"}))
        return 2
    if _build.compiler_identity(_build.compiler()) is None:
        print(json.dumps({"command": "build", "ok": False, "error": f"{_build.compiler_problem(_build.compiler())} (set $CXX or install g++): kernels run their reference path"}))
        return 2
    _build.cache_dir()  # an unusable cache fails every kernel alike: say it once
    out = build(names, [d for d in args.dtypes.split(",") if d])
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
