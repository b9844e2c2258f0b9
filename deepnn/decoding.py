"""Decoding: turning a language model's scores into text, one token after another (lecture R3, T5).

The one place where the project samples from a model; every generator (the character models'
:func:`deepnn.models.charlm.sample`, future Transformer decoders) goes through it.

- :func:`sample_next`: one token per row from logits ``(B, V)``: greedy (temperature 0), temperature,
  top-k, top-p (nucleus, Holtzman et al. 2020, "The curious case of neural text degeneration").
- :func:`generate`: autoregressive generation from a prompt, feeding each sampled token back in.
- :func:`greedy_decode`: a seq2seq decoder's greedy decoding from a start token to an end token (T4).
- :func:`beam_search`: a seq2seq decoder's beam search, batched over sentences, with GNMT's length penalty
  (Wu et al. 2016) (T4).
- :func:`sequence_log_prob`: the teacher-forced log-probability of given outputs, what beam search maximises.

Seq2seq decoders call ``decode_step(memory, tokens (B, t)) -> logits (B, t, V)``; the memory is the encoder's
output ``(B, S, d_model)`` or a tuple of tensors, batch first (e.g. with the source padding mask ``(B, S)``).

Models follow one interface: ``model(tokens (B, T)) -> logits (B, T, V)`` or ``(logits, state)``,
and, when a state was returned, ``model(tokens, state) -> (logits, state)`` continues from it
(a recurrent network: only the new token is fed). A model that returns no state (``None``, or only the
logits, e.g. a decoder-only Transformer without a key-value cache) is re-fed the whole context,
cropped to its last ``max_context`` tokens. :func:`_model_step` is that interface in one function.

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

__all__ = ["sample_next", "generate", "filter_logits", "greedy_decode", "beam_search", "sequence_log_prob"]


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
            window); ``None``: the model's ``max_context`` attribute if it has one, else no limit. The
            prompt is cropped to its last ``max_context`` tokens too.

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

    if max_context is None:  # a model with a fixed context window says so (e.g. CharTransformer.max_context)
        max_context = getattr(model, "max_context", None)

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


# ---- sequence-to-sequence decoders (T4) ------------------------------------------------------------------

Memory = torch.Tensor | tuple[torch.Tensor | None, ...]
"""What a seq2seq decoder reads besides its own prefix: the encoder's output ``(B, S, d_model)``, or a tuple
of tensors, batch first, e.g. ``(memory (B, S, d_model), source_padding_mask (B, S))``; ``None`` entries
(an absent mask) are passed through as they are."""

DecodeStep = Callable[[Any, torch.Tensor], torch.Tensor]
"""``decode_step(memory, tokens (N, t)) -> logits (N, t, V)``: position ``i`` scores token ``i + 1``."""


def _check_max_len(max_len: int) -> None:
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise UserError(f"max_len must be at least 1 (the most tokens to generate), got {max_len!r}")


def _memory_batch(memory: Memory) -> tuple[int, torch.device]:
    """The batch size ``B`` and the device of ``memory``, read from its (first) tensor."""
    first = memory[0] if isinstance(memory, tuple) and memory else memory
    if not isinstance(first, torch.Tensor) or first.ndim == 0:
        raise UserError("memory must be a tensor (B, ...) or a tuple of tensors whose first one is (B, ...), batch "
                        f"first, got {type(first).__name__ if not isinstance(first, torch.Tensor) else 'a scalar'}")
    return first.shape[0], first.device


def _index_memory(memory: Memory, index: torch.Tensor) -> Memory:
    """Rows ``index`` ``(N,)`` of ``memory`` along the batch dimension, in every tensor of a tuple: repeats
    (``arange(B).repeat_interleave(k)``) and reorders (the beams' origins) alike."""
    if isinstance(memory, tuple):
        return tuple(m if m is None else m.index_select(0, index) for m in memory)
    return memory.index_select(0, index)


def _decode_logits(decode_step: DecodeStep, memory: Memory, tokens: torch.Tensor) -> torch.Tensor:
    """``decode_step(memory, tokens (N, t))``, checked to be logits ``(N, t, V)``."""
    logits = decode_step(memory, tokens)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3 or logits.shape[:2] != tokens.shape:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise UserError(f"decode_step must return logits (B, t, V) = ({tokens.shape[0]}, {tokens.shape[1]}, V) for "
                        f"tokens {tuple(tokens.shape)}, got {got}")
    return logits


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    """``log_softmax`` over the last dimension, in float32 (scores summed over many steps, whatever the model's
    precision)."""
    return logits.float().log_softmax(dim=-1)


def greedy_decode(
    decode_step: DecodeStep,
    memory: Memory,
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
    :func:`beam_search` with ``beam_size=1`` gives the same tokens.

    Args:
        decode_step: ``(memory, tokens) -> logits``: ``tokens`` ``(B, t)`` starts with ``start_token``; returns
            ``(B, t, V)`` where position ``i`` scores token ``i + 1`` (a decoder with a causal mask and an
            output projection; only the last position is used). E.g.
            ``lambda memory, ys: head(decoder(embed(ys), memory, tgt_is_causal=True))``.
        memory: the encoder's output ``(B, S, d_model)``, or a tuple of tensors, batch first (e.g. with the
            source padding mask ``(B, S)``), passed to ``decode_step`` as is; the batch size is the first
            dimension of its (first) tensor.
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
    _check_max_len(max_len)
    B, device = _memory_batch(memory)
    tokens = torch.full((B, 1), start_token, dtype=torch.long, device=device)  # (B, 1)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    for _ in range(max_len):
        logits = _decode_logits(decode_step, memory, tokens)  # (B, t, V)
        next_token = sample_next(logits[:, -1], greedy=True)  # (B,)
        next_token = next_token.masked_fill(finished, pad_token)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        finished = finished | (next_token == end_token)
        if finished.all():
            break
    return tokens[:, 1:]


def _length_penalty(length: int, alpha: float) -> float:
    """GNMT's ``lp(Y) = ((5 + |Y|) / 6) ** alpha`` (Wu et al. 2016, eq. 14); 1 when ``alpha = 0``."""
    return ((5 + length) / 6) ** alpha


def beam_search(
    decode_step: DecodeStep,
    memory: Memory,
    start_token: int,
    end_token: int,
    max_len: int,
    *,
    beam_size: int = 5,
    length_penalty: float = 0.6,
    pad_token: int = 0,
) -> torch.Tensor:
    """Beam search (T4): keep the ``beam_size`` most likely prefixes per sentence instead of only the best one.

    Greedy decoding commits to the most likely next token, even when it leads to a poor continuation. Beam
    search keeps ``k = beam_size`` live hypotheses per sentence, scored by their sum of log-probabilities
    (``log_softmax`` in float32). At each step every live hypothesis is extended by every token, giving
    ``k · V`` candidates per sentence:

    - a candidate ending with ``end_token`` that ranks among the ``k`` best candidates is *finished*: it
      is set aside with its final score ``log p(Y) / lp(Y)``;
    - the ``k`` best candidates that do not end become the next live hypotheses (their memory rows and
      prefixes are re-indexed to follow them).

    The ``B`` sentences are decoded together: ``memory`` is repeated ``k`` times along the batch
    (``repeat_interleave``), so ``decode_step`` sees ``B · k`` rows, sentence ``b``'s hypotheses in rows
    ``b·k … b·k + k - 1``. At the first step only one hypothesis (``[start_token]``) is live.

    Length penalty (Wu et al. 2016, "Google's neural machine translation system", eq. 14): the final
    choice per sentence maximises ``log p(Y) / lp(Y)`` with ``lp(Y) = ((5 + |Y|) / 6) ** length_penalty``,
    ``|Y|`` counting the end token. Log-probabilities are negative, so a larger ``length_penalty`` favours
    longer outputs; ``length_penalty = 0`` compares plain log-probabilities (which favour short outputs).
    A hypothesis still live after ``max_len`` tokens (no end token) competes as is, with ``|Y| = max_len``.

    Stopping rule, per sentence: its search is over when it has ``k`` finished hypotheses (as in fairseq), or
    earlier, when no live hypothesis can still beat its best finished one. That second test is exact, so it
    never changes the result: later tokens only lower a raw score ``s ≤ 0`` and ``lp`` is monotone in the
    length, so a live hypothesis of length ``t`` can at best score ``s / lp(L)`` for ``L`` at one end of the
    lengths still open to it, ``t + 1 … max_len``. Decoding stops when every sentence is over, or after
    ``max_len`` tokens. With ``beam_size=1`` this is :func:`greedy_decode`.

    Args:
        decode_step: ``(memory, tokens (N, t)) -> logits (N, t, V)``, as in :func:`greedy_decode`; called with
            ``N = B · beam_size`` rows.
        memory: the encoder's output ``(B, S, d_model)`` or a tuple of tensors, batch first (e.g. with the source
            padding mask ``(B, S)``); every tensor is repeated and re-indexed along its first dimension.
        start_token: id that starts every sequence (not returned).
        end_token: id that ends a sequence (returned, then padding).
        max_len: most tokens to generate, ``end_token`` included, ``≥ 1``.
        beam_size: hypotheses kept per sentence, ``≥ 1``.
        length_penalty: GNMT's ``α`` (0.6 in the paper; 0: no normalisation).
        pad_token: id written after a sequence's ``end_token``.

    Returns:
        Token ids ``(B, L)``, ``L ≤ max_len``: each sentence's best hypothesis without the start token, padded
        with ``pad_token`` after its end token; ``L`` is the longest one's length.

        >>> step = lambda memory, ys: torch.nn.functional.one_hot(ys + 1, 10).double()  # "previous token + 1"
        >>> beam_search(step, torch.zeros(2, 1), start_token=1, end_token=4, max_len=8, beam_size=3)
        tensor([[2, 3, 4],
                [2, 3, 4]])
    """
    _check_max_len(max_len)
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise UserError(f"beam_size must be an integer ≥ 1 (1: greedy decoding), got {beam_size!r}")
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)) \
            or not math.isfinite(length_penalty):
        raise UserError(f"length_penalty must be a finite number (0.6 in GNMT, 0: none), got {length_penalty!r}")
    B, device = _memory_batch(memory)
    k = beam_size
    memory = _index_memory(memory, torch.arange(B, device=device).repeat_interleave(k))  # (B·k, ...)
    tokens = torch.full((B * k, 1), start_token, dtype=torch.long, device=device)  # (B·k, t + 1)
    scores = torch.full((B, k), -math.inf, device=device)  # (B, k) live hypotheses' log p, float32
    scores[:, 0] = 0.0  # one live hypothesis at first, or the k copies of [start] would fill the beam
    first_row = torch.arange(B, device=device)[:, None] * k  # (B, 1)
    finished: list[list[tuple[float, torch.Tensor]]] = [[] for _ in range(B)]  # (log p / lp, tokens (t,))
    over = [False] * B

    def best_finished(b: int) -> float:
        return max(score for score, _ in finished[b])

    for t in range(1, max_len + 1):  # t: length of the hypotheses made at this step
        log_probs = _log_probs(_decode_logits(decode_step, memory, tokens)[:, -1])  # (B·k, V)
        V = log_probs.shape[-1]
        if not 0 <= end_token < V:
            raise UserError(f"end_token {end_token} is not a token id of the decoder's vocabulary of {V}; "
                            "pass an id in [0, V)")
        candidates = (scores[:, :, None] + log_probs.view(B, k, V)).view(B, k * V)  # (B, k·V), index beam·V + token
        ends = candidates.new_zeros(B, k, V, dtype=torch.bool)
        ends[..., end_token] = True
        ends = ends.view(B, k * V)
        # finished: end tokens among the k best candidates
        top_scores, top_index = candidates.topk(k, dim=1)  # (B, k)
        ended = ends.gather(1, top_index) & torch.isfinite(top_scores)
        for b, j in ended.nonzero().tolist():
            if not over[b]:
                row = b * k + top_index[b, j].item() // V
                hypothesis = torch.cat([tokens[row, 1:], tokens.new_tensor([end_token])])  # (t,)
                finished[b].append((top_scores[b, j].item() / _length_penalty(t, length_penalty), hypothesis))
        # live: the k best candidates that did not end
        scores, index = candidates.masked_fill(ends, -math.inf).topk(k, dim=1)  # (B, k)
        rows = (first_row + index // V).view(-1)  # (B·k,) the row each new hypothesis extends
        tokens = torch.cat([tokens.index_select(0, rows), (index % V).view(-1, 1)], dim=1)
        memory = _index_memory(memory, rows)
        # a sentence is over with k finished hypotheses, or when no live one can beat the best finished one
        lengths_left = (min(t + 1, max_len), max_len)
        for b in range(B):
            if not over[b] and finished[b]:
                best_live = scores[b].max().item()
                bound = max(best_live / _length_penalty(n, length_penalty) for n in lengths_left)
                over[b] = len(finished[b]) >= k or bound <= best_finished(b)
        if all(over):
            break
    for b in range(B):  # still searching after max_len tokens: the live hypotheses compete as they are
        if not over[b]:
            penalty = _length_penalty(max_len, length_penalty)
            finished[b] += [(s / penalty, tokens[b * k + j, 1:]) for j, s in enumerate(scores[b].tolist())]
    best = [max(finished[b], key=lambda hypothesis: hypothesis[0])[1] for b in range(B)]  # first of equals
    out = torch.full((B, max(len(y) for y in best)), pad_token, dtype=torch.long, device=device)
    for b, y in enumerate(best):
        out[b, : len(y)] = y
    return out


def sequence_log_prob(
    decode_step: DecodeStep,
    memory: Memory,
    tokens: torch.Tensor,
    start_token: int,
    *,
    end_token: int | None = None,
) -> torch.Tensor:
    """``log p(tokens | memory)``: the sum of the decoder's log-probabilities of given outputs, teacher-forced.

    One pass over ``[start_token, tokens[:, :-1]]`` (:func:`~deepnn.layers.transformer.shift_right`) scores
    every token given the ones before it: the quantity beam search maximises (before the length penalty), and
    greedy decoding only approximately. In float32 like :func:`beam_search`'s scores.

    Args:
        decode_step: ``(memory, tokens (B, t)) -> logits (B, t, V)``, as in :func:`greedy_decode`.
        memory: as in :func:`greedy_decode`.
        tokens: outputs ``(B, T)`` without the start token, e.g. a decoder's.
        start_token: the start-of-sequence id.
        end_token: if given, a row's tokens after its first ``end_token`` (padding) are not counted.

    Returns:
        ``(B,)`` float32 log-probabilities.
    """
    from .layers.transformer import shift_right  # lazy: deepnn.layers imports this module

    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.dtype != torch.long:
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise UserError(f"sequence_log_prob takes token ids, a LongTensor of shape (B, T), got {shape}")
    log_probs = _log_probs(_decode_logits(decode_step, memory, shift_right(tokens, start_token)))  # (B, T, V)
    token_log_probs = log_probs.gather(2, tokens[:, :, None])[:, :, 0]  # (B, T)
    if end_token is not None:
        ended_before = (tokens == end_token).long().cumsum(dim=1) - (tokens == end_token).long()  # (B, T)
        token_log_probs = token_log_probs.masked_fill(ended_before > 0, 0.0)
    return token_log_probs.sum(dim=1)
