"""One training step of `models/separable-mobilenet.json` in PyTorch, timed as
`convnet bench step --model models/separable-mobilenet.json --batch-size 32` times ours:
MobileNet v1's first blocks (a strided 3x3 conv, then five depthwise-separable blocks, Keras
`SeparableConv2D`: depthwise 3x3, pointwise 1x1, bias, relu), a 14x14 average pool and a
softmax dense layer, on random 112x112x3 images and labels; RMSprop with Keras's defaults,
channels_last, 2 threads.

    ~/.cache/convnet-anchors-venv/bin/python crates/convnet/examples/separable_torch.py [--batch-size 32] [--steps 20]

Prints one JSON line: {"median_s": .., "images_per_s": ..}. The comparison is in
docs/BENCHMARKS.md ("A depthwise-separable network, one training step").
"""

import argparse
import json
import os
import time

THREADS = int(os.environ.get("BENCH_THREADS", "2"))

import torch  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(THREADS)


def separable(c_in, c_out, stride):
    # Keras SeparableConv2D: the depthwise conv has no bias; the pointwise one has the bias.
    return [
        nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False),
        nn.Conv2d(c_in, c_out, 1),
        nn.ReLU(),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warm-up", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(42)
    layers = [nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU()]
    for c_in, c_out, stride in [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1)]:
        layers += separable(c_in, c_out, stride)
    layers += [nn.AvgPool2d(14), nn.Flatten(), nn.Linear(256, 10)]
    model = nn.Sequential(*layers).to(memory_format=torch.channels_last)
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(args.batch_size, 3, 112, 112).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(args.warm_up):
        step()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    times.sort()
    median = times[len(times) // 2]
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps(dict(median_s=median, images_per_s=args.batch_size / median, batch_size=args.batch_size,
                          steps=args.steps, threads=THREADS, params=params, torch=torch.__version__)))


if __name__ == "__main__":
    main()
