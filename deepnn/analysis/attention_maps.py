"""Attention maps of a trained translator: where each output token looked in the source (lecture T1, T2, T4).

:func:`cross_attention` translates a sentence, then runs the decoder once more, teacher-forced on its own
translation, keeping every cross-attention weight: per decoder layer and head for the Transformer
(``(h, T, S)`` each, from our :func:`~deepnn.layers.attention`), one map for the RNN with additive attention
(Bahdanau et al. 2015, whose figure 3 is such a map). :func:`plot_attention` draws them as heatmaps with
the sentencepiece pieces on the axes (``deepnn attention RUN "sentence" -o attn.png``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.pairs import BOS, EOS, PAD, Tokenizer
from ..errors import UserError
from ..layers.transformer import shift_right
from ..models.transformer import keep_attention_weights
from ..translation import decode_batch, encode_sources, pad_batch
from .gradflow import save_figure

__all__ = ["AttentionMaps", "cross_attention", "plot_attention"]


@dataclass
class AttentionMaps:
    """One sentence's cross-attention: ``maps`` holds ``(name, weights (heads, T, S))`` per layer, rows the
    output pieces (``target``, end token included), columns the source pieces (``source``, end token included)."""

    source: list[str]
    target: list[str]
    translation: str
    maps: list[tuple[str, torch.Tensor]]


def _pieces(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    return [tokenizer.piece(i) if i not in (EOS, PAD) else "</s>" for i in ids]


@torch.no_grad()
def cross_attention(model: nn.Module, tokenizer: Tokenizer, sentence: str, beam_size: int = 1) -> AttentionMaps:
    """Translate ``sentence`` and return the cross-attention weights behind each output token."""
    src_ids = encode_sources(model, tokenizer, [sentence])[0]
    src = pad_batch([src_ids])
    out = decode_batch(model, src, beam_size)[0].tolist()  # (L,), EOS then PAD
    out = out[: out.index(EOS) + 1] if EOS in out else out
    tgt = torch.tensor([out], dtype=torch.long)
    model.eval()
    if hasattr(model, "decoder") and isinstance(model.decoder, nn.ModuleList):  # the Transformer
        memory = model.encode(src)
        with keep_attention_weights(model.decoder) as layers:
            model.decode(memory, shift_right(tgt, BOS))
            maps = [(f"layer {name.split('.')[0]}", m.last_weights[0])
                    for name, m in layers if name.endswith("multihead_attn")]
    elif hasattr(model, "decode"):  # the RNN with additive attention: one map
        steps: list[torch.Tensor] = []
        model.decode(model.encode(src), shift_right(tgt, BOS), weights=steps)
        maps = [("additive attention", torch.stack([w[0] for w in steps])[None])]  # (1, T, S)
    else:
        raise UserError(f"{type(model).__name__} is not a sequence-to-sequence model; attention maps need a "
                        "translation run (transformer_mt, seq2seq_attn)")
    return AttentionMaps(_pieces(tokenizer, src_ids), _pieces(tokenizer, out), tokenizer.decode([out])[0], maps)


def plot_attention(maps: AttentionMaps, path: str | Path, heads: str = "all") -> Path:
    """Heatmaps, one row per layer and one column per head (``heads="mean"``: one column, the heads'
    average), source pieces along x, output pieces along y; saved as PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grids = [(name, w.float().mean(0, keepdim=True) if heads == "mean" else w.float()) for name, w in maps.maps]
    cols = max(g.shape[0] for _, g in grids)
    S, T = len(maps.source), len(maps.target)
    cell = 0.32
    fig, axes = plt.subplots(len(grids), cols, squeeze=False,
                             figsize=(max(4.5, cols * (S * cell + 1.2)), max(2.5, len(grids) * (T * cell + 1.0) + 0.4)))
    for r, (name, g) in enumerate(grids):
        for c in range(cols):
            ax = axes[r][c]
            if c >= g.shape[0]:
                ax.axis("off")
                continue
            ax.imshow(g[c].cpu().numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
            ax.set_xticks(range(S), maps.source, rotation=90, fontsize=7)
            ax.set_yticks(range(T), maps.target, fontsize=7)
            ax.set_title(f"{name}" + ("" if g.shape[0] == 1 else f", head {c}"), fontsize=8)
    fig.suptitle(f"cross-attention\n{maps.translation[:60]}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
