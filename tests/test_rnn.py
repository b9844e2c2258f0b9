"""The recurrent cells of ``deepnn.layers.rnn`` (lecture items R2, R4–R6) against PyTorch's: each cell
against its ``nn.*Cell`` twin (same seed, same init, values and gradients), :func:`unroll` against
one-layer ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` with the cell's weights, the peephole LSTM by hand,
the gradient-flow numbers of R4 against autograd through the whole sequence, and the stacked,
bidirectional layers ``RNN`` / ``LSTM`` / ``GRU`` (from scratch and fused) against PyTorch's: values,
gradients, dropout between layers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepnn.errors import UserError
from deepnn.layers import (
    GRU,
    LSTM,
    RNN,
    GRUCell,
    LSTMCell,
    PeepholeLSTMCell,
    RNNCell,
    hidden_jacobian_norms,
    power_example,
    unroll,
)

I, H, B, T = 3, 5, 4, 6

CELLS = [  # (ours, PyTorch's twin, the sequence layer, constructor kwargs)
    (RNNCell, nn.RNNCell, nn.RNN, {}),
    (RNNCell, nn.RNNCell, nn.RNN, {"nonlinearity": "relu"}),
    (RNNCell, nn.RNNCell, nn.RNN, {"bias": False}),
    (LSTMCell, nn.LSTMCell, nn.LSTM, {}),
    (LSTMCell, nn.LSTMCell, nn.LSTM, {"bias": False}),
    (GRUCell, nn.GRUCell, nn.GRU, {}),
    (GRUCell, nn.GRUCell, nn.GRU, {"bias": False}),
]
IDS = ["rnn-tanh", "rnn-relu", "rnn-nobias", "lstm", "lstm-nobias", "gru", "gru-nobias"]


def _twins(ours_cls: type[nn.Module], torch_cls: type[nn.Module], **kwargs) -> tuple[nn.Module, nn.Module]:
    """Our cell and PyTorch's, each built from seed 0, in float64."""
    torch.manual_seed(0)
    ours = ours_cls(I, H, **kwargs).double()
    torch.manual_seed(0)
    theirs = torch_cls(I, H, **kwargs).double()
    return ours, theirs


def _random_state(cell: nn.Module, *batch: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    h = torch.randn(*batch, H, dtype=torch.float64)
    return (h, torch.randn(*batch, H, dtype=torch.float64)) if isinstance(cell, nn.LSTMCell) else h


def _flat(state) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


# ---- R2, R5, R6: one time step against nn.RNNCell / nn.LSTMCell / nn.GRUCell ---------------------------

@pytest.mark.parametrize("ours_cls,torch_cls,_,kwargs", CELLS, ids=IDS)
def test_cell_matches_torch(ours_cls, torch_cls, _, kwargs) -> None:
    ours, theirs = _twins(ours_cls, torch_cls, **kwargs)
    assert isinstance(ours, torch_cls)
    sd_ours, sd_theirs = ours.state_dict(), theirs.state_dict()
    assert list(sd_ours) == list(sd_theirs)
    assert all(torch.equal(sd_ours[k], sd_theirs[k]) for k in sd_theirs)  # same init, same random numbers
    for batch in [(B,), ()]:  # batched (B, I) and unbatched (I,)
        for state in [None, _random_state(ours, *batch)]:
            x = torch.randn(*batch, I, dtype=torch.float64)
            x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
            out_ours, out_theirs = _flat(ours(x_ours, state)), _flat(theirs(x_theirs, state))
            for a, b in zip(out_ours, out_theirs, strict=True):
                assert a.shape == b.shape == (*batch, H)
                assert torch.allclose(a, b, atol=1e-12)
            upstream = [torch.randn_like(t) for t in out_theirs]
            torch.autograd.backward(out_ours, upstream)
            torch.autograd.backward(out_theirs, upstream)
            assert torch.allclose(x_ours.grad, x_theirs.grad, atol=1e-12)
            for (name, p_theirs), p_ours in zip(theirs.named_parameters(), ours.parameters(), strict=True):
                assert torch.allclose(p_ours.grad, p_theirs.grad, atol=1e-12), name
            ours.zero_grad()
            theirs.zero_grad()


@pytest.mark.parametrize("ours_cls,torch_cls,seq_cls,kwargs", CELLS, ids=IDS)
def test_unroll_matches_torch_sequence_layer(ours_cls, torch_cls, seq_cls, kwargs) -> None:
    torch.manual_seed(1)
    cell = ours_cls(I, H, **kwargs).double()
    layer = seq_cls(I, H, num_layers=1, **kwargs).double()
    layer.load_state_dict({f"{k}_l0": v for k, v in cell.state_dict().items()})  # weight_ih -> weight_ih_l0
    x = torch.randn(T, B, I, dtype=torch.float64)
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    for state in [None, _random_state(cell, B)]:
        outputs, final = unroll(cell, x_ours, state)
        if state is None:
            expected, final_theirs = layer(x_theirs)
        else:  # nn.RNN / nn.LSTM / nn.GRU want (num_layers, B, H) states
            expected, final_theirs = layer(x_theirs, tuple(s[None] for s in state) if isinstance(state, tuple)
                                           else state[None])
        assert outputs.shape == expected.shape == (T, B, H)
        assert torch.allclose(outputs, expected, atol=1e-6)
        for a, b in zip(_flat(final), _flat(final_theirs), strict=True):
            assert torch.allclose(a, b[0], atol=1e-6)
        assert torch.equal(_flat(final)[0], outputs[-1])  # the last output is h_T
        outputs.sum().backward()
        expected.sum().backward()
        assert torch.allclose(x_ours.grad, x_theirs.grad, atol=1e-6)


def test_unroll_works_with_torch_cells_too() -> None:
    cell = nn.GRUCell(I, H)
    x = torch.randn(T, B, I)
    outputs, h = unroll(cell, x)
    assert outputs.shape == (T, B, H) and torch.equal(h, outputs[-1])


def test_cell_and_unroll_errors() -> None:
    with pytest.raises(UserError, match="choose 'tanh' or 'relu'"):
        RNNCell(I, H, nonlinearity="sigmoid")
    with pytest.raises(UserError, match=r"one time step of shape \(B, 3\)"):
        LSTMCell(I, H)(torch.randn(B, I + 1))
    with pytest.raises(UserError, match="state must have shape"):
        GRUCell(I, H)(torch.randn(B, I), torch.randn(B + 1, H))
    with pytest.raises(UserError, match=r"\(T, B, I\)"):
        unroll(RNNCell(I, H), torch.randn(T, I))


# ---- R5: the peephole LSTM, which PyTorch does not have ------------------------------------------------

def test_peephole_lstm_with_zero_peepholes_is_torch_lstm() -> None:
    torch.manual_seed(0)
    peep = PeepholeLSTMCell(I, H).double()
    torch.manual_seed(0)
    lstm = nn.LSTMCell(I, H).double()
    assert all(torch.equal(peep.state_dict()[k], v) for k, v in lstm.state_dict().items())  # same init
    assert all(torch.equal(getattr(peep, n), torch.zeros(H, dtype=torch.float64))
               for n in ("weight_ci", "weight_cf", "weight_co"))
    x, state = torch.randn(T, B, I, dtype=torch.float64), _random_state(lstm, B)
    outputs, (h, c) = unroll(peep, x, state)
    expected, (h_t, c_t) = unroll(lstm, x, state)
    assert torch.allclose(outputs, expected, atol=1e-12) and torch.allclose(c, c_t, atol=1e-12)
    peep.weight_co.data.fill_(1.0)  # a peephole changes the function
    assert not torch.allclose(unroll(peep, x, state)[0], expected)


def test_peephole_lstm_by_hand() -> None:
    """One unit, every weight set by hand, against the formulas of Gers & Schmidhuber 2000 in plain floats."""
    cell = PeepholeLSTMCell(1, 1).double()
    wx, wh, b = [0.5, -0.3, 0.8, 0.2], [0.1, 0.4, -0.6, 0.7], [0.05, -0.1, 0.2, 0.0]  # gates i, f, g, o
    w_ci, w_cf, w_co = 0.3, -0.2, 0.9
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor(wx, dtype=torch.float64)[:, None])
        cell.weight_hh.copy_(torch.tensor(wh, dtype=torch.float64)[:, None])
        cell.bias_ih.copy_(torch.tensor(b, dtype=torch.float64))
        cell.bias_hh.zero_()
        cell.weight_ci.fill_(w_ci)
        cell.weight_cf.fill_(w_cf)
        cell.weight_co.fill_(w_co)
    x, h, c = 1.5, -0.4, 0.7

    def sigmoid(z: float) -> float:
        return 1 / (1 + math.exp(-z))

    pre = [wx[n] * x + wh[n] * h + b[n] for n in range(4)]
    i, f = sigmoid(pre[0] + w_ci * c), sigmoid(pre[1] + w_cf * c)
    c_new = f * c + i * math.tanh(pre[2])
    h_new = sigmoid(pre[3] + w_co * c_new) * math.tanh(c_new)
    h_ours, c_ours = cell(torch.tensor([x], dtype=torch.float64),
                          (torch.tensor([h], dtype=torch.float64), torch.tensor([c], dtype=torch.float64)))
    assert h_ours.item() == pytest.approx(h_new, abs=1e-12)
    assert c_ours.item() == pytest.approx(c_new, abs=1e-12)


def test_peephole_weights_get_gradients() -> None:
    torch.manual_seed(0)
    cell = PeepholeLSTMCell(I, H)
    outputs, _ = unroll(cell, torch.randn(T, B, I))  # c_0 = 0, but c_1, c_2, ... are not
    outputs.pow(2).sum().backward()
    for name in ("weight_ci", "weight_cf", "weight_co"):
        grad = getattr(cell, name).grad
        assert grad is not None and grad.abs().min() > 0, name


# ---- R4: gradient flow -----------------------------------------------------------------------------------

def test_r4_power_example_slide_numbers() -> None:
    p = power_example()
    assert p[1.0] == 1.0
    assert round(p[1.01], 1) == 20959.2  # the slide: ≈ 20959
    assert f"{p[0.99]:.1e}" == "4.3e-05"
    assert p[0.01] == 0.0  # 1e-2000 underflows float64
    assert power_example(2) == pytest.approx({1.0: 1.0, 1.01: 1.0201, 0.99: 0.9801, 0.01: 1e-4})


def _linear_regime_cell(sigma: float, orthogonal: bool = True, seed: int = 0) -> RNNCell:
    """An RNN cell without biases whose W_hh has largest singular value ``sigma``; with inputs and h near
    0, tanh' ≈ 1 and ∂h_t/∂h_0 ≈ W_hh^t."""
    torch.manual_seed(seed)
    cell = RNNCell(2, 8, bias=False).double()
    with torch.no_grad():
        w = torch.randn(8, 8, dtype=torch.float64)
        w = torch.linalg.qr(w)[0] if orthogonal else w / torch.linalg.matrix_norm(w, ord=2)
        cell.weight_hh.copy_(sigma * w)
    return cell


def test_r4_jacobian_vanishes_below_one() -> None:
    steps = torch.arange(1, 21, dtype=torch.float64)
    x = 1e-4 * torch.randn(20, 2, dtype=torch.float64)
    for orthogonal in (True, False):  # orthogonal × 0.5, or a random matrix scaled to σ_max = 0.5
        norms = hidden_jacobian_norms(_linear_regime_cell(0.5, orthogonal), x)
        assert norms.shape == (20,)
        assert (norms[1:] < norms[:-1]).all()  # strictly shrinking
        assert (norms <= 0.5**steps * (1 + 1e-9)).all()  # never above σ_max^t
    norms = hidden_jacobian_norms(_linear_regime_cell(0.5), x)
    assert torch.allclose(norms, 0.5**steps, rtol=1e-3)  # orthogonal × 0.5: exactly the rate 0.5^t


def test_r4_jacobian_explodes_above_one() -> None:
    steps = torch.arange(1, 21, dtype=torch.float64)
    x = 1e-6 * torch.randn(20, 2, dtype=torch.float64)  # h stays ~1e-6 · 1.5^20 ≈ 3e-3: tanh' ≈ 1
    norms = hidden_jacobian_norms(_linear_regime_cell(1.5), x)
    assert (norms[1:] > norms[:-1]).all()
    assert norms[-1] > 3000  # 1.5^20 ≈ 3325
    assert torch.allclose(norms, 1.5**steps, rtol=1e-3)
    assert (norms <= 1.5**steps * (1 + 1e-9)).all()


def test_r4_saturated_tanh_vanishes_even_above_one() -> None:
    """The tanh'(…) factor: with large inputs tanh saturates, tanh' ≈ 0, and the gradient vanishes
    although σ_max(W_hh) = 1.5."""
    x = 5 * torch.randn(20, 2, dtype=torch.float64)
    cell = _linear_regime_cell(1.5)
    with torch.no_grad():
        cell.weight_ih.mul_(10)
    norms = hidden_jacobian_norms(cell, x)
    assert norms[-1] < 1e-3


@pytest.mark.parametrize("cell_cls", [RNNCell, GRUCell])
def test_r4_chain_rule_product_equals_autograd_through_the_sequence(cell_cls) -> None:
    torch.manual_seed(0)
    cell = cell_cls(I, H).double()
    x, h0 = torch.randn(T, I, dtype=torch.float64), torch.randn(H, dtype=torch.float64)
    norms = hidden_jacobian_norms(cell, x, h0)
    for t in (1, 3, T):
        x_t = x[:t, None]  # (t, 1, I)
        direct = torch.autograd.functional.jacobian(lambda h, x_t=x_t: unroll(cell, x_t, h[None])[1][0], h0)
        assert norms[t - 1].item() == pytest.approx(torch.linalg.matrix_norm(direct, ord=2).item(), rel=1e-10)


def test_r4_rejects_lstm_and_batches() -> None:
    with pytest.raises(UserError, match=r"\(h, c\)"):
        hidden_jacobian_norms(LSTMCell(I, H), torch.randn(T, I))
    with pytest.raises(UserError, match=r"one sequence of shape \(T, I\)"):
        hidden_jacobian_norms(RNNCell(I, H), torch.randn(T, B, I))


# ---- stacked, bidirectional sequence layers: RNN, LSTM, GRU (impl "scratch" and "fused") ------------------

LAYERS = [  # (ours, PyTorch's, constructor kwargs)
    (RNN, nn.RNN, {}),
    (RNN, nn.RNN, {"nonlinearity": "relu"}),
    (LSTM, nn.LSTM, {}),
    (LSTM, nn.LSTM, {"bias": False}),
    (GRU, nn.GRU, {}),
    (GRU, nn.GRU, {"bias": False}),
]
LAYER_IDS = ["rnn", "rnn-relu", "lstm", "lstm-nobias", "gru", "gru-nobias"]


def _layer_twins(ours_cls, torch_cls, impl: str = "scratch", **kwargs):
    """Our layer and PyTorch's, float64, ours loaded from PyTorch's state dict."""
    torch.manual_seed(0)
    theirs = torch_cls(I, H, **kwargs).double()
    ours = ours_cls(I, H, impl=impl, **kwargs).double()
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _layer_state(layer, batch: int, given: bool):
    if not given:
        return None
    shape = (layer.num_layers * (2 if layer.bidirectional else 1), batch, H)
    h = torch.randn(shape, dtype=torch.float64)
    return (h, torch.randn(shape, dtype=torch.float64)) if isinstance(layer, nn.LSTM) else h


def _run_and_grads(layer, x, state):
    """Outputs, final states, and the gradients of the input, the initial states and every parameter
    for a fixed random upstream gradient."""
    x = x.clone().requires_grad_()
    state = None if state is None else tuple(s.clone().requires_grad_() for s in _flat(state))
    arg = None if state is None else (state if isinstance(layer, nn.LSTM) else state[0])
    output, final = layer(x, arg)
    outs = [output, *_flat(final)]
    gen = torch.Generator().manual_seed(7)
    upstream = [torch.randn(o.shape, dtype=o.dtype, generator=gen) for o in outs]
    torch.autograd.backward(outs, upstream)
    grads = [x.grad, *([] if state is None else [s.grad for s in state])]
    grads += [p.grad for _, p in sorted(layer.named_parameters())]
    layer.zero_grad()
    return [o.detach() for o in outs], grads


@pytest.mark.parametrize("ours_cls,torch_cls,kwargs", LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_layer_scratch_matches_torch(ours_cls, torch_cls, kwargs, num_layers, bidirectional) -> None:
    """Values and gradients (input, initial state, all parameters) against nn.RNN / nn.LSTM / nn.GRU."""
    for batch_first in (True, False):
        ours, theirs = _layer_twins(ours_cls, torch_cls, num_layers=num_layers, bidirectional=bidirectional,
                                    batch_first=batch_first, **kwargs)
        assert isinstance(ours, torch_cls) and list(ours.state_dict()) == list(theirs.state_dict())
        x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=torch.float64)
        for given in (False, True):
            state = _layer_state(theirs, B, given)
            outs_ours, grads_ours = _run_and_grads(ours, x, state)
            outs_theirs, grads_theirs = _run_and_grads(theirs, x, state)
            for a, b in zip(outs_ours + grads_ours, outs_theirs + grads_theirs, strict=True):
                assert a.shape == b.shape
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("ours_cls,torch_cls,kwargs", LAYERS[::2], ids=LAYER_IDS[::2])
def test_layer_fused_equals_scratch(ours_cls, torch_cls, kwargs) -> None:
    scratch, theirs = _layer_twins(ours_cls, torch_cls, num_layers=2, bidirectional=True, **kwargs)
    fused = ours_cls(I, H, num_layers=2, bidirectional=True, **kwargs).double()  # impl="fused" by default
    assert fused.impl == "fused" and fused.batch_first  # batch first by default, unlike torch
    fused.load_state_dict(theirs.state_dict())
    x = torch.randn(B, T, I, dtype=torch.float64)
    for a, b in zip(_run_and_grads(scratch, x, None), _run_and_grads(fused, x, None), strict=True):
        for u, v in zip(a, b, strict=True):
            torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("ours_cls,torch_cls,kwargs", LAYERS[::2], ids=LAYER_IDS[::2])
def test_layer_unbatched_input(ours_cls, torch_cls, kwargs) -> None:
    ours, theirs = _layer_twins(ours_cls, torch_cls, num_layers=2, **kwargs)
    x = torch.randn(T, I, dtype=torch.float64)  # (T, I) whatever batch_first says
    (out, *final), (expected, *final_theirs) = _run_and_grads(ours, x, None)[0], _run_and_grads(theirs, x, None)[0]
    assert out.shape == (T, H)
    torch.testing.assert_close(out, expected)
    for a, b in zip(final, final_theirs, strict=True):
        assert a.shape == (2, H)
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("ours_cls,torch_cls,kwargs", LAYERS[::2], ids=LAYER_IDS[::2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_layer_dropout_between_layers_only(ours_cls, torch_cls, kwargs, bidirectional) -> None:
    """Dropout: none in eval mode (= PyTorch's); in training on the outputs of every layer but the last,
    drawing the same random mask as PyTorch's own layer (same seed, same values)."""
    ours, theirs = _layer_twins(ours_cls, torch_cls, num_layers=3, dropout=0.5, bidirectional=bidirectional,
                                batch_first=True, **kwargs)
    x = torch.randn(B, T, I, dtype=torch.float64)
    ours.eval(), theirs.eval()
    eval_out, eval_final = _run_and_grads(ours, x, None)[0], _run_and_grads(theirs, x, None)[0]
    for a, b in zip(eval_out, eval_final, strict=True):
        torch.testing.assert_close(a, b)
    ours.train(), theirs.train()
    torch.manual_seed(3)
    train_ours = _run_and_grads(ours, x, None)
    torch.manual_seed(3)
    train_theirs = _run_and_grads(theirs, x, None)
    for a, b in zip(train_ours[0] + train_ours[1], train_theirs[0] + train_theirs[1], strict=True):
        torch.testing.assert_close(a, b)  # the same masks, at the same places, as PyTorch's
    output, h_n = train_ours[0][0], train_ours[0][1]
    assert not torch.allclose(output, eval_out[0])  # dropout acts in training
    first = 2 if bidirectional else 1
    torch.testing.assert_close(h_n[:first], eval_out[1][:first])  # layer 1 runs before any dropout
    # no dropout after the last layer: the output's last step is the last layer's h_n (forward direction)
    torch.testing.assert_close(output[:, -1, :H], h_n[-2 if bidirectional else -1])
    # and the layer-by-layer rebuild: layer 1, dropout with the same draws, then layers 2 and 3 by hand
    directions = 2 if bidirectional else 1
    singles = []
    for layer in range(3):
        single = ours_cls(I if layer == 0 else directions * H, H, bidirectional=bidirectional, impl="scratch",
                          **kwargs).double()
        single.load_state_dict({k.replace(f"_l{layer}", "_l0"): v for k, v in ours.state_dict().items()
                                if f"_l{layer}" in k})
        singles.append(single)
    torch.manual_seed(3)
    out = x
    for layer, single in enumerate(singles):
        out = single(out)[0]
        if layer < 2:
            out = torch.nn.functional.dropout(out.transpose(0, 1).contiguous(), 0.5).transpose(0, 1)  # time first
    torch.testing.assert_close(out, output)
    assert directions * H == output.shape[-1]


def test_layer_errors() -> None:
    with pytest.raises(UserError, match="unknown impl 'cuda'.*fused, scratch"):
        LSTM(I, H, impl="cuda")
    with pytest.raises(UserError, match="proj_size"):
        LSTM(I, H, proj_size=2)
    with pytest.raises(UserError, match="choose 'tanh' or 'relu'"):
        RNN(I, H, nonlinearity="sigmoid")
    layer = GRU(I, H, num_layers=2, impl="scratch")
    with pytest.raises(UserError, match=r"\(B, T, I\).*I = 3"):
        layer(torch.randn(B, T, I + 1))
    with pytest.raises(UserError, match=r"initial state must have shape \(2, 4, 5\)"):
        layer(torch.randn(B, T, I), torch.randn(1, B, H))
    with pytest.raises(UserError, match=r"\(h_0, c_0\)"):
        LSTM(I, H, impl="scratch")(torch.randn(B, T, I), torch.randn(1, B, H))
    layer.impl = "nope"
    with pytest.raises(UserError, match="unknown impl"):
        layer(torch.randn(B, T, I))


def test_layer_scratch_under_bf16_autocast_is_close_to_fused() -> None:
    torch.manual_seed(0)
    fused = LSTM(8, 16, num_layers=2)
    scratch = LSTM(8, 16, num_layers=2, impl="scratch")
    scratch.load_state_dict(fused.state_dict())
    x = torch.randn(2, 5, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, (h_a, _) = scratch(x)
        b, (h_b, _) = fused(x)
    torch.testing.assert_close(a.float(), b.float(), rtol=0.05, atol=0.05)
    torch.testing.assert_close(h_a.float(), h_b.float(), rtol=0.05, atol=0.05)
