"""Datasets as in-memory tensors, with a seeded validation split held out of the training set.

    >>> data = load_image_data("fashion_mnist", val_size=5000, seed=0)   # doctest: +SKIP
    >>> data.train[0].shape, data.val[0].shape, data.test[0].shape       # doctest: +SKIP
    (torch.Size([55000, 1, 28, 28]), torch.Size([5000, 1, 28, 28]), torch.Size([10000, 1, 28, 28]))

The test split is only for final reports; model selection uses the validation split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserError
from . import fashion_mnist
from .augment import BatchAugment, FlipAverage
from .loader import TensorLoader
from .text import CharVocab, RandomWindowLoader, SequentialTextLoader, TextData, eval_windows, load_text_data, read_text

DATASETS = ("fashion_mnist",)

Pair = tuple[torch.Tensor, torch.Tensor]


@dataclass
class ImageData:
    """Normalised float images ``(N, C, H, W)`` and int64 labels ``(N,)`` per split."""

    train: Pair
    val: Pair
    test: Pair
    classes: tuple[str, ...]
    mean: float
    std: float

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train[0].shape[1:])  # type: ignore[return-value]


def normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 images (0..255) or floats in [0, 1], any shape → ``(x - mean) / std`` as float32."""
    x = images.float().div(255.0) if images.dtype == torch.uint8 else images.float()
    return (x - mean) / std


def load_image_data(name: str = "fashion_mnist", *, data_dir: str | Path | None = None,
                    val_size: int = 5000, seed: int = 0) -> ImageData:
    """Load a dataset, normalise it, and hold out ``val_size`` training examples (seeded)."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    mod = fashion_mnist
    x, y = mod.load_split("train", data_dir)
    xt, yt = mod.load_split("test", data_dir)
    if not 0 <= val_size < len(x):
        raise UserError(f"val_size must be between 0 and {len(x) - 1}, got {val_size}")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    tr, va = perm[val_size:], perm[:val_size]
    x = normalize(x, mod.MEAN, mod.STD).unsqueeze(1)  # (N, 1, 28, 28)
    return ImageData(
        train=(x[tr], y[tr]), val=(x[va], y[va]), test=(normalize(xt, mod.MEAN, mod.STD).unsqueeze(1), yt),
        classes=mod.CLASSES, mean=mod.MEAN, std=mod.STD,
    )


__all__ = [
    "DATASETS", "BatchAugment", "FlipAverage", "ImageData", "TensorLoader", "load_image_data", "normalize",
    "CharVocab", "RandomWindowLoader", "SequentialTextLoader", "TextData", "eval_windows", "load_text_data",
    "read_text",
]
