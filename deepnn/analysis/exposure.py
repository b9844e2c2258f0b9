"""Exposure bias, measured (lecture item T5; Bengio et al. 2015, "Scheduled sampling"; Ranzato et al. 2016).

A decoder trained with teacher forcing always saw the *gold* previous tokens; at inference it sees its *own*.
:func:`exposure_bias` scores the same model both ways on the same pairs:

* **teacher-forced**: the reference's loss given the gold prefix (the training loss), and the BLEU of the
  argmax token at each position given the gold prefix — a translation the model can never produce on its own,
  since it needs the reference;
* **free-running**: the reference's loss given the model's *own* greedy prefix of the same length (its tokens
  fed back, not stopped at the end token), and the BLEU of its greedy translations (what ``translate`` does).

The gap between the two is the price of never having trained on its own mistakes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.pairs import BOS, PAD, Tokenizer
from ..layers.transformer import shift_right
from ..metrics import translation_scores
from ..translation import decode_batch

__all__ = ["exposure_bias", "own_prefix"]


@torch.no_grad()
def own_prefix(model: nn.Module, memory: Any, length: int) -> torch.Tensor:
    """The model's own greedy tokens fed back for ``length`` steps (not stopped at the end token):
    decoder inputs ``(B, length)`` starting with ``BOS``, the counterpart of ``shift_right(gold, BOS)``."""
    batch = memory[0].shape[0] if isinstance(memory, tuple) else memory.shape[0]
    device = memory[0].device if isinstance(memory, tuple) else memory.device
    tokens = torch.full((batch, 1), BOS, dtype=torch.long, device=device)
    for _ in range(length - 1):
        logits = model.decode(memory, tokens)[:, -1]
        tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    return tokens


@torch.no_grad()
def exposure_bias(model: nn.Module, tokenizer: Tokenizer, batches: Iterable[tuple],
                  references: list[str] | None = None,
                  autocast: Callable[[], Any] | None = None) -> dict[str, float]:
    """Teacher-forced vs free-running loss (nats per reference token) and BLEU / chrF of one model.

    Args:
        model: a sequence-to-sequence model (``encode``, ``decode``).
        tokenizer: the run's tokenizer.
        batches: ``(src (B, S), tgt (B, T), index (B,), ...)`` as from
            :meth:`deepnn.runs.build.Translation.evaluation`.
        references: the reference sentences by ``index`` (detokenised, for BLEU).
        autocast: the run's autocast context (``None``: fp32).

    Returns:
        ``teacher_forced_loss``, ``free_running_loss``, ``teacher_forced_bleu``, ``free_running_bleu``
        (and the chrF pair), over all pairs.
    """
    model.eval()
    ctx = autocast or (lambda: torch.autocast("cpu", enabled=False))
    sums = {"teacher_forced": 0.0, "free_running": 0.0}
    count = 0
    hyps: dict[str, list[str]] = {"teacher_forced": [], "free_running": []}
    refs: list[str] = []
    for batch in batches:
        src, tgt, index = batch[0], batch[1], batch[2]
        real = tgt != PAD
        with ctx():
            memory = model.encode(src)
            inputs = {"teacher_forced": shift_right(tgt, BOS), "free_running": own_prefix(model, memory, tgt.shape[1])}
            for mode, tgt_in in inputs.items():
                logits = model.decode(memory, tgt_in).float()
                sums[mode] += float(F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=PAD,
                                                    reduction="sum"))
                if mode == "teacher_forced":
                    hyps[mode] += tokenizer.decode(logits.argmax(-1).masked_fill(~real, PAD).cpu())
        hyps["free_running"] += tokenizer.decode(decode_batch(model, src, 1, autocast=autocast).cpu())
        count += int(real.sum())
        refs += [references[i] for i in index.tolist()] if references is not None else []
    out = {f"{mode}_loss": total / max(count, 1) for mode, total in sums.items()}
    if references is not None:
        for mode, texts in hyps.items():
            out.update({f"{mode}_{k}": v for k, v in translation_scores(texts, refs).items()})
    return out
