"""Data augmentation of whole batches on their device: no per-example Python work.

Training batches ``(B, C, H, W)`` already live on the training device (see
:mod:`deepnn.data.loader`); augmenting them there, with one tensor operation per transform
for the whole batch, keeps the GPU busy instead of waiting for a CPU worker pool.

* **random crop with zero padding** (Krizhevsky et al. 2012 crop; the padded form is the
  standard CIFAR recipe of He et al. 2016): pad ``p`` zero pixels on every side and cut an
  ``H × W`` window at a per-example random offset in ``[0, 2p]²``, as one gather;
* **horizontal flip** with probability 1/2 per example;
* **random erasing** (Zhong et al. 2017, "Random Erasing Data Augmentation"): with
  probability ``erase_prob`` per example, set a rectangle of area ``[0.02, 0.4] · H·W`` and
  aspect ratio ``[0.3, 1/0.3]`` (the paper's defaults) to 0, which is the dataset mean after
  normalisation (the paper's "mean value" variant).

Every random number comes from a ``torch.Generator`` on the batch's device that the caller
owns (the :class:`~deepnn.train.Trainer` keeps one and stores its state in ``last``
checkpoints), so a resumed run draws exactly the crops an uninterrupted one would have.

Data-parallel training: a process holding part ``rank`` of ``world_size`` equal parts of a global
batch passes ``shard=(rank, world_size)``. Every transform then draws the random numbers of the
whole global batch (``world_size`` times its own rows) and keeps the columns of its examples, so
example ``i`` of a global batch is augmented the same way whatever the number of processes, every
rank's generator stays in step (one saved state resumes any number of processes), and no two ranks
use the same numbers for different examples. Drawing the few numbers per example of the whole
batch costs microseconds.

:class:`FlipAverage` is the test-time counterpart: average the predictions for an image and
its mirror image.

    >>> g = torch.Generator().manual_seed(0)
    >>> aug = BatchAugment(crop_padding=2, flip=True, erase_prob=0.5)
    >>> aug(torch.randn(8, 1, 28, 28), g).shape
    torch.Size([8, 1, 28, 28])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

__all__ = ["AugmentHook", "BatchAugment", "FlipAverage", "random_crop", "random_erase", "random_flip"]

ERASE_AREA = (0.02, 0.4)  # fraction of the image (Zhong et al. 2017: s_l, s_h)
ERASE_RATIO = 0.3  # aspect ratios between 0.3 and 1/0.3 (r_1, 1/r_1)


Shard = tuple[int, int]  # (rank, world_size): this batch is part `rank` of `world_size` of the global batch


def _columns(draw: torch.Tensor, b: int, shard: Shard) -> torch.Tensor:
    """Columns ``rank·b … (rank+1)·b`` of random numbers drawn for the global batch ``(…, world_size·b)``."""
    rank, world = shard
    return draw if world == 1 else draw[..., rank * b:(rank + 1) * b]


def _uniform(rows: tuple[int, ...], b: int, generator: torch.Generator, device: torch.device,
             shard: Shard) -> torch.Tensor:
    """``(*rows, b)`` uniform numbers in [0, 1): this part's columns of a draw for the whole global batch."""
    return _columns(torch.rand((*rows, b * shard[1]), generator=generator, device=device), b, shard)


def _check_shard(shard: Shard) -> None:
    rank, world = shard
    if not 0 <= rank < world:
        raise ValueError(f"shard=(rank, world_size) needs 0 <= rank < world_size, got {shard}")


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator, shard: Shard = (0, 1)) -> torch.Tensor:
    """Zero-pad ``x`` ``(B, C, H, W)`` by ``padding`` and take an ``H × W`` window per example.

    The window's top-left corner ``(dy, dx)`` is uniform in ``[0, 2·padding]²``, independently
    for each example; all windows are read with one advanced-indexing gather. ``shard``: see the
    module docstring.
    """
    _check_shard(shard)
    if padding == 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)  # (B, C, H + 2p, W + 2p)
    offsets = _columns(torch.randint(0, 2 * padding + 1, (2, b * shard[1]), generator=generator, device=x.device),
                       b, shard)  # (2, B)
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]  # (B, 1, 1, 1)
    chan = torch.arange(c, device=x.device)[None, :, None, None]  # (1, C, 1, 1)
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)


def random_flip(x: torch.Tensor, generator: torch.Generator, shard: Shard = (0, 1)) -> torch.Tensor:
    """Mirror each image of ``x`` ``(B, C, H, W)`` left-right with probability 1/2."""
    _check_shard(shard)
    flip = _uniform((), x.shape[0], generator, x.device, shard) < 0.5  # (B,)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_erase(x: torch.Tensor, prob: float, generator: torch.Generator, shard: Shard = (0, 1)) -> torch.Tensor:
    """Random erasing (Zhong et al. 2017) of ``x`` ``(B, C, H, W)``: with probability ``prob`` per
    example, zero one rectangle of area ``ERASE_AREA`` × H·W and aspect ratio in
    ``[ERASE_RATIO, 1/ERASE_RATIO]`` (log-uniform, so tall and wide are equally likely).

    The paper redraws a rectangle that does not fit; here its sides are clipped to the image,
    which keeps the draw a fixed number of tensor operations.
    """
    _check_shard(shard)
    if prob == 0:
        return x
    b, _, h, w = x.shape
    u = _uniform((5,), b, generator, x.device, shard)  # (5, B): apply?, area, ratio, top, left
    area = h * w * (ERASE_AREA[0] + (ERASE_AREA[1] - ERASE_AREA[0]) * u[1])
    ratio = torch.exp(math.log(ERASE_RATIO) * (1 - 2 * u[2]))  # height / width
    eh = (area * ratio).sqrt().round().clamp(1, h)  # (B,)
    ew = (area / ratio).sqrt().round().clamp(1, w)
    top = (u[3] * (h - eh + 1)).floor()  # uniform in [0, H - eh]
    left = (u[4] * (w - ew + 1)).floor()
    ys = torch.arange(h, device=x.device)[None, :]  # (1, H)
    xs = torch.arange(w, device=x.device)[None, :]  # (1, W)
    in_rows = (ys >= top[:, None]) & (ys < (top + eh)[:, None])  # (B, H)
    in_cols = (xs >= left[:, None]) & (xs < (left + ew)[:, None])  # (B, W)
    erase = (u[0] < prob)[:, None, None] & in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W)
    return x.masked_fill(erase[:, None], 0.0)


@dataclass(frozen=True)
class BatchAugment:
    """The training augmentation of a run (``data.crop_padding``, ``data.flip``, ``data.erase_prob``).

    Calling it on a batch ``(B, C, H, W)`` applies crop, then flip, then erasing (the paper
    erases after the other augmentations), drawing from ``generator``, which must live on the
    batch's device; ``shard=(rank, world_size)`` when the batch is that part of a global batch
    (data-parallel training, see the module docstring).
    """

    crop_padding: int = 0
    flip: bool = False
    erase_prob: float = 0.0

    def __post_init__(self) -> None:
        if self.crop_padding < 0:
            raise UserError(f"data.crop_padding must be 0 (off) or a positive number of pixels, "
                            f"got {self.crop_padding}; 2 or 4 suit 28×28 images")
        if not 0.0 <= self.erase_prob <= 1.0:
            raise UserError(f"data.erase_prob is a probability in [0, 1], got {self.erase_prob}; "
                            "0.5 is the value of Zhong et al. 2017")

    @property
    def enabled(self) -> bool:
        return self.crop_padding > 0 or self.flip or self.erase_prob > 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator, shard: Shard = (0, 1)) -> torch.Tensor:
        if x.ndim != 4:
            raise UserError(f"batch augmentation needs images (B, C, H, W), got a batch of shape {tuple(x.shape)}; "
                            "set data.crop_padding=0, data.flip=false, data.erase_prob=0")
        x = random_crop(x, self.crop_padding, generator, shard)
        if self.flip:
            x = random_flip(x, generator, shard)
        return random_erase(x, self.erase_prob, generator, shard)


class AugmentHook:
    """A :class:`~deepnn.train.Trainer` hook that augments the images of training batches.

    It owns the ``augment`` generator (on ``device``, seeded with ``seed``); the trainer saves its
    state in ``last`` checkpoints, so a resumed run draws the crops an uninterrupted one would have.
    Under data-parallel training every rank draws for the whole global batch and augments its own
    part of it (``trainer.dist``), so the augmentation does not depend on the number of processes.
    """

    def __init__(self, augment: BatchAugment, device: torch.device | str, seed: int) -> None:
        self.augment = augment
        self.generators = {"augment": torch.Generator(device=device).manual_seed(seed)}

    def transform(self, trainer: object, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x, *rest = batch
        d = getattr(trainer, "dist", None)  # a DDP process's part of the global batch
        shard = (d.rank, d.world_size) if d is not None else (0, 1)
        return (self.augment(x, self.generators["augment"], shard), *rest)


class FlipAverage(nn.Module):
    """Test-time augmentation: the mean of the class probabilities for each image and its mirror.

    Returns log-probabilities ``log((softmax(f(x)) + softmax(f(flip(x)))) / 2)`` ``(B, classes)``,
    which are valid logits: ``argmax`` gives the averaged prediction and ``cross_entropy``
    the loss of the averaged distribution (averaging softmax outputs of several views follows
    Krizhevsky et al. 2012).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W)
        both = torch.stack([self.model(x).float().log_softmax(-1),
                            self.model(x.flip(-1)).float().log_softmax(-1)])  # (2, B, classes)
        return torch.logsumexp(both, 0) - math.log(2)
