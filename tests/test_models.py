"""One parametrised smoke test over every registered model (timm's tests/test_models.py idea)."""

from __future__ import annotations

import pytest
import torch

import deepnn
from deepnn.models import model_info

CLASSIFIERS = deepnn.list_models(task="classification")


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_small_variant_forward_backward(name: str) -> None:
    """28×28 single-channel variant: right output shape, finite, every parameter gets a gradient."""
    torch.manual_seed(0)
    model = deepnn.create_model(name, num_classes=10, in_channels=1, input_size=28)
    model.train()
    x = torch.randn(2, 1, 28, 28)
    out = model(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_builder_is_documented(name: str) -> None:
    info = model_info(name)
    assert info.summary, f"{name}: builder needs a docstring"
    assert info.paper, f"{name}: register_model(paper=...) must cite the paper"
    assert {"num_classes", "in_channels", "input_size"} <= set(info.defaults)


def test_registry_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="already registered"):
        deepnn.register_model(lambda **kw: None, name="lenet")


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(deepnn.UserError, match="did you mean lenet"):
        deepnn.create_model("lennet")


def test_unknown_argument_names_model_and_accepted() -> None:
    with pytest.raises(deepnn.UserError, match="does not take 'depth'"):
        deepnn.create_model("lenet", depth=3)


def test_list_models_pattern() -> None:
    assert deepnn.list_models("lenet*") == ["lenet", "lenet_modern"]
    assert deepnn.list_models("no-such-*") == []


def test_lenet_wrong_input_size() -> None:
    with pytest.raises(deepnn.UserError, match="28×28 or 32×32"):
        deepnn.create_model("lenet", input_size=64)
