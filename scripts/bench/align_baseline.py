"""Baseline for `vaepipe bench align`: facenet-pytorch's MTCNN (2.6.0) on the same images, on the
CPU, detecting and cropping/resizing each to image_size like `align` does. Prints one JSON line:
{"images": N, "seconds": S, "faces": F}.

  python align_baseline.py --threads 2 --image-size 182 --margin 44 IMAGE...
"""
import argparse
import json
import sys
import time

import torch
from PIL import Image
from facenet_pytorch import MTCNN

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--image-size", type=int, default=182)
ap.add_argument("--margin", type=int, default=44)
ap.add_argument("--repeat", type=int, default=1)
ap.add_argument("images", nargs="+")
args = ap.parse_args()
torch.set_num_threads(args.threads)
mtcnn = MTCNN(image_size=args.image_size, margin=args.margin, min_face_size=20,
              thresholds=[0.6, 0.7, 0.7], factor=0.709, post_process=False,
              select_largest=False, device="cpu")
images = [Image.open(p).convert("RGB") for p in args.images]
mtcnn(images[0])  # warm-up
faces = 0
start = time.perf_counter()
for _ in range(args.repeat):
    for img in images:
        # Decoding is part of `align`'s work too.
        out = mtcnn(img.copy())
        faces += out is not None
elapsed = time.perf_counter() - start
print(json.dumps({"images": len(images) * args.repeat, "seconds": elapsed, "faces": faces}))
