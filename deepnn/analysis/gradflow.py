"""Vanishing and exploding gradients through time, measured (lecture item R4).

Backpropagation through time multiplies one Jacobian per step: with ``s_t`` a recurrent cell's state
(``h_t``, or ``(h_t, c_t)`` for an LSTM) and ``J_t = ∂s_t/∂s_{t-1}``, the gradient that reaches ``k``
steps back is ``∂h_T/∂s_{T-k} = P_h J_T J_{T-1} ⋯ J_{T-k+1}`` (``P_h`` picks the ``h`` rows of the
state). A product of ``k`` factors whose gains sit below 1 vanishes geometrically, above 1 it explodes
(Bengio, Simard & Frasconi 1994, "Learning long-term dependencies with gradient descent is difficult";
Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent neural networks"). For a tanh
RNN ``J_t = diag(tanh'(…)) W_hh``, so ``‖∂h_T/∂h_{T-k}‖₂ ≤ σ_max(W_hh)^k``. The LSTM's memory cell is
additive, ``c_t = f ⊙ c_{t-1} + i ⊙ g``: along ``c`` the factor is ``diag(f)``, and with the forget
gate open (``f ≈ 1``) the error flows back almost unchanged, the "constant error carousel" (Hochreiter &
Schmidhuber 1997, "Long short-term memory"); a GRU's update gate does the same, ``h_t = (1 − z) ⊙ n +
z ⊙ h_{t-1}``.

What is measured (:func:`gradient_norms`), for a sequence of length ``T`` and ``k = 1 … T`` steps back::

    g_k = ‖∂h_T/∂s_{T-k}‖₂        the spectral norm of the full Jacobian, (H, D), D = the state's size

``g_k`` is the most any change of the state ``k`` steps before the end can move ``h_T``, per unit of
size; equivalently the largest gradient ``‖∂L/∂s_{T-k}‖`` over the losses ``L = ⟨u, h_T⟩`` with ``u`` a
unit vector. For an LSTM ``s = (h, c)`` (``D = 2H``): the gradient reaching the whole state, through both
the ``h`` and the ``c`` path (``part=0`` or ``part=1`` measure ``∂h_T/∂h_{T-k}`` or ``∂h_T/∂c_{T-k}``
alone). For a batch of sequences, ``g_k`` is the mean of the per-sequence norms.

The Jacobians come from autograd: :func:`step_jacobians` computes each ``J_t`` with one vectorised
vector-Jacobian product per state coordinate. :func:`deepnn.layers.hidden_jacobian_norms`
(``‖∂h_t/∂h_0‖₂``, the same product read from the other end) is built on it too.

    >>> from deepnn.layers import RNNCell
    >>> cell = RNNCell(1, 2, bias=False)
    >>> _ = torch.nn.init.orthogonal_(cell.weight_hh, gain=0.5)
    >>> gradient_norms(cell, torch.zeros(4, 1))  # zero input, h stays 0, tanh' = 1: 0.5^k
    tensor([0.5000, 0.2500, 0.1250, 0.0625])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..layers.rnn import GRUCell, LSTMCell, RNNCell, State, power_example

__all__ = [
    "STEPS_BACK", "ClippingDemo", "step_jacobians", "gradient_norms", "default_cells", "gradient_flow",
    "clipping_demo", "flow_table", "open_gates", "cell_from_layer", "plot_gradient_flow", "power_example",
]

STEPS_BACK = (1, 10, 25, 50, 100)  # the rows of flow_table


def _parts(state: State) -> tuple[torch.Tensor, ...]:
    return tuple(state) if isinstance(state, (tuple, list)) else (state,)


def _initial_state(cell: nn.Module, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, ...]:
    """The state's tensors, ``(B, H_i)`` each; ``None``: zeros shaped like what the cell returns."""
    if state is not None:
        return tuple(p.detach() for p in _parts(state))
    with torch.no_grad():
        return tuple(torch.zeros_like(p) for p in _parts(cell(x[0])))


def step_jacobians(cell: nn.Module, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
    """The one-step Jacobians ``J_t = ∂s_t/∂s_{t-1}`` along a batch of sequences, ``t = 1 … T``.

    ``s_t`` is the cell's whole state, its tensors concatenated: ``h_t`` (RNN, GRU) or ``[h_t; c_t]``
    (LSTM), ``D`` numbers per sequence. Sequences in a batch do not interact, so one vector-Jacobian
    product per state coordinate (vectorised with ``is_grads_batched``) gives every sequence's ``J_t``.

    Args:
        cell: any cell called as ``cell(x_t, state) -> state`` with ``x_t`` ``(B, I)``, the state a tensor
            ``(B, H)`` or a tuple of them (ours, PyTorch's, or a trained model's wrapped so).
        x: ``(T, B, I)``.
        state: the initial state, ``(B, H)`` or a tuple; ``None``: zeros.

    Returns:
        ``(T, B, D, D)``: entry ``[t − 1, b, i, j]`` is ``∂s_t[i]/∂s_{t-1}[j]`` of sequence ``b``.
    """
    if x.ndim != 3 or x.shape[0] == 0:
        raise UserError(f"step_jacobians takes sequences of shape (T, B, I) with T ≥ 1, got {tuple(x.shape)}")
    parts = _initial_state(cell, x, state)
    jacobians = []
    with torch.enable_grad():
        for x_t in x:  # (B, I)
            inputs = tuple(p.detach().requires_grad_() for p in parts)
            out = _parts(cell(x_t, inputs if len(inputs) > 1 else inputs[0]))
            flat = torch.cat(out, dim=-1)  # s_t, (B, D)
            d = flat.shape[-1]
            eye = torch.eye(d, dtype=flat.dtype, device=flat.device)
            try:  # all D rows at once: grad_outputs (D, B, D), e_i for every sequence
                rows = torch.autograd.grad(flat, inputs, eye[:, None].expand(d, *flat.shape),
                                           retain_graph=True, is_grads_batched=True, allow_unused=True)
            except RuntimeError:  # an op without a vmap rule (some fused kernels): one row at a time
                per_row = [torch.autograd.grad(flat, inputs, e.expand_as(flat), retain_graph=True, allow_unused=True)
                           for e in eye]
                rows = tuple(torch.stack(col) if col[0] is not None else None for col in zip(*per_row))
            blocks = [torch.zeros(d, *p.shape, dtype=flat.dtype, device=flat.device) if r is None else r
                      for r, p in zip(rows, inputs)]  # (D, B, H_j) each: ∂s_t/∂(part j of s_{t-1})
            jacobians.append(torch.cat(blocks, dim=-1).transpose(0, 1))  # (B, D, D)
            parts = tuple(o.detach() for o in out)
    return torch.stack(jacobians)


def gradient_norms(cell: nn.Module, x: torch.Tensor, state: State | None = None, *,
                   part: int | None = None) -> torch.Tensor:
    """``g_k = ‖∂h_T/∂s_{T-k}‖₂`` for ``k = 1 … T`` steps back: the gradient reaching each earlier step (R4).

    ``h_T`` is the last output (the state's first tensor), ``s`` the whole state (``(h, c)`` for an
    LSTM, following both paths). Computed as ``P_h J_T ⋯ J_{T-k+1}`` from :func:`step_jacobians`.

    Args:
        cell: a recurrent cell, ``cell(x_t, state) -> state`` (see :func:`step_jacobians`).
        x: ``(T, B, I)`` (the norms are averaged over the ``B`` sequences) or one sequence ``(T, I)``.
        state: the initial state, ``(B, H)`` / ``(H,)`` or a tuple of them; ``None``: zeros.
        part: ``None`` for the whole state; ``i`` for its ``i``-th tensor alone (an LSTM's ``0``: ``h``,
            ``1``: ``c``).

    Returns:
        ``(T,)``: entry ``k − 1`` is ``g_k``; the last entry is the gradient reaching the initial state.
    """
    if x.ndim == 2:  # one sequence
        x = x[:, None]
        state = None if state is None else tuple(p[None] for p in _parts(state))
    elif x.ndim != 3:
        raise UserError(f"gradient_norms takes sequences (T, B, I) or one sequence (T, I), got {tuple(x.shape)}")
    sizes = [p.shape[-1] for p in _initial_state(cell, x, state)]
    if part is not None and not 0 <= part < len(sizes):
        raise UserError(f"part={part}, but the cell's state has {len(sizes)} tensor(s); choose 0 … {len(sizes) - 1}")
    jacobians = step_jacobians(cell, x, state)  # (T, B, D, D)
    grad = jacobians[-1][:, : sizes[0]]  # ∂h_T/∂s_{T-1}, (B, H, D)
    norms = []
    start = sum(sizes[:part]) if part is not None else 0
    stop = start + sizes[part] if part is not None else sum(sizes)
    for k in range(1, x.shape[0] + 1):
        if k > 1:
            grad = grad @ jacobians[-k]  # ∂h_T/∂s_{T-k} = ∂h_T/∂s_{T-k+1} · J_{T-k+1}
        norms.append(torch.linalg.matrix_norm(grad[..., start:stop], ord=2).mean())
    return torch.stack(norms)


def default_cells(input_size: int = 32, hidden_size: int = 64, seed: int = 0,
                  gate_bias: float | None = None) -> dict[str, nn.Module]:
    """The lecture's three cells at PyTorch's initialisation (``U(−1/√H, 1/√H)``), each seeded with ``seed``;
    with ``gate_bias``, also an LSTM and a GRU whose forget / update gate bias is ``gate_bias``
    (:func:`open_gates`)."""
    kinds = [("RNN (tanh)", RNNCell, None), ("LSTM", LSTMCell, None), ("GRU", GRUCell, None)]
    if gate_bias is not None:
        kinds += [(f"LSTM, forget bias {gate_bias:+g}", LSTMCell, gate_bias),
                  (f"GRU, update bias {gate_bias:+g}", GRUCell, gate_bias)]
    cells: dict[str, nn.Module] = {}
    for name, cls, bias in kinds:
        torch.manual_seed(seed)
        cells[name] = cls(input_size, hidden_size) if bias is None else open_gates(cls(input_size, hidden_size), bias)
    return cells


def open_gates(cell: nn.Module, bias: float) -> nn.Module:
    """Set the bias of an LSTM's forget gate ``f`` or a GRU's update gate ``z`` to ``bias`` (in place).

    Both are the second block of rows (PyTorch's order ``i, f, g, o`` and ``r, z, n``). A large positive
    bias keeps ``f ≈ 1`` (``z ≈ 1``): the memory is copied forward and the error flows back through it
    almost undamped, Hochreiter & Schmidhuber's constant error carousel (Gers et al. 2000 and Jozefowicz
    et al. 2015 recommend a positive forget-gate bias, e.g. 1). Returns the cell.
    """
    if not isinstance(cell, (nn.LSTMCell, nn.GRUCell)) or cell.bias_ih is None:
        raise UserError(f"open_gates sets the forget/update gate bias of an LSTM or GRU cell with biases, "
                        f"got {type(cell).__name__}")
    h = cell.hidden_size
    with torch.no_grad():
        cell.bias_ih[h: 2 * h].fill_(bias)
        cell.bias_hh[h: 2 * h].zero_()
    return cell


def cell_from_layer(layer: nn.RNNBase, index: int = 0, *, reverse: bool = False) -> nn.Module:
    """Layer ``index`` of a (trained) ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (or a subclass) as one of our
    cells with the same weights, for :func:`gradient_norms` / :func:`gradient_flow`.

    The cell's input size is that layer's: ``I`` for layer 0, ``H`` (``2H`` if bidirectional) above.
    """
    kinds = {"RNN_TANH": RNNCell, "RNN_RELU": RNNCell, "LSTM": LSTMCell, "GRU": GRUCell}
    if not isinstance(layer, nn.RNNBase) or layer.mode not in kinds:
        raise UserError(f"cell_from_layer takes an nn.RNN, nn.LSTM or nn.GRU, got {type(layer).__name__}")
    if getattr(layer, "proj_size", 0):
        raise UserError("cell_from_layer cannot follow an LSTM with proj_size > 0; its h is projected")
    if not 0 <= index < layer.num_layers or (reverse and not layer.bidirectional):
        raise UserError(f"the layer has {layer.num_layers} layer(s)"
                        f"{', bidirectional' if layer.bidirectional else ''}; no layer {index}"
                        f"{' reverse' if reverse else ''}")
    directions = 2 if layer.bidirectional else 1
    in_size = layer.input_size if index == 0 else layer.hidden_size * directions
    extra = {"nonlinearity": "relu" if layer.mode == "RNN_RELU" else "tanh"} if layer.mode.startswith("RNN") else {}
    param = next(layer.parameters())
    cell = kinds[layer.mode](in_size, layer.hidden_size, bias=layer.bias, device=param.device, dtype=param.dtype,
                             **extra)
    suffix = f"_l{index}{'_reverse' if reverse else ''}"
    cell.load_state_dict({name: getattr(layer, name + suffix).detach().clone() for name, _ in cell.named_parameters()})
    return cell


def gradient_flow(cells: Mapping[str, nn.Module] | None = None, *, steps: int = 100, input_size: int = 32,
                  hidden_size: int = 64, batch: int = 8, seed: int = 0,
                  x: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The gradient norm reaching each earlier step, ``g_k`` (:func:`gradient_norms`), for several cells
    on the same random input sequences.

    Args:
        cells: name → recurrent cell (untrained or trained: any ``cell(x_t, state) -> state`` whose input
            size is ``input_size``; :func:`cell_from_layer` turns a trained model's ``nn.LSTM`` layer into
            one); ``None``: :func:`default_cells`, RNN, LSTM and GRU at initialisation.
        steps: ``T``, the sequence length.
        input_size, hidden_size: ``I`` and ``H`` of the default cells (``input_size`` sizes ``x`` either way).
        batch: ``B``, how many sequences the norms are averaged over.
        seed: seeds the default cells and the inputs ``x ~ N(0, 1)``, ``(T, B, I)``.
        x: the input sequences ``(T, B, I)`` instead of random ones (e.g. embedded text for a trained model).

    Returns:
        name → ``(T,)``, entry ``k − 1`` the mean over the batch of ``‖∂h_T/∂s_{T-k}‖₂``.
    """
    for name, value in (("steps", steps), ("input_size", input_size), ("hidden_size", hidden_size),
                        ("batch", batch)):
        if value < 1:
            raise UserError(f"{name} must be at least 1, got {value}")
    if cells is None:
        cells = default_cells(input_size, hidden_size, seed)
    if x is None:
        x = torch.randn(steps, batch, input_size, generator=torch.Generator().manual_seed(seed))
    flows = {}
    for name, cell in cells.items():
        param = next(cell.parameters(), None)
        xc = x if param is None else x.to(dtype=param.dtype, device=param.device)
        flows[name] = gradient_norms(cell, xc).detach().cpu()
    return flows


def model_flow(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``g_k`` through the first recurrent layer of a character language model on real text.

    Args:
        model: a :class:`~deepnn.models.charlm.CharLM` (trained or not): its input layer (embedding or
            one-hot) turns ``tokens`` into the layer's inputs, its ``rnn``'s layer 0 becomes a cell.
        tokens: ``(B, T)`` character ids.

    Returns:
        ``(T,)`` as :func:`gradient_norms`, averaged over the ``B`` sequences.
    """
    with torch.no_grad():
        x = (model.embedding(tokens) if model.embedding is not None
             else torch.nn.functional.one_hot(tokens, model.vocab_size)).float()  # (B, T, I)
    return gradient_norms(cell_from_layer(model.rnn, 0).float(), x.transpose(0, 1)).detach().cpu()


@dataclass(frozen=True)
class ClippingDemo:
    """What :func:`clipping_demo` measured: a tanh RNN whose gradient explodes, before and after clipping."""

    steps: int  # T
    scale: float  # W_hh = scale · (orthogonal matrix)
    max_norm: float  # the clipping threshold
    raw_norm: float  # ‖∇_θ L‖₂ over all parameters, as computed
    clipped_norm: float  # after torch.nn.utils.clip_grad_norm_
    cosine: float  # between the raw and the clipped gradient: clipping keeps the direction

    def lines(self) -> list[str]:
        """Three lines for the terminal."""
        return [
            f"gradient clipping (Pascanu, Mikolov & Bengio 2013): tanh RNN, W_hh = {self.scale:g} · orthogonal, "
            f"T = {self.steps}, loss <u, h_T>",
            f"  raw ‖∇L‖                {self.raw_norm:.4g}  (grows like {self.scale:g}^T = "
            f"{self.scale ** self.steps:.4g})",
            f"  clip_grad_norm_ to {self.max_norm:g}    {self.clipped_norm:.4g}  (same direction: cosine "
            f"{self.cosine:.6f})",
        ]


def clipping_demo(steps: int = 50, scale: float = 1.5, *, hidden_size: int = 16, max_norm: float = 1.0,
                  seed: int = 0) -> ClippingDemo:
    """Gradient clipping stops an explosion (Pascanu, Mikolov & Bengio 2013).

    A tanh :class:`~deepnn.layers.RNNCell` with ``W_hh = scale · Q`` (``Q`` orthogonal), zero biases and
    inputs ``~1e-9`` stays in tanh's linear regime, where ``∂h_T/∂h_{T-k} = (scale · Q)^k``: the gradient
    of ``L = ⟨u, h_T⟩`` (``u`` a unit vector) with respect to the parameters grows like ``scale^T``.
    ``clip_grad_norm_`` rescales the whole gradient ``g ← g · max_norm / ‖g‖`` when ``‖g‖ > max_norm``,
    so an SGD step stays bounded while its direction is unchanged.
    """
    if steps < 1 or hidden_size < 1 or max_norm <= 0:
        raise UserError(f"clipping_demo needs steps ≥ 1, hidden_size ≥ 1 and max_norm > 0, "
                        f"got {steps}, {hidden_size}, {max_norm}")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    cell = RNNCell(4, hidden_size).double()
    with torch.no_grad():
        q = torch.linalg.qr(torch.randn(hidden_size, hidden_size, generator=gen, dtype=torch.float64))[0]
        cell.weight_hh.copy_(scale * q)
        cell.bias_ih.zero_()
        cell.bias_hh.zero_()
    x = 1e-9 * torch.randn(steps, 1, 4, generator=gen, dtype=torch.float64)
    u = torch.randn(hidden_size, generator=gen, dtype=torch.float64)
    u = u / u.norm()
    h = None
    for x_t in x:
        h = cell(x_t, h)
    (h[0] @ u).backward()
    params = [p for p in cell.parameters() if p.grad is not None]
    raw = torch.cat([p.grad.flatten() for p in params])
    raw_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))  # returns the norm before clipping
    clipped = torch.cat([p.grad.flatten() for p in params])
    return ClippingDemo(steps=steps, scale=scale, max_norm=max_norm, raw_norm=raw_norm,
                        clipped_norm=float(clipped.norm()),
                        cosine=float(torch.nn.functional.cosine_similarity(raw, clipped, dim=0)))


def flow_table(flows: Mapping[str, torch.Tensor], steps_back: Sequence[int] = STEPS_BACK) -> str:
    """A markdown table: one row per number of steps back (those ≤ ``T``, and ``T``), one column per cell."""
    length = min(len(f) for f in flows.values())
    rows = sorted({k for k in steps_back if 1 <= k <= length} | {length})
    names = list(flows)
    lines = ["| steps back k | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for k in rows:
        lines.append(f"| {k} | " + " | ".join(f"{float(flows[n][k - 1]):.3g}" for n in names) + " |")
    return "\n".join(lines)


def plot_gradient_flow(flows: Mapping[str, torch.Tensor], out: str | Path,
                       title: str = "gradient reaching k steps back, ‖∂h_T/∂s_(T−k)‖₂") -> Path:
    """One line per cell, ``g_k`` on a log scale against ``k`` steps back from ``T``; writes a PNG."""
    if not flows:
        raise UserError("no gradient flows to plot; pass at least one cell")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, norms in flows.items():
        values = norms.detach().double().cpu()
        k = torch.arange(1, len(values) + 1)
        positive = values > 0  # exact zeros (float underflow) have no place on a log scale
        ax.plot(k[positive].numpy(), values[positive].numpy(), label=name, linewidth=2)
    ax.axhline(1.0, color="gray", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("k, steps back from the last step T")
    ax.set_ylabel("‖∂h_T/∂s_(T−k)‖₂ (log scale)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, out)


def save_figure(fig: Any, out: str | Path) -> Path:
    """Write a matplotlib figure as a PNG (or a JPEG of quality 90 when ``out`` ends in .jpg / .jpeg: photographs
    at a third of the size) and close it; an unwritable path is a one-line UserError."""
    import matplotlib.pyplot as plt

    out = Path(out)
    jpeg = {"pil_kwargs": {"quality": 90}} if out.suffix.lower() in (".jpg", ".jpeg") else {}
    try:
        fig.savefig(out, dpi=100, **jpeg)
    except OSError as e:
        raise UserError(f"cannot write {str(out)!r} ({e.strerror or e}); choose a writable path with -o") from None
    finally:
        plt.close(fig)
    return out
