"""``deepnn eval RUN``: accuracy, loss and confusion matrix of a saved run."""

from __future__ import annotations

import argparse

from ..data import TensorLoader, load_image_data
from ..data.augment import FlipAverage
from ..train.config import Config
from ..train.run import load_run
from ..train.tasks import ClassificationTask


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a saved run on the test split",
                       description="Accuracy, loss and confusion matrix of a run's checkpoint.")
    p.add_argument("run", help="run folder (or a .safetensors checkpoint)")
    p.add_argument("--split", choices=["test", "val"], default="test", help="which split (default: test)")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best", help="which checkpoint (default: best)")
    p.add_argument("--data-dir", help="folder with the dataset files")
    p.set_defaults(func=run)


def format_confusion(confusion: list[list[int]], classes: list[str]) -> str:
    """Rows: true class; columns: predicted class (abbreviated names)."""
    short = [c.split("/")[0][:7] for c in classes]
    lines = ["true \\ pred  " + " ".join(f"{s:>7}" for s in short)]
    for name, row in zip(short, confusion):
        lines.append(f"{name:>11}  " + " ".join(f"{v:>7}" for v in row))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    model, meta = load_run(args.run, args.checkpoint)
    cfg = Config.from_dict(meta["config"], "checkpoint config")
    data = load_image_data(cfg.data.name, data_dir=args.data_dir or cfg.data.data_dir,
                           val_size=cfg.data.val_size, seed=cfg.train.seed)
    x, y = data.test if args.split == "test" else data.val
    classes = meta["data"]["classes"]
    if cfg.train.tta_flip:  # evaluate as the run did: average each image with its mirror image
        model = FlipAverage(model)
    metrics = ClassificationTask(len(classes)).evaluate(model, TensorLoader(x, y, cfg.data.eval_batch_size))
    print(f"{cfg.model.name} ({args.checkpoint} checkpoint, epoch {meta['epoch']}) on {cfg.data.name} {args.split}: "
          f"accuracy {metrics['accuracy']:.4f}  loss {metrics['loss']:.4f}  ({len(y)} examples)")
    print(format_confusion(metrics["confusion"], classes))
    return 0
