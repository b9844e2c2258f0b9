"""Recurrent cells from scratch: lecture items R2, R4, R5 and R6.

Each cell subclasses its ``torch.nn`` twin and only replaces ``forward`` (the pattern of
:mod:`deepnn.layers.conv`): constructor arguments, parameter names (``weight_ih``, ``weight_hh``,
``bias_ih``, ``bias_hh``), initialisation (and the random numbers it draws) and state-dict keys
are PyTorch's, so weights move freely between our cells and ``nn.RNNCell`` / ``nn.LSTMCell`` /
``nn.GRUCell``, and into a one-layer ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (the same keys with an
``_l0`` suffix). ``tests/test_rnn.py`` checks values and gradients against all six.

The lecture writes ``W_hx x_t + W_hh h_{t-1} + b_h``; PyTorch calls ``W_hx`` ``weight_ih`` and
splits ``b_h`` into ``bias_ih + bias_hh`` (one more vector of parameters, the same function).
Gated cells stack the weights of all their gates in one matrix, in PyTorch's row order:
LSTM ``(i, f, g, o)``, GRU ``(r, z, n)``.

====  ==================================================  ============================================
item  concept                                             code
====  ==================================================  ============================================
R2    ``h_t = tanh(W_hx x_t + W_hh h_{t-1} + b_h)``       :class:`RNNCell`, :func:`unroll`
R4    ``∂h_t/∂h_0`` vanishes or explodes                  :func:`hidden_jacobian_norms`, :func:`power_example`
R5    LSTM; LSTM with peepholes                           :class:`LSTMCell`, :class:`PeepholeLSTMCell`
R6    GRU                                                 :class:`GRUCell`
====  ==================================================  ============================================

Shapes: ``B`` batch, ``I`` input size, ``H`` hidden size, ``T`` time steps. Cells take one time
step, ``x_t`` ``(B, I)`` and the state ``(B, H)`` (or unbatched ``(I,)`` and ``(H,)``, as in PyTorch);
:func:`unroll` runs a cell over ``(T, B, I)``.

    >>> cell = LSTMCell(3, 5)
    >>> outputs, (h, c) = unroll(cell, torch.zeros(7, 2, 3))
    >>> outputs.shape, h.shape, c.shape
    (torch.Size([7, 2, 5]), torch.Size([2, 5]), torch.Size([2, 5]))
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # h, or (h, c) for an LSTM
NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


def _prepare(
    cell: nn.RNNCellBase, x: torch.Tensor, states: tuple[torch.Tensor | None, ...]
) -> tuple[torch.Tensor, list[torch.Tensor], bool]:
    """Check one time step's input and state; return them batched, ``(B, I)`` and ``(B, H)`` each
    (zeros where a state is ``None``), and whether the input was unbatched."""
    name = type(cell).__name__
    if x.ndim not in (1, 2) or x.shape[-1] != cell.input_size:
        raise UserError(f"{name} takes one time step of shape (B, {cell.input_size}) or ({cell.input_size},), "
                        f"got {tuple(x.shape)}; use unroll(cell, x) for a whole (T, B, I) sequence")
    unbatched = x.ndim == 1
    xb = x.unsqueeze(0) if unbatched else x  # (B, I)
    batched_states = []
    for s in states:
        if s is None:
            s = torch.zeros(xb.shape[0], cell.hidden_size, dtype=x.dtype, device=x.device)
        elif s.shape != (*x.shape[:-1], cell.hidden_size):
            raise UserError(f"{name}'s state must have shape {(*x.shape[:-1], cell.hidden_size)} for an input of "
                            f"shape {tuple(x.shape)}, got {tuple(s.shape)}; pass None to start from zeros")
        elif unbatched:
            s = s.unsqueeze(0)
        batched_states.append(s)
    return xb, batched_states, unbatched


class RNNCell(nn.RNNCell):
    """Elman's recurrent cell (Elman 1990, "Finding structure in time"), lecture item R2.

    ``h_t = φ(W_hx x_t + W_hh h_{t-1} + b_h)`` with ``φ`` = ``tanh`` (default) or ``relu``; the
    lecture's output layer ``o_t = φ(W_ho h_t + b_o)`` is a dense layer on the hidden states.
    Same constructor, parameters and state dict as ``torch.nn.RNNCell``.

    Input ``x_t`` ``(B, I)`` and ``h_{t-1}`` ``(B, H)`` (``None``: zeros) → ``h_t`` ``(B, H)``;
    unbatched ``(I,)``, ``(H,)`` → ``(H,)``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.nonlinearity not in NONLINEARITIES:
            raise UserError(f"unknown nonlinearity {self.nonlinearity!r} for RNNCell; choose 'tanh' or 'relu'")

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        x, (h,), unbatched = _prepare(self, input, (hx,))
        pre = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)  # (B, H)
        h = NONLINEARITIES[self.nonlinearity](pre)
        return h[0] if unbatched else h


class LSTMCell(nn.LSTMCell):
    """Long short-term memory (Hochreiter & Schmidhuber 1997, "Long short-term memory"), lecture item R5,
    with the forget gate of Gers, Schmidhuber & Cummins 2000 ("Learning to forget"), as in PyTorch.

    With ``σ`` the logistic sigmoid and ``[x; h]`` standing for ``W_i· x_t + b_i· + W_h· h_{t-1} + b_h·``::

        i = σ([x; h]_i)        input gate: how much of the candidate to write
        f = σ([x; h]_f)        forget gate: how much of the old memory to keep
        g = tanh([x; h]_g)     candidate cell
        o = σ([x; h]_o)        output gate: how much of the memory to show
        c_t = f ⊙ c_{t-1} + i ⊙ g      memory cell: additive, so gradients flow through f (R4)
        h_t = o ⊙ tanh(c_t)

    Same constructor, parameters (gates stacked in the order ``i, f, g, o``) and state dict as
    ``torch.nn.LSTMCell``. State ``(h, c)``, each ``(B, H)`` (``None``: zeros) → ``(h_t, c_t)``.
    """

    def _gate_inputs(
        self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        """The pre-activations ``[x; h]`` of the gates ``i, f, g, o`` (``(B, H)`` each), ``c_{t-1}`` and
        whether the input was unbatched."""
        x, (h, c), unbatched = _prepare(self, input, (None, None) if hx is None else hx)
        gates = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=-1)
        return i, f, g, o, c, unbatched

    def forward(
        self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        i, f, g, o, c, unbatched = self._gate_inputs(input, hx)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        return (h[0], c[0]) if unbatched else (h, c)


class PeepholeLSTMCell(LSTMCell):
    """LSTM with peephole connections (Gers & Schmidhuber 2000, "Recurrent nets that time and count"), R5.

    The gates also look at the memory cell, elementwise: the input and forget gates at ``c_{t-1}``,
    the output gate at the new ``c_t``::

        i = σ([x; h]_i + w_ci ⊙ c_{t-1})
        f = σ([x; h]_f + w_cf ⊙ c_{t-1})
        c_t = f ⊙ c_{t-1} + i ⊙ tanh([x; h]_g)
        o = σ([x; h]_o + w_co ⊙ c_t)
        h_t = o ⊙ tanh(c_t)

    PyTorch has no twin. The LSTM weights are :class:`LSTMCell`'s (same names, same random init);
    the peephole weights ``weight_ci``, ``weight_cf``, ``weight_co`` ``(H,)`` start at zero, so a new
    cell computes exactly what an :class:`LSTMCell` with the same seed does until training moves them,
    and ``load_state_dict(lstm_cell.state_dict(), strict=False)`` turns an LSTM into one.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)
        self.weight_ci = nn.Parameter(torch.zeros(hidden_size, device=device, dtype=dtype))
        self.weight_cf = nn.Parameter(torch.zeros(hidden_size, device=device, dtype=dtype))
        self.weight_co = nn.Parameter(torch.zeros(hidden_size, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        super().reset_parameters()  # PyTorch's uniform init; during __init__ the peepholes do not exist yet
        for name in ("weight_ci", "weight_cf", "weight_co"):
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name))

    def forward(
        self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        i, f, g, o, c, unbatched = self._gate_inputs(input, hx)
        i = torch.sigmoid(i + self.weight_ci * c)  # c is still c_{t-1}
        f = torch.sigmoid(f + self.weight_cf * c)
        c = f * c + i * torch.tanh(g)
        o = torch.sigmoid(o + self.weight_co * c)  # the output gate sees the new c_t
        h = o * torch.tanh(c)
        return (h[0], c[0]) if unbatched else (h, c)


class GRUCell(nn.GRUCell):
    """Gated recurrent unit (Cho et al. 2014, "Learning phrase representations using RNN encoder-decoder
    for statistical machine translation"), lecture item R6: an LSTM without a separate memory cell.

    ::

        r = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)          reset gate: how much of h to use for n
        z = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)          update gate: how much of h to keep
        n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t-1} + b_hn))  candidate
        h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    PyTorch's (and cuDNN's) convention, followed here: ``r`` multiplies ``W_hn h + b_hn``, where
    Cho et al. put it inside, ``W_hn (r ⊙ h)``. Same constructor, parameters (order ``r, z, n``)
    and state dict as ``torch.nn.GRUCell``. ``(B, I)``, ``(B, H)`` → ``(B, H)``.
    """

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        x, (h,), unbatched = _prepare(self, input, (hx,))
        x_r, x_z, x_n = F.linear(x, self.weight_ih, self.bias_ih).chunk(3, dim=-1)  # (B, H) each
        h_r, h_z, h_n = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=-1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h = (1 - z) * n + z * h
        return h[0] if unbatched else h


def unroll(cell: nn.Module, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
    """Run a recurrent cell over a sequence, one time step after another (R2).

    Works with any cell called as ``cell(x_t, state) -> state`` (ours or PyTorch's); for an LSTM the
    state is ``(h, c)``. Equals a one-layer ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` with the cell's weights.

    Args:
        cell: e.g. :class:`RNNCell`, :class:`LSTMCell`, :class:`GRUCell`.
        x: ``(T, B, I)``, time first (PyTorch's default layout).
        state: the initial state, ``h_0`` ``(B, H)`` or ``(h_0, c_0)``; ``None``: zeros.

    Returns:
        ``outputs`` ``(T, B, H)``, the hidden state ``h_t`` of every step, and the final state
        (``h_T``, or ``(h_T, c_T)``).
    """
    if x.ndim != 3 or x.shape[0] == 0:
        raise UserError(f"unroll takes a sequence of shape (T, B, I) with T ≥ 1, got {tuple(x.shape)}; "
                        "add a batch axis with x.unsqueeze(1)")
    outputs = []
    for x_t in x:  # (B, I)
        state = cell(x_t, state)
        outputs.append(state[0] if isinstance(state, tuple) else state)
    return torch.stack(outputs), state


def hidden_jacobian_norms(cell: nn.Module, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """Spectral norms ``‖∂h_t/∂h_0‖₂`` for ``t = 1 … T``: how much of a change in ``h_0`` survives ``t`` steps (R4).

    By the chain rule ``∂h_t/∂h_0 = ∏_{s=t..1} ∂h_s/∂h_{s-1}``, and for :class:`RNNCell`
    ``∂h_s/∂h_{s-1} = diag(tanh'(…)) W_hh``. Each factor is computed by autograd
    (``torch.autograd.functional.jacobian``) and multiplied in; since ``|tanh'| ≤ 1``, the product's norm
    is at most ``σ_max(W_hh)^t``, which vanishes for ``σ_max < 1``, and near ``h = 0`` (``tanh' ≈ 1``)
    with ``W_hh`` a multiple of an orthogonal matrix it is ``σ^t`` and explodes for ``σ > 1``.

    Args:
        cell: a cell whose state is one tensor (:class:`RNNCell`, :class:`GRUCell`, or PyTorch's).
        x: one sequence, ``(T, I)``.
        h0: ``(H,)``; ``None``: zeros.

    Returns:
        ``(T,)``, entry ``t − 1`` is ``‖∂h_t/∂h_0‖₂``.

    Example (``W_hh = 0.5 · I``, zero input: ``h`` stays 0, so the norms are ``0.5^t``):
        >>> cell = RNNCell(1, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = cell.weight_hh.copy_(0.5 * torch.eye(2))
        >>> hidden_jacobian_norms(cell, torch.zeros(3, 1))
        tensor([0.5000, 0.2500, 0.1250])
    """
    if isinstance(cell, nn.LSTMCell):
        raise UserError("hidden_jacobian_norms follows a state that is one tensor h; an LSTM's state is (h, c). "
                        "Use an RNNCell or GRUCell")
    if x.ndim != 2:
        raise UserError(f"hidden_jacobian_norms takes one sequence of shape (T, I), got {tuple(x.shape)}")
    h = torch.zeros(cell.hidden_size, dtype=x.dtype, device=x.device) if h0 is None else h0.detach()
    jac = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)  # ∂h_0/∂h_0
    norms = []
    for x_t in x:  # (I,)
        step = torch.autograd.functional.jacobian(cell, (x_t, h))[1]  # ∂h_t/∂h_{t-1}, (H, H)
        jac = step @ jac  # ∂h_t/∂h_0
        norms.append(torch.linalg.matrix_norm(jac, ord=2))
        with torch.no_grad():
            h = cell(x_t, h)
    return torch.stack(norms)


def power_example(steps: int = 1000) -> dict[float, float]:
    """The lecture's toy for R4: a factor multiplied in ``steps`` times, ``base ** steps``.

    A gradient through ``t`` steps is a product of ``t`` factors; slightly above 1 it explodes,
    slightly below 1 it vanishes.

        >>> {base: f"{value:.5g}" for base, value in power_example().items()}
        {1.0: '1', 1.01: '20959', 0.99: '4.3171e-05', 0.01: '0'}

    ``0.01 ** 1000`` is ``1e-2000``, far below the smallest float64 (about ``5e-324``): it underflows to 0.
    """
    return {base: base**steps for base in (1.0, 1.01, 0.99, 0.01)}
