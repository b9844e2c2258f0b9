#!/usr/bin/env bash
# Architecture search, REINFORCE against random search (issue "Architecture search that finds something"):
# 3 search seeds of each, 40 children each (TRIALS=N to change), 2 worker processes of 1 thread, each search alone on the
# 2-core machine, then the report. Search folders go to results/nas/<strategy>-s<seed>/.
#   bash benchmarks/nas.sh            (about 20 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 DEEPNN_DATA="${DEEPNN_DATA:-$(cd .. && pwd)/shared/data}"
for seed in 0 1 2; do
  for strategy in rl random; do
    .venv/bin/deepnn nas search --strategy "$strategy" --trials "${TRIALS:-40}" --workers 2 --seed "$seed" --quiet \
      --out "results/nas/$strategy-s$seed"
  done
done
.venv/bin/deepnn nas report results/nas/rl-s* results/nas/random-s* -o docs/img/nas.png | tee results/nas/report.md
