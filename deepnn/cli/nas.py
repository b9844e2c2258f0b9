"""``deepnn nas --steps 10``: architecture search with a REINFORCE controller (C20, Zoph & Le 2016).

Each step samples a small CNN from the controller, trains it briefly on a Fashion-MNIST subset,
and uses its validation accuracy as the reward; one line per step, then the best architecture.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from ..data import load_image_data
from ..errors import UserError
from ..nas import SearchSpace, Step, child_reward, search
from ..train.config import Config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "nas", help="neural architecture search: an LSTM controller trained with REINFORCE (C20)",
        description="Zoph & Le 2016 on a CPU budget: a controller samples a CNN (per conv layer a filter "
                    "size from 1, 3, 5 and a number of filters from 8, 16, 32), the child is trained for "
                    "--epochs on the first --train-subset Fashion-MNIST training images, its validation "
                    "accuracy is the reward R, and the controller takes a REINFORCE step on "
                    "-(R - baseline) * log p(arch). Rewards of architectures seen before are reused.",
        epilog="example:\n  deepnn nas --steps 10 --train-subset 2000 --epochs 1 --seed 0 --out nas.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="architectures sampled and controller updates (default 10)")
    p.add_argument("--layers", type=int, default=2, help="conv layers of each child (default 2)")
    p.add_argument("--train-subset", type=int, default=2000, help="training images per child (default 2000)")
    p.add_argument("--val-size", type=int, default=1000, help="validation images the reward is measured on "
                                                               "(held out of the training split; default 1000)")
    p.add_argument("--epochs", type=int, default=1, help="training epochs per child (default 1)")
    p.add_argument("--batch-size", type=int, default=64, help="children's training batch size (default 64)")
    p.add_argument("--lr", type=float, default=0.01, help="children's AdamW learning rate (default 0.01)")
    p.add_argument("--controller-lr", type=float, default=0.01, help="the controller's Adam learning rate "
                                                                     "(default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="seeds the controller, its samples and the children")
    p.add_argument("--device", default="auto", help="where children train: auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--data-dir", help="folder with the Fashion-MNIST files (default: DEEPNN_DATA)")
    p.add_argument("--out", metavar="FILE", help="write the settings and the history as JSON")
    p.set_defaults(func=run)


def check_out(name: str) -> None:
    """Raise a one-line UserError unless the JSON record can be written to the file ``name``."""
    out = Path(name)
    folder = out.parent
    if out.is_dir() or name.endswith(("/", os.sep)):
        raise UserError(f"--out {name} names a folder; give a file name such as {out / 'nas.json'}")
    if not folder.is_dir():
        raise UserError(f"--out {out}: folder {str(folder)!r} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise UserError(f"--out {out}: cannot write there (permission denied); choose a writable path")


def run(args: argparse.Namespace) -> int:
    for flag in ("steps", "layers", "epochs", "batch_size", "val_size"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.train_subset < args.batch_size:
        raise UserError(f"--train-subset ({args.train_subset}) must be at least --batch-size ({args.batch_size}), "
                        "or a child gets no training batch")
    for flag in ("lr", "controller_lr"):
        if getattr(args, flag) <= 0:
            raise UserError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    if args.out:
        check_out(args.out)  # before the search, not after minutes of it
    space = SearchSpace(num_layers=args.layers)
    cfg = Config()
    cfg.data.train_subset, cfg.data.batch_size, cfg.data.val_size = args.train_subset, args.batch_size, args.val_size
    cfg.optim.lr = args.lr
    cfg.train.epochs, cfg.train.seed, cfg.train.device, cfg.train.progress = args.epochs, args.seed, args.device, False
    data = load_image_data(data_dir=args.data_dir, val_size=args.val_size, seed=args.seed)

    def report(s: Step) -> None:
        print(f"step {s.step:>3}/{args.steps}  {s.arch:<{8 * args.layers}}  reward {s.reward:.4f}  "
              f"baseline {s.baseline:.4f}{'  (cached)' if s.cached else ''}", flush=True)

    result = search(lambda arch: child_reward(arch, space, data, cfg), space, args.steps, lr=args.controller_lr,
                    seed=args.seed, on_step=report)
    print(f"best architecture: {result.best.arch}  (validation accuracy {result.best.reward:.4f}, "
          f"step {result.best.step})")
    print(f"controller's most likely architecture: {result.greedy_arch}")
    if args.out:
        settings = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
        record = {"settings": settings, "history": [dataclasses.asdict(s) for s in result.history],
                  "best": dataclasses.asdict(result.best), "greedy_arch": result.greedy_arch}
        try:
            Path(args.out).write_text(json.dumps(record, indent=1))
        except OSError as e:
            raise UserError(f"cannot write --out {args.out}: {e.strerror or e}") from None
        print(f"wrote {args.out}")
    return 0
