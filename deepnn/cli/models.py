"""``deepnn models [PATTERN]``: every registered model, one line each, with its parameter count."""

from __future__ import annotations

import argparse

from ..models import list_models, model_info, parameter_count


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models with parameter counts",
                       description="List registered models (shell pattern, e.g. 'resnet*'), with parameter "
                                   "counts at the model's default (paper) configuration.")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style pattern (default: all)")
    p.add_argument("--task", choices=["classification", "language_model", "seq2seq"], help="only this task")
    p.set_defaults(func=run)


# what the data would give, for the parameter count: Shakespeare's 84 characters; the translation recipes'
# sentencepiece vocabulary of 4,000 pieces (data.vocab_size)
EXAMPLE_ARGS = {"language_model": {"vocab_size": 84}, "seq2seq": {"vocab_size": 4000}}


def run(args: argparse.Namespace) -> int:
    names = list_models(args.pattern, task=args.task)
    if not names:
        print(f"no model matches {args.pattern!r}")
        return 1
    width = max(map(len, names))
    for name in names:
        info = model_info(name)
        example = EXAMPLE_ARGS.get(info.task, {})  # what the data would give, e.g. a vocabulary size
        params = parameter_count(name, **{k: v for k, v in example.items() if k not in info.defaults})
        note = "".join(f" ({k}={v})" for k, v in example.items() if k not in info.defaults)
        print(f"{name:<{width}}  {params / 1e6:9.2f}M  {info.summary}{note}  [{info.paper}]")
    return 0
