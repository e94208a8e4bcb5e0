#!/usr/bin/env bash
# Fetches MTCNN's pretrained weights for the `align` stage from PyPI, once, into a per-user
# cache (never at run time):
#   - facenet==1.0.5 ships the original's det1.npy, det2.npy, det3.npy (src/align/);
#   - facenet-pytorch==2.6.0 ships the same nets as pnet.pt, rnet.pt, onet.pt.
# Both are unpacked under $cache/mtcnn/ (the directory experiments point `[input.mtcnn]` at).
# facenet-pytorch's files are torch's legacy (pre-1.6) serialisation, which vaepipe's native
# reader does not parse: bootstrap's torch re-saves them once as plain state dicts in the zip
# format (same tensors, bit for bit). Nothing goes to stdout (bootstrap.sh prints LIBTORCH).
set -euo pipefail

cache="${VAEPIPE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/vaepipe}"
dest="$cache/mtcnn"
[ -f "$dest/.complete" ] && exit 0
# bootstrap.sh's torch venv (made before this runs) has pip and torch.
python="$cache/torch-2.13.0/bin/python"

echo "fetch-mtcnn: downloading facenet==1.0.5 and facenet-pytorch==2.6.0 wheels (one time, ~4 MB)" >&2
mkdir -p "$cache/wheels" "$dest"
"$python" -m pip download --quiet --disable-pip-version-check --no-deps \
    "facenet==1.0.5" "facenet-pytorch==2.6.0" -d "$cache/wheels" >&2
"$python" - "$cache/wheels" "$dest" <<'PY'
import sys, zipfile, pathlib
wheels, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wanted = {
    "facenet-1.0.5-py3-none-any.whl": ["facenet/src/align/det1.npy", "facenet/src/align/det2.npy", "facenet/src/align/det3.npy"],
    "facenet_pytorch-2.6.0-py3-none-any.whl": ["facenet_pytorch/data/pnet.pt", "facenet_pytorch/data/rnet.pt", "facenet_pytorch/data/onet.pt"],
}
for wheel, members in wanted.items():
    with zipfile.ZipFile(wheels / wheel) as z:
        for m in members:
            (dest / pathlib.Path(m).name).write_bytes(z.read(m))
import torch
for net in ["pnet", "rnet", "onet"]:
    path = dest / f"{net}.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)
    torch.save({k: v.contiguous() for k, v in state.items()}, path)
PY
# Marker last: an interrupted fetch is redone, never half-used.
touch "$dest/.complete"
