"""``deepnn translate RUN "sentence"``: translate with a trained sequence-to-sequence run (T1, T4)."""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError
from ..runs import load_run
from ..runs.build import seq2seq_run
from ..translation import translate


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("translate", help="translate sentences with a trained translation run",
                       description="Translate sentences with a trained sequence-to-sequence run (transformer_mt, "
                                   "seq2seq_attn): greedy decoding, or beam search with --beam K. Sentences come "
                                   "from the command line or from --file (one per line); translations go to "
                                   "stdout, one per line, in the same order.",
                       epilog='example: deepnn translate runs/mt "Select items to delete" --beam 5')
    p.add_argument("run", help="run folder of a translation model (or a .safetensors checkpoint)")
    p.add_argument("sentences", nargs="*", help="sentences to translate")
    p.add_argument("--file", help="a UTF-8 file with one sentence per line ('-': stdin)")
    p.add_argument("--beam", type=int, default=1, help="beam width; 1 (default) is greedy decoding")
    p.add_argument("--length-penalty", type=float, default=None,
                   help="GNMT length penalty alpha for beam search (default: the run's train.length_penalty)")
    p.add_argument("--checkpoint", choices=["last", "best"], default="last",
                   help="last (default): the weights results.json reports; best: the best validated")
    p.set_defaults(func=run)


def read_sentences(args: argparse.Namespace) -> list[str]:
    """The sentences of the command line and of ``--file`` (blank lines of the file are kept as errors)."""
    sentences = list(args.sentences)
    if args.file:
        from ..data.text import read_text

        text = sys.stdin.read() if args.file == "-" else read_text(args.file)
        sentences += text.splitlines()
    if not sentences:
        raise UserError("nothing to translate: give sentences as arguments or --file FILE")
    return sentences


def run(args: argparse.Namespace) -> int:
    if args.beam < 1:
        raise UserError(f"--beam must be at least 1 (1 = greedy), got {args.beam}")
    loaded, tokenizer = seq2seq_run(load_run(args.run, args.checkpoint), "translate")
    alpha = loaded.cfg.train.length_penalty if args.length_penalty is None else args.length_penalty
    for line in translate(loaded.model, tokenizer, read_sentences(args), beam_size=args.beam, length_penalty=alpha):
        print(line)
    return 0
