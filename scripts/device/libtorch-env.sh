# Sourced by scripts/device/prepare.sh and test-libtorch.sh: sets up a build against the
# libtorch of the `torch==$TORCH_VERSION` wheel (cached venv under ~/.cache/vaepipe/).
#
# Needs: $root (the repository root), $TORCH_VERSION, and a `say` function.
# Sets:  $cache, $venv, $torch_dir, the `cargo_config` array (extra `cargo` args), and exports
#        LIBTORCH, LIBTORCH_BYPASS_VERSION_CHECK, CMAKE_POLICY_VERSION_MINIMUM and PATH.
# For a libtorch other than 2.13 it builds with a patched torch-sys and restores the
# checked-in Cargo.lock when the calling script exits (an EXIT trap).

cache="${VAEPIPE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/vaepipe}"
venv="$cache/torch-$TORCH_VERSION"

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
