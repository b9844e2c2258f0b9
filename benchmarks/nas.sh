#!/usr/bin/env bash
# Architecture search, REINFORCE against random search (issue "Architecture search that finds something"):
# 3 search seeds of each, TRIALS children each (default 100), 2 worker processes of 1 thread, each search alone
# on the 2-core machine, then the report. Search folders go to results/nas/t<TRIALS>/<strategy>-s<seed>/, the
# report to results/nas/t<TRIALS>/report.md and docs/img/nas-t<TRIALS>.png.
#   bash benchmarks/nas.sh                (about an hour: 6 searches of 100 children)
#   TRIALS=40 bash benchmarks/nas.sh      (the first, shorter searches: about 20 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 DEEPNN_DATA="${DEEPNN_DATA:-$(cd .. && pwd)/shared/data}"
trials="${TRIALS:-100}"
out="results/nas/t$trials"
for seed in 0 1 2; do
  for strategy in rl random; do
    .venv/bin/deepnn nas search --strategy "$strategy" --trials "$trials" --workers 2 --seed "$seed" --quiet \
      --out "$out/$strategy-s$seed"
  done
done
.venv/bin/deepnn nas report "$out"/rl-s* "$out"/random-s* -o "docs/img/nas-t$trials.png" | tee "$out/report.md"
# A searched architecture trained fully (C20): `deepnn train nas_child --recipe fast --set model.args.arch="..."`,
# the string from `deepnn nas report`. The training is vgg11_bn's fast recipe (recipes/vgg11_bn-fast.yaml:
# crop + flip, label smoothing 0.1, AdamW with a one-cycle schedule, bf16 + channels-last, a moving average
# of the weights and flip TTA) with 20 epochs, so the found network is compared with the hand-designed one on
# equal terms. Measured results: docs/results.md.
