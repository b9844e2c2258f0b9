"""``deepnn predict RUN IMAGE...``: class probabilities for images of any size."""

from __future__ import annotations

import argparse

import torch

from ..data import normalize
from ..data.images import load_image
from ..errors import UserError
from ..runs import load_run


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify image files with a trained run",
                       description="Class probabilities for PNG/JPEG images of any size: each is converted to the "
                                   "run's channels, resized to its input size and normalised as in training. "
                                   "Fashion-MNIST shows light objects on a black background; photos of dark "
                                   "objects on a light background are inverted (--invert auto).")
    p.add_argument("run", help="run folder (or a .safetensors checkpoint)")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top", type=int, default=3, help="how many classes to show per image (default 3)")
    p.add_argument("--invert", choices=["auto", "yes", "no"], default="auto",
                   help="invert grey levels: auto does it when the image's border is light")
    p.add_argument("--checkpoint", choices=["best", "last"], default="last",
                   help="last (default): the weights results.json reports (the average with EMA); best: the best "
                        "validated")
    p.set_defaults(func=run)


def prepare(path: str, channels: int, size: int, mean: float, std: float, invert: str) -> torch.Tensor:
    """Image file → normalised ``(channels, size, size)`` tensor like the training data."""
    x = load_image(path, channels=channels, size=size)
    border = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], dim=1)
    if invert == "yes" or (invert == "auto" and border.mean() > 0.5):
        x = 1.0 - x
    return normalize(x, mean, std)


def run(args: argparse.Namespace) -> int:
    loaded = load_run(args.run, args.checkpoint)
    if loaded.kind.task != "classification":
        raise UserError(f"{args.run} is a {loaded.kind.task} run; predict classifies images "
                        "(use `deepnn sample` for a language model)")
    model, d = loaded.model, loaded.meta["data"]
    c, h, _ = d["input_shape"]
    classes = d["classes"]
    batch = torch.stack([prepare(p, c, h, d["mean"], d["std"], args.invert) for p in args.images])
    with torch.no_grad():
        probs = model(batch).softmax(dim=1)
    k = max(1, min(args.top, len(classes)))
    for path, p in zip(args.images, probs):
        top = p.topk(k)
        ranked = ", ".join(f"{classes[i]} {v:.3f}" for v, i in zip(top.values.tolist(), top.indices.tolist()))
        print(f"{path}: {ranked}")
    return 0
