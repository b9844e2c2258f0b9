"""The recurrent encoder–decoder with additive attention (Bahdanau, Cho & Bengio 2015), lecture item T1.

Registered as ``seq2seq_attn`` (task ``seq2seq``), trained and decoded exactly like
:class:`~deepnn.models.transformer.TransformerMT`: ``encode(src)`` once, ``decode(memory, prefix)``
for teacher forcing (T5) and for greedy / beam search (:mod:`deepnn.decoding`).

    >>> model = Seq2SeqAttention(vocab_size=40, embedding_dim=8, hidden_size=16, attention_size=8)
    >>> src, tgt_in = torch.randint(4, 40, (2, 6)), torch.randint(4, 40, (2, 5))
    >>> model(src, tgt_in).shape
    torch.Size([2, 5, 40])
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..errors import UserError
from ..layers import GRU, GRUCell, additive_scores, attention
from ._registry import register_model
from .transformer import Memory, _check_int, _check_tokens

__all__ = ["Seq2SeqAttention", "seq2seq_attn"]


class Seq2SeqAttention(nn.Module):
    """RNN encoder–decoder with additive attention (Bahdanau et al. 2015, "Neural machine translation by
    jointly learning to align and translate"), lecture item T1.

    ::

        h_1 … h_S   = BiGRU(E[src])                                   (B, S, 2H) the memory, both directions
        s_0         = tanh(W_0 mean_j h_j)                            (B, H)
        for t = 1 … T:
            α'_t    = softmax_j( vᵀ tanh(W_q s_{t-1} + W_k h_j) )     (B, S)  additive attention (T2)
            c_t     = Σ_j α'_tj h_j                                   (B, 2H) the context
            s_t     = GRUCell([E[y_{t-1}]; c_t], s_{t-1})             (B, H)
            logits  = W_o dropout([s_t; c_t; E[y_{t-1}]])             (B, V)

    Instead of squeezing the sentence into one vector, every output step looks back at every source
    position; ``α'`` is the soft alignment the attention maps show. Padding positions of the source are
    packed away in the encoder and masked in the attention. One shared vocabulary and embedding for both
    languages (the sentencepiece model of the run). ``W_k h_j`` is computed once per sentence.

    Args:
        vocab_size: ``V``.
        embedding_dim: ``E``'s width.
        hidden_size: ``H``, of each encoder direction and of the decoder.
        attention_size: the additive scorer's hidden width.
        num_layers: encoder layers.
        dropout: on embeddings and before the output layer.
        max_len: the most tokens of a sequence (for the same length policy as the Transformer).
        pad_id: the padding token.
    """

    def __init__(self, vocab_size: int, embedding_dim: int = 256, hidden_size: int = 256, attention_size: int = 256,
                 num_layers: int = 1, dropout: float = 0.1, max_len: int = 128, pad_id: int = 0) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("embedding_dim", embedding_dim),
                            ("hidden_size", hidden_size), ("attention_size", attention_size),
                            ("num_layers", num_layers), ("max_len", max_len)):
            _check_int(name, value)
        if not 0 <= dropout < 1:
            raise UserError(f"dropout must lie in [0, 1), got {dropout}")
        self.vocab_size, self.max_len, self.pad_id = vocab_size, max_len, pad_id
        H = hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.encoder = GRU(embedding_dim, H, num_layers, batch_first=True, bidirectional=True,
                           dropout=dropout if num_layers > 1 else 0.0)
        self.init_state = nn.Linear(2 * H, H)
        self.keys = nn.Linear(2 * H, attention_size, bias=False)  # W_k
        self.query = nn.Linear(H, attention_size, bias=False)  # W_q
        self.score = nn.Parameter(torch.randn(attention_size) / attention_size ** 0.5)  # v
        self.cell = GRUCell(embedding_dim + 2 * H, H)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(H + 2 * H + embedding_dim, vocab_size)

    def encode(self, src: torch.Tensor) -> Memory:
        """``src`` ``(B, S)`` → ``(memory (B, S, 2H), padding (B, S))``."""
        _check_tokens(src, self.vocab_size, "the source")
        if src.shape[1] > self.max_len:
            raise UserError(f"a source of {src.shape[1]} tokens is longer than the model's max_len {self.max_len}")
        padding = src == self.pad_id
        lengths = (~padding).sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(self.dropout(self.embedding(src)), lengths, batch_first=True,
                                      enforce_sorted=False)
        memory, _ = self.encoder(packed)
        memory, _ = pad_packed_sequence(memory, batch_first=True, total_length=src.shape[1])
        return memory, padding

    def decode(self, memory: Memory, tgt_in: torch.Tensor, weights: list[torch.Tensor] | None = None
               ) -> torch.Tensor:
        """Run the decoder over ``tgt_in`` ``(B, T)`` (start token first) → logits ``(B, T, V)``.
        ``weights``, if given, receives each step's attention weights ``(B, S)``."""
        _check_tokens(tgt_in, self.vocab_size, "the target")
        mem, padding = memory
        keys = self.keys(mem)  # (B, S, A): W_k h_j, once per sentence
        allowed = ~padding[:, None, :]  # (B, 1, S)
        valid = (~padding).unsqueeze(-1).to(mem.dtype)
        s = torch.tanh(self.init_state((mem * valid).sum(1) / valid.sum(1).clamp(min=1)))  # (B, H)
        embedded = self.dropout(self.embedding(tgt_in))  # (B, T, E)
        scorer = lambda q, k: additive_scores(q, k, self.query.weight, None, self.score)  # noqa: E731
        outputs = []
        for t in range(tgt_in.shape[1]):
            e = embedded[:, t]
            context, alpha = attention(s[:, None].to(keys.dtype), keys, mem, mask=allowed, score=scorer)
            context = context[:, 0]  # (B, 2H)
            if weights is not None:
                weights.append(alpha[:, 0].detach())
            s = self.cell(torch.cat([e, context], dim=-1), s)
            outputs.append(torch.cat([s, context, e], dim=-1))
        return self.output(self.dropout(torch.stack(outputs, dim=1)))  # (B, T, V)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(src), tgt_in)


@register_model(task="seq2seq", paper="Bahdanau, Cho & Bengio 2015")
def seq2seq_attn(*, vocab_size: int, embedding_dim: int = 256, hidden_size: int = 256, attention_size: int = 256,
                 num_layers: int = 1, dropout: float = 0.1, max_len: int = 128, pad_id: int = 0) -> Seq2SeqAttention:
    """The RNN encoder–decoder with additive attention (T1): a bidirectional GRU encoder, a GRU decoder."""
    return Seq2SeqAttention(vocab_size, embedding_dim, hidden_size, attention_size, num_layers, dropout, max_len,
                            pad_id)
