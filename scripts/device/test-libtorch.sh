#!/usr/bin/env bash
# Runs the whole test suite (`cargo test --workspace`) on the CPU against the libtorch of
# another torch wheel (default 2.11.0, what the GPU test machine has), in the normal dev
# profile with Debian's shared HDF5: the quick way to prove a libtorch version works
# (issue 16). `make dist`'s static-HDF5 build is scripts/device/prepare.sh.
#
#   scripts/device/test-libtorch.sh [VERSION] [CARGO TEST ARGS...]
#   e.g. scripts/device/test-libtorch.sh 2.11.0 --test integration doctor
#
# Start the services first as .ci/run does (Slurm, TensorBoard's venv, moto) and set CI=true
# so that no test skips. The build goes to $CARGO_TARGET_DIR, by default
# ~/.cache/vaepipe/target-libtorch-VERSION (a cold build: ~20 min on 2 cores); the checked-in
# Cargo.lock is restored on exit. Before the tests it checks that the `vaepipe` binary and a
# test binary really load this libtorch's libtorch_cpu.so (LD_LIBRARY_PATH is set to it), and
# fails if either loads another.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
TORCH_VERSION="${VAEPIPE_DEVICE_TORCH:-2.11.0}"
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  TORCH_VERSION=$1
  shift
fi

say() { echo "test-libtorch: $*" >&2; }

# shellcheck source=scripts/device/libtorch-env.sh
. "$root/scripts/device/libtorch-env.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target-libtorch-$TORCH_VERSION}"
# The loader's first choice (it overrides every RUNPATH), so no process of the suite can pick
# up another libtorch from the environment.
export LD_LIBRARY_PATH="$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
want="$torch_dir/lib/libtorch_cpu.so"

say "building the test suite against libtorch $TORCH_VERSION ($torch_dir) into $CARGO_TARGET_DIR"
t0=$(date +%s)
tests_json=$(mktemp)
(cd "$root" && cargo "${cargo_config[@]}" test --workspace --no-run --message-format=json-render-diagnostics) > "$tests_json"
say "built in $(( $(date +%s) - t0 ))s"

# 1. The torch-free front end re-executes itself with libtorch preloaded: --version names the
#    file it then loaded.
version=$("$CARGO_TARGET_DIR/debug/vaepipe" --version)
say "vaepipe --version: $(echo "$version" | tr '\n' ';')"
if ! grep -qF "libtorch loaded $want (version $TORCH_VERSION" <<<"$version"; then
  say "FAIL: vaepipe did not load $want"
  exit 1
fi
# 2. A test binary links libtorch directly: the loader's own record of what it opened.
lib_test=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["name"] == "vaepipe" and m["profile"]["test"]:
        print(m["executable"]); break
' "$tests_json")
rm -f "$tests_json"
opened=$(LD_DEBUG=files "$lib_test" --list 2>&1 >/dev/null | sed -n 's/.*calling init: \(.*\/libtorch_cpu\.so\)$/\1/p' | head -n 1)
say "$(basename "$lib_test") opened ${opened:-no libtorch_cpu.so}"
if [ "$(readlink -f "$opened")" != "$(readlink -f "$want")" ]; then
  say "FAIL: the test binary did not load $want"
  exit 1
fi

say "running cargo test --workspace $* against libtorch $TORCH_VERSION"
t0=$(date +%s)
status=0
(cd "$root" && cargo "${cargo_config[@]}" test --workspace "$@") || status=$?
say "tests finished in $(( $(date +%s) - t0 ))s with exit $status"
exit "$status"
