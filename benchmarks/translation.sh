#!/usr/bin/env bash
# English→French translation (issue "Transformers and translation"), each run alone on the machine with 2
# threads: the Transformer and the RNN with additive attention, 20 minutes of training each on
# en-fr.train.tsv less its last 2,000 pairs (the test split, never seen in training), en-fr.valid.tsv for
# validation; the report scores greedy decoding and beam 5 on the test split. Then the character Transformer
# for 10 minutes on Shakespeare, beside the recurrent models of benchmarks/char_lm.sh.
# Run files go to results/cpu/<model>-s<seed>/.
#   bash benchmarks/translation.sh [transformer_mt|seq2seq_attn|char_transformer ...]   (about 60 minutes for all)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DEEPNN_DATA:-../shared/data}"
SEED="${SEED:-0}"
for model in "${@:-transformer_mt seq2seq_attn char_transformer}"; do
  for m in $model; do
    if [ "$m" = char_transformer ]; then
      .venv/bin/deepnn train char_transformer --text "$DATA/shakespeare/shakespeare.txt" --minutes 10 --threads 2 \
        --seed "$SEED" --no-progress --out "results/cpu/char_transformer-s$SEED"
    else
      .venv/bin/deepnn train "$m" --pairs "$DATA/translation/en-fr.train.tsv" --valid "$DATA/translation/en-fr.valid.tsv" \
        --minutes 20 --threads 2 --seed "$SEED" --no-progress --out "results/cpu/$m-s$SEED"
    fi
  done
done
