"""The Transformer's encoder and decoder layers from scratch, greedy decoding and teacher forcing:
lecture items T4 and T5 (Vaswani et al. 2017, "Attention is all you need").

An encoder layer lets every position attend to every other one; a decoder layer first attends to
the target tokens produced so far (masked self-attention: position ``t`` sees ``≤ t`` only), then to
the encoder's output, the *memory* (cross-attention: queries from the decoder, keys and values from
the memory). Each sub-layer is wrapped in a residual connection and a layer norm ("add & norm"), and a
position-wise feed-forward network ``linear2(activation(linear1(x)))`` follows the attention.

====  =================================================  ================================================
item  concept                                            code
====  =================================================  ================================================
T4    encoder layer: self-attention, feed-forward        :class:`TransformerEncoderLayer`
T4    decoder layer: masked self-attention,              :class:`TransformerDecoderLayer`
      cross-attention over the memory, feed-forward
T4    autoregressive decoding that stops at an end token :func:`deepnn.decoding.greedy_decode`
T4    positional encodings: sinusoidal and learned       :class:`PositionalEncoding`
T5    teacher forcing: gold previous tokens as inputs    :func:`shift_right`, :func:`teacher_forcing_logits`
====  =================================================  ================================================

Both layers subclass ``torch.nn.TransformerEncoderLayer`` / ``torch.nn.TransformerDecoderLayer`` with
``batch_first=True`` and only replace ``forward`` (and make the attention sub-modules our
:class:`~deepnn.layers.attention.MultiHeadAttention`, holding the weights PyTorch initialised), so
parameter names, initialisation and state dicts are PyTorch's and weights load both ways.
``tests/test_transformer.py`` checks values and gradients against PyTorch's layers.

**T5, teacher forcing and exposure bias.** A decoder is trained to predict token ``t`` from the *gold*
tokens ``< t``: the input is the target shifted one place right behind a start token
(:func:`shift_right`), and thanks to the causal mask one parallel pass gives every position's
prediction (:func:`teacher_forcing_logits`). At inference there is no gold: :func:`~deepnn.decoding.greedy_decode`
feeds back the model's *own* predictions, one token at a time. The model never saw its own mistakes
as inputs during training, so one wrong token can lead it into prefixes unlike anything it was
trained on; that train/test mismatch is called exposure bias.

    >>> layer = TransformerDecoderLayer(8, nhead=2, dim_feedforward=16, dropout=0.0)
    >>> tgt, memory = torch.randn(3, 5, 8), torch.randn(3, 7, 8)  # (B, T, d_model), (B, S, d_model)
    >>> layer(tgt, memory, tgt_is_causal=True).shape
    torch.Size([3, 5, 8])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .attention import MultiHeadAttention

# (memory, tokens (B, t)) -> logits (B, t, V): the decoder run on a prefix, position i predicting token i + 1.
DecodeStep = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def _check_construction(name: str, d_model: int, nhead: int, activation: object, batch_first: bool) -> None:
    if not batch_first:
        raise UserError(f"{name} is batch first only (tensors (B, T, d_model)); drop batch_first=False and "
                        "transpose (T, B, d_model) inputs with x.transpose(0, 1)")
    if d_model <= 0 or nhead <= 0 or d_model % nhead:
        raise UserError(f"{name}: d_model {d_model} must be a positive multiple of nhead {nhead} "
                        "(each head gets d_model / nhead dimensions); change one of them")
    if isinstance(activation, str) and activation not in ACTIVATIONS:
        raise UserError(f"{name}: unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)} "
                        "or pass a callable such as torch.nn.functional.relu")
    if not isinstance(activation, str) and not callable(activation):
        raise UserError(f"{name}: activation must be 'relu', 'gelu' or a callable, got {type(activation).__name__}")


def _ours(torch_attn: nn.MultiheadAttention, bias: bool) -> MultiHeadAttention:
    """Our :class:`MultiHeadAttention` holding ``torch_attn``'s weights. Built with the random number
    generator's state saved and restored, so the layer draws exactly the random numbers PyTorch's does."""
    with torch.random.fork_rng(devices=[]):
        ours = MultiHeadAttention(torch_attn.embed_dim, torch_attn.num_heads, bias=bias,
                                  device=torch_attn.in_proj_weight.device, dtype=torch_attn.in_proj_weight.dtype)
    ours.load_state_dict(torch_attn.state_dict())
    return ours


class _WrittenOut:
    """What both layers share: PyTorch's constructor with our attention modules swapped in, the
    self-attention sub-layer and the feed-forward sub-layer. Listed first among the bases, so its
    ``__init__`` runs PyTorch's layer's ``__init__`` through ``super()``."""

    _attention_modules: tuple[str, ...] = ("self_attn",)  # torch's attention sub-modules, replaced by ours
    _ff_dropout: str  # the dropout after the feed-forward network: dropout2 (encoder), dropout3 (decoder)

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[torch.Tensor], torch.Tensor] = F.relu,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = True,
        norm_first: bool = False,
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        _check_construction(type(self).__name__, d_model, nhead, activation, batch_first)
        super().__init__(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                         batch_first=True, norm_first=norm_first, bias=bias, device=device, dtype=dtype)
        for name in self._attention_modules:
            setattr(self, name, _ours(getattr(self, name), bias))

    def _self_attention(
        self, x: torch.Tensor, mask: torch.Tensor | None, padding: torch.Tensor | None, is_causal: bool
    ) -> torch.Tensor:
        out, _ = self.self_attn(x, x, x, key_padding_mask=padding, need_weights=False, attn_mask=mask,
                                is_causal=is_causal)
        return self.dropout1(out)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Position-wise feed-forward network ``linear2(activation(linear1(x)))``, ``d_model → dim_feedforward →
        d_model``."""
        return getattr(self, self._ff_dropout)(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerEncoderLayer(_WrittenOut, nn.TransformerEncoderLayer):
    """One Transformer encoder layer (Vaswani et al. 2017, section 3.1), lecture item T4, as
    ``torch.nn.TransformerEncoderLayer`` with ``batch_first=True`` and our attention inside.

    Post-norm (the paper's, ``norm_first=False``)::

        x = norm1(x + dropout1(self_attn(x, x, x)))                     (B, T, d_model)
        x = norm2(x + dropout2(linear2(dropout(activation(linear1(x))))))   (B, T, d_model)

    Pre-norm (``norm_first=True``): ``x = x + dropout1(self_attn(norm1(x)))``, then
    ``x = x + dropout2(ff(norm2(x)))``.

    Arguments are PyTorch's. ``batch_first`` must stay ``True``. Differences: masks must be boolean
    (``True`` = may **not** attend, PyTorch's convention; no additive float masks), and ``dropout``
    applies to the residual branches and the feed-forward network but not to the attention weights
    (:class:`MultiHeadAttention` has no dropout).

        >>> layer = TransformerEncoderLayer(8, nhead=2, dim_feedforward=16)
        >>> layer(torch.randn(3, 5, 8)).shape
        torch.Size([3, 5, 8])
    """

    self_attn: MultiHeadAttention
    _ff_dropout = "dropout2"

    def forward(
        self,
        src: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        src_key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        """Encode ``src``.

        Args:
            src: ``(B, T, d_model)``, or ``(T, d_model)`` unbatched.
            src_mask: boolean ``(T, T)`` or ``(B·nhead, T, T)``, ``True`` = may **not** attend.
            src_key_padding_mask: boolean ``(B, T)``, ``True`` = padding, no position attends to it.
            is_causal: without ``src_mask``, attend causally (position ``t`` sees ``≤ t``).

        Returns:
            ``(B, T, d_model)``.
        """
        x = src
        if self.norm_first:
            x = x + self._self_attention(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._feed_forward(self.norm2(x))
        x = self.norm1(x + self._self_attention(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._feed_forward(x))


class TransformerDecoderLayer(_WrittenOut, nn.TransformerDecoderLayer):
    """One Transformer decoder layer (Vaswani et al. 2017, section 3.1), lecture item T4, as
    ``torch.nn.TransformerDecoderLayer`` with ``batch_first=True`` and our attention inside.

    Post-norm (the paper's, ``norm_first=False``), target ``x`` ``(B, T, d_model)``, memory ``(B, S, d_model)``::

        x = norm1(x + dropout1(self_attn(x, x, x, causal)))             masked self-attention
        x = norm2(x + dropout2(multihead_attn(x, memory, memory)))      cross-attention
        x = norm3(x + dropout3(linear2(dropout(activation(linear1(x))))))   feed-forward

    Pre-norm (``norm_first=True``) normalises each sub-layer's input instead of the sum, as in PyTorch.

    Arguments are PyTorch's. ``batch_first`` must stay ``True``. Differences: masks must be boolean
    (``True`` = may **not** attend; no additive float masks), ``tgt_is_causal=True`` without ``tgt_mask``
    builds the causal mask (PyTorch wants the mask too), and ``dropout`` does not apply to the attention
    weights. Masked self-attention needs ``tgt_is_causal=True`` or ``tgt_mask=~causal_mask(T)``; it is
    not the default, as in PyTorch.

        >>> layer = TransformerDecoderLayer(8, nhead=2, dim_feedforward=16)
        >>> layer(torch.randn(3, 5, 8), torch.randn(3, 7, 8), tgt_is_causal=True).shape
        torch.Size([3, 5, 8])
    """

    self_attn: MultiHeadAttention
    multihead_attn: MultiHeadAttention
    _attention_modules = ("self_attn", "multihead_attn")
    _ff_dropout = "dropout3"

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        tgt_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        tgt_key_padding_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        tgt_is_causal: bool = False,
        memory_is_causal: bool = False,
    ) -> torch.Tensor:
        """Decode ``tgt`` while attending to ``memory``.

        Args:
            tgt: target so far, ``(B, T, d_model)``, or ``(T, d_model)`` unbatched.
            memory: the encoder's output, ``(B, S, d_model)``, or ``(S, d_model)`` unbatched.
            tgt_mask: boolean ``(T, T)`` or ``(B·nhead, T, T)``, ``True`` = may **not** attend;
                e.g. ``~causal_mask(T)``.
            memory_mask: boolean ``(T, S)`` or ``(B·nhead, T, S)``, the same for cross-attention.
            tgt_key_padding_mask: boolean ``(B, T)``, ``True`` = padding target position.
            memory_key_padding_mask: boolean ``(B, S)``, ``True`` = padding source position.
            tgt_is_causal: without ``tgt_mask``, masked self-attention (position ``t`` sees ``≤ t``).
            memory_is_causal: without ``memory_mask``, causal cross-attention (rarely wanted).

        Returns:
            ``(B, T, d_model)``.
        """
        x = tgt
        if memory.ndim != x.ndim or memory.shape[-1] != x.shape[-1] or (x.ndim == 3 and memory.shape[0] != x.shape[0]):
            raise UserError(f"{type(self).__name__} takes tgt (B, T, d_model) and memory (B, S, d_model) with the "
                            f"same B and d_model (or both unbatched), got {tuple(tgt.shape)} and {tuple(memory.shape)}")
        if self.norm_first:
            x = x + self._self_attention(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._cross_attention(self.norm2(x), memory, memory_mask, memory_key_padding_mask,
                                          memory_is_causal)
            return x + self._feed_forward(self.norm3(x))
        x = self.norm1(x + self._self_attention(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
        x = self.norm2(x + self._cross_attention(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal))
        return self.norm3(x + self._feed_forward(x))

    def _cross_attention(
        self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None, padding: torch.Tensor | None,
        is_causal: bool,
    ) -> torch.Tensor:
        """Queries from the decoder ``(B, T, d_model)``, keys and values from the memory ``(B, S, d_model)``."""
        out, _ = self.multihead_attn(x, memory, memory, key_padding_mask=padding, need_weights=False,
                                     attn_mask=mask, is_causal=is_causal)
        return self.dropout2(out)



class PositionalEncoding(nn.Module):
    """Adds each position's code to token embeddings (Vaswani et al. 2017, section 3.5), lecture item T4.

    Attention alone is blind to order (permuting the inputs permutes the outputs), so position ``t``'s
    embedding gets a vector ``p_t`` added:

    * ``"sinusoidal"`` (the paper's, nothing learned): ``p_t[2i] = sin(t / 10000^(2i/d))``,
      ``p_t[2i+1] = cos(t / 10000^(2i/d))``; every relative offset is a linear map of the codes.
    * ``"learned"`` (BERT, GPT): a trained table ``(max_len, d)``.

    Args:
        d_model: embedding size ``d``.
        max_len: the most positions a sequence may have.
        kind: ``"sinusoidal"`` or ``"learned"``.

    ``forward(x (B, T, d)) -> (B, T, d)``; a sequence longer than ``max_len`` is a :class:`UserError`.

        >>> pe = PositionalEncoding(4, max_len=8)
        >>> pe(torch.zeros(1, 2, 4))[0, 1]  # position 1: sin(1), cos(1), sin(1/100), cos(1/100)
        tensor([0.8415, 0.5403, 0.0100, 0.9999])
    """

    KINDS = ("sinusoidal", "learned")

    def __init__(self, d_model: int, max_len: int = 512, kind: str = "sinusoidal") -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise UserError(f"unknown positional encoding {kind!r}; choose one of {', '.join(self.KINDS)}")
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise UserError(f"max_len must be an integer ≥ 1 (the most positions a sequence may have), got {max_len!r}")
        self.kind, self.max_len = kind, max_len
        if kind == "learned":
            self.table = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        else:
            position = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
            rate = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (ceil(d/2),)
            table = torch.zeros(max_len, d_model, dtype=torch.float64)
            table[:, 0::2] = torch.sin(position * rate)
            table[:, 1::2] = torch.cos(position * rate)[:, : d_model // 2]
            self.register_buffer("table", table.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        if T > self.max_len:
            raise UserError(f"a sequence of {T} positions is longer than the model's max_len {self.max_len}; "
                            "shorten the input or build the model with a larger max_len")
        return x + self.table[:T].to(x.dtype)


def shift_right(targets: torch.Tensor, start_token: int) -> torch.Tensor:
    """The decoder's inputs under teacher forcing (T5): the gold targets shifted one place right behind
    ``start_token``, so that position ``t`` sees the gold tokens ``< t`` and is trained to predict ``targets[t]``.

    Args:
        targets: token ids ``(B, T)``.
        start_token: the start-of-sequence id.

    Returns:
        ``(B, T)``: ``[start_token, targets[:, 0], …, targets[:, T-2]]``.

        >>> shift_right(torch.tensor([[5, 6, 7]]), start_token=1)
        tensor([[1, 5, 6]])
    """
    if targets.ndim != 2:
        raise UserError(f"shift_right takes token ids (B, T), got shape {tuple(targets.shape)}; "
                        "add a batch dimension with targets.unsqueeze(0)")
    start = torch.full_like(targets[:, :1], start_token)
    return torch.cat([start, targets[:, :-1]], dim=1)


def teacher_forcing_logits(
    decode_step: DecodeStep, memory: torch.Tensor, targets: torch.Tensor, start_token: int
) -> torch.Tensor:
    """Training-time decoding with teacher forcing (T5): one parallel pass over the gold prefix.

    Thanks to the causal mask inside ``decode_step`` this equals running the decoder step by step
    on the *gold* prefixes; at inference (:func:`~deepnn.decoding.greedy_decode`) the prefixes are the model's own
    predictions instead (exposure bias). Train with
    ``F.cross_entropy(logits.flatten(0, 1), targets.flatten())``.

    Args:
        decode_step: ``(memory, tokens (B, t)) -> logits (B, t, V)``, as in :func:`~deepnn.decoding.greedy_decode`.
        memory: the encoder's output, ``(B, S, d_model)`` (or whatever ``decode_step`` expects, batch first).
        targets: gold token ids ``(B, T)``.
        start_token: the start-of-sequence id.

    Returns:
        ``(B, T, V)``: position ``t``'s logits predict ``targets[:, t]``.
    """
    return decode_step(memory, shift_right(targets, start_token))
