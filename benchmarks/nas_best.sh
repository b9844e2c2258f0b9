#!/usr/bin/env bash
# The architecture an architecture search found (C20), trained fully with the fast recipe of the hand-designed
# VGG-11-BN ÷ 4 (recipes/nas_child-fast.yaml = vgg11_bn-fast.yaml's training: crop + flip, label smoothing,
# AdamW one-cycle, bf16 + channels-last, EMA, flip TTA, 20 epochs), 3 seeds, one after another.
#   ARCH="<string from deepnn nas report>" NAME=<run name> THREADS=2 [EPOCHS=28] bash benchmarks/nas_best.sh
# EPOCHS=28 makes the training exactly vgg11_bn's fast recipe (28 epochs; the nas_child recipe has 20);
# SEEDS="0" trains one seed (default 0 1 2).
# The default ARCH is rank 1 of the 100-child searches by validation reward (results/nas/t100/report.md), run
# as results/cpu/nas_child_top1-fast-s*; rank 2 (the best when training started, before the last searches
# ended) ran as ARCH="1x3-16 3x3-64/2 1x5-32/2[1] 7x5-32/2[1,2]" NAME=nas_child THREADS=1 (results/cpu/nas_child-fast-s*).
# The VGG-budget searches' architectures (benchmarks/nas_large.sh) ran with EPOCHS=28 THREADS=2, rank 1 as
# NAME=nas_child_vgg_budget, the others through benchmarks/nas_vgg_budget_best.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEEPNN_DATA="${DEEPNN_DATA:-$(cd .. && pwd)/shared/data}"
arch="${ARCH:-7x3-32/2 5x7-32/2 1x5-64/2[1] 5x3-64/2[1,2]}"
for seed in ${SEEDS:-0 1 2}; do
  .venv/bin/deepnn train nas_child --recipe fast --set model.args.arch="$arch" --seed "$seed" ${EPOCHS:+--epochs "$EPOCHS"} \
    --threads "${THREADS:-2}" --no-progress --out "results/cpu/${NAME:-nas_child_top1}-fast-s$seed"
done
