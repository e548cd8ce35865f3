"""The filter-pattern loop of docs/VISUALISE.md in Keras, for the speed comparison: VGG16 (keras.applications,
weights=None: speed does not depend on the values) at 150x150x3, layer block3_conv1, the first 64 filters as ONE
batch of 64 images (image i ascends the mean of filter i), 40 steps of the book's normalised-gradient step
(grads / (sqrt(mean(grads^2)) + 1e-5), per image), from random(...) * 20 + 128. The step is a tf.function (graph
mode, Keras's fast path), traced once before timing. Prints the seconds of the 40 steps, and the mean activation
before and after.

Usage: ~/.cache/convnet-anchors-venv/bin/python keras_filter_ascent.py [threads=2] [steps=40]"""
import os
import sys
import time

THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 2
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 40
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
import keras

tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(THREADS)
N, SIZE, LAYER = 64, 150, "block3_conv1"
base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
extractor = keras.Model(base.inputs, base.get_layer(LAYER).output)


@tf.function
def step(img):
    with tf.GradientTape() as tape:
        tape.watch(img)
        act = extractor(img)
        means = tf.reduce_mean(act, axis=(1, 2))[:, :N]  # [N, N]: image i, filter j
        per_image = tf.linalg.diag_part(means)  # image i's own filter
        loss = tf.reduce_sum(per_image)
    grads = tape.gradient(loss, img)
    grads /= tf.sqrt(tf.reduce_mean(tf.square(grads), axis=(1, 2, 3), keepdims=True)) + 1e-5
    return img + grads, per_image


img = tf.constant(np.random.default_rng(0).random((N, SIZE, SIZE, 3), dtype=np.float32) * 20 + 128)
_, before = step(img)  # trace and warm up
t0 = time.perf_counter()
x = img
for _ in range(STEPS):
    x, last = step(x)
last.numpy()
seconds = time.perf_counter() - t0
print(f"keras {LAYER} {N} filters {STEPS} steps threads={THREADS}: {seconds:.2f} s "
      f"(mean activation {float(tf.reduce_mean(before)):.4f} -> {float(tf.reduce_mean(last)):.4f})")
