"""Writes a benchmark image folder: 2 classes x 1,000 JPEGs of about 400x350.

    python3 crates/datasets/examples/gen_jpeg_folder.py /tmp/convnet-jpeg-folder [--per-class 1000]

Needs numpy and Pillow (the anchors venv has both). The pictures are smooth
random shapes plus fine noise at JPEG quality 90, so their file sizes and
decode cost (20-40 KB each) are those of small photos, not of flat colour.
Deterministic (seeded); not committed (about 60 MB).
"""

import argparse
import os

import numpy as np
from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--per-class", type=int, default=1000)
    args = ap.parse_args()
    rng = np.random.RandomState(0)
    for cls in ["cats", "dogs"]:
        os.makedirs(os.path.join(args.out, cls), exist_ok=True)
        for i in range(args.per_class):
            w, h = 380 + rng.randint(41), 330 + rng.randint(41)
            coarse = rng.randint(0, 256, size=(9, 11, 3)).astype(np.uint8)
            img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), dtype=np.int16)
            img = img + rng.randint(-12, 13, size=(h, w, 3))
            img = np.clip(img, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(args.out, cls, f"{cls}.{i}.jpg"), quality=90)


if __name__ == "__main__":
    main()
