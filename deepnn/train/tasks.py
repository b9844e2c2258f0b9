"""Tasks own the loss and the metrics; models only map inputs to outputs (STYLE.md).

A task implements two methods the :class:`~deepnn.train.Trainer` calls:

* ``step(model, batch) -> (loss, stats)``: the training loss of one batch and running
  statistics as tensors (summed over the batch; no host sync in the hot loop);
* ``summarize(stats) -> dict[str, float]``: turn summed statistics into metrics.

Language-modelling and seq2seq tasks follow the same two methods.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]


class ClassificationTask:
    """Cross-entropy classification (optionally label-smoothed, Szegedy et al. 2016).

    Models returning a tuple ``(logits, aux1, aux2, ...)`` in training (GoogLeNet's auxiliary
    classifiers) get the auxiliary losses added with weight ``aux_weight`` (0.3 in the paper).
    """

    name = "classification"

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, aux_weight: float = 0.3) -> None:
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.aux_weight = aux_weight

    def step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch
        out = model(x)  # (B, classes) or a tuple of them
        logits, aux = (out[0], out[1:]) if isinstance(out, tuple) else (out, ())
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        for a in aux:
            loss = loss + self.aux_weight * F.cross_entropy(a, y, label_smoothing=self.label_smoothing)
        stats = {"loss": loss.detach().float() * len(y), "correct": (logits.argmax(1) == y).sum(),
                 "count": torch.tensor(len(y))}
        return loss, stats

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches, autocast=None) -> dict[str, float]:
        """Loss (plain cross-entropy), accuracy and confusion matrix over ``batches``."""
        model.eval()
        total = {"loss": torch.zeros(()), "correct": torch.zeros((), dtype=torch.long), "count": torch.zeros(())}
        confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)
        for x, y in batches:
            with autocast() if autocast else torch.autocast("cpu", enabled=False):
                logits = model(x)
            logits = logits.float()
            total["loss"] += F.cross_entropy(logits, y, reduction="sum").cpu()
            pred = logits.argmax(1)
            total["correct"] += (pred == y).sum().cpu()
            total["count"] += len(y)
            confusion += torch.bincount((y * self.num_classes + pred).cpu(),
                                        minlength=self.num_classes ** 2).view(self.num_classes, -1)
        metrics = self.summarize(total)
        metrics["confusion"] = confusion.tolist()
        return metrics

    @staticmethod
    def summarize(stats: dict[str, torch.Tensor]) -> dict[str, float]:
        n = max(float(stats["count"]), 1.0)
        return {"loss": float(stats["loss"]) / n, "accuracy": float(stats["correct"]) / n}
