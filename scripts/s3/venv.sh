#!/usr/bin/env bash
# Installs the S3 server the remote-cache tests talk to: PyPI's `moto[server]` in a per-user
# venv (scripts/lib/cached-venv.sh). Prints the venv's `moto_server` last.
set -euo pipefail
. "$(dirname "$0")/../lib/cached-venv.sh"

MOTO_VERSION=5.2.5
cached_venv "moto-$MOTO_VERSION" 'import moto.server, boto3' "moto[server]==$MOTO_VERSION"

echo "$venv/bin/moto_server"
