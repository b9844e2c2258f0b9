"""Attention and the Transformer (T2–T5): weights you can read, layers checked against PyTorch, and
a tiny encoder-decoder that learns to reverse digit strings.

1. T2 self-attention on three 2-d inputs a¹, a², a³ with fixed W^q, W^k, W^v: the scores α (scaled dot
   product, then additive), the weights α' = softmax(α) and the outputs b = Σ α' v.
2. T4's mask: causal self-attention, weights 0 above the diagonal.
3. T3/T4 our multi-head attention, encoder layer and decoder layer hold PyTorch's weights and give
   PyTorch's outputs.
4. T4/T5 a one-layer encoder-decoder trained with teacher forcing (gold previous tokens as the
   decoder's input) to reverse 8 digits, then decoded greedily from its own predictions, stopping at
   the end token; the gap between the two accuracies is exposure bias.

Run:  python examples/08_attention_transformer.py [--steps 160]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from deepnn.layers import (
    MultiHeadAttention,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
    additive_scores,
    attention,
    causal_mask,
    greedy_decode,
    shift_right,
    teacher_forcing_logits,
)

PAD, START, END, DIGIT0 = 0, 1, 2, 3  # token ids; digits d are DIGIT0 + d
VOCAB, LENGTH = DIGIT0 + 10, 8


def fmt(t: torch.Tensor) -> str:
    return str([[round(v, 2) for v in row] for row in t.tolist()])


def self_attention_by_hand() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # three inputs a¹, a², a³ (rows), d = 2
    W_q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    W_k = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    W_v = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    q, k, v = a @ W_q.T, a @ W_k.T, a @ W_v.T  # q^i = W^q a^i, one row per input
    print("T2  self-attention by hand: a¹ = [1, 0], a² = [0, 1], a³ = [1, 1]")
    print(f"    q = {fmt(q)}  k = {fmt(k)}  v = {fmt(v)}")
    b, w = attention(q, k, v)  # scaled dot product: α_ij = q^i · k^j / √2
    print(f"    dot-product scores α = q·k/√d  {fmt(q @ k.T / 2 ** 0.5)}")
    print(f"    weights α' = softmax(α)        {fmt(w)}  (rows sum to 1)")
    print(f"    outputs b = Σ α' v             {fmt(b)}")
    torch.manual_seed(0)
    w_q, w_k, w_v = torch.randn(4, 2), torch.randn(4, 2), torch.randn(4)
    b_add, w_add = attention(q, k, v, score=lambda q, k: additive_scores(q, k, w_q, w_k, w_v))
    print(f"    additive scores vᵀ tanh(W_q q + W_k k), random W (h = 4): α' = {fmt(w_add)}")

    print("\nT4  masked (causal) self-attention, 4 positions: position i sees j ≤ i")
    q, k, v = torch.randn(3, 4, 8).unbind(0)
    _, w = attention(q, k, v, mask=causal_mask(4))
    for i, row in enumerate(w.tolist()):
        print(f"    query {i}: " + "  ".join(f"{x:.3f}" for x in row))


def layers_vs_torch() -> None:
    torch.manual_seed(0)
    x, memory = torch.randn(2, 5, 8), torch.randn(2, 7, 8)  # (B, T, d_model), (B, S, d_model)
    ours = MultiHeadAttention(8, num_heads=2)
    theirs = nn.MultiheadAttention(8, 2, batch_first=True)
    theirs.load_state_dict(ours.state_dict())
    (a, wa), (b, wb) = ours(x, x, x, is_causal=True), theirs(x, x, x, attn_mask=~causal_mask(5))
    print(f"\nT3  multi-head attention (2 heads, causal) vs nn.MultiheadAttention: output {tuple(a.shape)}, "
          f"weights {tuple(wa.shape)}, largest differences {(a - b).abs().max().item():.1e}, "
          f"{(wa - wb).abs().max().item():.1e}")
    enc = TransformerEncoderLayer(8, nhead=2, dim_feedforward=16, dropout=0.0)
    enc_t = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    enc_t.load_state_dict(enc.state_dict())
    dec = TransformerDecoderLayer(8, nhead=2, dim_feedforward=16, dropout=0.0)
    dec_t = nn.TransformerDecoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    dec_t.load_state_dict(dec.state_dict())
    d_enc = (enc(memory) - enc_t(memory)).abs().max().item()
    d_dec = (dec(x, memory, tgt_is_causal=True)
             - dec_t(x, memory, tgt_mask=~causal_mask(5), tgt_is_causal=True)).abs().max().item()
    print(f"T4  encoder layer vs PyTorch's: {d_enc:.1e}; decoder layer (masked self-attention + cross-attention) "
          f"vs PyTorch's: {d_dec:.1e}")


class Reverser(nn.Module):
    """Embedding + learned positions → one encoder layer (memory); one decoder layer → logits."""

    def __init__(self, d: int = 64) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(VOCAB, d), nn.Embedding(LENGTH + 2, d)
        self.encoder = TransformerEncoderLayer(d, nhead=4, dim_feedforward=2 * d, dropout=0.0)
        self.decoder = TransformerDecoderLayer(d, nhead=4, dim_feedforward=2 * d, dropout=0.0)
        self.head = nn.Linear(d, VOCAB)

    def inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed(tokens) + self.pos(torch.arange(tokens.shape[1]))  # (B, T, d)

    def encode(self, src: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.inputs(src))  # (B, S, d)

    def decode_step(self, memory: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.inputs(ys), memory, tgt_is_causal=True))  # (B, t, V)


def batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.randint(DIGIT0, VOCAB, (n, LENGTH), generator=generator)
    tgt = torch.cat([src.flip(1), torch.full((n, 1), END)], dim=1)  # reversed digits, then the end token
    return src, tgt


def text(tokens: torch.Tensor) -> str:
    return "".join(str(t - DIGIT0) if t >= DIGIT0 else {END: "⟨end⟩", PAD: "·", START: "⟨s⟩"}[t]
                   for t in tokens.tolist())


def evaluate(model: Reverser, src: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, float, float, float]:
    """Greedy outputs (padded to the target's length) and the accuracies: teacher-forced per token,
    free-running per token, free-running whole strings."""
    model.eval()
    with torch.no_grad():
        memory = model.encode(src)
        forced = teacher_forcing_logits(model.decode_step, memory, tgt, START).argmax(-1)  # gold prefixes
        free = greedy_decode(model.decode_step, memory, START, END, max_len=LENGTH + 2)  # its own prefixes
    model.train()
    free = F.pad(free, (0, tgt.shape[1] + 1 - free.shape[1]), value=PAD)[:, : tgt.shape[1]]
    right = free == tgt
    return free, (forced == tgt).float().mean().item(), right.float().mean().item(), right.all(1).float().mean().item()


def reverse_digits(steps: int) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = Reverser()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    src, tgt = batch(1, gen)
    print(f"\nT5  teacher forcing: target {text(tgt[0])}, decoder input = target shifted right "
          f"{text(shift_right(tgt, START)[0])}")
    print(f"T4  a 1-layer encoder-decoder (d = 64, 4 heads) learns to reverse {LENGTH} digits (batch 64); "
          "on 1,000 new strings:")
    print("    step    loss   token acc. teacher-forced   token acc. greedy (own prefixes)   strings right")
    test_src, test_tgt = batch(1000, torch.Generator().manual_seed(1))
    report_at = {steps // 16, steps // 8, steps // 4, steps // 2, steps}
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        src, tgt = batch(64, gen)
        logits = teacher_forcing_logits(model.decode_step, model.encode(src), tgt, START)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in report_at:
            _, forced, free, whole = evaluate(model, test_src, test_tgt)
            print(f"    {step:4d}  {loss.item():.4f}   {forced:26.4f}   {free:32.4f}   {whole:13.4f}")
    free, *_ = evaluate(model, test_src, test_tgt)
    print(f"    ({time.perf_counter() - t0:.1f} s; a gap between the two token accuracies is exposure bias: "
          "trained on gold prefixes only,\n     the decoder never learnt to recover from a wrong token of its own)")
    print("    greedy decoding, each string stops at ⟨end⟩:")
    for i in range(3):
        print(f"    {text(test_src[i])} -> {text(free[i])}")


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=160, help="training steps of the reverser (default 160)")
    args = p.parse_args()
    self_attention_by_hand()
    layers_vs_torch()
    reverse_digits(args.steps)


if __name__ == "__main__":
    main()
