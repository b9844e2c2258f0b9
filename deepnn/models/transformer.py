"""Assembled Transformers: the encoder–decoder translator and a decoder-only character model (lecture T4).

Built from the lecture's layers (:mod:`deepnn.layers`: :class:`~deepnn.layers.TransformerEncoderLayer`,
:class:`~deepnn.layers.TransformerDecoderLayer`, :class:`~deepnn.layers.PositionalEncoding`, our
multi-head attention inside), registered under their tasks:

==================  ===============  ==========================================================================
name                task             what
==================  ===============  ==========================================================================
``transformer_mt``  ``seq2seq``      :class:`TransformerMT`, Vaswani et al. 2017: source → memory → target
``char_transformer`` ``language_model`` :class:`CharTransformer`, a causal (GPT-style) stack over characters
==================  ===============  ==========================================================================

``attention="sdpa"`` lets every attention layer compute its heads with PyTorch's fused
``F.scaled_dot_product_attention`` — the same function as our :func:`~deepnn.layers.attention` (tested
against each other); ``"scratch"`` runs ours; ``"auto"`` (the default) the fused kernel on accelerators and
ours on the CPU, where it trained faster (docs/benchmarks.md). Attention maps always come from ours
(:func:`keep_attention_weights`).

    >>> model = TransformerMT(vocab_size=50, d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
    ...                       dim_feedforward=32)
    >>> src, tgt_in = torch.randint(4, 50, (3, 7)), torch.randint(4, 50, (3, 5))  # (B, S), (B, T)
    >>> model(src, tgt_in).shape  # (B, T, V): position t predicts target token t
    torch.Size([3, 5, 50])
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from ..errors import UserError
from ..layers import MultiHeadAttention, PositionalEncoding, TransformerDecoderLayer, TransformerEncoderLayer
from ._registry import register_model

ATTENTION_IMPLS = ("auto", "sdpa", "scratch")
Memory = tuple[torch.Tensor, torch.Tensor]  # (memory (B, S, d), source padding (B, S), True = padding)

__all__ = ["TransformerMT", "CharTransformer", "keep_attention_weights", "transformer_mt", "char_transformer"]


def _check_int(name: str, value: object, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"{name} must be an integer ≥ {low}, got {value!r}")


def _check_tokens(tokens: torch.Tensor, vocab_size: int, what: str) -> None:
    """Token ids: a LongTensor ``(B, T)``, ``T ≥ 1``, values in ``[0, vocab_size)`` (checked on the CPU,
    outside tracing; on an accelerator an out-of-range id fails in the embedding lookup)."""
    if tokens.ndim != 2 or tokens.shape[1] == 0 or tokens.dtype != torch.long:
        raise UserError(f"{what} must be token ids, a LongTensor of shape (B, T) with T ≥ 1, got "
                        f"{tokens.dtype} {tuple(tokens.shape)}")
    tracing = torch.compiler.is_compiling() or getattr(torch.compiler, "is_exporting", lambda: False)()
    if tokens.device.type == "cpu" and tokens.numel() and not tracing:
        low, high = torch.aminmax(tokens)
        if low < 0 or high >= vocab_size:
            raise UserError(f"{what} ids must lie in [0, {vocab_size}), got values from {low.item()} to {high.item()}")


def _configure(model: nn.Module, impl: str, ff_dropout: float | None) -> None:
    """Set every attention layer's implementation and, if given, the dropout inside the feed-forward networks."""
    if impl not in ATTENTION_IMPLS:
        raise UserError(f"unknown attention {impl!r}; choose auto (PyTorch's fused kernel off the CPU, ours on it), "
                        "sdpa (the fused kernel) or scratch (ours)")
    if ff_dropout is not None and not 0 <= ff_dropout < 1:
        raise UserError(f"ff_dropout must lie in [0, 1) (or None: the same as dropout), got {ff_dropout}")
    for m in model.modules():
        if isinstance(m, MultiHeadAttention):
            m.impl = impl
        if ff_dropout is not None and isinstance(m, (TransformerEncoderLayer, TransformerDecoderLayer)):
            m.dropout.p = ff_dropout  # between linear1 and linear2


@contextlib.contextmanager
def keep_attention_weights(model: nn.Module) -> Iterator[list[tuple[str, MultiHeadAttention]]]:
    """Within the block every attention layer of ``model`` keeps its last call's per-head weights
    ``(B, h, T_q, T_k)`` in ``last_weights`` (through our :func:`~deepnn.layers.attention`); yields the
    ``(name, layer)`` pairs in module order."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, MultiHeadAttention)]
    for _, m in layers:
        m.keep_weights, m.last_weights = True, None
    try:
        yield layers
    finally:
        for _, m in layers:
            m.keep_weights = False


class _Embedding(nn.Module):
    """Token embedding scaled by ``√d`` plus positional encoding, then dropout (Vaswani et al. 2017, 3.4–3.5).
    ``(B, T) -> (B, T, d)``. Initialised ``N(0, 1/d)`` so that the scaled embedding has unit variance."""

    def __init__(self, vocab_size: int, d_model: int, max_len: int, positions: str, dropout: float,
                 pad_id: int | None) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        nn.init.normal_(self.tokens.weight, std=d_model ** -0.5)
        if pad_id is not None:
            with torch.no_grad():
                self.tokens.weight[pad_id].zero_()
        self.positions = PositionalEncoding(d_model, max_len, positions)
        self.dropout = nn.Dropout(dropout)
        self.scale = math.sqrt(d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.positions(self.tokens(tokens) * self.scale))


class TransformerMT(nn.Module):
    """The Transformer for translation (Vaswani et al. 2017, "Attention is all you need"), lecture item T4.

    ::

        memory = encoder(embed(src))                        (B, S, d)   N encoder layers, self-attention
        h      = decoder(embed(tgt_in), memory)             (B, T, d)   masked self-attention + cross-attention
        logits = h Eᵀ                                       (B, T, V)   output tied to the embedding E

    One shared vocabulary (a sentencepiece model over both languages), so the source embedding, the
    target embedding and the output projection are one matrix (``tie_embeddings``, Press & Wolf 2017).
    ``norm_first=True`` is the pre-norm arrangement (Xiong et al. 2020; trains without a long warm-up),
    with a final layer norm after each stack; ``False`` is the paper's post-norm.

    Training uses teacher forcing (T5): ``tgt_in`` is the gold target shifted right behind the start
    token (:func:`~deepnn.layers.shift_right`). Decoding (:mod:`deepnn.decoding`) calls :meth:`encode`
    once and :meth:`decode` on growing prefixes.

    Args:
        vocab_size: ``V``, shared by source and target.
        d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward, dropout, activation:
            as in ``torch.nn.Transformer``.
        max_len: the most tokens of a source or target sequence (positions).
        positions: ``"sinusoidal"`` or ``"learned"`` (:class:`~deepnn.layers.PositionalEncoding`).
        norm_first: pre-norm (``True``) or post-norm.
        tie_embeddings: output projection = embedding matrix.
        attention: ``"auto"``, ``"sdpa"`` (fused kernel) or ``"scratch"`` (ours), same math.
        pad_id: the padding token: masked as a key, its embedding kept at zero.
        ff_dropout: the dropout between the feed-forward network's two layers (``None``: ``dropout``);
            ``dropout`` still applies to the embeddings and to every sub-layer's output.
    """

    def __init__(self, vocab_size: int, d_model: int = 256, nhead: int = 4, num_encoder_layers: int = 3,
                 num_decoder_layers: int = 3, dim_feedforward: int = 1024, dropout: float = 0.1,
                 max_len: int = 128, positions: str = "sinusoidal", norm_first: bool = True,
                 tie_embeddings: bool = True, attention: str = "auto", activation: str = "relu",
                 pad_id: int = 0, ff_dropout: float | None = None) -> None:
        super().__init__()
        for name, value, low in (("vocab_size", vocab_size, 2), ("num_encoder_layers", num_encoder_layers, 1),
                                 ("num_decoder_layers", num_decoder_layers, 1),
                                 ("dim_feedforward", dim_feedforward, 1)):
            _check_int(name, value, low)
        if not 0 <= dropout < 1:
            raise UserError(f"dropout must lie in [0, 1), got {dropout}")
        if not 0 <= pad_id < vocab_size:
            raise UserError(f"pad_id {pad_id} must be a token id in [0, {vocab_size})")
        self.vocab_size, self.d_model, self.max_len, self.pad_id = vocab_size, d_model, max_len, pad_id
        self.embed = _Embedding(vocab_size, d_model, max_len, positions, dropout, pad_id)
        layer = dict(d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward, dropout=dropout,
                     activation=activation, norm_first=norm_first)
        self.encoder = nn.ModuleList(TransformerEncoderLayer(**layer) for _ in range(num_encoder_layers))
        self.decoder = nn.ModuleList(TransformerDecoderLayer(**layer) for _ in range(num_decoder_layers))
        self.encoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.output = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            self.output.weight = self.embed.tokens.weight
        _configure(self, attention, ff_dropout)

    def encode(self, src: torch.Tensor) -> Memory:
        """``src`` ``(B, S)`` → ``(memory (B, S, d), padding (B, S))``, ``padding`` True at ``pad_id``."""
        _check_tokens(src, self.vocab_size, "the source")
        padding = src == self.pad_id
        x = self.embed(src)
        for layer in self.encoder:
            x = layer(x, src_key_padding_mask=padding)
        return self.encoder_norm(x), padding

    def decode(self, memory: Memory, tgt_in: torch.Tensor) -> torch.Tensor:
        """Decoder on target prefixes ``tgt_in`` ``(B, T)`` (start token first) → logits ``(B, T, V)``;
        position ``t`` scores the token after ``tgt_in[:, t]``. Causal: position ``t`` sees ``tgt_in[:, :t+1]``."""
        _check_tokens(tgt_in, self.vocab_size, "the target")
        mem, padding = memory
        y = self.embed(tgt_in)
        for layer in self.decoder:
            y = layer(y, mem, memory_key_padding_mask=padding, tgt_is_causal=True)
        return self.output(self.decoder_norm(y))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``(B, T, V)`` for source ``(B, S)`` and decoder inputs ``(B, T)``."""
        return self.decode(self.encode(src), tgt_in)


class CharTransformer(nn.Module):
    """A decoder-only Transformer language model over characters (Radford et al. 2018, GPT; Karpathy's
    nanoGPT), lecture items T4 and R3: the same next-token task as :class:`~deepnn.models.CharLM`,
    with masked self-attention over a window of ``max_len`` characters instead of a recurrent state.

    ::

        x = embed(tokens) + positions             (B, T, d)
        x = layer_i(x, causal mask)               N pre-norm encoder layers with a causal mask = GPT blocks
        logits = norm(x) Eᵀ                       (B, T, V)

    ``forward(tokens (B, T), state=None) -> (logits (B, T, V), None)``: the interface of the recurrent
    language models, with no state to carry (each window stands alone), so the same training task,
    sampling and export serve both. ``max_context`` (= ``max_len``) tells :func:`deepnn.decoding.generate`
    how many characters to feed back.
    """

    def __init__(self, vocab_size: int, d_model: int = 256, nhead: int = 4, num_layers: int = 4,
                 dim_feedforward: int = 1024, dropout: float = 0.1, max_len: int = 256,
                 positions: str = "learned", attention: str = "auto", activation: str = "gelu",
                 ff_dropout: float | None = None) -> None:
        super().__init__()
        _check_int("vocab_size", vocab_size, 1)
        _check_int("num_layers", num_layers, 1)
        if not 0 <= dropout < 1:
            raise UserError(f"dropout must lie in [0, 1), got {dropout}")
        self.vocab_size, self.max_len = vocab_size, max_len
        self.embed = _Embedding(vocab_size, d_model, max_len, positions, dropout, None)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation, norm_first=True)
            for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.output = nn.Linear(d_model, vocab_size, bias=False)
        self.output.weight = self.embed.tokens.weight
        _configure(self, attention, ff_dropout)

    @property
    def max_context(self) -> int:
        return self.max_len

    def forward(self, tokens: torch.Tensor, state: None = None) -> tuple[torch.Tensor, None]:
        _check_tokens(tokens, self.vocab_size, "CharTransformer's input")
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x, is_causal=True)
        return self.output(self.norm(x)), None


@register_model(task="seq2seq", paper="Vaswani et al. 2017")
def transformer_mt(*, vocab_size: int, d_model: int = 256, nhead: int = 4, num_encoder_layers: int = 3,
                   num_decoder_layers: int = 3, dim_feedforward: int = 1024, dropout: float = 0.1,
                   max_len: int = 128, positions: str = "sinusoidal", norm_first: bool = True,
                   tie_embeddings: bool = True, attention: str = "auto", pad_id: int = 0,
                   ff_dropout: float | None = None) -> TransformerMT:
    """The translation Transformer (T4): 3 + 3 pre-norm layers of width 256 by default."""
    return TransformerMT(vocab_size, d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward,
                         dropout, max_len, positions, norm_first, tie_embeddings, attention, pad_id=pad_id,
                         ff_dropout=ff_dropout)


@register_model(task="language_model", paper="Vaswani et al. 2017; Radford et al. 2018")
def char_transformer(*, vocab_size: int, d_model: int = 256, nhead: int = 4, num_layers: int = 4,
                     dim_feedforward: int = 1024, dropout: float = 0.1, max_len: int = 256,
                     positions: str = "learned", attention: str = "auto",
                     ff_dropout: float | None = None) -> CharTransformer:
    """A decoder-only character Transformer (T4 + R3): 4 pre-norm layers of width 256, 256 characters of context."""
    return CharTransformer(vocab_size, d_model, nhead, num_layers, dim_feedforward, dropout, max_len, positions,
                           attention, ff_dropout=ff_dropout)
