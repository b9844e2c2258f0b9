#!/usr/bin/env bash
# The character language models' 10-minute runs on Shakespeare (issue "Beyond images"), each alone on the
# machine with 2 threads: the three cells side by side (seed 0), then seeds 1 and 2 of the cell with the
# lowest *validation* loss. Run files go to results/cpu/char_<cell>-s<seed>/.
#   bash benchmarks/char_lm.sh            (about 55 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
TEXT="${DEEPNN_DATA:-../shared/data}/shakespeare/shakespeare.txt"
train() {  # cell seed
  .venv/bin/deepnn train "char_$1" --text "$TEXT" --minutes 10 --threads 2 --seed "$2" --no-progress \
    --out "results/cpu/char_$1-s$2"
}
for cell in rnn lstm gru; do train "$cell" 0; done
best=$(.venv/bin/python - <<'PY'
import json
val = {c: json.load(open(f"results/cpu/char_{c}-s0/results.json"))["best_val_loss"] for c in ("rnn", "lstm", "gru")}
print(min(val, key=val.get))
PY
)
echo "lowest validation loss: char_$best"
for seed in 1 2; do train "$best" "$seed"; done
