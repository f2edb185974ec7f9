#!/usr/bin/env bash
# A second Python for `npm run bench:real`: the benchmark's packages (current transformers, timm,
# diffusers, torchvision, ...) need torch 2.x, and Debian's torch is 1.13. Creates a venv under
# .cache/torch2/venv with torch from PyPI and every labelled package at its pin (with their
# dependencies), so that the verification harness can import the packages' own modules and config
# classes. Bench time only: neither `npm test` nor CI runs it. Idempotent: a venv that already holds
# what fixtures/real/labels.json pins is left as it is.
#
# torch comes from PyTorch's CPU wheel index when it is reachable (about 200 MB); otherwise from
# PyPI, whose Linux wheel is the CUDA build with its nvidia-* wheels (about 3 GB installed), which
# runs on a CPU-only machine too. TORCH_PIN overrides the torch version (default: the one
# torchvision's pin is built for).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR="$ROOT/.cache/torch2"
VENV="$DIR/venv"
BASE=${PYTHON:-python3}
TORCH_PIN=${TORCH_PIN:-torch==2.14.1}
# Imports the harness's Python needs for some labelled files besides the packages' own requirements.
EXTRA_PINS=(einops==0.8.2)

mapfile -t PINS < <("$BASE" -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["packages"]))' "$ROOT/fixtures/real/labels.json")
WANT=$(printf '%s\n' "$TORCH_PIN" "${PINS[@]}" "${EXTRA_PINS[@]}")
STAMP="$DIR/installed.txt"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  echo "adopt: $VENV is up to date ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))" >&2
  exit 0
fi

"$BASE" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "adopt: torch 2.x and the pinned packages need Python >= 3.10; set PYTHON")'
mkdir -p "$DIR"
start=$(date +%s)
rm -f "$STAMP"
[ -x "$VENV/bin/python" ] || "$BASE" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --no-cache-dir)
"${PIP[@]}" install --quiet --upgrade pip setuptools wheel

if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '${TORCH_PIN#torch==}' else 1)" 2>/dev/null; then
  echo "adopt: installing $TORCH_PIN into $VENV" >&2
  if ! "${PIP[@]}" install --quiet --index-url https://download.pytorch.org/whl/cpu "$TORCH_PIN" 2>/dev/null; then
    echo "adopt: PyTorch's CPU wheel index is unreachable; installing PyPI's wheel (the CUDA build with its nvidia-* wheels, about 3 GB)" >&2
    "${PIP[@]}" install --quiet "$TORCH_PIN"
  fi
fi

# The packages at their pins, with their dependencies; torch stays the one installed above.
# litgpt 0.5.13 asks for huggingface-hub<1.4, and transformers 5.25 and diffusers 0.42 for >=1.32:
# no environment has both. litgpt's model code never imports the hub, so it is installed apart,
# without its dependencies, and then those of them that do not change what is installed.
APART=(litgpt)
TOGETHER=()
LATER=()
for pin in "${PINS[@]}"; do
  if printf '%s\n' "${APART[@]}" | grep -qx "${pin%%==*}"; then LATER+=("$pin"); else TOGETHER+=("$pin"); fi
done
CONSTRAINTS="$DIR/constraints.txt"
# the local label (+cu130) left out: a requirement on torch matches the installed build then
"$VENV/bin/python" -c 'import torch; print("torch==" + torch.__version__.split("+")[0])' >"$CONSTRAINTS"
echo "adopt: installing ${#TOGETHER[@]} pinned packages and their dependencies" >&2
"${PIP[@]}" install --quiet -c "$CONSTRAINTS" "${TOGETHER[@]}" "${EXTRA_PINS[@]}"
for pin in "${LATER[@]}"; do
  echo "adopt: installing $pin apart (its dependencies conflict with the others'), then what it needs that is not installed" >&2
  "${PIP[@]}" install --quiet --no-deps "$pin"
  mapfile -t NEEDS < <("$VENV/bin/python" - "${pin%%==*}" <<'PY'
import sys
from importlib import metadata
from packaging.requirements import Requirement

for text in metadata.requires(sys.argv[1]) or []:
    r = Requirement(text)
    if r.marker and not r.marker.evaluate({"extra": ""}):
        continue  # an extra, or another Python's
    try:
        metadata.version(r.name)
    except metadata.PackageNotFoundError:
        print(text.split(";")[0])
PY
)
  if [ "${#NEEDS[@]}" -gt 0 ]; then
    "${PIP[@]}" freeze --exclude-editable | sed 's/+[^ ]*$//' >"$DIR/installed-constraints.txt"
    "${PIP[@]}" install --quiet -c "$DIR/installed-constraints.txt" "${NEEDS[@]}"
  fi
done

"$VENV/bin/python" -c 'import torch; x = torch.randn(4, 8, requires_grad=True); torch.nn.functional.scaled_dot_product_attention(x[None], x[None], x[None]).sum().backward(); print("adopt: torch", torch.__version__, "runs on", "cuda" if torch.cuda.is_available() else "cpu")' >&2
printf '%s\n' "$WANT" >"$STAMP"
echo "adopt: $VENV ready in $(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1) on disk" >&2
