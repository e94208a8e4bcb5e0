#!/usr/bin/env bash
# The GPU check of issue 16, run on the GPU machine in the repository root after
# scripts/device/prepare.sh gathered .device/ here (the device tool: carry [".device"]).
# One command, at most 8 minutes, every figure into one file: $OUT/gpu-check.txt.
#   1. the binary's --version (which libtorch it loaded: must be this machine's torch)
#   2. vaepipe doctor --require-cuda (versions, devices, CPU-vs-GPU conv, 20-step train,
#      throughput per precision: dfc_vae PERCEPTUAL batch 128 steps/s, encode images/s)
#   3. the tiny demo variant end to end with device = "cuda" (synthetic faces, no data travels)
#   4. vaepipe bench train --device cuda
# It uses the machine's own torch (no registry there): LD_LIBRARY_PATH=<torch>/lib, where
# <torch> is what `$GPU_CHECK_PYTHON` (default python3) imports. The binary's baked-in rpath
# names the build machine's venv, which does not exist there. Nothing in CI or the suite runs it.
#
# A rehearsal on a machine without a GPU (checks this script, the binary and the libtorch):
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_PYTHON=~/.cache/vaepipe/torch-2.11.0/bin/python \
#     scripts/device/gpu-check.sh
# runs doctor without --require-cuda, the demo variant on the CPU with fewer steps, and a
# one-step quick bench.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
OUT="${OUT:-$root/gpu-check-out}"
mkdir -p "$OUT"
results="$OUT/gpu-check.txt"
bin="$root/.device/vaepipe"
device="${GPU_CHECK_DEVICE:-cuda}"
python="${GPU_CHECK_PYTHON:-python3}"
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
  local t0
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >>"$results" 2>&1
  local rc=$?
  log "=== $name: exit $rc in $(( $(date +%s) - t0 ))s"
  [ "$rc" -eq 0 ] || failed=1
}

: > "$results"
log "gpu-check $(date -u +%FT%TZ) on $(hostname), device $device"
[ -f "$root/.device/BUILD.txt" ] && cat "$root/.device/BUILD.txt" >> "$results"
if [ ! -x "$bin" ]; then
  log "no $bin: run scripts/device/prepare.sh on the build machine and carry .device"
  exit 2
fi
# The real path: /proc/self/maps (which --version reads) names files with links resolved.
torch_dir=$("$python" -c 'import torch, os; print(os.path.realpath(os.path.dirname(torch.__file__)))' 2>>"$results")
if [ -z "$torch_dir" ] || [ ! -f "$torch_dir/lib/libtorch_cpu.so" ]; then
  log "$python cannot import torch here (or its lib/ has no libtorch_cpu.so): no libtorch to run against"
  exit 2
fi
"$python" -c 'import torch; print("python torch", torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count())' >>"$results" 2>&1
# The binary runs only on the libtorch minor version it was built against (README).
built=$(sed -n 's/.* against libtorch \([0-9]*\.[0-9]*\)\..*/\1/p' "$root/.device/BUILD.txt" 2>/dev/null)
here=$(sed -n "s/^__version__ = '\([0-9]*\.[0-9]*\)\..*/\1/p" "$torch_dir/version.py" 2>/dev/null)
if [ -n "$built" ] && [ -n "$here" ] && [ "$built" != "$here" ]; then
  log "WARNING: the binary was built against libtorch $built.x, this machine has $here.x: expect undefined symbols"
fi
export LD_LIBRARY_PATH="$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
log "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
nvidia-smi >>"$results" 2>&1 || log "(no nvidia-smi)"

step "vaepipe --version" 30 "$bin" --version
if ! grep -qF "libtorch loaded $torch_dir/lib/libtorch_cpu.so" "$results"; then
  log "FAILED: vaepipe did not load this machine's $torch_dir/lib/libtorch_cpu.so (see --version above)"
  failed=1
fi
if [ "$device" = cpu ]; then
  step "vaepipe doctor" 300 "$bin" doctor
  demo_steps="${GPU_CHECK_DEMO_STEPS:-20}"
else
  step "vaepipe doctor --require-cuda" 120 "$bin" doctor --require-cuda
  demo_steps="${GPU_CHECK_DEMO_STEPS:-400}"
fi

# The tiny demo variant, end to end, in a scratch copy (its cache and runs stay out of the
# tree): experiments/demo.toml on fewer synthetic faces and $demo_steps training steps.
tiny_demo=(
  --set stage.faces.celeba_images=400 --set stage.faces.celeba_identities=40
  --set stage.faces.identities=8 --set stage.faces.images_per_identity=16
  --set "stage.train.max_steps=$demo_steps" --set "stage.train.save_every=$demo_steps"
)
cp "$root/experiments/demo.toml" "$work/demo.toml"
(
  cd "$work" || exit 1
  step "tiny demo on $device (vaepipe run demo.toml --device $device, $demo_steps steps)" 180 \
    "$bin" run demo.toml --device "$device" "${tiny_demo[@]}"
  # At most 8 files come back from $OUT: the results, these two and one rendered grid.
  for f in runs/demo/train/metrics.json runs/demo/train/loss_curve.png; do
    [ -f "$f" ] && cp "$f" "$OUT/demo-$(basename "$f")"
  done
  grid=$(ls runs/demo/render/*.png 2>/dev/null | head -n 1)
  [ -n "$grid" ] && cp "$grid" "$OUT/demo-render.png"
  log ""
  log "=== demo manifests (device, precision, data_wait_share, timings)"
  grep -rl --include=manifest.json -e '"train-vae"' -e '"encode"' cache | xargs -r cat >>"$results"
  [ "$failed" -eq 0 ]
) || failed=1

if [ "$device" = cpu ]; then
  step "vaepipe bench train --device cpu --quick" 300 "$bin" bench train --device cpu --quick --steps 1 --no-malloc-ab
else
  step "vaepipe bench train --device $device" 90 "$bin" bench train --device "$device" --steps 20
fi

log ""
log "gpu-check done in $(( $(date +%s) - start ))s, $( [ "$failed" -eq 0 ] && echo 'all steps passed' || echo 'SOME STEPS FAILED')"
rm -rf "$work"
exit "$failed"
