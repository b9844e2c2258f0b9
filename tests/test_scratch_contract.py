"""``--conv-impl scratch`` as a contract: a model built with ``conv_impl="scratch"`` convolves and
pools only with the lecture's from-scratch code (:mod:`deepnn.layers.conv` on :mod:`deepnn.ops`).

For every fingerprinted case (every registered classification model at its defaults and in the
Fashion-MNIST setting, plus the auxiliary heads in training mode; see ``tests/fingerprint.py``):

* no convolution or pooling module is a ``torch.nn`` class: each one is deepnn's scratch twin;
* one forward pass calls no ``torch.nn.functional`` convolution or pooling (``F.conv2d``,
  ``F.max_pool2d``, ``F.avg_pool2d``, ``F.adaptive_avg_pool2d``, ...) at any depth of the model's
  own code. The scratch layers themselves are built on ``unfold``, ``pad`` and matrix products,
  which are not flagged;
* the scratch model has the torch model's fingerprint: same layers, same order, same shapes.

Models are built and run on the meta device (structure only, no arithmetic), so the whole zoo
takes seconds; the arithmetic of the scratch layers is checked against PyTorch's in
tests/test_layers.py and, for the layers added for this contract, below.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from fingerprint import CONV_FUNCTIONS, POOL_FUNCTIONS, Case, cases, trace
from torch import nn

import deepnn
from deepnn.layers import conv as scratch

CASES = list(cases())

_CONV_POOL_MODULES = (
    nn.modules.conv._ConvNd,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._LPPoolNd,
    nn.FractionalMaxPool2d,
    nn.FractionalMaxPool3d,
    nn.modules.pooling._MaxUnpoolNd,
)
FORBIDDEN_FUNCTIONS = CONV_FUNCTIONS | POOL_FUNCTIONS


def _torch_conv_pool_modules(model: nn.Module) -> list[str]:
    """``path: Class`` of every convolution or pooling module that is not one of deepnn's scratch layers."""
    return [
        f"{path}: {type(m).__module__}.{type(m).__name__}"
        for path, m in model.named_modules()
        if isinstance(m, _CONV_POOL_MODULES) and type(m).__module__ != scratch.__name__
    ]


def _torch_conv_pool_calls(calls: list[tuple[str, str]]) -> list[str]:
    """``path: F.name`` of every torch convolution or pooling function called (outermost calls)."""
    return sorted({f"{path or '<model>'}: F.{name}" for path, name in calls if name in FORBIDDEN_FUNCTIONS})


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_scratch_contract(case: Case) -> None:
    model = case.build(conv_impl="scratch")
    leftovers = _torch_conv_pool_modules(model)
    assert not leftovers, (
        f"{case.id} built with conv_impl='scratch' still holds torch.nn convolution/pooling modules "
        "(build them through deepnn.layers):\n  " + "\n  ".join(leftovers)
    )
    if case.model != "highway":  # the only model without convolutions
        assert any(type(m).__module__ == scratch.__name__ for m in model.modules())

    calls: list[tuple[str, str]] = []
    steps = trace(model, case.input(), calls=calls)
    assert calls, "the function recorder saw nothing"
    forbidden = _torch_conv_pool_calls(calls)
    assert not forbidden, (
        f"{case.id} with conv_impl='scratch' calls torch's convolution/pooling in forward:\n  " + "\n  ".join(forbidden)
    )
    # Same layers, order and shapes as the torch model, whose fingerprint is the reviewed snapshot
    # (tests/test_fingerprints.py checks the torch side against it).
    assert case.text(steps) == case.snapshot.read_text(), f"{case.id}: scratch model differs from its snapshot"


def test_contract_catches_a_leftover_torch_layer() -> None:
    """The check itself: a torch pooling layer (module or function) in a scratch model is reported."""

    class Leaky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = scratch.Conv2d(1, 2, 3)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(self.pool(self.conv(x)), 1)

    model = Leaky()
    assert _torch_conv_pool_modules(model) == ["pool: torch.nn.modules.pooling.MaxPool2d"]
    calls: list[tuple[str, str]] = []
    trace(model, torch.zeros(1, 1, 8, 8), calls=calls)
    assert _torch_conv_pool_calls(calls) == ["<model>: F.adaptive_avg_pool2d", "pool: F.max_pool2d"]


# --------------------------------------------------------------------------- scratch adaptive average pooling


@pytest.mark.parametrize(("size", "out"), [((7, 7), 1), ((8, 6), (4, 3)), ((7, 7), 4), ((17, 17), 5),
                                           ((5, 9), (None, 2)), ((3, 3), 5)])
def test_scratch_adaptive_avg_pool_equals_torch(size: tuple[int, int], out: Any) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    ours, theirs = scratch.AdaptiveAvgPool2d(out), nn.AdaptiveAvgPool2d(out)
    y, y_ref = ours(x), theirs(x)
    assert y.shape == y_ref.shape and torch.allclose(y, y_ref)
    g = torch.randn_like(y)
    (grad,), (grad_ref,) = torch.autograd.grad(y, x, g), torch.autograd.grad(y_ref, x, g)
    assert torch.allclose(grad, grad_ref)
    assert torch.allclose(ours(x[0]), theirs(x[0]))  # unbatched (C, H, W)


@pytest.mark.parametrize("name", ["nin", "googlenet"])
def test_scratch_heads_equal_torch(name: str) -> None:
    """NiN's global average pooling head and GoogLeNet's auxiliary heads (7×7 → 4×4: unequal windows)
    give torch's numbers; dropout off so training mode is deterministic."""
    kwargs: dict[str, Any] = {"num_classes": 10, "in_channels": 1, "input_size": 28}
    if name == "googlenet":
        kwargs["aux_logits"] = True
    torch.manual_seed(0)
    ref = deepnn.create_model(name, **kwargs)
    ours = deepnn.create_model(name, conv_impl="scratch", **kwargs)
    ours.load_state_dict(ref.state_dict())
    for m in (*ref.modules(), *ours.modules()):
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        got, want = ours.train()(x), ref.train()(x)
    got, want = (got if isinstance(got, tuple) else (got,)), (want if isinstance(want, tuple) else (want,))
    assert len(got) == len(want) == (3 if name == "googlenet" else 1)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
