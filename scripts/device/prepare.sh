#!/usr/bin/env bash
# Prepares the GPU check (issue 16): builds the portable `make dist` binary against the
# libtorch of torch 2.11 (what the H200 test machine has; it reaches no registry), and gathers
# what must travel into .device/ at the repository root (git-ignored; the device tool's
# `carry` takes it). Everything else the check needs travels with the working tree: the
# demo's faces come from the embedded synthetic generator, and it trains with random
# face-net weights, so no dataset or weights file travels. Budget: 64 MiB carried.
#
#   scripts/device/prepare.sh            # build (cold: ~25 min on 2 cores) and gather
#   then on the GPU machine, in the repository root:  scripts/device/gpu-check.sh
#
# Idempotent: the torch 2.11 venv and the build are cached under ~/.cache/vaepipe/.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cache="${VAEPIPE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/vaepipe}"
TORCH_VERSION="${VAEPIPE_DEVICE_TORCH:-2.11.0}"
venv="$cache/torch-$TORCH_VERSION"
limit_mib=64

say() { echo "prepare: $*" >&2; }

if [ ! -f "$venv/.complete" ]; then
  say "installing torch==$TORCH_VERSION (its libtorch) and cmake into $venv (one time, ~2.5 min, ~4.7 GB)"
  mkdir -p "$cache"
  rm -rf "$venv"
  python3 -m venv "$venv"
  # cmake >= 3.26 builds the bundled HDF5 (Debian 12 has 3.25).
  "$venv/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" cmake >&2
  touch "$venv/.complete"
fi
torch_dir=$(ls -d "$venv"/lib/python3*/site-packages/torch | head -n 1)

export LIBTORCH="$torch_dir"
# tch 0.26 checks for libtorch 2.13; the C API it uses is the same in 2.11 (README).
export LIBTORCH_BYPASS_VERSION_CHECK=1
export PATH="$venv/bin:$PATH"
# cmake 4 refuses projects that still declare support for cmake < 3.5 (HDF5's dependencies).
export CMAKE_POLICY_VERSION_MINIMUM=3.5
export CARGO_TARGET_DIR="${VAEPIPE_DIST_TARGET:-$cache/target-dist-$TORCH_VERSION}"

# torch-sys 0.26's generated C++ wraps libtorch 2.13's ops; for another libtorch, a patched
# copy stubs the wrappers of ops it lacks (patch_torch_sys.py says why that is safe).
cargo_config=()
if [ "$TORCH_VERSION" != "2.13.0" ]; then
  (cd "$root" && cargo fetch --quiet >&2)
  registry_src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/torch-sys-0.26.0 | head -n 1)
  patched="$cache/torch-sys-0.26.0-for-libtorch-$TORCH_VERSION"
  if [ ! -f "$patched/.complete" ]; then
    say "patching torch-sys for libtorch $TORCH_VERSION into $patched; stubbed wrappers:"
    python3 "$root/scripts/device/patch_torch_sys.py" "$registry_src" "$torch_dir" "$patched" | sed 's/^/  /' >&2
    touch "$patched/.complete"
  fi
  cargo_config=(--config "patch.crates-io.torch-sys.path='$patched'")
  # The patch rewrites Cargo.lock's torch-sys entry; the checked-in lock file stays as it is.
  lock_backup=$(mktemp)
  cp "$root/Cargo.lock" "$lock_backup"
  trap 'cp "$lock_backup" "$root/Cargo.lock"; rm -f "$lock_backup"' EXIT
fi

say "building vaepipe (profile dist, static HDF5) against libtorch $TORCH_VERSION into $CARGO_TARGET_DIR"
(cd "$root" && cargo "${cargo_config[@]}" build --profile dist --features static-hdf5 --bin vaepipe >&2)
# `VAEPIPE_DEVICE_TEST=1`: also run the whole test suite with this libtorch and this build.
if [ "${VAEPIPE_DEVICE_TEST:-0}" = 1 ]; then
  say "running the test suite against libtorch $TORCH_VERSION (profile dist, static HDF5)"
  (cd "$root" && cargo "${cargo_config[@]}" test --workspace --profile dist --features vaepipe/static-hdf5 >&2)
fi

out="$root/.device"
rm -rf "$out"
mkdir -p "$out"
cp "$CARGO_TARGET_DIR/dist/vaepipe" "$out/vaepipe"
{
  echo "built $(date -u +%FT%TZ) on $(hostname) against libtorch $(grep '^__version__' "$torch_dir/version.py" | cut -d"'" -f2)"
  echo "commit $(git -C "$root" rev-parse HEAD)$(git -C "$root" diff --quiet || echo ' (with local changes)')"
  echo "needs from the host: glibc and libtorch (LD_LIBRARY_PATH=<torch>/lib):"
  readelf -d "$out/vaepipe" | grep NEEDED | sed 's/.*\[\(.*\)\]/  \1/'
  echo "sha256 $(sha256sum "$out/vaepipe" | cut -d' ' -f1)"
} > "$out/BUILD.txt"

size_mib=$(( $(du -sb "$out" | cut -f1) / 1048576 ))
say "gathered $out: $(du -sh "$out/vaepipe" | cut -f1) binary, ${size_mib} MiB in all (limit ${limit_mib} MiB)"
if [ "$size_mib" -gt "$limit_mib" ]; then
  say "too big to carry to the GPU machine"
  exit 1
fi
if readelf -d "$out/vaepipe" | grep -q 'libhdf5'; then
  say "the binary still links a shared libhdf5: the static-hdf5 feature did not take"
  exit 1
fi
echo "$out"
