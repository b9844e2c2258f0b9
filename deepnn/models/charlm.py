"""Character-level language models: lecture item R3.

The slide's toy (after Karpathy, "The unreasonable effectiveness of recurrent neural networks", 2015,
and his char-rnn): vocabulary ``[h, e, l, o]``, one training sequence ``"hello"``. Each character
enters as a one-hot vector, a recurrent cell (:mod:`deepnn.layers.rnn`) updates the hidden state,
and a dense layer turns the hidden state into scores for the next character. Trained on inputs
``"hell"`` with targets ``"ello"``; at test time the model is given a first character and its own
samples are fed back one at a time (:func:`sample`, on :mod:`deepnn.decoding`).

The registry (``create_model``, task ``"language_model"``) holds ``hello`` (that toy, on the cells) and
``char_rnn``, ``char_lstm``, ``char_gru``: :class:`CharLM`, stacked layers (:class:`deepnn.layers.RNN`,
``LSTM``, ``GRU``; PyTorch's fused kernels or ours with ``impl``) for real text. Every model here is
called ``model(tokens (B, T), state) -> (logits (B, T, V), state)``; a training loop carries the state
across consecutive batches with :func:`detach_state` in between (truncated backpropagation through time).

    >>> result = hello_example()
    >>> result.sample, result.predictions
    ('hello', 'ello')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..decoding import generate
from ..errors import UserError
from ..layers import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, detach_state, unroll
from ..layers.rnn import State
from ._registry import register_model

CELLS: dict[str, type[nn.Module]] = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
LAYERS: dict[str, type[nn.Module]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
HELLO_VOCAB = "helo"  # the lecture's order: h, e, l, o

__all__ = ["CharRNN", "CharLM", "detach_state", "sample", "hello_example", "HelloResult",
           "hello", "char_rnn", "char_lstm", "char_gru"]


def _check_tokens(tokens: torch.Tensor, vocab_size: int, name: str, training: bool) -> None:
    """Token ids must be a LongTensor ``(B, T)``, ``T ≥ 1``, with values in ``[0, vocab_size)``.

    The shape and dtype checks cost nothing. The range check reads ``min`` and ``max`` back to the host,
    which on an accelerator waits for the queued work: it runs on the CPU always (no wait there) and on
    an accelerator only outside training (evaluation, sampling). In GPU training an out-of-range id still
    fails, as a device-side error of the one-hot / embedding lookup, without the per-step sync. While
    the model is traced (``torch.compile``, ``torch.export`` for ONNX) the range check is left out of the graph.
    """
    if tokens.ndim != 2 or tokens.shape[1] == 0 or tokens.dtype != torch.long:
        raise UserError(f"{name} takes token ids as a LongTensor of shape (B, T) with T ≥ 1, got "
                        f"{tokens.dtype} {tuple(tokens.shape)}")
    tracing = torch.compiler.is_compiling() or getattr(torch.compiler, "is_exporting", lambda: False)()
    if tokens.numel() and not tracing and (tokens.device.type == "cpu" or not training):
        low, high = torch.aminmax(tokens)
        if low < 0 or high >= vocab_size:
            raise UserError(f"token ids must lie in [0, {vocab_size}), got values from {low.item()} to {high.item()}")


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
        _check_tokens(tokens, self.vocab_size, "CharRNN", self.training)
        x = F.one_hot(tokens, self.vocab_size).to(self.output.weight.dtype)  # (B, T, V)
        hidden, state = unroll(self.cell, x.transpose(0, 1), state)  # (T, B, H), time first
        return self.output(hidden.transpose(0, 1)), state  # (B, T, V)

    detach_state = staticmethod(detach_state)


class CharLM(nn.Module):
    """Character-level language model on stacked recurrent layers (Karpathy 2015, char-rnn), lecture R3
    at scale: :class:`CharRNN`'s equations with ``L`` layers of Elman RNN (Elman 1990), LSTM (Hochreiter
    & Schmidhuber 1997) or GRU (Cho et al. 2014).

    ::

        x_t = one_hot(token_t)  or  E[token_t]       (V,) as in the lecture, or an embedding (embedding_dim,)
        h_t^1 … h_t^L = layer(x_t, state)            deepnn.layers.RNN / LSTM / GRU, num_layers = L
        o_t = W_ho dropout(h_t^L) + b_o              logits for token_{t+1}

    ``forward(tokens (B, T), state=None) -> (logits (B, T, V), state)``; the state is the layer's:
    ``h`` ``(L, B, H)``, or ``(h, c)`` for an LSTM; ``None``: zeros. Passing the returned state back in
    continues the sequence; :meth:`detach_state` cuts it from the graph between training batches.

    Args:
        vocab_size: ``V``.
        hidden_size: ``H``.
        num_layers: ``L``.
        cell: ``"rnn"`` (tanh), ``"lstm"`` or ``"gru"``.
        dropout: applied in training to the output of every layer (between layers, inside the recurrent
            layer as PyTorch does, and before the output layer, as char-rnn does); never to the
            recurrent connections.
        embedding_dim: ``None``: one-hot inputs (the lecture's); an integer: an ``nn.Embedding``.
        impl: ``"fused"`` (PyTorch's kernels) or ``"scratch"`` (ours), see :class:`deepnn.layers.LSTM`.

    Attributes:
        embedding: ``nn.Embedding(V, embedding_dim)`` or ``None``.
        rnn: the recurrent layer, batch first.
        output: ``nn.Linear(H, V)``.
    """

    def __init__(self, vocab_size: int, hidden_size: int = 512, num_layers: int = 2, cell: str = "lstm",
                 dropout: float = 0.0, embedding_dim: int | None = None, impl: str = "fused") -> None:
        super().__init__()
        if cell not in LAYERS:
            raise UserError(f"unknown cell {cell!r} for CharLM; choose one of {', '.join(LAYERS)}")
        for what, value in (("vocab_size", vocab_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{what} must be an integer ≥ 1, got {value!r}")
        if embedding_dim is not None and (isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int)
                                          or embedding_dim < 1):
            raise UserError(f"embedding_dim must be None (one-hot inputs) or an integer ≥ 1, got {embedding_dim!r}")
        if not 0 <= dropout < 1:
            raise UserError(f"dropout must lie in [0, 1), got {dropout}")
        self.vocab_size, self.hidden_size, self.num_layers, self.cell_type = vocab_size, hidden_size, num_layers, cell
        self.embedding = None if embedding_dim is None else nn.Embedding(vocab_size, embedding_dim)
        self.rnn = LAYERS[cell](embedding_dim or vocab_size, hidden_size, num_layers, batch_first=True,
                                dropout=dropout if num_layers > 1 else 0.0, impl=impl)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size, vocab_size)

    def forward(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        _check_tokens(tokens, self.vocab_size, "CharLM", self.training)
        if self.embedding is None:
            x = F.one_hot(tokens, self.vocab_size).to(self.output.weight.dtype)  # (B, T, V)
        else:
            x = self.embedding(tokens)  # (B, T, embedding_dim)
        hidden, state = self.rnn(x, state)  # (B, T, H)
        return self.output(self.dropout(hidden)), state  # (B, T, V)

    detach_state = staticmethod(detach_state)


def _char_lm(cell: str, vocab_size: int, hidden_size: int, num_layers: int, dropout: float,
             embedding_dim: int | None, impl: str) -> CharLM:
    return CharLM(vocab_size, hidden_size, num_layers, cell, dropout, embedding_dim, impl)


@register_model(task="language_model", paper="Elman 1990; Karpathy 2015")
def char_rnn(*, vocab_size: int, hidden_size: int = 512, num_layers: int = 2, dropout: float = 0.1,
             embedding_dim: int | None = None, impl: str = "fused") -> CharLM:
    """Character-level LM, 2 stacked Elman RNN layers of 512 (tanh), one-hot inputs (R2, R3)."""
    return _char_lm("rnn", vocab_size, hidden_size, num_layers, dropout, embedding_dim, impl)


@register_model(task="language_model", paper="Hochreiter & Schmidhuber 1997; Karpathy 2015")
def char_lstm(*, vocab_size: int, hidden_size: int = 512, num_layers: int = 2, dropout: float = 0.1,
              embedding_dim: int | None = None, impl: str = "fused") -> CharLM:
    """Character-level LM, 2 stacked LSTM layers of 512, one-hot inputs: Karpathy's char-rnn (R3, R5)."""
    return _char_lm("lstm", vocab_size, hidden_size, num_layers, dropout, embedding_dim, impl)


@register_model(task="language_model", paper="Cho et al. 2014; Karpathy 2015")
def char_gru(*, vocab_size: int, hidden_size: int = 512, num_layers: int = 2, dropout: float = 0.1,
             embedding_dim: int | None = None, impl: str = "fused") -> CharLM:
    """Character-level LM, 2 stacked GRU layers of 512, one-hot inputs (R3, R6)."""
    return _char_lm("gru", vocab_size, hidden_size, num_layers, dropout, embedding_dim, impl)


@register_model(task="language_model", paper="Elman 1990; Karpathy 2015")
def hello(*, vocab_size: int = len(HELLO_VOCAB), hidden_size: int = 8, cell: str = "rnn") -> CharRNN:
    """The lecture's "hello" toy: one recurrent cell over one-hot characters (R3), see hello_example."""
    return CharRNN(vocab_size, hidden_size, cell)


def _encode(text: str, vocab: str, what: str) -> torch.Tensor:
    """``text`` as token ids ``(1, len(text))``; a character outside ``vocab`` is a UserError."""
    for ch in text:
        if ch not in vocab:
            raise UserError(f"{what} has the character {ch!r}, which is not in the vocabulary "
                            f"{list(vocab)}; use only those characters")
    return torch.tensor([[vocab.index(ch) for ch in text]], dtype=torch.long)


def sample(
    model: nn.Module,
    prefix: str,
    length: int,
    vocab: str,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> str:
    """Generate text one character at a time, feeding each sample back in (R3).

    The prefix is run through the model to set up the hidden state; then, ``length`` times, the next
    character is drawn from ``softmax(logits / temperature)`` and fed back as the next input
    (:func:`deepnn.decoding.generate`). ``temperature`` 0 takes the most likely character (greedy);
    below 1 sharpens the distribution, above 1 flattens it.

    Args:
        model: a :class:`CharRNN` or :class:`CharLM` over ``len(vocab)`` characters.
        prefix: at least one character, all in ``vocab``.
        length: how many characters to generate (``0``: none).
        vocab: the characters, position = token id (e.g. ``"helo"``).
        temperature: ``≥ 0``.
        top_k, top_p: keep only the ``k`` most likely characters / the nucleus of probability ``p``
            (:func:`deepnn.decoding.sample_next`).
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
    tokens = _encode(prefix, vocab, "the prefix").to(model.output.weight.device)
    generated = generate(model, tokens, length, temperature=temperature, top_k=top_k, top_p=top_p,
                         generator=generator)  # (1, length)
    return prefix + "".join(vocab[i] for i in generated[0].tolist())


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
