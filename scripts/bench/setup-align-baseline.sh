#!/usr/bin/env bash
# A throwaway venv with facenet-pytorch's MTCNN for `vaepipe bench align`'s baseline. It reuses
# bootstrap.sh's torch 2.13 (a .pth file pointing at its site-packages) instead of a second
# 4.7 GB install; facenet-pytorch and torchvision come --no-deps (their pins predate torch 2.13).
# Prints the venv's python.
set -euo pipefail
cache="${VAEPIPE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/vaepipe}"
venv="$cache/bench-facenet-pytorch"
torch_site=$(ls -d "$cache"/torch-2.13.0/lib/python3*/site-packages | head -n 1)
if [ ! -f "$venv/.complete" ]; then
  echo "setup-align-baseline: creating $venv" >&2
  rm -rf "$venv"
  "$cache/torch-2.13.0/bin/python" -m venv "$venv"
  site=$(ls -d "$venv"/lib/python3*/site-packages | head -n 1)
  echo "$torch_site" > "$site/vaepipe-torch.pth"
  "$venv/bin/pip" install --quiet --disable-pip-version-check numpy pillow requests tqdm >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
      "facenet-pytorch==2.6.0" "torchvision==0.28.0" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
