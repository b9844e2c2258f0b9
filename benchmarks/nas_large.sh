#!/usr/bin/env bash
# Architecture search under a hand-designed model's budget (C20, the "beat VGG-11-BN ÷ 4" target): a larger
# space than benchmarks/nas.sh (6 conv layers, 16/32/64/128 filters, filters 1-7 high and wide, stride 1 or 2,
# skips) where a child may have no more parameters and FLOPs than VGG-11-BN ÷ 4 (1,770,154 and 14,402,048 on
# 1x28x28, counted by deepnn.analysis.summarize_model; costlier children get reward 0 untrained), and a longer
# proxy that ranks deeper children fairly: 2 epochs on 10,000 training images with the fast recipe's optimiser
# (AdamW 3e-3, one-cycle, bf16 + channels-last), reward = accuracy on 2,000 held-out training images.
# An architecture over the limits is drawn again (OVER_BUDGET=redraw, the default: every trial trains a child)
# or is a trial with reward 0 (OVER_BUDGET=fail, the first run: the controller fled to tiny children).
# One search seed of each strategy (SEEDS="0 1 2" for more), TRIALS children each (default 200), 2 workers of
# 1 thread, each search alone on the 2-core machine; folders in
# results/nas/vgg-budget-<OVER_BUDGET>/<strategy>-s<seed>/, the report beside them and in docs/img/.
#   bash benchmarks/nas_large.sh                        (about 35 minutes)
#   OVER_BUDGET=fail bash benchmarks/nas_large.sh       (about 12 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 DEEPNN_DATA="${DEEPNN_DATA:-$(cd .. && pwd)/shared/data}"
trials="${TRIALS:-200}"
over="${OVER_BUDGET:-redraw}"
out="results/nas/vgg-budget-$over"
read -r params flops < <(.venv/bin/python -c "from deepnn.analysis import summarize_model as s
m = s('vgg11_bn', (1, 28, 28), width_div=4, num_classes=10); print(m.params, m.flops)")
for seed in ${SEEDS:-0}; do
  for strategy in rl random; do
    .venv/bin/deepnn nas search --strategy "$strategy" --trials "$trials" --workers 2 --seed "$seed" --quiet \
      --layers 6 --filters 16,32,64,128 --max-params "$params" --max-flops "$flops" --over-budget "$over" \
      --set data.train_subset=10000 --set train.epochs=2 --set optim.name=adamw --set optim.lr=0.003 \
      --set sched.name=onecycle --set train.precision=bf16 --set train.channels_last=true \
      --out "$out/$strategy-s$seed"
  done
done
.venv/bin/deepnn nas report "$out"/rl-s* "$out"/random-s* -o "docs/img/nas-vgg-budget-$over.png" | tee "$out/report.md"
