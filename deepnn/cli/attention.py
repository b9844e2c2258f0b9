"""``deepnn attention RUN "sentence" -o attn.png``: cross-attention heatmaps of a translation (T1, T2, T4)."""

from __future__ import annotations

import argparse

from ..errors import UserError
from ..runs import load_run
from ..runs.build import seq2seq_run


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attention", help="draw where a translation run's decoder looks in the source",
                       description="Translate one sentence with a trained translation run, then draw its "
                                   "cross-attention weights as heatmaps (output pieces down, source pieces across): "
                                   "one per decoder layer and head for transformer_mt, one for seq2seq_attn.",
                       epilog='example: deepnn attention runs/mt "Select items to delete" -o attn.png')
    p.add_argument("run", help="run folder of a translation model")
    p.add_argument("sentence", help="the source sentence")
    p.add_argument("-o", "--out", default="attention.png", help="PNG file to write (default attention.png)")
    p.add_argument("--heads", choices=["all", "mean"], default="all",
                   help="all: one map per head (default); mean: the heads' average per layer")
    p.add_argument("--beam", type=int, default=1, help="beam width of the translation (1 = greedy)")
    p.add_argument("--checkpoint", choices=["last", "best"], default="last")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis.attention_maps import cross_attention, plot_attention

    if args.beam < 1:
        raise UserError(f"--beam must be at least 1 (1 = greedy), got {args.beam}")
    loaded, tokenizer = seq2seq_run(load_run(args.run, args.checkpoint), "attention")
    maps = cross_attention(loaded.model, tokenizer, args.sentence, args.beam)
    out = plot_attention(maps, args.out, args.heads)
    print(f"{args.sentence} -> {maps.translation}")
    print(f"wrote {out} ({len(maps.maps)} layer(s), source {len(maps.source)} pieces, output {len(maps.target)})")
    return 0
