"""One training step of `models/separable-mobilenet.json` in Keras 3 (TensorFlow backend), timed
as `convnet bench step --model models/separable-mobilenet.json --batch-size 32` times ours: the
same layers as the JSON file (Keras's own SeparableConv2D), RMSprop, categorical crossentropy,
random 112x112x3 images and one-hot labels, `train_on_batch` once per step, 2 threads as the
anchors set them.

    ~/.cache/convnet-anchors-venv/bin/python crates/convnet/examples/separable_keras.py [--batch-size 32] [--steps 20]

Prints one JSON line: {"median_s": .., "images_per_s": ..}. The comparison is in
docs/BENCHMARKS.md ("A depthwise-separable network, one training step").
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
THREADS = int(os.environ.get("BENCH_THREADS", "2"))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(THREADS)

import keras  # noqa: E402
from keras import layers  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warm-up", type=int, default=3)
    args = ap.parse_args()
    keras.utils.set_random_seed(42)
    sep = lambda f, s=1: layers.SeparableConv2D(f, 3, strides=s, padding="same", activation="relu")  # noqa: E731
    model = keras.Sequential([
        keras.Input((112, 112, 3)),
        layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
        sep(64), sep(128, 2), sep(128), sep(256, 2), sep(256),
        layers.AveragePooling2D(14), layers.Flatten(), layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    rng = np.random.default_rng(42)
    x = rng.random((args.batch_size, 112, 112, 3), dtype=np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 10, args.batch_size), 10)
    for _ in range(args.warm_up):
        model.train_on_batch(x, y)
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t)
    times.sort()
    median = times[len(times) // 2]
    print(json.dumps(dict(median_s=median, images_per_s=args.batch_size / median, batch_size=args.batch_size,
                          steps=args.steps, threads=THREADS, params=model.count_params(), keras=keras.__version__)))


if __name__ == "__main__":
    main()
