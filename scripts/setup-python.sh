#!/usr/bin/env bash
# The Python side adopt's tests and verification need: Debian's CPU build of torch (1.13) for
# Debian's own python3, with pytest; and headless Chromium for the report's screenshot test. Installed once; later runs find it and do nothing.
set -euo pipefail
PY=${ADOPT_PYTHON:-/usr/bin/python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

# --hf: transformers 4.35.0 (pure Python) for the HF-199 verification, into .cache/pydeps, with
# the pip of the Python on PATH (same CPython minor version as Debian's: the wheels fit both).
# Also Triton 3.6 into .cache/triton, whose interpreter runs the GPU kernels' tests on the CPU
# (the tests put it on the path themselves; nothing else imports Triton without a GPU).
if [ "${1:-}" = "--hf" ]; then
  "$0"
  DEPS="$ROOT/.cache/pydeps"
  if ! PYTHONPATH="$DEPS" "$PY" -c 'import transformers' 2>/dev/null; then
    mkdir -p "$DEPS"
    python3 -m pip install --quiet --no-deps --target "$DEPS" transformers==4.35.0 huggingface-hub==0.17.3 tokenizers==0.14.1 \
      safetensors==0.4.0 filelock packaging pyyaml regex requests tqdm urllib3 idna certifi charset-normalizer fsspec typing-extensions
    PYTHONPATH="$DEPS" "$PY" -c 'import transformers; print("adopt: transformers", transformers.__version__, "ready")' >&2
  fi
  TRITON="$ROOT/.cache/triton"
  if ! PYTHONPATH="$TRITON" "$PY" -c 'import triton' 2>/dev/null; then
    python3 -m pip install --quiet --no-deps --target "$TRITON" triton==3.6.0 ||
      echo "adopt: Triton could not be installed; the GPU kernels' interpreter tests will be skipped" >&2
  fi
  exit 0
fi

# OpenBLAS: Debian's torch calls the system BLAS, and the reference one is ~15x slower
OPENBLAS=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3
if "$PY" -c 'import torch, numpy, pytest' 2>/dev/null && command -v chromium-headless-shell >/dev/null && { [ -e "$OPENBLAS" ] || [ "$(uname -m)" != x86_64 ]; }; then exit 0; fi
echo "adopt: installing python3-torch, python3-numpy, python3-pytest, OpenBLAS and chromium-headless-shell (the report screenshot test) from Debian (about a minute)" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends python3-torch python3-numpy python3-pytest ninja-build chromium-headless-shell libopenblas0-pthread >/dev/null
"$PY" -c 'import torch, numpy, pytest; print("adopt: torch", torch.__version__, "ready for", __import__("sys").executable)' >&2
