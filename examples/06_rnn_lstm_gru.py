"""Recurrent cells written out (R2, R5, R6) and gradients through time (R4).

1. Our RNN, LSTM and GRU cells (``deepnn.layers``) hold PyTorch's weights (same names, same state
   dict): unrolled over a sequence they give what ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` give.
2. R4's toy powers: a factor applied 1000 times, 1.01^1000 ≈ 20959, 0.99^1000 ≈ 4.3e-5.
3. The real thing: ‖∂h_T/∂s_(T−k)‖₂, the largest gradient that reaches k steps back, for each cell at
   PyTorch's initialisation (``deepnn.analysis.gradflow``), then a tanh RNN with W_hh = σ · orthogonal,
   and gradient clipping.

Run:  python examples/06_rnn_lstm_gru.py
"""

from __future__ import annotations

import torch
from torch import nn

from deepnn.analysis.gradflow import clipping_demo, default_cells, flow_table, gradient_flow
from deepnn.layers import GRUCell, LSTMCell, RNNCell, hidden_jacobian_norms, power_example, unroll


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    T, B, I, H = 7, 2, 3, 5
    x = torch.randn(T, B, I, dtype=torch.float64)
    print(f"R2/R5/R6 our cells vs PyTorch's layers, same weights; x is (T, B, I) = {tuple(x.shape)}, H = {H}")
    pairs = [(RNNCell(I, H), nn.RNN(I, H)), (LSTMCell(I, H), nn.LSTM(I, H)), (GRUCell(I, H), nn.GRU(I, H))]
    for cell, layer in pairs:
        cell, layer = cell.double(), layer.double()
        layer.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})  # weight_ih -> weight_ih_l0
        ours, _ = unroll(cell, x)  # (T, B, H)
        theirs, _ = layer(x)
        weights = ", ".join(f"{k} {tuple(v.shape)}" for k, v in cell.state_dict().items())
        print(f"    {type(cell).__name__:<9} output {tuple(ours.shape)}, largest difference "
              f"{(ours - theirs).abs().max().item():.1e}; {weights}")
    print("    (LSTM and GRU stack their gates' rows: 4H = 20 rows (i, f, g, o), 3H = 15 rows (r, z, n))")

    print("\nR4  the toy: one factor applied 1000 times")
    for base, value in power_example(1000).items():
        print(f"    {base:g}^1000 = {value:.6g}")

    print("\nR4  ‖∂h_T/∂s_(T−k)‖₂ for the cells at PyTorch's initialisation (I = 32, H = 64, T = 100, "
          "mean of 8 random sequences),\n    and an LSTM / GRU whose forget / update gate bias is +3 (gate open: "
          "the memory is copied forward, the error flows back)")
    cells = default_cells(input_size=32, hidden_size=64, seed=0, gate_bias=3.0)
    print(flow_table(gradient_flow(cells, steps=100, input_size=32, batch=8, seed=0)))

    print("\nR4  tanh RNN, W_hh = σ · orthogonal, ‖∂h_t/∂h_0‖₂ at t = 1, 10, 20 "
          "(tiny inputs keep tanh' ≈ 1, so the norm is σ^t; inputs of size 1 saturate tanh)")
    xs = torch.randn(20, 2)
    for scale in (1e-6, 1.0):
        row = []
        for sigma in (0.5, 1.0, 1.5):
            torch.manual_seed(0)
            cell = RNNCell(2, 8, bias=False)
            nn.init.orthogonal_(cell.weight_hh, gain=sigma)
            norms = hidden_jacobian_norms(cell, scale * xs)
            row.append(f"σ={sigma:g}: " + " ".join(f"{norms[t].item():.3g}" for t in (0, 9, 19)))
        print(f"    x ~ {scale:g}:  " + "   ".join(row))

    print()
    for line in clipping_demo(steps=50, scale=1.5).lines():
        print("    " + line)


if __name__ == "__main__":
    main()
