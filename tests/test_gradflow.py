"""R4: vanishing and exploding gradients through time (deepnn.analysis.gradflow, `deepnn gradflow`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from deepnn.analysis.gradflow import (
    cell_from_layer,
    clipping_demo,
    default_cells,
    flow_table,
    gradient_flow,
    gradient_norms,
    open_gates,
    plot_gradient_flow,
    step_jacobians,
)
from deepnn.errors import UserError
from deepnn.layers import GRUCell, LSTMCell, RNNCell, hidden_jacobian_norms, unroll

ROOT = Path(__file__).resolve().parents[1]


def _orthogonal_rnn(a: float, hidden: int = 8, seed: int = 0) -> RNNCell:
    """tanh RNN without biases, W_hh = a · Q with Q orthogonal."""
    torch.manual_seed(seed)
    cell = RNNCell(3, hidden, bias=False).double()
    with torch.no_grad():
        cell.weight_hh.copy_(a * torch.linalg.qr(torch.randn(hidden, hidden, dtype=torch.float64))[0])
    return cell


@pytest.mark.parametrize("a", [0.9, 1.1])
def test_orthogonal_rnn_zero_input_gives_exactly_a_to_the_k(a: float) -> None:
    """Zero input keeps h = 0, tanh'(0) = 1, so ∂h_T/∂h_{T-k} = (aQ)^k and its spectral norm is a^k."""
    steps = 60
    norms = gradient_norms(_orthogonal_rnn(a), torch.zeros(steps, 2, 3, dtype=torch.float64))
    k = torch.arange(1, steps + 1, dtype=torch.float64)
    assert norms.shape == (steps,)
    assert torch.allclose(norms, a**k, rtol=1e-10, atol=0)
    if a < 1:
        assert norms[-1] < 2e-3  # 0.9^60 ≈ 1.8e-3: vanished
    else:
        assert norms[-1] > 300  # 1.1^60 ≈ 304: exploded
    # the forward-reading hidden_jacobian_norms (‖∂h_t/∂h_0‖₂) shares the chain rule and agrees here
    assert torch.allclose(hidden_jacobian_norms(_orthogonal_rnn(a), torch.zeros(steps, 3, dtype=torch.float64)),
                          a**k, rtol=1e-10, atol=0)


@pytest.mark.parametrize("cls", [RNNCell, LSTMCell, GRUCell])
def test_gradient_norms_equal_autograd_through_the_whole_sequence(cls) -> None:
    """g_k = ‖∂h_T/∂s_{T-k}‖₂ for a random cell and input, checked against one autograd Jacobian of the
    unrolled last k steps (for an LSTM w.r.t. the whole state (h, c), and each part alone)."""
    torch.manual_seed(1)
    steps, hidden = 7, 5
    cell = cls(3, hidden).double()
    x = torch.randn(steps, 3, dtype=torch.float64)
    is_lstm = cls is LSTMCell
    s0 = (torch.randn(hidden, dtype=torch.float64), torch.randn(hidden, dtype=torch.float64)) if is_lstm \
        else torch.randn(hidden, dtype=torch.float64)
    norms = gradient_norms(cell, x, s0)
    states = [s0]  # s_0 … s_T, unbatched
    with torch.no_grad():
        for x_t in x:
            states.append(cell(x_t, states[-1]))
    for k in (1, 3, steps):
        start, tail = states[steps - k], x[steps - k:]

        def h_last(*parts: torch.Tensor, tail: torch.Tensor = tail) -> torch.Tensor:
            _, final = unroll(cell, tail[:, None], tuple(p[None] for p in parts) if is_lstm else parts[0][None])
            return (final[0] if is_lstm else final)[0]

        parts = start if is_lstm else (start,)
        jac = torch.cat(torch.autograd.functional.jacobian(h_last, parts), dim=-1)  # (H, D)
        assert norms[k - 1].item() == pytest.approx(torch.linalg.matrix_norm(jac, ord=2).item(), rel=1e-10)
        if is_lstm:
            for part in (0, 1):
                alone = gradient_norms(cell, x, s0, part=part)[k - 1]
                block = jac[:, part * hidden: (part + 1) * hidden]
                assert alone.item() == pytest.approx(torch.linalg.matrix_norm(block, ord=2).item(), rel=1e-10)


@pytest.mark.parametrize("bias", [0.0, 2.0, 6.0])
def test_constant_error_carousel_lstm_and_gru(bias: float) -> None:
    """W_hh = 0, zero input, all biases 0 but the forget (LSTM) / update (GRU) gate's = b. The LSTM's c
    path carries the error with factor f = σ(b) per step: ‖∂h_T/∂c_{T-k}‖ = o · tanh'(0) · σ(b)^k =
    0.5 σ(b)^k. The GRU's h_t = z ⊙ h_{t-1}: σ(b)^k. With b large the gradient no longer vanishes."""
    steps, k = 40, torch.arange(1, 41, dtype=torch.float64)
    f = torch.sigmoid(torch.tensor(bias, dtype=torch.float64))
    x = torch.zeros(steps, 2, 3, dtype=torch.float64)
    lstm, gru = LSTMCell(3, 6).double(), GRUCell(3, 6).double()
    for cell in (lstm, gru):
        with torch.no_grad():
            cell.weight_hh.zero_()
            cell.bias_ih.zero_()
            cell.bias_hh.zero_()
        open_gates(cell, bias)
    assert torch.allclose(gradient_norms(lstm, x), 0.5 * f**k, rtol=1e-10, atol=0)
    assert torch.allclose(gradient_norms(lstm, x, part=1), 0.5 * f**k, rtol=1e-10, atol=0)
    assert gradient_norms(lstm, x, part=0).abs().max() == 0  # W_hh = 0: nothing flows through h
    assert torch.allclose(gradient_norms(gru, x), f**k, rtol=1e-10, atol=0)
    if bias == 6.0:
        assert gradient_norms(lstm, x)[-1] > 0.45 and gradient_norms(gru, x)[-1] > 0.9


def test_batch_norms_are_the_mean_of_per_sequence_norms() -> None:
    torch.manual_seed(2)
    cell, x = GRUCell(3, 5).double(), torch.randn(6, 3, 3, dtype=torch.float64)
    each = torch.stack([gradient_norms(cell, x[:, b]) for b in range(3)])  # (B, T)
    assert torch.allclose(gradient_norms(cell, x), each.mean(0), rtol=1e-12, atol=0)
    assert not torch.allclose(each[0], each[1])  # different sequences, different norms


def test_gated_cells_keep_the_gradient_far_longer_than_a_tanh_rnn() -> None:
    """Same random inputs, PyTorch's initialisation: at k = 50 steps back the tanh RNN's gradient has
    vanished; LSTM and GRU keep more, and with the forget / update gate held open they keep it (≈ 1)."""
    flows = gradient_flow(default_cells(16, 32, seed=0, gate_bias=5.0), steps=60, input_size=16, batch=4)
    rnn = flows["RNN (tanh)"][49]
    assert rnn < 1e-8
    assert flows["LSTM"][49] > 10 * rnn and flows["GRU"][49] > 10 * rnn
    for name in ("LSTM, forget bias +5", "GRU, update bias +5"):
        assert flows[name][49] > 0.1, name
        assert flows[name][49] > 1e6 * rnn, name
    assert all(f.shape == (60,) for f in flows.values())


def test_gradient_flow_takes_trained_cells_and_layers() -> None:
    torch.manual_seed(0)
    layer = nn.LSTM(4, 6, num_layers=2)
    cell = cell_from_layer(layer, 1)
    assert isinstance(cell, LSTMCell) and cell.input_size == 6
    x = torch.randn(9, 2, 4)
    out, _ = layer(x)
    below, _ = unroll(cell_from_layer(layer, 0), x)
    above, _ = unroll(cell, below)
    assert torch.allclose(above, out, atol=1e-6)
    flows = gradient_flow({"layer 0": cell_from_layer(layer, 0), "torch GRUCell": nn.GRUCell(4, 6)},
                          steps=9, input_size=4, batch=2)
    assert set(flows) == {"layer 0", "torch GRUCell"} and all(f.shape == (9,) for f in flows.values())
    with pytest.raises(UserError, match="no layer 2"):
        cell_from_layer(layer, 2)


def test_step_jacobians_shape_and_row_by_row_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    cell, x = LSTMCell(3, 4).double(), torch.randn(5, 2, 3, dtype=torch.float64)
    j = step_jacobians(cell, x)
    assert j.shape == (5, 2, 8, 8)  # D = 2H: the state (h, c)
    grad = torch.autograd.grad

    def no_vmap(*args, **kwargs):  # as for an op without a batching rule
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("Batching rule not implemented")
        return grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_vmap)
    assert torch.allclose(step_jacobians(cell, x), j, rtol=1e-12, atol=0)


def test_clipping_stops_the_explosion() -> None:
    demo = clipping_demo(steps=50, scale=1.5, max_norm=1.0)
    assert demo.raw_norm > 1e6  # exploded, ~1.5^50
    assert demo.clipped_norm <= 1.0 * (1 + 1e-6)
    assert demo.clipped_norm == pytest.approx(1.0, rel=1e-6)
    assert demo.cosine == pytest.approx(1.0, abs=1e-9)  # rescaled, not rotated
    assert clipping_demo(steps=5, scale=1.5).raw_norm < clipping_demo(steps=20, scale=1.5).raw_norm / 100
    small = clipping_demo(steps=20, scale=0.5, max_norm=100.0)  # below the threshold: untouched
    assert small.clipped_norm == pytest.approx(small.raw_norm, rel=1e-12)


def test_table_and_plot(tmp_path: Path) -> None:
    flows = {"a": 0.5 ** torch.arange(1, 101, dtype=torch.float64), "b": torch.ones(100)}
    table = flow_table(flows)
    lines = table.splitlines()
    assert lines[0] == "| steps back k | a | b |"
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["1", "10", "25", "50", "100"]
    assert lines[2] == "| 1 | 0.5 | 1 |" and "| 10 | 0.000977 | 1 |" in lines
    assert [line.split("|")[1].strip() for line in flow_table({"a": flows["a"][:30]}).splitlines()[2:]] == \
        ["1", "10", "25", "30"]
    out = plot_gradient_flow(flows, tmp_path / "flow.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_gradient_flow_rejects_bad_sizes() -> None:
    with pytest.raises(UserError, match="steps must be at least 1"):
        gradient_flow(steps=0)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepnn", "gradflow", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_cli_writes_png_and_prints_table(tmp_path: Path) -> None:
    out = tmp_path / "gradflow.png"
    result = _cli("-o", str(out), "--steps", "50", "--hidden", "32")
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert "| steps back k | RNN (tanh) | LSTM | GRU | LSTM, forget bias +3 | GRU, update bias +3 |" in result.stdout
    rows = [line.split("|")[1].strip() for line in result.stdout.splitlines() if line.startswith("| ")][1:]
    assert rows == ["1", "10", "25", "50"]
    assert "clip_grad_norm_" in result.stdout
    assert "1.01^1000 = 20959" in result.stdout and "0.99^1000 = 4.3171e-05" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps must be at least 1"),
    (["--hidden", "-3"], "--hidden must be at least 1"),
    (["-o", "{tmp}"], "is a folder"),
    (["-o", "{tmp}/missing/g.png"], "does not exist"),
    (["-o", "/proc/gradflow.png", "--steps", "3", "--hidden", "4"], "cannot write"),
])
def test_cli_bad_arguments_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = _cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("deepnn gradflow: error:") and message in result.stderr
