#!/usr/bin/env bash
# Installs the real TensorBoard reader the event-file tests read vaepipe's files back with
# (tests/cli/tensorboard.rs and src/formats/tensorboard.rs): PyPI's `tensorboard` in a per-user
# venv outside the repository, so every clone and CI run reuses it. Idempotent: a warm machine
# pays one `test -f`. Prints the venv's python last, which callers export as
# VAEPIPE_TENSORBOARD_PYTHON.
set -euo pipefail

TENSORBOARD_VERSION=2.21.0
cache="${VAEPIPE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/vaepipe}"
venv="$cache/tensorboard-$TENSORBOARD_VERSION"

if [ ! -f "$venv/.complete" ]; then
  echo "tensorboard venv: installing tensorboard==$TENSORBOARD_VERSION into $venv (one time, ~1 min)" >&2
  mkdir -p "$cache"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "tensorboard==$TENSORBOARD_VERSION" >&2
  # The reader must work, not only install: import what the tests use.
  "$venv/bin/python" -c 'from tensorboard.backend.event_processing import event_accumulator, plugin_event_multiplexer' >&2
  # Marker written last: an interrupted install is redone, never half-used.
  touch "$venv/.complete"
fi

echo "$venv/bin/python"
