#!/usr/bin/env bash
# Installs what building vaepipe needs and a fresh machine lacks, and nothing else:
#   - libtorch 2.13.0 (tch 0.26 expects exactly that version), taken from the `torch` wheel on
#     PyPI, into a per-user venv outside the repository so every clone and CI run reuses it;
#   - Debian's libhdf5-dev, which the hdf5-metno crate links against;
#   - MTCNN's pretrained weights for the `align` stage (scripts/fetch-mtcnn.sh, PyPI wheels).
# Each step checks first, so a warm machine pays nothing. Prints the libtorch directory last,
# which the Makefile exports as LIBTORCH.
set -euo pipefail

TORCH_VERSION=2.13.0
cache="${VAEPIPE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/vaepipe}"
venv="$cache/torch-$TORCH_VERSION"
torch_dir="$venv/lib/python3.11/site-packages/torch"

say() { echo "bootstrap: $*" >&2; }

if [ ! -f "$venv/.complete" ]; then
  say "installing torch==$TORCH_VERSION (libtorch for tch) into $venv (one time, ~2 min, ~4.7 GB)"
  mkdir -p "$cache"
  rm -rf "$venv"
  python3 -m venv "$venv"
  # pip's own wheel cache (~/.cache/pip) is kept, so a reinstall does not download again.
  "$venv/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" >&2
  # Marker written last: an interrupted install is redone, never half-used.
  touch "$venv/.complete"
fi
# The python minor version is whatever python3 was when the venv was made.
torch_dir=$(ls -d "$venv"/lib/python3*/site-packages/torch | head -n 1)

if ! pkg-config --exists hdf5 2>/dev/null && [ ! -f /usr/include/hdf5/serial/hdf5.h ]; then
  say "installing libhdf5-dev (for the hdf5-metno crate)"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libhdf5-dev pkg-config >&2
fi

# MTCNN's pretrained weights for the `align` stage (PyPI wheels, unpacked once).
"$(dirname "$0")/fetch-mtcnn.sh"

echo "$torch_dir"
