#!/usr/bin/env bash
# The GPU check of issue 16, run on the GPU machine in the repository root after
# scripts/device/prepare.sh gathered .device/ here (the device tool: carry [".device"]).
# One command, at most 8 minutes, every figure into one file: $OUT/gpu-check.txt.
#   1. the binary's --version (which libtorch it loaded)
#   2. vaepipe doctor --require-cuda (versions, devices, CPU-vs-GPU conv, 20-step train,
#      throughput per precision: dfc_vae PERCEPTUAL batch 128 steps/s, encode images/s)
#   3. the demo end to end with device = "cuda" (synthetic faces, no data travels)
#   4. vaepipe bench train --device cuda
# It uses the machine's own torch (no registry there). Nothing in CI or the suite runs it.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
OUT="${OUT:-$root/gpu-check-out}"
mkdir -p "$OUT"
results="$OUT/gpu-check.txt"
bin="$root/.device/vaepipe"
work=$(mktemp -d)
start=$(date +%s)
failed=0

log() { echo "$*" | tee -a "$results"; }
# step NAME SECONDS CMD...: runs with a time limit, output into the results file.
step() {
  local name=$1 limit=$2
  shift 2
  log ""
  log "=== $name (limit ${limit}s, at +$(( $(date +%s) - start ))s)"
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >>"$results" 2>&1
  local rc=$?
  log "=== $name: exit $rc in $(( $(date +%s) - t0 ))s"
  [ "$rc" -eq 0 ] || failed=1
}

: > "$results"
log "gpu-check $(date -u +%FT%TZ) on $(hostname)"
[ -f "$root/.device/BUILD.txt" ] && cat "$root/.device/BUILD.txt" >> "$results"
if [ ! -x "$bin" ]; then
  log "no $bin: run scripts/device/prepare.sh on the build machine and carry .device"
  exit 2
fi
torch_dir=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))' 2>>"$results")
if [ -z "$torch_dir" ]; then
  log "python3 cannot import torch here: no libtorch to run against"
  exit 2
fi
python3 -c 'import torch; print("python torch", torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count())' >>"$results" 2>&1
export LD_LIBRARY_PATH="$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi >>"$results" 2>&1 || log "(no nvidia-smi)"

step "vaepipe --version" 30 "$bin" --version
step "vaepipe doctor --require-cuda" 120 "$bin" doctor --require-cuda

# The demo, end to end on the GPU, in a scratch copy (its cache and runs stay out of the tree).
cp "$root/experiments/demo.toml" "$work/demo.toml"
(
  cd "$work" || exit 1
  step "demo on cuda (vaepipe run demo.toml --device cuda)" 180 "$bin" run demo.toml --device cuda
  for f in runs/demo/train/metrics.json runs/demo/train/loss_curve.png runs/demo/render/*.png; do
    [ -f "$f" ] && cp "$f" "$OUT/demo-$(basename "$f")"
  done
  log ""
  log "=== demo manifests (device, precision, data_wait_share, timings)"
  grep -rl --include=manifest.json -e '"train-vae"' -e '"encode"' cache | xargs -r cat >>"$results"
  [ "$failed" -eq 0 ]
) || failed=1

step "vaepipe bench train --device cuda" 90 "$bin" bench train --device cuda --steps 20

log ""
log "gpu-check done in $(( $(date +%s) - start ))s, $( [ "$failed" -eq 0 ] && echo 'all steps passed' || echo 'SOME STEPS FAILED')"
rm -rf "$work"
exit "$failed"
