#!/usr/bin/env bash
# Issue 10's speed targets, side by side: the chapter's small-data convnet (150x150x3, batch 32)
# in convnet (`convnet bench step`) and in Keras/PyTorch (../shared/anchors/run.sh small-data),
# alternated ROUNDS times (default 3), with the load average before each run.
#
#   cargo build --release -p convnet --bin convnet
#   scripts/small_data_side_by_side.sh [ROUNDS] > /tmp/small-data-side-by-side.log
#
# Each convnet line is the JSON of `bench step` (median over 30 steps after 3 warm-up steps);
# each anchor run prints Keras without and with augmentation layers and PyTorch channels_last
# (median over 40 steps after 5). Threads: 2 on both sides.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${CONVNET_BIN:-$here/target/release/convnet}
anchors=${ANCHORS:-$here/../shared/anchors/run.sh}
rounds=${1:-3}
export RAYON_NUM_THREADS=2 BENCH_THREADS=2
for r in $(seq 1 "$rounds"); do
  for what in "models/small-data.json" "models/small-data-augmented.json"; do
    echo "round $r ours train $what load $(cut -d' ' -f1-3 /proc/loadavg)"
    "$bin" bench step --model "$here/$what" --batch-size 32 --json
  done
  echo "round $r ours inference load $(cut -d' ' -f1-3 /proc/loadavg)"
  "$bin" bench step --model "$here/models/small-data.json" --batch-size 32 --inference --json
  echo "round $r theirs load $(cut -d' ' -f1-3 /proc/loadavg)"
  TAG="h3r$r" "$anchors" small-data 2>&1 | grep -E "^(keras|keras_aug|torch_cl) "
done
