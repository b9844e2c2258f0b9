"""Character-level language models (R1, R3): the "hello" toy, then a small LSTM on Shakespeare.

1. R3's toy: vocabulary [h, e, l, o], inputs "hell", targets "ello"; an RNN, an LSTM and a GRU cell
   each learn it in 100 Adam steps, then write "hello" from "h" by feeding their own characters back.
2. R1's pipeline on real text, step by step: text → vocabulary → indices → minibatches (x, y = x one
   character later), on the first 200 KB of ``shakespeare.txt``.
3. A one-layer LSTM (``char_lstm``) trained on that text for ~20 seconds with ``deepnn.runs.train_run``
   (the function behind ``deepnn train``) into a temporary run folder, reloaded with ``load_run``, and
   sampled with ``deepnn.decoding.generate``.

Run:  DEEPNN_DATA=../shared/data python examples/07_char_lm.py [--seconds 20] [--out RUN_FOLDER]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from deepnn.data import CharVocab, SequentialTextLoader, load_text_data, read_text
from deepnn.decoding import generate
from deepnn.models import hello_example
from deepnn.runs import load_run, train_run
from deepnn.train.config import Config


def shakespeare_path() -> Path:
    """``$DEEPNN_DATA/shakespeare/shakespeare.txt``."""
    root = os.environ.get("DEEPNN_DATA")
    if not root:
        raise SystemExit("set DEEPNN_DATA to the shared data folder (it holds shakespeare/shakespeare.txt)")
    return Path(root) / "shakespeare" / "shakespeare.txt"


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=20, help="training time budget (default 20)")
    p.add_argument("--chars", type=int, default=200_000, help="characters of shakespeare.txt to use (default 200000)")
    p.add_argument("--out", type=Path, help="run folder to create (default: a new temporary folder)")
    args = p.parse_args()

    print("R3  the lecture's toy: vocabulary [h, e, l, o], train on 'hell' -> 'ello'")
    for cell in ("rnn", "lstm", "gru"):
        r = hello_example(cell)
        print(f"    {cell:<4}  greedy sample from 'h': {r.sample!r}  predictions for 'hell': {r.predictions!r}  "
              f"loss {r.losses[0]:.3f} -> {r.losses[-1]:.5f}")
    print("    (without a hidden state, 'l' -> 'l' and 'l' -> 'o' cannot both be right: loss ≥ ln 2 / 2 ≈ 0.347)")

    work = Path(tempfile.mkdtemp(prefix="deepnn_char_lm_"))
    text_file = work / "shakespeare_200k.txt"
    text_file.write_text(read_text(shakespeare_path())[: args.chars], encoding="utf-8")

    print(f"\nR1  the pipeline, on the first {args.chars:,} characters of shakespeare.txt")
    data = load_text_data(text_file, val_fraction=0.05, test_fraction=0.05)
    text = data.vocab.decode(data.train[:40])
    print(f"    text        {text!r}")
    print(f"    vocabulary  {len(data.vocab)} characters, sorted: {data.vocab.chars!r}")
    print(f"    indices     {data.train[:12].tolist()} ...  (train {len(data.train):,}, "
          f"val {len(data.val):,}, test {len(data.test):,} characters, split in order)")
    loader = SequentialTextLoader(data.train, batch_size=32, seq_len=64, random_offset=False)
    x, y, carry = next(loader.batches(0))
    print(f"    batches     x {tuple(x.shape)}, y {tuple(y.shape)} (B streams × T characters), "
          f"{len(loader)} per epoch; carry state: {carry}")
    print(f"    row 0       x {data.vocab.decode(x[0, :20])!r}\n"
          f"                y {data.vocab.decode(y[0, :20])!r}  (x one character later)")

    cfg = Config.from_dict({
        "model": {"name": "char_lstm", "args": {"hidden_size": 256, "num_layers": 1, "dropout": 0.0,
                                                 "embedding_dim": 32}},
        "data": {"path": str(text_file), "seq_len": 64, "batch_size": 32, "batching": "sequential"},
        "optim": {"name": "adamw", "lr": 3e-3},
        "sched": {"name": "cosine", "final_lr_ratio": 0.1},
        "train": {"epochs": 100, "max_minutes": args.seconds / 60, "grad_clip": 1.0, "device": "cpu",
                  "threads": 1, "progress": False},
    })
    run_dir = args.out or work / "run"
    print(f"\nR3  char_lstm (1 layer of 256, embedding 32), {args.seconds:g} s of training into {run_dir}")
    results = train_run(cfg, run_dir, command="python examples/07_char_lm.py")
    print(f"    {results['steps']} steps, {results['tokens_per_s']:,.0f} characters/s; "
          f"best validation loss {results['best_val_loss']:.3f} nats/char; test loss {results['test_loss']:.3f} "
          f"({results['test_bits_per_char']:.2f} bits/char, perplexity {results['test_perplexity']:.1f}; "
          f"uniform guessing: ln {len(data.vocab)} = {torch.tensor(len(data.vocab)).log().item():.2f})")

    run = load_run(run_dir)  # the model rebuilt from the checkpoint, its vocabulary in the metadata
    vocab = CharVocab.from_list(run.meta["data"]["vocab"])
    prompt = vocab.encode("KING.\n")[None]  # (1, P)
    for temperature in (0.0, 0.8):
        out = generate(run.model, prompt, 160, temperature=temperature, generator=torch.Generator().manual_seed(0))
        label = "greedy" if temperature == 0 else f"temperature {temperature:g}"
        print(f"\n    sample ({label}), prompt 'KING.\\n':\n" + "\n".join(
            "      | " + line for line in (vocab.decode(prompt[0]) + vocab.decode(out[0])).split("\n")))


if __name__ == "__main__":
    main()
