#!/usr/bin/env bash
# Installs the S3 server the remote-cache tests talk to: PyPI's `moto[server]` in a per-user
# venv outside the repository (like scripts/tensorboard/venv.sh), so every clone and CI run
# reuses it. Idempotent: a warm machine pays one `test -f`. Prints the venv's `moto_server`
# last.
set -euo pipefail

MOTO_VERSION=5.2.5
cache="${VAEPIPE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/vaepipe}"
venv="$cache/moto-$MOTO_VERSION"

if [ ! -f "$venv/.complete" ]; then
  echo "moto venv: installing moto[server]==$MOTO_VERSION into $venv (one time, ~1 min)" >&2
  mkdir -p "$cache"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
  "$venv/bin/python" -c 'import moto.server, boto3' >&2
  # Marker written last: an interrupted install is redone, never half-used.
  touch "$venv/.complete"
fi

echo "$venv/bin/moto_server"
