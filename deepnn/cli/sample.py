"""``deepnn sample RUN``: text from a trained language model, its own samples fed back (R3)."""

from __future__ import annotations

import argparse

import torch

from ..data.text import CharVocab
from ..decoding import generate
from ..errors import UserError
from ..runs import load_run


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate text with a trained language model",
                       description="Feed a prompt to a trained language model, then sample one character at a "
                                   "time and feed it back. --temperature 0 is greedy decoding; --top-k and "
                                   "--top-p (nucleus) restrict the choice.")
    p.add_argument("run", help="run folder of a language model (or a .safetensors checkpoint)")
    p.add_argument("--prompt", default="\n", help="the text to start from (default: a newline)")
    p.add_argument("--length", type=int, default=500, help="characters to generate (default 500)")
    p.add_argument("--temperature", type=float, default=0.8, help="softmax temperature; 0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=int, help="sample among the k most likely characters")
    p.add_argument("--top-p", type=float, help="sample among the most likely characters holding probability p")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same text")
    p.add_argument("--checkpoint", choices=["last", "best"], default="last",
                   help="last (default): the weights results.json reports; best: the best validated")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.length < 1:
        raise UserError(f"--length must be at least 1, got {args.length}")
    loaded = load_run(args.run, args.checkpoint)
    if loaded.kind.task != "language_model":
        raise UserError(f"{args.run} is a {loaded.kind.task} run; sample needs a language model run "
                        "(`deepnn models --task language_model`)")
    vocab = CharVocab.from_list(loaded.meta["data"]["vocab"])
    if not args.prompt:
        raise UserError("--prompt is empty; give at least one character to start from")
    prompt = vocab.encode(args.prompt, what="the prompt")[None]  # (1, P)
    out = generate(loaded.model, prompt, args.length, temperature=args.temperature, top_k=args.top_k,
                   top_p=args.top_p, generator=torch.Generator().manual_seed(args.seed))
    print(args.prompt + vocab.decode(out[0]))
    return 0
