"""Translation (T1, T4, T5): from sentence pairs to a translator, beam search, BLEU and an attention map.

1. The data: English→French pairs (``source<TAB>target``), one sentencepiece vocabulary for both languages,
   the pieces of a sentence, and length-bucketed batches with their padded fraction.
2. A small Transformer (``transformer_mt``) trained for ~10 seconds with ``deepnn.runs.train_run`` (the
   function behind ``deepnn train``) on the first 4,000 pairs — far too short to translate well, long enough
   to see the loss fall and the decoding machinery work; pass ``--run RUN`` to use a run trained with
   ``benchmarks/translation.sh`` instead.
3. Greedy decoding vs beam search on a few sentences, corpus BLEU and chrF (sacrebleu) on held-out pairs.
4. T5: the same model scored with the gold prefix (teacher forcing) and with its own (free-running).
5. The cross-attention of the last decoder layer, printed as a table: which source piece each output
   piece looked at most.

Run:  DEEPNN_DATA=../shared/data python examples/10_translation.py [--seconds 10] [--run RUN_FOLDER]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from deepnn.analysis.attention_maps import cross_attention
from deepnn.analysis.exposure import exposure_bias
from deepnn.data.pairs import PairBatches, Tokenizer, read_pairs
from deepnn.metrics import translation_scores
from deepnn.runs import load_run, train_run
from deepnn.runs.build import Translation, seq2seq_run
from deepnn.train.config import Config
from deepnn.translation import translate

SENTENCES = ["Select items to delete", "Unable to open file %s", "Show hidden files"]


def pairs_path() -> Path:
    root = os.environ.get("DEEPNN_DATA")
    if not root:
        raise SystemExit("set DEEPNN_DATA to the shared data folder (it holds translation/en-fr.train.tsv)")
    return Path(root) / "translation" / "en-fr.train.tsv"


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10, help="training time budget (default 10)")
    p.add_argument("--pairs", type=int, default=4000, help="pairs of en-fr.train.tsv to use (default 4000)")
    p.add_argument("--run", type=Path, help="a trained translation run to use instead of training one")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="deepnn_translation_"))
    lines = pairs_path().read_text(encoding="utf-8").splitlines()[: args.pairs]
    small = work / "pairs.tsv"
    small.write_text("\n".join(lines) + "\n", encoding="utf-8")

    print("T1  the data: sentence pairs, one vocabulary, batches of similar length")
    pairs = read_pairs(small).pairs
    print(f"    {len(pairs):,} pairs, e.g. {pairs[0][0]!r} -> {pairs[0][1]!r}")
    tok = Tokenizer.train((side for pair in pairs for side in pair), vocab_size=1000)
    print(f"    sentencepiece (unigram), {len(tok)} pieces: {SENTENCES[0]!r} -> {tok.tokens(SENTENCES[0])}")
    src, tgt = tok.encode([s for s, _ in pairs]), tok.encode([t for _, t in pairs])
    batches = PairBatches(src, tgt, max_tokens=2048, shuffle=True)
    first = next(batches.batches(0))
    print(f"    {len(batches)} batches of ≤ 2,048 padded tokens, the first (src, tgt) {tuple(first[0].shape)}, "
          f"{tuple(first[1].shape)}; padded fraction {batches.padding_fraction:.1%} (length buckets)")

    if args.run is None:
        cfg = Config.from_dict({
            "model": {"name": "transformer_mt", "args": {"d_model": 128, "nhead": 4, "num_encoder_layers": 2,
                                                          "num_decoder_layers": 2, "dim_feedforward": 256,
                                                          "dropout": 0.1}},
            "data": {"path": str(small), "holdout_pairs": 100, "vocab_size": 1000, "max_tokens": 2048,
                     "bleu_sentences": 50},
            "optim": {"name": "adamw", "lr": 2e-3, "betas": [0.9, 0.98]},
            "sched": {"name": "cosine", "warmup_epochs": 0.3, "final_lr_ratio": 0.05},
            "train": {"epochs": 50, "max_minutes": args.seconds / 60, "label_smoothing": 0.1, "grad_clip": 1.0,
                      "device": "cpu", "threads": 1, "progress": False, "beam_size": 4, "precision": "bf16"},
        })
        run_dir = work / "run"
        print(f"\nT4  transformer_mt (2 + 2 layers of 128), {args.seconds:g} s of training into {run_dir}")
        results = train_run(cfg, run_dir, command="python examples/10_translation.py")
        print(f"    {results['steps']} steps, {results['tokens_per_s']:,.0f} target tokens/s; test BLEU "
              f"{results['test_bleu']:.1f} greedy, {results['test_bleu_beam4']:.1f} beam 4 (100 held-out pairs)")
        args.run = run_dir

    loaded, tokenizer = seq2seq_run(load_run(args.run), "examples/10_translation.py")
    model = loaded.model
    print(f"\nT4  greedy decoding vs beam search ({loaded.cfg.model.name}, {args.run})")
    greedy = translate(model, tokenizer, SENTENCES)
    beam = translate(model, tokenizer, SENTENCES, beam_size=4)
    for s, g, b in zip(SENTENCES, greedy, beam):
        print(f"    {s!r}\n      greedy {g!r}\n      beam 4 {b!r}")

    kind = Translation()
    test = kind.splits(loaded.cfg)[0]["test"][:50]
    hyps = translate(model, tokenizer, [s for s, _ in test])
    scores = translation_scores(hyps, [t for _, t in test])
    print(f"    corpus BLEU {scores['bleu']:.2f}, chrF {scores['chrf']:.2f} on {len(test)} held-out pairs (greedy)")

    print("\nT5  exposure bias: the same model with the gold prefix and with its own")
    loader = kind.evaluation(tokenizer, test, model.max_len, 2048, None, (1,))
    e = exposure_bias(model, tokenizer, loader.loader.batches(), loader.references)
    print(f"    teacher-forced: loss {e['teacher_forced_loss']:.3f} nats/token, BLEU {e['teacher_forced_bleu']:.1f}"
          f"\n    free-running:   loss {e['free_running_loss']:.3f} nats/token, BLEU {e['free_running_bleu']:.1f}")

    print(f"\nT1/T4  cross-attention of the last decoder layer for {SENTENCES[0]!r} (mean over heads)")
    maps = cross_attention(model, tokenizer, SENTENCES[0])
    weights = maps.maps[-1][1].float().mean(0)  # (T, S)
    for piece, row in zip(maps.target, weights):
        j = int(row.argmax())
        print(f"    {piece:>14} looks most at {maps.source[j]!r} ({row[j]:.2f})")


if __name__ == "__main__":
    main()
