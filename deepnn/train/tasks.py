"""Tasks own what is task-specific; models only map inputs to outputs, the loop is the same (STYLE.md).

The :class:`~deepnn.train.Trainer` runs every task through one loop and asks the task:

* ``step(model, batch) -> (loss, stats)``: the training loss of one batch and running statistics
  as tensors (summed over the batch; no host sync in the hot loop);
* ``summarize(stats) -> dict[str, float]``: summed statistics → metrics (``loss`` always);
* ``evaluate(model, batches, autocast) -> dict``: metrics over a whole split;
* ``metric`` and ``mode``: which validation metric picks the ``best`` checkpoint and its direction
  (accuracy ↑ for images, loss ↓ for language models);
* ``unit`` and ``units(batch)``: what throughput counts (examples/s or tokens/s);
* ``progress(metrics)``: the few numbers the progress bar shows;
* ``report(metrics)``: the test-split fields of a finished run's ``results.json``;
* ``carried() / restore(tensors)``: state carried from one batch to the next (a language model's
  hidden state under truncated back-propagation through time), saved in ``last`` checkpoints so that
  a resumed run continues exactly.

A new task is a class with these members; the loop, checkpoints, budgets and run folders are shared.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import FlipAverage

Batch = tuple[torch.Tensor, ...]
Stats = dict[str, torch.Tensor]


def _no_autocast() -> torch.autocast:
    return torch.autocast("cpu", enabled=False)


class ClassificationTask:
    """Cross-entropy classification (optionally label-smoothed, Szegedy et al. 2016).

    Batches are ``(x (B, C, H, W), y (B,))``. Models returning a tuple ``(logits, aux1, aux2, ...)``
    in training (GoogLeNet's auxiliary classifiers) get the auxiliary losses added with weight
    ``aux_weight`` (0.3 in the paper). With ``tta_flip`` evaluation averages each image's
    probabilities with its mirror image's (:class:`~deepnn.data.augment.FlipAverage`).
    """

    name = "classification"
    metric, mode, unit = "accuracy", "max", "examples"

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, aux_weight: float = 0.3,
                 tta_flip: bool = False) -> None:
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.aux_weight = aux_weight
        self.tta_flip = tta_flip

    def step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, Stats]:
        x, y = batch
        out = model(x)  # (B, classes) or a tuple of them
        logits, aux = (out[0], out[1:]) if isinstance(out, tuple) else (out, ())
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        for a in aux:
            loss = loss + self.aux_weight * F.cross_entropy(a, y, label_smoothing=self.label_smoothing)
        stats = {"loss": loss.detach().float() * len(y), "correct": (logits.argmax(1) == y).sum(),
                 "count": torch.tensor(len(y))}
        return loss, stats

    @staticmethod
    def units(batch: Batch) -> int:
        return len(batch[0])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[Batch],
                 autocast: Callable[[], torch.autocast] | None = None) -> dict[str, Any]:
        """Loss (plain cross-entropy), accuracy and confusion matrix over ``batches``."""
        model = FlipAverage(model) if self.tta_flip else model
        model.eval()
        total = {"loss": torch.zeros(()), "correct": torch.zeros((), dtype=torch.long), "count": torch.zeros(())}
        confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)
        for x, y in batches:
            with (autocast or _no_autocast)():
                logits = model(x)
            logits = logits.float()
            total["loss"] += F.cross_entropy(logits, y, reduction="sum").cpu()
            pred = logits.argmax(1)
            total["correct"] += (pred == y).sum().cpu()
            total["count"] += len(y)
            confusion += torch.bincount((y * self.num_classes + pred).cpu(),
                                        minlength=self.num_classes ** 2).view(self.num_classes, -1)
        metrics: dict[str, Any] = self.summarize(total)
        metrics["confusion"] = confusion.tolist()
        return metrics

    @staticmethod
    def summarize(stats: Stats) -> dict[str, float]:
        n = max(float(stats["count"]), 1.0)
        return {"loss": float(stats["loss"]) / n, "accuracy": float(stats["correct"]) / n}

    @staticmethod
    def progress(m: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{m['loss']:.4f}", "acc": f"{m['accuracy']:.4f}"}

    @staticmethod
    def report(m: dict[str, Any]) -> dict[str, Any]:
        return {"test_accuracy": m["accuracy"], "test_loss": m["loss"], "confusion": m["confusion"]}

    def carried(self) -> dict[str, torch.Tensor]:
        return {}

    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        pass


def _state_tensors(state: Any) -> list[torch.Tensor]:
    """A recurrent state (a tensor, a tuple of tensors, or ``None``) as a list of tensors."""
    if state is None:
        return []
    return [state] if torch.is_tensor(state) else list(state)


def _state_from(tensors: list[torch.Tensor]) -> Any:
    return None if not tensors else tensors[0] if len(tensors) == 1 else tuple(tensors)


def language_model_metrics(loss_sum: float, correct: float, count: float) -> dict[str, float]:
    """Per-token metrics from sums: mean cross-entropy in nats, bits per token (``nats / ln 2``),
    perplexity ``exp(mean cross-entropy)`` and next-token accuracy."""
    n = max(count, 1.0)
    loss = loss_sum / n
    return {"loss": loss, "bits_per_char": loss / math.log(2), "perplexity": math.exp(min(loss, 700.0)),
            "accuracy": correct / n}


class LanguageModelTask:
    """Next-token prediction (Elman 1990; Karpathy 2015, char-rnn): lecture items R1 and R3.

    Batches are ``(x (B, T), y (B, T), carry)`` from :mod:`deepnn.data.text`: ``y`` is ``x`` shifted by
    one token, and ``carry`` says whether the rows continue the previous batch's rows. The model maps
    ``(tokens (B, T), state) -> (logits (B, T, V), state)``. With ``carry`` the hidden state of the
    previous batch is passed in, detached from its graph (truncated back-propagation through time,
    Williams & Peng 1990): the state flows forward across batches, gradients stop at the boundary.
    The loss is the mean cross-entropy per token (nats); metrics add bits per character and
    perplexity ``exp(loss)``. ``best`` is the lowest validation loss.
    """

    name = "language_model"
    metric, mode, unit = "loss", "min", "tokens"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing
        self.state: Any = None  # the training stream's hidden state, detached

    def _forward(self, model: nn.Module, batch: Batch, state: Any) -> tuple[torch.Tensor, Any]:
        x, y, carry = batch
        logits, state = model(x, state if carry else None)  # (B, T, V)
        return logits, state

    def step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, Stats]:
        y = batch[1]
        logits, state = self._forward(model, batch, self.state)
        self.state = _state_from([s.detach() for s in _state_tensors(state)])
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), label_smoothing=self.label_smoothing)
        stats = {"loss": loss.detach().float() * y.numel(), "correct": (logits.argmax(-1) == y).sum(),
                 "count": torch.tensor(y.numel())}
        return loss, stats

    @staticmethod
    def units(batch: Batch) -> int:
        return batch[1].numel()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[Batch],
                 autocast: Callable[[], torch.autocast] | None = None) -> dict[str, Any]:
        """Mean cross-entropy (nats/token), bits/token, perplexity and accuracy over ``batches``,
        carrying the state from batch to batch as the batches say (the training state is untouched)."""
        model.eval()
        loss_sum, correct, count, state = 0.0, 0.0, 0.0, None
        for batch in batches:
            y = batch[1]
            with (autocast or _no_autocast)():
                logits, state = self._forward(model, batch, state)
            loss_sum += float(F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum"))
            correct += float((logits.argmax(-1) == y).sum())
            count += y.numel()
        return language_model_metrics(loss_sum, correct, count)

    @staticmethod
    def summarize(stats: Stats) -> dict[str, float]:
        return language_model_metrics(float(stats["loss"]), float(stats["correct"]), float(stats["count"]))

    @staticmethod
    def progress(m: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{m['loss']:.4f}", "ppl": f"{m['perplexity']:.2f}"}

    @staticmethod
    def report(m: dict[str, Any]) -> dict[str, Any]:
        return {f"test_{k}": m[k] for k in ("loss", "bits_per_char", "perplexity", "accuracy")}

    def carried(self) -> dict[str, torch.Tensor]:
        return {f"state.{i}": t for i, t in enumerate(_state_tensors(self.state))}

    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        self.state = _state_from([tensors[f"state.{i}"] for i in range(len(tensors))])


@dataclass(frozen=True)
class References:
    """Rides along an evaluation batch of translation pairs (4th element; not a tensor, so it stays on the
    host): the rows' reference translations and the beam sizes to decode them with (1 = greedy)."""

    texts: list[str]
    beams: tuple[int, ...] = (1,)
    rows: list[int] | None = None  # the batch rows these references belong to (None: all)


class TranslationTask:
    """Sequence-to-sequence translation with teacher forcing (Sutskever et al. 2014; Bahdanau et al. 2015;
    Vaswani et al. 2017): lecture items T1, T4, T5.

    Training batches are ``(src (B, S), tgt (B, T), index (B,))`` from :class:`~deepnn.data.pairs.PairBatches`
    (each row ending in ``EOS``, padded with ``PAD``). The model gets the gold target shifted right behind
    ``BOS`` (:func:`~deepnn.layers.shift_right`, teacher forcing) and is trained with cross-entropy over the
    real (non-padding) target tokens, optionally label-smoothed (Szegedy et al. 2016; 0.1 in Vaswani et al.).

    Evaluation batches may carry a 4th element, :class:`References`: those rows are also translated
    (free-running: the model's own tokens fed back, :mod:`deepnn.translation`) with each beam size asked
    for, and scored against the references with corpus BLEU and chrF (sacrebleu, :mod:`deepnn.metrics`).
    The gap between the teacher-forced loss and the free-running BLEU is exposure bias (T5).
    ``best`` is the highest validation BLEU (greedy).
    """

    name = "seq2seq"
    metric, mode, unit = "bleu", "max", "tokens"

    def __init__(self, tokenizer: Any, label_smoothing: float = 0.0, length_penalty: float = 0.6) -> None:
        self.tokenizer = tokenizer
        self.label_smoothing = label_smoothing
        self.length_penalty = length_penalty

    def _loss(self, model: nn.Module, batch: Batch, reduction: str) -> tuple[torch.Tensor, torch.Tensor,
                                                                              torch.Tensor]:
        from ..data.pairs import BOS, PAD
        from ..layers.transformer import shift_right

        src, tgt = batch[0], batch[1]
        logits = model(src, shift_right(tgt, BOS))  # (B, T, V)
        real = tgt != PAD
        loss = F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten(), ignore_index=PAD, reduction=reduction,
                               label_smoothing=self.label_smoothing if reduction == "mean" else 0.0)
        correct = ((logits.argmax(-1) == tgt) & real).sum()
        return loss, correct, real.sum()

    def step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, Stats]:
        loss, correct, count = self._loss(model, batch, "mean")
        return loss, {"loss": loss.detach().float() * count, "correct": correct, "count": count}

    @staticmethod
    def units(batch: Batch) -> int:
        from ..data.pairs import PAD

        return int((batch[1] != PAD).sum())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[Batch],
                 autocast: Callable[[], torch.autocast] | None = None) -> dict[str, Any]:
        """Teacher-forced loss, perplexity and accuracy over all ``batches``; BLEU and chrF of the free-running
        translations of the rows that carry :class:`References` (``bleu`` greedy, ``bleu_beam{k}`` for beam k)."""
        from ..metrics import translation_scores
        from ..translation import decode_batch

        model.eval()
        loss_sum, correct, count = 0.0, 0.0, 0.0
        hyps: dict[int, list[str]] = {}
        refs: list[str] = []
        for batch in batches:
            with (autocast or _no_autocast)():
                loss, c, n = self._loss(model, batch, "sum")
            loss_sum, correct, count = loss_sum + float(loss), correct + float(c), count + float(n)
            if len(batch) > 3 and batch[3] is not None:
                ref: References = batch[3]
                refs.extend(ref.texts)
                src = batch[0] if ref.rows is None or len(ref.rows) == len(batch[0]) else batch[0][ref.rows]
                for beam in ref.beams:
                    ids = decode_batch(model, src[:, : int((src != 0).sum(1).max())], beam, self.length_penalty,
                                       autocast)
                    hyps.setdefault(beam, []).extend(self.tokenizer.decode(ids.cpu()))
        metrics: dict[str, Any] = language_model_metrics(loss_sum, correct, count)
        del metrics["bits_per_char"]
        for beam, texts in hyps.items():
            suffix = "" if beam == 1 else f"_beam{beam}"
            metrics.update({f"{k}{suffix}": v for k, v in translation_scores(texts, refs).items()})
        metrics["translated"] = len(refs)
        if hyps:
            metrics["examples"] = [{"reference": r, "translation": h} for r, h in zip(refs[:3], next(iter(
                hyps.values()))[:3])]
        return metrics

    @staticmethod
    def summarize(stats: Stats) -> dict[str, float]:
        m = language_model_metrics(float(stats["loss"]), float(stats["correct"]), float(stats["count"]))
        del m["bits_per_char"]
        return m

    @staticmethod
    def progress(m: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{m['loss']:.4f}", "ppl": f"{m['perplexity']:.2f}"}

    @staticmethod
    def report(m: dict[str, Any]) -> dict[str, Any]:
        return {f"test_{k}": v for k, v in m.items() if k != "examples"} | {"examples": m.get("examples", [])}

    def carried(self) -> dict[str, torch.Tensor]:
        return {}

    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        pass
