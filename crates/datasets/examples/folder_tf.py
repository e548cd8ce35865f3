"""Times TensorFlow reading an image folder once, as Keras users do:
`keras.utils.image_dataset_from_directory` (decode, resize to 150x150
bilinear, batches of 32), iterated to the end once.

    ~/.cache/convnet-anchors-venv/bin/python crates/datasets/examples/folder_tf.py DIR [--size 150]

Prints JSON: {"images": N, "seconds": S, "images_per_s": R}. The comparison
with convnet is `cargo run --release -p convnet-datasets --example folder_info -- DIR`
(see docs/BENCHMARKS.md).
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--size", type=int, default=150)
    args = ap.parse_args()
    start = time.perf_counter()
    ds = keras.utils.image_dataset_from_directory(
        args.dir, image_size=(args.size, args.size), batch_size=32, shuffle=False, verbose=False)
    n = 0
    for x, _ in ds:
        n += int(x.shape[0])
    seconds = time.perf_counter() - start
    print(json.dumps({"images": n, "seconds": round(seconds, 3), "images_per_s": round(n / seconds, 1)}))


if __name__ == "__main__":
    main()
