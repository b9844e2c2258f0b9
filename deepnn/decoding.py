"""Decoding: turning a language model's scores into text, one token after another (lecture R3, T5).

The one place where the project samples from a model; every generator (the character models'
:func:`deepnn.models.charlm.sample`, future Transformer decoders) goes through it.

- :func:`sample_next`: one token per row from logits ``(B, V)``: greedy (temperature 0), temperature,
  top-k, top-p (nucleus, Holtzman et al. 2020, "The curious case of neural text degeneration").
- :func:`generate`: autoregressive generation from a prompt, feeding each sampled token back in.
- :func:`greedy_decode`: a seq2seq decoder's greedy decoding from a start token to an end token (T4).

Models follow one interface: ``model(tokens (B, T)) -> logits (B, T, V)`` or ``(logits, state)``,
and, when a state was returned, ``model(tokens, state) -> (logits, state)`` continues from it
(a recurrent network: only the new token is fed). A model that returns no state (``None``, or only the
logits, e.g. a decoder-only Transformer without a key-value cache) is re-fed the whole context,
cropped to its last ``max_context`` tokens. :func:`_model_step` is that interface in one function,
for decoders to come (beam search) to reuse.

    >>> logits = torch.tensor([[0.0, 2.0, 1.0]])
    >>> sample_next(logits, temperature=0)
    tensor([1])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .errors import UserError

__all__ = ["sample_next", "generate", "filter_logits", "greedy_decode"]


def _check_options(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise UserError(f"temperature must be a finite number ≥ 0 (0: greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise UserError(f"top_k must be an integer ≥ 1 (or None: no limit), got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise UserError(f"top_p must lie in (0, 1] (or None: no limit), got {top_p!r}")


def filter_logits(logits: torch.Tensor, *, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """``logits`` ``(B, V)`` with the tokens outside the top-k and outside the nucleus set to ``-inf``.

    Top-k keeps every token whose score is at least the k-th largest (ties with the k-th are kept).
    Top-p keeps the smallest set of most likely tokens whose probability ``softmax(logits)`` sums to at
    least ``p``: a token stays when the tokens ranked before it hold less than ``p``; the most likely
    token always stays. Applied in that order (top-k, then top-p on what is left).
    """
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked before each one
        drop_sorted = before >= top_p
        drop_sorted[..., 0] = False  # at least one token
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, -math.inf)
    return logits


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw the next token of each row from ``softmax(logits / temperature)``.

    Args:
        logits: ``(B, V)`` scores for the next token.
        temperature: ``≥ 0``; 0 takes the argmax (greedy), below 1 sharpens, above 1 flattens.
        top_k: keep only the ``k ≥ 1`` highest-scoring tokens (``None``: all).
        top_p: keep only the nucleus, the smallest set of most likely tokens with probability ``≥ p``,
            ``0 < p ≤ 1`` (``None``: all). Computed after temperature and top-k.
        greedy: the argmax, whatever the temperature.
        generator: random source (reproducible draws); ``None``: PyTorch's global one. A CPU generator
            works for logits on any device (the draw is made on the generator's device).

    Returns:
        ``(B,)`` token ids (``int64``, on the device of ``logits``).
    """
    _check_options(temperature, top_k, top_p)
    if logits.ndim != 2 or logits.shape[-1] == 0:
        raise UserError(f"sample_next takes logits of shape (B, V) with V ≥ 1, got {tuple(logits.shape)}")
    if greedy or temperature == 0:
        return logits.argmax(dim=-1)
    scores = logits.double() if logits.dtype == torch.float64 else logits.float()
    scores = filter_logits(scores / temperature, top_k=top_k, top_p=top_p)
    probs = scores.softmax(dim=-1)
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.to(generator.device), 1, generator=generator)[:, 0].to(logits.device)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _model_step(model: Any, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
    """Call ``model`` on ``tokens`` ``(B, T)`` (with ``state`` unless it is ``None``); return the logits
    of the last position ``(B, V)`` and the new state (``None`` for a model that returned none)."""
    out = model(tokens) if state is None else model(tokens, state)
    logits, new_state = out if isinstance(out, tuple) else (out, None)
    if logits.ndim != 3 or logits.shape[:2] != tokens.shape:
        raise UserError(f"the model must return logits of shape (B, T, V) = ({tokens.shape[0]}, {tokens.shape[1]}, V) "
                        f"for tokens {tuple(tokens.shape)}, got {tuple(logits.shape)}")
    return logits[:, -1], new_state


def generate(
    model: Any,
    prompt: torch.Tensor,
    length: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    max_context: int | None = None,
) -> torch.Tensor:
    """Generate ``length`` tokens after ``prompt``, each sample fed back as the next input (R3).

    The prompt is run once; then, ``length`` times, the next token is drawn by :func:`sample_next` and
    fed back. A model that returned a state gets only the new token and its state; a stateless one
    (state ``None``, or logits only) gets the whole context again, its last ``max_context`` tokens.
    Runs under ``torch.no_grad()`` with the model in eval mode (dropout off); the previous mode is restored.

    Args:
        model: ``model(tokens (B, T)[, state]) -> (logits (B, T, V), state)`` or ``-> logits``.
        prompt: ``(B, P)`` token ids, ``P ≥ 1``.
        length: tokens to generate, ``≥ 0``.
        temperature, top_k, top_p, greedy, generator: as in :func:`sample_next`.
        max_context: the most tokens given to the model in one call (a Transformer's context
            window); ``None``: no limit. The prompt is cropped to its last ``max_context`` tokens too.

    Returns:
        ``(B, length)`` the generated token ids (without the prompt).
    """
    _check_options(temperature, top_k, top_p)
    if not isinstance(prompt, torch.Tensor) or prompt.ndim != 2 or prompt.shape[1] == 0 or prompt.dtype != torch.long:
        shape = tuple(prompt.shape) if isinstance(prompt, torch.Tensor) else type(prompt).__name__
        raise UserError(f"generate takes a prompt of token ids, a LongTensor of shape (B, P) with P ≥ 1, got {shape}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise UserError(f"length must be an integer ≥ 0, got {length!r}")
    if max_context is not None and (isinstance(max_context, bool) or not isinstance(max_context, int)
                                    or max_context < 1):
        raise UserError(f"max_context must be an integer ≥ 1 (or None: no limit), got {max_context!r}")

    def crop(tokens: torch.Tensor) -> torch.Tensor:
        return tokens if max_context is None else tokens[:, -max_context:]

    was_training = model.training if isinstance(model, nn.Module) else None
    if isinstance(model, nn.Module):
        model.eval()
    try:
        with torch.no_grad():
            context = prompt
            logits, state = _model_step(model, crop(context), None)
            generated = []
            for step in range(length):
                token = sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
                                    generator=generator)  # (B,)
                generated.append(token)
                if step == length - 1:
                    break
                if state is None:  # stateless: the whole context again
                    context = torch.cat([context, token[:, None]], dim=1)
                    logits, state = _model_step(model, crop(context), None)
                else:  # stateful: only the new token
                    logits, state = _model_step(model, token[:, None], state)
    finally:
        if was_training is not None:
            model.train(was_training)
    if not generated:
        return prompt.new_empty(prompt.shape[0], 0)
    return torch.stack(generated, dim=1)


def greedy_decode(
    decode_step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    memory: torch.Tensor,
    start_token: int,
    end_token: int,
    max_len: int,
    pad_token: int = 0,
) -> torch.Tensor:
    """Autoregressive greedy decoding that stops at an end token (T4).

    Starting from ``[start_token]``, run the decoder on the prefix, append the argmax of its last
    position's logits, and repeat: each step feeds back the model's *own* predictions (compare
    :func:`teacher_forcing_logits`). A sequence is finished once it has produced ``end_token``; its later
    positions are ``pad_token``. Decoding stops when every sequence is finished or after ``max_len`` tokens.

    Args:
        decode_step: ``(memory, tokens) -> logits``: ``tokens`` ``(B, t)`` starts with ``start_token``; returns
            ``(B, t, V)`` where position ``i`` scores token ``i + 1`` (a decoder with a causal mask and an
            output projection; only the last position is used). E.g.
            ``lambda memory, ys: head(decoder(embed(ys), memory, tgt_is_causal=True))``.
        memory: the encoder's output ``(B, S, d_model)``, passed to ``decode_step`` as is; its first
            dimension is the batch size.
        start_token: id that starts every sequence (not returned).
        end_token: id that ends a sequence (returned, then padding).
        max_len: most tokens to generate, ``end_token`` included.
        pad_token: id written after a sequence's ``end_token``.

    Returns:
        Token ids ``(B, L)``, ``L ≤ max_len``, without the start token.

        >>> step = lambda memory, ys: torch.nn.functional.one_hot(ys + 1, 10).double()  # "previous token + 1"
        >>> greedy_decode(step, torch.zeros(2, 1), start_token=1, end_token=4, max_len=8)
        tensor([[2, 3, 4],
                [2, 3, 4]])
    """
    if max_len < 1:
        raise UserError(f"max_len must be at least 1 (the most tokens to generate), got {max_len}")
    B = memory.shape[0]
    tokens = torch.full((B, 1), start_token, dtype=torch.long, device=memory.device)  # (B, 1)
    finished = torch.zeros(B, dtype=torch.bool, device=memory.device)
    for _ in range(max_len):
        logits = decode_step(memory, tokens)  # (B, t, V)
        if logits.ndim != 3 or logits.shape[:2] != tokens.shape:
            raise UserError(f"decode_step must return logits (B, t, V) = ({B}, {tokens.shape[1]}, V) for tokens "
                            f"{tuple(tokens.shape)}, got {tuple(logits.shape)}")
        next_token = sample_next(logits[:, -1], greedy=True)  # (B,)
        next_token = next_token.masked_fill(finished, pad_token)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        finished = finished | (next_token == end_token)
        if finished.all():
            break
    return tokens[:, 1:]
