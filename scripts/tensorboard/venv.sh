#!/usr/bin/env bash
# Installs the real TensorBoard reader the event-file tests read vaepipe's files back with
# (tests/cli/tensorboard.rs and src/formats/tensorboard.rs): PyPI's `tensorboard` in a per-user
# venv (scripts/lib/cached-venv.sh). Prints the venv's python last, which callers export as
# VAEPIPE_TENSORBOARD_PYTHON.
set -euo pipefail
. "$(dirname "$0")/../lib/cached-venv.sh"

TENSORBOARD_VERSION=2.21.0
# The check imports what the tests use.
cached_venv "tensorboard-$TENSORBOARD_VERSION" \
  'from tensorboard.backend.event_processing import event_accumulator, plugin_event_multiplexer' \
  "tensorboard==$TENSORBOARD_VERSION"

echo "$venv/bin/python"
