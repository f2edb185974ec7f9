#!/usr/bin/env bash
# The Python side adopt's tests and verification need: Debian's CPU build of torch (1.13) for
# Debian's own python3, with pytest. Installed once; later runs find it and do nothing.
set -euo pipefail
PY=${ADOPT_PYTHON:-/usr/bin/python3}
if "$PY" -c 'import torch, numpy, pytest' 2>/dev/null; then exit 0; fi
echo "adopt: installing python3-torch, python3-numpy and python3-pytest from Debian (about a minute)" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends python3-torch python3-numpy python3-pytest ninja-build >/dev/null
"$PY" -c 'import torch, numpy, pytest; print("adopt: torch", torch.__version__, "ready for", __import__("sys").executable)' >&2
