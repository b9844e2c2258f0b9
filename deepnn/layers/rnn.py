"""Recurrent cells from scratch: lecture items R2, R4, R5 and R6.

Each cell subclasses its ``torch.nn`` twin and only replaces ``forward`` (the pattern of
:mod:`deepnn.layers.conv`): constructor arguments, parameter names (``weight_ih``, ``weight_hh``,
``bias_ih``, ``bias_hh``), initialisation (and the random numbers it draws) and state-dict keys
are PyTorch's, so weights move freely between our cells and ``nn.RNNCell`` / ``nn.LSTMCell`` /
``nn.GRUCell``, and into a one-layer ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (the same keys with an
``_l0`` suffix). ``tests/test_rnn.py`` checks values and gradients against all six.

The sequence layers :class:`RNN`, :class:`LSTM`, :class:`GRU` subclass ``nn.RNN`` / ``nn.LSTM`` /
``nn.GRU`` the same way (``num_layers``, ``dropout`` between layers, ``bidirectional``; keys
``weight_ih_l{k}[_reverse]``), batch first by default. ``impl="fused"`` runs PyTorch's own kernels
(cuDNN, oneDNN); ``impl="scratch"`` runs the same equations as the cells, written out here: per layer
and direction one matmul projects the inputs of all time steps, then each step adds only
``W_hh h_{t-1}`` and applies the gates (:func:`_lstm_update`, :func:`_gru_update`, shared with the cells).
The scratch LSTM also writes out its backward pass, backpropagation through time (:class:`_LSTMThroughTime`);
the scratch RNN and GRU leave theirs to autograd.

The lecture writes ``W_hx x_t + W_hh h_{t-1} + b_h``; PyTorch calls ``W_hx`` ``weight_ih`` and
splits ``b_h`` into ``bias_ih + bias_hh`` (one more vector of parameters, the same function).
Gated cells stack the weights of all their gates in one matrix, in PyTorch's row order:
LSTM ``(i, f, g, o)``, GRU ``(r, z, n)``.

====  ==================================================  ============================================
item  concept                                             code
====  ==================================================  ============================================
R2    ``h_t = tanh(W_hx x_t + W_hh h_{t-1} + b_h)``       :class:`RNNCell`, :func:`unroll`, :class:`RNN`
R4    ``∂h_t/∂h_0`` vanishes or explodes                  :func:`hidden_jacobian_norms`, :func:`power_example`
R5    LSTM; LSTM with peepholes                           :class:`LSTMCell`, :class:`PeepholeLSTMCell`, :class:`LSTM`
R6    GRU                                                 :class:`GRUCell`, :class:`GRU`
--    stacked and bidirectional layers                    :class:`RNN`, :class:`LSTM`, :class:`GRU`
====  ==================================================  ============================================

Shapes: ``B`` batch, ``I`` input size, ``H`` hidden size, ``T`` time steps. Cells take one time
step, ``x_t`` ``(B, I)`` and the state ``(B, H)`` (or unbatched ``(I,)`` and ``(H,)``, as in PyTorch);
:func:`unroll` runs a cell over ``(T, B, I)``.

    >>> cell = LSTMCell(3, 5)
    >>> outputs, (h, c) = unroll(cell, torch.zeros(7, 2, 3))
    >>> outputs.shape, h.shape, c.shape
    (torch.Size([7, 2, 5]), torch.Size([2, 5]), torch.Size([2, 5]))
    >>> lstm = LSTM(3, 5, num_layers=2, bidirectional=True, impl="scratch")  # batch first
    >>> output, (h_n, c_n) = lstm(torch.zeros(2, 7, 3))
    >>> output.shape, h_n.shape
    (torch.Size([2, 7, 10]), torch.Size([4, 2, 5]))
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # h, or (h, c) for an LSTM
NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


def _lstm_update(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step from the gates' pre-activations ``[x; h]`` ``(B, 4H)`` (order ``i, f, g, o``) and
    ``c_{t-1}`` ``(B, H)``: returns ``(h_t, c_t)``. The equations are :class:`LSTMCell`'s.

    ``i``, ``f`` and ``o`` take one sigmoid over all four gates (the ``g`` quarter is computed and
    unused): one kernel instead of three, faster for the small per-step tensors of a sequence layer.
    """
    i, f, _, o = torch.sigmoid(gates).chunk(4, dim=-1)  # (B, H) each
    g = torch.tanh(gates[..., 2 * c.shape[-1]: 3 * c.shape[-1]])
    c = f * c + i * g
    h = o * torch.tanh(c)
    return h, c


def _gru_update(x_proj: torch.Tensor, h_proj: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """One GRU step from ``W_i· x_t + b_i·`` and ``W_h· h_{t-1} + b_h·`` (``(B, 3H)`` each, order
    ``r, z, n``) and ``h_{t-1}`` ``(B, H)``: returns ``h_t``. The equations are :class:`GRUCell`'s;
    ``(1 − z) ⊙ n + z ⊙ h`` is computed as ``n + z ⊙ (h − n)``, one operation fewer."""
    hidden = h.shape[-1]
    r, z = torch.sigmoid(x_proj[..., : 2 * hidden] + h_proj[..., : 2 * hidden]).chunk(2, dim=-1)
    n = torch.tanh(x_proj[..., 2 * hidden:] + r * h_proj[..., 2 * hidden:])
    return n + z * (h - n)


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
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The pre-activations ``[x; h]`` of the gates ``i, f, g, o``, stacked ``(B, 4H)``, ``c_{t-1}``
        and whether the input was unbatched."""
        x, (h, c), unbatched = _prepare(self, input, (None, None) if hx is None else hx)
        gates = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)  # (B, 4H)
        return gates, c, unbatched

    def forward(
        self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        gates, c, unbatched = self._gate_inputs(input, hx)
        h, c = _lstm_update(gates, c)
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
        gates, c, unbatched = self._gate_inputs(input, hx)
        i, f, g, o = gates.chunk(4, dim=-1)
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
        h = _gru_update(F.linear(x, self.weight_ih, self.bias_ih), F.linear(h, self.weight_hh, self.bias_hh), h)
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


# ---- sequence layers: stacked, bidirectional, fused or from scratch ------------------------------------

IMPLS = ("fused", "scratch")


def detach_state(state: Any) -> Any:
    """A recurrent state cut from its autograd graph, for truncated backpropagation through time.

    A training loop that carries the state from one batch to the next (the batches being consecutive
    pieces of one long text) detaches it between them: the values flow on, the gradient stops at the
    batch boundary. Accepts ``None``, a tensor, or a tuple / list of them (an LSTM's ``(h, c)``), nested.
    """
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    raise UserError(f"detach_state takes None, a tensor or a tuple of tensors, got {type(state).__name__}")


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The lower-precision dtype autocast uses on ``device`` right now, ``None`` outside autocast."""
    kind = device.type
    try:
        if torch.is_autocast_enabled(kind):
            return torch.get_autocast_dtype(kind)
    except (RuntimeError, TypeError):  # a device type autocast does not know
        return None
    return None


class _SequenceLayer:
    """What :class:`RNN`, :class:`LSTM` and :class:`GRU` share (a mixin before ``nn.RNNBase``).

    ``forward`` dispatches on ``impl``; the from-scratch forward loops over layers and directions,
    each subclass providing :meth:`_run_direction`, the time loop of one layer in one direction.
    """

    impl: str
    _n_states = 1  # h; (h, c) for the LSTM

    def _init_impl(self, impl: str) -> None:
        if impl not in IMPLS:
            raise UserError(f"unknown impl {impl!r} for {type(self).__name__}; choose one of {', '.join(IMPLS)}")
        self.impl = impl

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, impl={self.impl!r}"  # type: ignore[misc]

    def forward(self, input: Any, hx: Any = None) -> tuple[torch.Tensor, Any]:
        if self.impl == "fused":
            return super().forward(input, hx)  # type: ignore[misc]  # PyTorch's kernels
        if self.impl == "scratch":
            return self._scratch_forward(input, hx)
        raise UserError(f"unknown impl {self.impl!r} for {type(self).__name__}; choose one of {', '.join(IMPLS)}")

    # -- the from-scratch forward --

    def _check(self, input: torch.Tensor, hx: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, bool]:
        """Validate; return the input time first ``(T, B, I)``, the initial states batched
        ``(L·D, B, H)`` each (``None``: zeros), and whether the input was unbatched."""
        name = type(self).__name__
        if not isinstance(input, torch.Tensor):
            raise UserError(f"{name}(impl='scratch') takes a tensor; use impl='fused' for a PackedSequence")
        if input.ndim not in (2, 3) or input.shape[-1] != self.input_size or input.numel() == 0:
            layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
            raise UserError(f"{name} takes a non-empty sequence of shape {layout} or (T, I) with I = "
                            f"{self.input_size}, got {tuple(input.shape)}")
        unbatched = input.ndim == 2
        x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)
        if hx is None:
            return x, None, unbatched
        states = tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)
        if len(states) != self._n_states or not all(isinstance(s, torch.Tensor) for s in states):
            what = "a tuple (h_0, c_0)" if self._n_states == 2 else "one tensor h_0"
            raise UserError(f"{name}'s initial state is {what}")
        layers = self.num_layers * (2 if self.bidirectional else 1)
        expected = (layers, self.hidden_size) if unbatched else (layers, x.shape[1], self.hidden_size)
        for s in states:
            if tuple(s.shape) != expected:
                raise UserError(f"{name}'s initial state must have shape {expected} (num_layers · directions, "
                                f"batch, hidden) for an input of shape {tuple(input.shape)}, got {tuple(s.shape)}")
        return x, tuple(s.unsqueeze(1) for s in states) if unbatched else states, unbatched

    def _scratch_forward(self, input: torch.Tensor, hx: Any) -> tuple[torch.Tensor, Any]:
        x, states, unbatched = self._check(input, hx)
        steps, batch = x.shape[:2]
        directions = 2 if self.bidirectional else 1
        cast = _autocast_dtype(x.device)
        finals: list[tuple[torch.Tensor, ...]] = []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                k = layer * directions + direction
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                w_ih, w_hh = getattr(self, "weight_ih" + suffix), getattr(self, "weight_hh" + suffix)
                b_ih = getattr(self, "bias_ih" + suffix) if self.bias else None
                b_hh = getattr(self, "bias_hh" + suffix) if self.bias else None
                if states is None:
                    zeros = torch.zeros(batch, self.hidden_size, dtype=x.dtype, device=x.device)
                    state = (zeros,) * self._n_states
                else:
                    state = tuple(s[k] for s in states)
                if cast is not None:  # cast W_hh once, not at every step (a view's cast is not cached)
                    w_hh = w_hh.to(cast)
                    b_hh = None if b_hh is None else b_hh.to(cast)
                out, final = self._run_direction(x, w_ih, w_hh, b_ih, b_hh, state, reverse=bool(direction))
                outputs.append(out)
                finals.append(final)
            x = outputs[0] if directions == 1 else torch.cat(outputs, dim=-1)  # (T, B, D·H)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)  # between layers, never after the last
        final_states = tuple(torch.stack([f[i] for f in finals]) for i in range(self._n_states))  # (L·D, B, H)
        if unbatched:
            x, final_states = x[:, 0], tuple(s[:, 0] for s in final_states)
        elif self.batch_first:
            x = x.transpose(0, 1)
        return x, (final_states if self._n_states == 2 else final_states[0])

    @staticmethod
    def _time_order(steps: int, reverse: bool) -> range:
        return range(steps - 1, -1, -1) if reverse else range(steps)

    def _run_direction(self, x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor | None,
                       b_hh: torch.Tensor | None, state: tuple[torch.Tensor, ...],
                       reverse: bool) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One layer in one direction over ``x`` ``(T, B, I_layer)``: the hidden states ``(T, B, H)`` in
        time order, and the final state (``(h_T,)`` or ``(h_T, c_T)``; ``h_1`` etc. when ``reverse``)."""
        raise NotImplementedError


def _stack_outputs(outputs: list[torch.Tensor], reverse: bool) -> torch.Tensor:
    """The per-step hidden states, collected in processing order, as ``(T, B, H)`` in time order."""
    return torch.stack(outputs[::-1] if reverse else outputs)


def _lstm_loop(x_steps: tuple[torch.Tensor, ...], w_hh_t: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
               order: range, gates_out: torch.Tensor | None = None, c_saved: list[torch.Tensor] | None = None,
               ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """The LSTM time loop of one layer and direction: per step ``gates = x_proj_t + h_{t-1} W_hh^T``
    (one ``addmm``) and :func:`_lstm_update`. Returns the hidden states in processing order and the final
    ``h``, ``c``. For the backward, writes each step's gates into ``gates_out`` ``(T, B, 4H)`` and appends
    ``c_{t-1}`` to ``c_saved`` when given.

    Under bf16 autocast the matmuls run in bf16 and the gate arithmetic in ``c``'s float32 (bf16
    ``sigmoid`` and ``tanh`` are slower on a CPU, and ``c`` sums over many steps): ``h`` is cast to the
    matmuls' dtype after each step. In float32 or float64 the casts do nothing.
    """
    outputs = []
    for s, t in enumerate(order):
        if gates_out is None:
            gates = torch.addmm(x_steps[t], h, w_hh_t).to(c.dtype)  # (B, 4H)
        elif gates_out.dtype == x_steps[t].dtype:
            gates = torch.addmm(x_steps[t], h, w_hh_t, out=gates_out[s])
        else:  # kept in c's dtype for the backward
            gates = gates_out[s].copy_(torch.addmm(x_steps[t], h, w_hh_t))
        if c_saved is not None:
            c_saved.append(c)
        h_dtype = h.dtype
        h, c = _lstm_update(gates, c)
        h = h.to(h_dtype)
        outputs.append(h)
    return outputs, h, c


class _LSTMThroughTime(torch.autograd.Function):
    """One LSTM layer and direction with backpropagation through time written out (Werbos 1990).

    Forward: :func:`_lstm_loop`, keeping each step's gate pre-activations and ``c_{t-1}``. Backward,
    from the last step to the first, with ``δh`` and ``δc`` the gradients arriving at ``h_t`` and ``c_t``
    (from the output at ``t`` and from step ``t + 1``)::

        δo = δh ⊙ tanh(c_t)                 δc += δh ⊙ o ⊙ (1 − tanh²(c_t))
        δi = δc ⊙ g     δf = δc ⊙ c_{t-1}    δg = δc ⊙ i
        δgates = [δi ⊙ i(1−i), δf ⊙ f(1−f), δg ⊙ (1−g²), δo ⊙ o(1−o)]      (σ' = σ(1−σ), tanh' = 1−tanh²)
        δc_{t-1} = δc ⊙ f                   δh_{t-1} = δgates W_hh

    and at the end ``∂L/∂W_hh = Σ_t δgates_tᵀ h_{t-1}`` in one matmul over all steps, ``∂L/∂x_proj_t =
    δgates_t``. The same numbers as autograd through :func:`_lstm_loop` (``tests/test_rnn.py`` checks
    them against ``nn.LSTM``), with one matmul per step in the backward instead of two and no per-step
    autograd bookkeeping: the scratch LSTM trains about twice as fast. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, x_proj, w_hh, h0, c0, reverse):  # type: ignore[override]
        steps, batch, _ = x_proj.shape
        with torch.autocast(x_proj.device.type, enabled=False):  # the dtypes are set by hand
            gates = c0.new_empty(steps, batch, w_hh.shape[0])  # (T, B, 4H), processing order, c's dtype
            c_saved: list[torch.Tensor] = []
            order = _SequenceLayer._time_order(steps, reverse)
            outputs, h, c = _lstm_loop(x_proj.unbind(0), w_hh.t(), h0.to(x_proj.dtype), c0, order, gates, c_saved)
        ctx.save_for_backward(gates, torch.stack(c_saved), torch.stack(outputs), h0.to(x_proj.dtype), c, w_hh)
        ctx.reverse, ctx.h0_dtype, ctx.x_dtype = reverse, h0.dtype, x_proj.dtype
        return _stack_outputs(outputs, reverse), h, c

    @staticmethod
    def backward(ctx, d_out, d_h, d_c):  # type: ignore[override]
        gates, c_prev, hs, h0, c_last, w_hh = ctx.saved_tensors  # (T, B, 4H), (T, B, H) ... processing order
        steps, hidden = gates.shape[0], c_prev.shape[-1]
        dtype = c_last.dtype  # the gate arithmetic's (float32 under bf16 autocast)
        if d_out is not None and ctx.reverse:
            d_out = d_out.flip(0)  # to processing order
        d_h = hs.new_zeros(hs.shape[1:], dtype=dtype) if d_h is None else d_h.to(dtype)
        d_c = torch.zeros_like(c_last) if d_c is None else d_c
        d_gates = gates.new_empty(gates.shape, dtype=w_hh.dtype)  # (T, B, 4H), the matmuls' dtype (bf16 in autocast)
        for s in range(steps - 1, -1, -1):
            sig = torch.sigmoid(gates[s])
            i, f, _, o = sig.chunk(4, dim=-1)
            g = torch.tanh(gates[s, :, 2 * hidden: 3 * hidden])
            tanh_c = torch.tanh(c_prev[s + 1] if s + 1 < steps else c_last)
            if d_out is not None:
                d_h = d_h + d_out[s]
            d_c = torch.addcmul(d_c, d_h * o, 1 - tanh_c * tanh_c)
            buf = d_gates[s]
            torch.mul(d_c, g, out=buf[:, :hidden])  # δi
            torch.mul(d_c, c_prev[s], out=buf[:, hidden: 2 * hidden])  # δf
            torch.mul(d_h, tanh_c, out=buf[:, 3 * hidden:])  # δo
            buf.mul_(sig - sig * sig)  # σ' for i, f, o (the g quarter is overwritten next)
            torch.mul(d_c * i, 1 - g * g, out=buf[:, 2 * hidden: 3 * hidden])  # δg ⊙ tanh'
            d_c = d_c * f
            d_h = torch.mm(buf, w_hh)  # (B, H); mixed with float32 above, the arithmetic promotes
        h_prev = torch.cat([h0[None], hs[:-1]])  # (T, B, H), h_{t-1} of each step
        d_w_hh = d_gates.flatten(0, 1).t() @ h_prev.flatten(0, 1)  # (4H, H), all steps in one matmul
        d_x_proj = d_gates.flip(0) if ctx.reverse else d_gates
        return d_x_proj.to(ctx.x_dtype), d_w_hh, d_h.to(ctx.h0_dtype), d_c, None

class RNN(_SequenceLayer, nn.RNN):
    """Stacked Elman RNN (Elman 1990, "Finding structure in time"), lecture item R2, optionally
    bidirectional (Schuster & Paliwal 1997, "Bidirectional recurrent neural networks").

    Layer ``l`` runs :class:`RNNCell`'s equation ``h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``
    over the outputs of layer ``l − 1`` (layer 0: the input); a bidirectional layer also runs a second
    cell (``*_reverse`` weights) from ``t = T`` down to 1 and concatenates both hidden states.
    ``dropout`` is applied, in training only, to the outputs of every layer but the last (PyTorch's rule).

    Same constructor, parameters (``weight_ih_l{k}[_reverse]``, ...), initialisation and state dict as
    ``torch.nn.RNN``, except ``batch_first=True`` by default and the keyword ``impl``: ``"fused"``
    (default) runs PyTorch's kernels, ``"scratch"`` our written-out loop (the input projection
    ``x W_ih^T + b`` of all steps in one matmul, then ``W_hh h_{t-1}`` and ``φ`` per step).

    Shapes (``L`` layers, ``D`` = 2 if bidirectional else 1): input ``(B, T, I)`` (``(T, B, I)`` with
    ``batch_first=False``, or unbatched ``(T, I)``), ``h_0`` ``(L·D, B, H)`` (``None``: zeros) →
    ``output`` ``(B, T, D·H)``, the last layer's hidden states, and ``h_n`` ``(L·D, B, H)``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False,
                 device: Any = None, dtype: Any = None, *, impl: str = "fused") -> None:
        if nonlinearity not in NONLINEARITIES:
            raise UserError(f"unknown nonlinearity {nonlinearity!r} for RNN; choose 'tanh' or 'relu'")
        super().__init__(input_size, hidden_size, num_layers, nonlinearity=nonlinearity, bias=bias,
                         batch_first=batch_first, dropout=dropout, bidirectional=bidirectional,
                         device=device, dtype=dtype)
        self._init_impl(impl)

    def _run_direction(self, x, w_ih, w_hh, b_ih, b_hh, state, reverse):  # noqa: D102 - see the base class
        bias = b_ih if b_hh is None else (b_hh if b_ih is None else b_ih + b_hh)
        x_proj = F.linear(x, w_ih, bias)  # (T, B, H): W_ih x_t + b_ih + b_hh for every t at once
        phi, w_hh_t = NONLINEARITIES[self.nonlinearity], w_hh.t()
        x_steps = x_proj.unbind(0)  # one autograd node (x_proj[t] gives each step's gradient a full-size zero tensor)
        (h,) = state
        outputs = []
        for t in self._time_order(x.shape[0], reverse):
            h = phi(torch.addmm(x_steps[t], h, w_hh_t))  # (B, H)
            outputs.append(h)
        return _stack_outputs(outputs, reverse), (h,)


class LSTM(_SequenceLayer, nn.LSTM):
    """Stacked LSTM (Hochreiter & Schmidhuber 1997, "Long short-term memory", with Gers et al.'s 2000
    forget gate), lecture item R5, optionally bidirectional (Schuster & Paliwal 1997).

    Each layer and direction runs :class:`LSTMCell`'s equations (gates ``i, f, g, o``;
    ``c_t = f ⊙ c_{t-1} + i ⊙ g``, ``h_t = o ⊙ tanh(c_t)``) over the previous layer's outputs;
    ``dropout`` between layers in training, as PyTorch. Same constructor, parameters, initialisation
    and state dict as ``torch.nn.LSTM`` (``proj_size`` must stay 0), except ``batch_first=True`` by
    default and ``impl``: ``"fused"`` (default, PyTorch's kernels) or ``"scratch"`` (one matmul for the
    input projections ``x W_ih^T + b_ih + b_hh`` of all steps, then per step ``addmm`` of
    ``h_{t-1} W_hh^T`` and :func:`_lstm_update`; when gradients are needed, backpropagation through
    time is written out too, :class:`_LSTMThroughTime`).

    Shapes: input ``(B, T, I)`` (``(T, B, I)`` with ``batch_first=False``; unbatched ``(T, I)``),
    state ``(h_0, c_0)`` ``(L·D, B, H)`` each (``None``: zeros) → ``output`` ``(B, T, D·H)`` and
    ``(h_n, c_n)`` ``(L·D, B, H)`` each.
    """

    _n_states = 2

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: Any = None, dtype: Any = None, *, impl: str = "fused") -> None:
        if proj_size:
            raise UserError(f"LSTM does not support proj_size (got {proj_size}); leave it at 0 or use torch.nn.LSTM")
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                         dropout=dropout, bidirectional=bidirectional, device=device, dtype=dtype)
        self._init_impl(impl)

    def _run_direction(self, x, w_ih, w_hh, b_ih, b_hh, state, reverse):  # noqa: D102
        bias = b_ih if b_hh is None else (b_hh if b_ih is None else b_ih + b_hh)
        x_proj = F.linear(x, w_ih, bias)  # (T, B, 4H), the input half of the gates' [x; h] for every t
        h, c = state
        if torch.is_grad_enabled() and any(t.requires_grad for t in (x_proj, w_hh, h, c)):
            output, h, c = _LSTMThroughTime.apply(x_proj, w_hh, h, c, reverse)  # BPTT written out
            return output, (h, c)
        outputs, h, c = _lstm_loop(x_proj.unbind(0), w_hh.t(), h.to(x_proj.dtype), c,
                                   self._time_order(x.shape[0], reverse))
        return _stack_outputs(outputs, reverse), (h, c)


class GRU(_SequenceLayer, nn.GRU):
    """Stacked GRU (Cho et al. 2014, "Learning phrase representations using RNN encoder-decoder for
    statistical machine translation"), lecture item R6, optionally bidirectional (Schuster & Paliwal 1997).

    Each layer and direction runs :class:`GRUCell`'s equations (PyTorch's convention: the reset gate
    multiplies ``W_hn h + b_hn``) over the previous layer's outputs; ``dropout`` between layers in
    training. Same constructor, parameters, initialisation and state dict as ``torch.nn.GRU``, except
    ``batch_first=True`` by default and ``impl``: ``"fused"`` (default) or ``"scratch"`` (one matmul
    for ``x W_ih^T + b_ih`` of all steps, then per step ``h_{t-1} W_hh^T + b_hh`` and
    :func:`_gru_update`).

    Shapes: input ``(B, T, I)`` (``(T, B, I)`` with ``batch_first=False``; unbatched ``(T, I)``),
    ``h_0`` ``(L·D, B, H)`` (``None``: zeros) → ``output`` ``(B, T, D·H)`` and ``h_n`` ``(L·D, B, H)``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False,
                 device: Any = None, dtype: Any = None, *, impl: str = "fused") -> None:
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                         dropout=dropout, bidirectional=bidirectional, device=device, dtype=dtype)
        self._init_impl(impl)

    def _run_direction(self, x, w_ih, w_hh, b_ih, b_hh, state, reverse):  # noqa: D102
        x_proj = F.linear(x, w_ih, b_ih)  # (T, B, 3H) for every t at once
        w_hh_t, x_steps = w_hh.t(), x_proj.unbind(0)
        (h,) = state
        outputs = []
        for t in self._time_order(x.shape[0], reverse):
            h_proj = h @ w_hh_t if b_hh is None else torch.addmm(b_hh, h, w_hh_t)  # (B, 3H); r gates b_hn too
            h = _gru_update(x_steps[t], h_proj, h)
            outputs.append(h)
        return _stack_outputs(outputs, reverse), (h,)


def hidden_jacobian_norms(cell: nn.Module, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """Spectral norms ``‖∂h_t/∂h_0‖₂`` for ``t = 1 … T``: how much of a change in ``h_0`` survives ``t`` steps (R4).

    By the chain rule ``∂h_t/∂h_0 = ∏_{s=t..1} ∂h_s/∂h_{s-1}``, and for :class:`RNNCell`
    ``∂h_s/∂h_{s-1} = diag(tanh'(…)) W_hh``. Each factor is computed by autograd
    (:func:`deepnn.analysis.gradflow.step_jacobians`) and multiplied in; since ``|tanh'| ≤ 1``, the product's norm
    is at most ``σ_max(W_hh)^t``, which vanishes for ``σ_max < 1``, and near ``h = 0`` (``tanh' ≈ 1``)
    with ``W_hh`` a multiple of an orthogonal matrix it is ``σ^t`` and explodes for ``σ > 1``
    (Bengio, Simard & Frasconi 1994). The same product read from the other end, the gradient
    ``‖∂h_T/∂s_{T-k}‖₂`` reaching ``k`` steps back, for every cell including the LSTM's state ``(h, c)``:
    :func:`deepnn.analysis.gradflow.gradient_norms` (``deepnn gradflow`` plots it).

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
                        "Use an RNNCell or GRUCell, or deepnn.analysis.gradflow.gradient_norms, which follows both")
    if x.ndim != 2:
        raise UserError(f"hidden_jacobian_norms takes one sequence of shape (T, I), got {tuple(x.shape)}")
    from ..analysis.gradflow import step_jacobians  # the shared chain rule; imported here: analysis builds on layers

    steps = step_jacobians(cell, x[:, None], None if h0 is None else h0[None])[:, 0]  # ∂h_t/∂h_{t-1}, (T, H, H)
    jac = torch.eye(steps.shape[-1], dtype=steps.dtype, device=steps.device)  # ∂h_0/∂h_0
    norms = []
    for step in steps:
        jac = step @ jac  # ∂h_t/∂h_0
        norms.append(torch.linalg.matrix_norm(jac, ord=2))
    return torch.stack(norms)


def power_example(steps: int = 1000) -> dict[float, float]:
    """The lecture's toy for R4: a factor multiplied in ``steps`` times, ``base ** steps``.

    A gradient through ``t`` steps is a product of ``t`` factors; slightly above 1 it explodes,
    slightly below 1 it vanishes (Bengio, Simard & Frasconi 1994). ``deepnn gradflow`` prints these
    next to the real products of recurrent cells (:mod:`deepnn.analysis.gradflow`).

        >>> {base: f"{value:.5g}" for base, value in power_example().items()}
        {1.0: '1', 1.01: '20959', 0.99: '4.3171e-05', 0.01: '0'}

    ``0.01 ** 1000`` is ``1e-2000``, far below the smallest float64 (about ``5e-324``): it underflows to 0.
    """
    return {base: base**steps for base in (1.0, 1.01, 0.99, 0.01)}
