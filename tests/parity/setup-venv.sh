#!/usr/bin/env bash
# Creates the Python venv the parity harness runs facenet's original code in, once, outside the
# repository (cached across runs and clones like scripts/bootstrap.sh's torch venv), and prints
# its python. facenet 1.0.5 is installed without its dependency list (it pins the full
# `tensorflow`, opencv, sklearn, matplotlib...): the harness needs only what is listed here, and
# tests/parity/shims.py stands in for the rest.
set -euo pipefail

cache="${VAEPIPE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/vaepipe}"
venv="${VAEPIPE_PARITY_VENV:-$cache/parity-venv}"
# Bump when the package list changes: an old venv is then rebuilt, never half-used.
spec="facenet==1.0.5 tensorflow-cpu==2.21.0 tf_slim==1.1.0 h5py numpy Pillow scipy six"
marker="$venv/.complete"

if [ ! -f "$marker" ] || [ "$(cat "$marker")" != "$spec" ]; then
  echo "parity: installing facenet 1.0.5 + tensorflow-cpu into $venv (one time, ~2 min)" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)
  # shellcheck disable=SC2086
  "${pip[@]}" $(echo "$spec" | tr ' ' '\n' | grep -v '^facenet') >&2
  "${pip[@]}" --no-deps facenet==1.0.5 >&2
  echo "$spec" >"$marker"
fi
echo "$venv/bin/python"
