#!/usr/bin/env bash
# Checks that need torch 2.x and a CUDA GPU, which CI machines do not have.
#
#   scripts/gpu-check.sh prepare    here: rewrites HF-199 and packs what the GPU machine needs into
#                                   .gpucheck/ (transformers 4.35 sources, the rewritten files,
#                                   the per-rule speed trees); Node is not needed over there
#   scripts/gpu-check.sh run OUT    on the GPU machine (python3 with torch 2.x and CUDA):
#     1. the native test suite: real SDPA on the CPU, and every kernel on CUDA in fp32/fp16/bf16
#     2. every rewritten HF-199 model verified against its original on the CPU in float64 with
#        torch 2.x, so the attention fast path goes through real SDPA (torch 1.13 has none)
#     3. bench:models on the GPU in bf16: forward and training step, original vs rewritten, and
#        each against the original in float32
# Results land in OUT: env.txt, pytest.txt, hf-verify-torch2.jsonl, models-gpu.jsonl (harness result lines), *.log.
#
#   scripts/gpu-check.sh kernels OUT   on the GPU machine, the Triton kernels alone (no preparing):
#     1. native/tests/test_gpu_*.py on CUDA: each kernel against its float64 reference
#     2. adopt_harness.gpu_bench: eager against ours, bandwidth against a copy, peak memory, ours
#        against torch.compile of the eager composite (first workload of each kernel), and
#        every GPU schedule space measured for the tuner's replay (OUT/replay.tar.gz)
#     GPU_BENCH_S (default 330) bounds step 2; GPU_BENCH_ARGS adds arguments to it.
#     3. gpu_bench of the attention with dropout 0.1 at BERT's shape (GPU_DROPOUT_S, default 90)
#   scripts/gpu-check.sh models OUT    on the GPU machine, step 3 of run alone (after prepare here)
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
pack=$here/.gpucheck

prepare() {
  cd "$here"
  npm run -s bench:rewrite >/dev/null
  npm run -s bench:models -- --prepare-only >/dev/null
  rm -rf "$pack" && mkdir -p "$pack"
  # the verified models where bench:hf --verify has run, else every rewritten modeling file
  if [ -f bench-results/hf-verify.jsonl ]; then
    node -e '
      const fs = require("fs");
      const rows = fs.readFileSync("bench-results/hf-verify.jsonl", "utf8").trim().split("\n").map(JSON.parse);
      fs.writeFileSync(process.argv[1], rows.map((r) => `${r.model}=transformers/models/${r.model}/modeling_${r.model}.py\n`).join(""));
    ' "$pack/hf-models.txt"
  else
    (cd bench-results/hf199-rewritten && for f in transformers/models/*/modeling_*.py; do
      m=${f#transformers/models/}; m=${m%%/*}
      [ "$f" = "transformers/models/$m/modeling_$m.py" ] && echo "$m=$f"
    done) >"$pack/hf-models.txt"
  fi
  # shellcheck disable=SC2046
  tar -cJf "$pack/rewritten.tar.xz" -C bench-results/hf199-rewritten $(cut -d= -f2 "$pack/hf-models.txt")
  tar -cJf "$pack/variants.tar.xz" -C bench-results speed-variants
  local deps=.cache/pydeps
  tar --exclude=__pycache__ --exclude='*.so' -cJf "$pack/deps.tar.xz" -C "$deps" transformers huggingface_hub \
    $(cd "$deps" && ls -d transformers-*.dist-info huggingface_hub-*.dist-info tokenizers-*.dist-info)
  du -sh "$pack"
}

unpack() {
  work=$(mktemp -d)
  mkdir -p "$work/deps" "$work/rw"
  tar -xJf "$pack/deps.tar.xz" -C "$work/deps"
  tar -xJf "$pack/rewritten.tar.xz" -C "$work/rw"
  tar -xJf "$pack/variants.tar.xz" -C "$work"
  # GPU_CHECK_PATH: more folders to search last (pure-Python packages the machine lacks)
  export PYTHONPATH="$here/native:$work/deps${GPU_CHECK_PATH:+:$GPU_CHECK_PATH}" PYTHONDONTWRITEBYTECODE=1
}

models() {
  local out=$1 variants="" rule
  echo "== 3. bench:models on the GPU"
  for rule in $(ls "$work/speed-variants"); do variants="$variants --variant $rule=$work/speed-variants/$rule"; done
  # shellcheck disable=SC2086
  timeout "${GPU_MODELS_S:-240}" python3 -m adopt_harness.speed "$work/rw/transformers/models" $variants \
    --seq "${GPU_CHECK_SEQ:-128,512}" --repeats "${GPU_CHECK_REPEATS:-10}" >"$out/models-gpu.jsonl" 2>"$out/speed.log"
  tail -40 "$out/models-gpu.jsonl"
}

run() {
  local out=$1 work
  mkdir -p "$out"
  unpack
  {
    nvidia-smi -L
    python3 -c 'import sys, torch, numpy, transformers; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "", "numpy", numpy.__version__, "transformers", transformers.__version__)'
    nproc
  } >"$out/env.txt" 2>&1
  cat "$out/env.txt"

  echo "== 1. native tests"
  (cd "$here" && timeout 300 python3 -m pytest -q -p no:cacheprovider --continue-on-collection-errors native/tests -rfE) >"$out/pytest.txt" 2>&1
  tail -15 "$out/pytest.txt"

  echo "== 2. HF-199 verification with torch 2.x on the CPU"
  : >"$out/hf-verify-torch2.jsonl"
  (cd "$work/rw" && sed 's/=/ /' "$pack/hf-models.txt" | awk -v d="$work/rw" '{print $1 "=" d "/" $2}' |
    OMP_NUM_THREADS=1 timeout 300 xargs -P "$(($(nproc) > 2 ? $(nproc) - 2 : 1))" -n 8 python3 -m adopt_harness.hf_verify >"$out/hf-verify-torch2.jsonl" 2>"$out/hf-verify.log")
  python3 - "$out/hf-verify-torch2.jsonl" <<'EOF2'
import collections, json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
rows = [e["result"] for e in lines if e.get("kind") == "result"]
print(len(rows), "models:", dict(collections.Counter(r["status"] for r in rows)),
      "| with SDPA calls:", sum(1 for r in rows if r.get("sdpa_calls", 0) > 0))
for r in rows:
    if r["status"] == "mismatch":
        print("  mismatch", r["model"], r["problems"][:2])
EOF2
  models "$out"
}

kernels() {
  local out=$1 work
  mkdir -p "$out"
  work=$(mktemp -d)
  export PYTHONPATH="$here/native" PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
  {
    nvidia-smi -L
    python3 -c 'import sys, torch, triton; print(sys.version.split()[0], "torch", torch.__version__, "triton", triton.__version__, torch.cuda.get_device_name())'
    nproc
  } >"$out/env.txt" 2>&1
  cat "$out/env.txt"
  echo "== 1. Triton kernels against their references"
  (cd "$here" && timeout "${GPU_TEST_S:-150}" python3 -m pytest -q -p no:cacheprovider -n "${GPU_TEST_JOBS:-12}" native/tests/test_gpu_*.py native/tests/test_kernels_on_device.py -rfE) >"$out/pytest-gpu.txt" 2>&1
  grep -E "passed|failed|error" "$out/pytest-gpu.txt" | tail -5
  grep -E "^(FAILED|ERROR)" "$out/pytest-gpu.txt" | head -30
  echo "== 2. gpu_bench"
  local limit=${GPU_BENCH_S:-330}
  # shellcheck disable=SC2086
  timeout "$limit" python3 -m adopt_harness.gpu_bench --replay-out "$work/replay" --json "$out/gpu-bench.json" \
    --deadline-s $((limit - 45)) ${GPU_BENCH_ARGS:-} 2>"$out/gpu-bench.log" | tee "$out/gpu-bench.txt"
  tail -5 "$out/gpu-bench.log"
  tar -czf "$out/replay.tar.gz" -C "$work" replay 2>/dev/null
  echo "== 3. the attention with dropout (the path rewritten models take on a GPU when training)"
  timeout "${GPU_DROPOUT_S:-90}" python3 -m adopt_harness.gpu_bench --kernels flash_attention --workloads 1 --no-vs-compiled --min-mib 0 \
    --workload '{"batch": 4, "heads": 12, "q_len": 512, "k_len": 512, "head_dim": 64, "mask": "padding", "dropout": 0.1}' \
    --json "$out/gpu-bench-dropout.json" --deadline-s $((${GPU_DROPOUT_S:-90} - 20)) 2>"$out/gpu-bench-dropout.log" | tee "$out/gpu-bench-dropout.txt"
}

case "${1:-}" in
  prepare) prepare ;;
  kernels) kernels "${2:?usage: gpu-check.sh kernels OUT}" ;;
  models) mkdir -p "${2:?usage: gpu-check.sh models OUT}" && unpack && models "$2" ;;
  run) run "${2:?usage: gpu-check.sh run OUT}" ;;
  *) echo "usage: scripts/gpu-check.sh prepare | run OUT | kernels OUT | models OUT" >&2; exit 2 ;;
esac
