#!/usr/bin/env bash
# `make parity`: facenet 1.0.5's original TF code beside vaepipe, compared number by number
# (tests/parity/parity.py; issue 14). Creates the harness's venv on first use (cached under
# ~/.cache/vaepipe/parity-venv), builds vaepipe, runs the comparison and the mutation check,
# and writes target/parity/parity.md. Exit status 1 when a comparison or the mutation check fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

python=$(tests/parity/setup-venv.sh)
cargo build --quiet --bin vaepipe
bin=$(realpath "${CARGO_TARGET_DIR:-target}/debug/vaepipe")
out=$(realpath -m target/parity)
# oneDNN's reordered float sums are within tolerance too, but plain kernels keep TF's side
# repeatable run to run; 2 threads each, as the machine CI runs on has 2 cores.
export TF_ENABLE_ONEDNN_OPTS=0 TF_NUM_INTEROP_THREADS=1 TF_NUM_INTRAOP_THREADS=2 OMP_NUM_THREADS=2
exec "$python" tests/parity/parity.py --vaepipe "$bin" --out "$out" "$@"
