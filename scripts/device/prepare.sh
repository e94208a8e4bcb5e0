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
TORCH_VERSION="${VAEPIPE_DEVICE_TORCH:-2.11.0}"
limit_mib=64

say() { echo "prepare: $*" >&2; }

# The torch venv, LIBTORCH and the patched torch-sys (scripts/device/libtorch-env.sh).
# shellcheck source=scripts/device/libtorch-env.sh
. "$root/scripts/device/libtorch-env.sh"
export CARGO_TARGET_DIR="${VAEPIPE_DIST_TARGET:-$cache/target-dist-$TORCH_VERSION}"

say "building vaepipe (profile dist, static HDF5) against libtorch $TORCH_VERSION into $CARGO_TARGET_DIR"
(cd "$root" && cargo "${cargo_config[@]}" build --profile dist --features static-hdf5 --bin vaepipe >&2)
# `VAEPIPE_DEVICE_TEST=1`: also run the whole test suite against this libtorch, in the dev
# profile with Debian's HDF5 (scripts/device/test-libtorch.sh, into $VAEPIPE_TEST_TARGET or its
# own default target dir); `=dist`: in this build's profile with static HDF5 (much slower:
# every test binary is then built in the dist profile).
case "${VAEPIPE_DEVICE_TEST:-0}" in
  1) CARGO_TARGET_DIR="${VAEPIPE_TEST_TARGET:-}" "$root/scripts/device/test-libtorch.sh" "$TORCH_VERSION" ;;
  dist)
    say "running the test suite against libtorch $TORCH_VERSION (profile dist, static HDF5)"
    (cd "$root" && cargo "${cargo_config[@]}" test --workspace --profile dist --features vaepipe/static-hdf5 >&2)
    ;;
esac

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
