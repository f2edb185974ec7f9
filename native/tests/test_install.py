"""``pip install <checkout>/native`` gives a package that rewritten code can import on its own.

Installs into a temporary target (no network: the build uses the interpreter's setuptools) and runs
a compiled kernel from a process whose path holds only that target, so nothing is borrowed from
the checkout.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

NATIVE = Path(__file__).resolve().parents[1]

PROBE = """
import json, torch, adopt_kernels as ak
from adopt_kernels import _dispatch
x = torch.randn(3, 5, 64)
w = torch.randn(64)
before = _dispatch.CALLS.get("rms_norm", 0)
y = ak.rms_norm(x, w, 1e-6)
ref = w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
print(json.dumps({"file": ak.__file__, "version": ak.__version__, "kernels": sorted(ak.KERNELS),
                  "compiled": _dispatch.CALLS.get("rms_norm", 0) - before,
                  "max_err": float((y - ref).abs().max())}))
"""


def _pip_available():
    return subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _pip_available(), reason="this Python has no pip")
def test_pip_install_gives_a_working_package(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index",
         "--quiet", "--target", str(target), str(NATIVE)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert probe.returncode == 0, probe.stderr
    got = json.loads(probe.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).resolve().is_relative_to(target.resolve())
    import adopt_kernels

    assert got["version"] == adopt_kernels.__version__
    assert got["kernels"] == sorted(adopt_kernels.KERNELS)
    assert got["max_err"] < 1e-4
    # the compiled kernel ran from the installed package (its template files came with it)
    assert got["compiled"] >= 1
