"""Batches from tensors held in memory: no per-sample Python work in the hot loop.

Small datasets (Fashion-MNIST is 188 MB as float32) live whole in memory, on the training
device if wanted; an epoch is one random permutation and a slice per batch. The order of
epoch ``e`` depends only on ``(seed, e)``, so a run resumed mid-epoch sees exactly the
batches the interrupted one would have seen.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch

from ..errors import UserError


def check_shardable(batch_size: int, world_size: int, what: str = "data.batch_size") -> int:
    """The per-process share of a global batch; a one-line error when it does not divide evenly."""
    if batch_size % world_size:
        raise UserError(f"{what}={batch_size} is the global batch and must divide evenly among the "
                        f"{world_size} processes; use a multiple of {world_size}")
    return batch_size // world_size


class TensorLoader:
    """Iterate ``(x, y)`` mini-batches over in-memory tensors.

    Args:
        x: inputs ``(N, ...)``; y: targets ``(N, ...)``.
        batch_size: examples per batch.
        shuffle: a fresh permutation per epoch (seeded by ``seed`` and the epoch number).
        drop_last: drop the last incomplete batch (keeps batch-norm statistics sane).

    :meth:`shard` gives one process of a data-parallel run its part of every batch: ``batch_size``
    stays the global batch, ``len()`` the global number of batches.
    """

    rank, world_size = 0, 1

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor | None:
        """The permutation used in ``epoch`` (``None`` when not shuffling)."""
        if not self.shuffle:
            return None
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.x), generator=g).to(self.x.device)

    def shard(self, rank: int, world_size: int) -> TensorLoader:
        """This loader for process ``rank`` of ``world_size``: every process draws the same permutation of
        ``(seed, epoch)`` and takes part ``rank`` of the ``world_size`` equal parts of each global batch."""
        check_shardable(self.batch_size, world_size)
        if not self.drop_last and len(self.x) % self.batch_size and (len(self.x) % self.batch_size) % world_size:
            raise UserError(f"the last incomplete batch ({len(self.x) % self.batch_size} examples) does not split "
                            f"among {world_size} processes; drop it (drop_last=True)")
        out = copy.copy(self)
        out.rank, out.world_size = rank, world_size
        return out

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``epoch``, skipping the first ``start`` (to resume mid-epoch); this process's part
        of each when sharded."""
        idx = self.order(epoch)
        for b in range(start, len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, len(self.x))
            if self.world_size > 1:
                part = (hi - lo) // self.world_size
                lo, hi = lo + self.rank * part, lo + (self.rank + 1) * part
            sl = slice(lo, hi)
            if idx is None:
                yield self.x[sl], self.y[sl]
            else:
                i = idx[sl]
                yield self.x[i], self.y[i]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches(0)
