"""``deepnn summary MODEL [--input CxHxW] [--compare OTHER]``: a network's anatomy, layer by layer.

Per-layer output shape, parameters, multiply-adds, receptive field and activation memory,
with totals (C12, C14); ``--compare`` puts two models side by side like the lecture's
AlexNet vs LeNet table; ``deepnn summary inception-block --in 192x28x28 --out 256`` is
the lecture's Inception vs 3×3 vs 5×5 table (C16).
"""

from __future__ import annotations

import argparse

from ..analysis.summary import (
    compare_markdown,
    inception_comparison,
    parse_shape,
    summarize_model,
    totals_markdown,
)
from ..errors import UserError

INCEPTION_BLOCK = "inception-block"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary",
        help="per-layer shapes, parameters, MACs, receptive field, memory",
        description="Per-layer anatomy of a registered model (built on the meta device, so any "
        "size is fast). MACs are multiply-adds per example, half of PyTorch "
        f"FlopCounterMode's FLOPs. MODEL '{INCEPTION_BLOCK}' prints the lecture's "
        "Inception vs 3x3 vs 5x5 convolution table.",
    )
    p.add_argument(
        "model", metavar="MODEL", help=f"registered model name (see `deepnn models`) or {INCEPTION_BLOCK}"
    )
    p.add_argument(
        "--input",
        "--in",
        metavar="CxHxW",
        help="input shape, e.g. 1x28x28 (default: the model's paper input; another size builds "
        "the model for it; for inception-block 192x28x28)",
    )
    p.add_argument("--num-classes", type=int, help="outputs of the classifier (default: the model's)")
    p.add_argument(
        "--compare",
        metavar="OTHER",
        help="second model, at its default input, side by side by layer kind (e.g. alexnet vs lenet)",
    )
    p.add_argument("--out", type=int, help=f"{INCEPTION_BLOCK} only: output channels (default 256)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    shape = parse_shape(args.input) if args.input else None
    if args.model.replace("_", "-") == INCEPTION_BLOCK:
        if args.compare or args.num_classes:
            raise UserError(f"{INCEPTION_BLOCK} takes only --in and --out; drop --compare/--num-classes")
        summaries = inception_comparison(shape or (192, 28, 28), 256 if args.out is None else args.out)
        print(totals_markdown(summaries))
        print()
        print(summaries[0].to_markdown())
        return 0
    if args.out is not None:
        raise UserError(f"--out is for {INCEPTION_BLOCK} only; use --num-classes to change a model's outputs")
    if args.num_classes is not None and args.num_classes < 1:
        raise UserError(f"--num-classes must be at least 1, got {args.num_classes}")
    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    main = summarize_model(args.model, shape, **kwargs)
    if args.compare:
        print(compare_markdown(main, summarize_model(args.compare)))
        return 0
    print(main.to_markdown())
    return 0
