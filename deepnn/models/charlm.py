"""A character-level language model: lecture item R3.

The slide's toy (after Karpathy, "The unreasonable effectiveness of recurrent neural networks", 2015,
and his char-rnn): vocabulary ``[h, e, l, o]``, one training sequence ``"hello"``. Each character
enters as a one-hot vector, a recurrent cell (:mod:`deepnn.layers.rnn`) updates the hidden state,
and a dense layer turns the hidden state into scores for the next character. Trained on inputs
``"hell"`` with targets ``"ello"``; at test time the model is given a first character and its own
samples are fed back one at a time (:func:`sample`).

Not an image classifier, so not in the model registry (``create_model``).

    >>> result = hello_example()
    >>> result.sample, result.predictions
    ('hello', 'ello')
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..layers import GRUCell, LSTMCell, RNNCell, unroll
from ..layers.rnn import State

CELLS: dict[str, type[nn.Module]] = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
HELLO_VOCAB = "helo"  # the lecture's order: h, e, l, o


class CharRNN(nn.Module):
    """Character-level recurrent language model (Elman 1990, "Finding structure in time";
    Karpathy 2015, char-rnn), lecture item R3.

    ::

        x_t = one_hot(token_t)                       (V,)
        h_t = cell(x_t, h_{t-1})                     RNNCell (R2), LSTMCell (R5) or GRUCell (R6)
        o_t = W_ho h_t + b_o                         logits for token_{t+1}; softmax lives in the loss

    Shapes: ``B`` batch, ``T`` time steps, ``V`` vocabulary size, ``H`` hidden size.
    ``forward(tokens (B, T), state) -> (logits (B, T, V), state)``, the state being ``h`` ``(B, H)``,
    or ``(h, c)`` for an LSTM; ``None`` starts from zeros. Pass the returned state back in to continue
    a sequence, as :func:`sample` does.

    Args:
        vocab_size: ``V``, the number of distinct characters.
        hidden_size: ``H``.
        cell: ``"rnn"`` (Elman, tanh), ``"lstm"`` or ``"gru"``.

    Attributes:
        cell: the recurrent cell, input size ``V``.
        output: ``nn.Linear(H, V)``, the lecture's ``W_ho`` and ``b_o``.
    """

    def __init__(self, vocab_size: int, hidden_size: int, cell: str = "rnn") -> None:
        super().__init__()
        if cell not in CELLS:
            raise UserError(f"unknown cell {cell!r} for CharRNN; choose one of {', '.join(CELLS)}")
        if vocab_size < 1 or hidden_size < 1:
            raise UserError(f"vocab_size and hidden_size must be at least 1, got {vocab_size} and {hidden_size}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.cell_type = cell
        self.cell = CELLS[cell](vocab_size, hidden_size)
        self.output = nn.Linear(hidden_size, vocab_size)

    def forward(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        if tokens.ndim != 2 or tokens.shape[1] == 0 or tokens.dtype != torch.long:
            raise UserError(f"CharRNN takes token ids as a LongTensor of shape (B, T) with T ≥ 1, got "
                            f"{tokens.dtype} {tuple(tokens.shape)}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise UserError(f"token ids must lie in [0, {self.vocab_size}), got values from "
                            f"{tokens.min().item()} to {tokens.max().item()}")
        x = F.one_hot(tokens, self.vocab_size).to(self.output.weight.dtype)  # (B, T, V)
        hidden, state = unroll(self.cell, x.transpose(0, 1), state)  # (T, B, H), time first
        return self.output(hidden.transpose(0, 1)), state  # (B, T, V)


def _encode(text: str, vocab: str, what: str) -> torch.Tensor:
    """``text`` as token ids ``(1, len(text))``; a character outside ``vocab`` is a UserError."""
    for ch in text:
        if ch not in vocab:
            raise UserError(f"{what} has the character {ch!r}, which is not in the vocabulary "
                            f"{list(vocab)}; use only those characters")
    return torch.tensor([[vocab.index(ch) for ch in text]], dtype=torch.long)


def sample(
    model: CharRNN,
    prefix: str,
    length: int,
    vocab: str,
    *,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> str:
    """Generate text one character at a time, feeding each sample back in (R3).

    The prefix is run through the model to set up the hidden state; then, ``length`` times, the next
    character is drawn from ``softmax(logits / temperature)`` and fed back as the next input.
    ``temperature`` 0 takes the most likely character (greedy); below 1 sharpens the distribution,
    above 1 flattens it.

    Args:
        model: a :class:`CharRNN` over ``len(vocab)`` characters.
        prefix: at least one character, all in ``vocab``.
        length: how many characters to generate (``0``: none).
        vocab: the characters, position = token id (e.g. ``"helo"``).
        temperature: ``≥ 0``.
        generator: random source for the draws (for reproducible samples); ``None``: the global one.

    Returns:
        ``prefix`` followed by the ``length`` generated characters.

    Raises:
        UserError: an empty prefix, a character not in ``vocab``, a vocabulary with repeated
            characters or of the wrong size, a negative ``length`` or ``temperature``.
    """
    if not prefix:
        raise UserError("sample needs a prefix of at least one character to start from, got ''")
    if len(set(vocab)) != len(vocab):
        raise UserError(f"the vocabulary {vocab!r} repeats a character; each character needs one token id")
    if len(vocab) != model.vocab_size:
        raise UserError(f"the model has {model.vocab_size} output classes but the vocabulary {list(vocab)} "
                        f"has {len(vocab)} characters; pass the vocabulary it was trained with")
    if length < 0:
        raise UserError(f"length must be at least 0, got {length}")
    if temperature < 0:
        raise UserError(f"temperature must be at least 0 (0: greedy), got {temperature}")
    tokens = _encode(prefix, vocab, "the prefix").to(model.output.weight.device)
    out = list(prefix)
    with torch.no_grad():
        logits, state = model(tokens)
        for _ in range(length):
            last = logits[0, -1]  # (V,), scores for the next character
            if temperature == 0:
                token = int(last.argmax())
            else:
                probs = torch.softmax(last.double() / temperature, dim=-1).cpu()
                token = int(torch.multinomial(probs, 1, generator=generator))
            out.append(vocab[token])
            logits, state = model(torch.tensor([[token]], device=tokens.device), state)
    return "".join(out)


@dataclass
class HelloResult:
    """What :func:`hello_example` returns.

    Attributes:
        model: the trained :class:`CharRNN`.
        losses: mean cross-entropy over the 4 positions before each optimiser step (``steps`` floats).
        sample: greedy sample from ``"h"``, 4 characters generated (``"hello"`` once trained).
        predictions: the most likely next character at each position of ``"hell"`` (``"ello"`` once trained).
    """

    model: CharRNN
    losses: list[float]
    sample: str
    predictions: str


def hello_example(
    cell: str = "rnn", hidden_size: int = 8, steps: int = 100, lr: float = 0.1, seed: int = 0
) -> HelloResult:
    """Train a :class:`CharRNN` on the lecture's single sequence ``"hello"`` (R3).

    Vocabulary ``"helo"`` (``[h, e, l, o]``, the lecture's order), inputs ``"hell"``, targets
    ``"ello"``: mean cross-entropy of the 4 next-character predictions, full-batch Adam.

    The point of the slide: ``"l"`` is followed once by ``"l"`` and once by ``"o"``. A model that sees
    only the current character (no recurrence) can get at most 3 of the 4 predictions right and its
    loss cannot drop below ``ln 2 / 2 ≈ 0.347`` (``p = ½`` for each of the two ``l``'s); to get both
    right the hidden state has to remember what came before the ``"l"``.

    Deterministic given ``seed``: the initial weights come from ``torch.manual_seed(seed)`` inside a
    forked RNG state, so the caller's global RNG is untouched.

    Args:
        cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        hidden_size: ``H``.
        steps: optimiser steps.
        lr: Adam's learning rate.
        seed: seed of the initial weights.

    Returns:
        A :class:`HelloResult`; with the defaults, for each cell, ``sample == "hello"``.
    """
    if steps < 1:
        raise UserError(f"steps must be at least 1, got {steps}")
    inputs = _encode("hell", HELLO_VOCAB, "the input")  # (1, 4)
    targets = _encode("ello", HELLO_VOCAB, "the target")  # (1, 4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CharRNN(len(HELLO_VOCAB), hidden_size, cell)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        logits, _ = model(inputs)  # (1, 4, V)
        loss = F.cross_entropy(logits.reshape(-1, len(HELLO_VOCAB)), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        predicted = model(inputs)[0].argmax(-1)[0]  # (4,)
    predictions = "".join(HELLO_VOCAB[i] for i in predicted.tolist())
    return HelloResult(model, losses, sample(model, "h", 4, HELLO_VOCAB, temperature=0), predictions)
