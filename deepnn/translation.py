"""Translating with a trained sequence-to-sequence model: text in, text out (lecture items T1, T4, T5).

One path from sentences to sentences, shared by training-time validation BLEU
(:class:`~deepnn.train.tasks.TranslationTask`), ``deepnn translate``, ``deepnn eval`` and the
attention maps: tokenise with the run's sentencepiece model (:class:`~deepnn.data.pairs.Tokenizer`),
batch by length, ``model.encode`` once per batch, decode greedily or with beam search
(:mod:`deepnn.decoding`), detokenise.

Length policy (documented in docs/lecture.md, T4): a source longer than the model's ``max_len - 1``
tokens is cut to that length (the end token is appended) and a warning names how many were cut; the
output may be at most ``min(max_len - 1, 2 · source length + 10)`` tokens.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .data.pairs import BOS, EOS, PAD, Tokenizer
from .decoding import beam_search, greedy_decode
from .errors import UserError

__all__ = ["decode_batch", "translate", "encode_sources", "pad_batch", "output_limit"]


def output_limit(model: nn.Module, source_len: int) -> int:
    """The most output tokens for a source of ``source_len`` tokens (end token included)."""
    return max(1, min(model.max_len - 1, 2 * source_len + 10))


def pad_batch(rows: Sequence[Sequence[int]], device: torch.device | str = "cpu") -> torch.Tensor:
    """Token id lists as one ``(B, max length)`` LongTensor padded with ``PAD`` on the right."""
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out.to(device)


@torch.no_grad()
def decode_batch(model: nn.Module, src: torch.Tensor, beam_size: int = 1, length_penalty: float = 0.6,
                 autocast: Callable[[], Any] | None = None) -> torch.Tensor:
    """Translations of a padded source batch ``src`` ``(B, S)`` (each row ending in ``EOS``) as token ids
    ``(B, L)`` (``EOS`` then ``PAD`` after each translation): greedy for ``beam_size`` 1, else beam search."""
    was_training = model.training
    model.eval()
    try:
        with autocast() if autocast is not None else torch.autocast("cpu", enabled=False):
            memory = model.encode(src)
            limit = output_limit(model, src.shape[1])
            if beam_size == 1:
                return greedy_decode(model.decode, memory, BOS, EOS, limit, pad_token=PAD)
            return beam_search(model.decode, memory, BOS, EOS, limit, beam_size=beam_size,
                               length_penalty=length_penalty, pad_token=PAD)
    finally:
        model.train(was_training)


def encode_sources(model: nn.Module, tokenizer: Tokenizer, sentences: Sequence[str]) -> list[list[int]]:
    """Sentences → token ids ending in ``EOS``, cut to the model's ``max_len - 1`` tokens (with a warning).

    Raises:
        UserError: no sentences, an empty sentence, or one made only of unknown pieces (nothing the model
            was trained on: another language or alphabet).
    """
    if not sentences:
        raise UserError("nothing to translate: give at least one sentence")
    ids = tokenizer.encode(list(sentences))
    limit, cut = model.max_len - 1, 0
    for i, (text, row) in enumerate(zip(sentences, ids)):
        if not text.strip() or not row:
            raise UserError(f"sentence {i + 1} is empty; give text to translate")
        if tokenizer.unknown_fraction([t for t in row if tokenizer.piece(t) != "▁"]) == 1.0:  # spaces aside
            raise UserError(f"sentence {i + 1} ({text[:40]!r}) is made only of unknown pieces: none of its characters "
                            "occur in the training pairs; translate text in the training language")
        if len(row) > limit - 1:
            ids[i], cut = row[: limit - 1], cut + 1
    if cut:
        print(f"warning: {cut} sentence(s) longer than the model's {limit - 1} tokens were cut to that length",
              file=sys.stderr)
    return [row + [EOS] for row in ids]


def translate(model: nn.Module, tokenizer: Tokenizer, sentences: Sequence[str], *, beam_size: int = 1,
              length_penalty: float = 0.6, batch_size: int = 64, device: torch.device | str = "cpu",
              autocast: Callable[[], Any] | None = None) -> list[str]:
    """Translate ``sentences`` (detokenised strings in, detokenised strings out, in the same order).

    Sentences are sorted by length and decoded ``batch_size`` at a time (less padding); see
    :func:`encode_sources` for the length policy and the errors.
    """
    ids = encode_sources(model, tokenizer, sentences)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[str] = [""] * len(ids)
    for start in range(0, len(order), batch_size):
        chunk = order[start: start + batch_size]
        hyps = decode_batch(model, pad_batch([ids[i] for i in chunk], device), beam_size, length_penalty, autocast)
        for i, text in zip(chunk, tokenizer.decode(hyps.cpu())):
            out[i] = text
    return out
