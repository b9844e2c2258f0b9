"""The from-scratch layers (``deepnn.layers.conv``) against PyTorch's, and LeNet built from
them against LeNet built from PyTorch's: same weights, same losses while training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import deepnn
from deepnn import layers as L
from deepnn.errors import UserError
from deepnn.layers import conv as scratch


def _twins(
    torch_cls: type[nn.Module], scratch_cls: type[nn.Module], *args, **kwargs
) -> tuple[nn.Module, nn.Module]:
    """The torch layer and ours, built from the same seed, in float64."""
    torch.manual_seed(0)
    theirs = torch_cls(*args, **kwargs).double()
    torch.manual_seed(0)
    ours = scratch_cls(*args, **kwargs).double()
    return theirs, ours


def _assert_same_forward_backward(theirs: nn.Module, ours: nn.Module, x: torch.Tensor) -> None:
    x_theirs, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_theirs, y_ours = theirs(x_theirs), ours(x_ours)
    assert y_ours.shape == y_theirs.shape
    assert torch.allclose(y_ours, y_theirs)
    upstream = torch.randn_like(y_theirs)
    y_theirs.backward(upstream)
    y_ours.backward(upstream)
    assert torch.allclose(x_ours.grad, x_theirs.grad)
    for (name, p_theirs), p_ours in zip(theirs.named_parameters(), ours.parameters(), strict=True):
        assert torch.allclose(p_ours.grad, p_theirs.grad), name


@pytest.mark.parametrize("args,kwargs", [
    ((1, 6, 5), {"padding": 2}),
    ((6, 16, 5), {}),
    ((3, 8, (3, 2)), {"stride": (2, 1), "padding": (1, 0), "bias": False}),
    ((4, 4, 3), {"padding": "same"}),
    ((4, 2, 3), {"padding": "valid", "stride": 2}),
])
def test_conv2d_layer_matches_torch(args, kwargs) -> None:
    theirs, ours = _twins(nn.Conv2d, scratch.Conv2d, *args, **kwargs)
    assert isinstance(ours, nn.Conv2d)
    assert repr(ours).replace(type(ours).__module__, "") == repr(theirs).replace("torch.nn.modules.conv", "")
    sd_theirs, sd_ours = theirs.state_dict(), ours.state_dict()
    assert list(sd_ours) == list(sd_theirs)
    assert all(torch.equal(sd_ours[k], sd_theirs[k]) for k in sd_theirs)  # same init, same random numbers
    x = torch.randn(3, args[0], 11, 10, dtype=torch.float64)
    _assert_same_forward_backward(theirs, ours, x)
    _assert_same_forward_backward(theirs, ours, x[0])  # unbatched (c_i, H, W)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("args,kwargs", [((2,), {"stride": 2}), ((3,), {"stride": 1, "padding": 1}),
                                         (((3, 2),), {"padding": (1, 0)}), ((2,), {})])
def test_pool_layers_match_torch(kind, args, kwargs) -> None:
    twins = {"max": (nn.MaxPool2d, scratch.MaxPool2d), "avg": (nn.AvgPool2d, scratch.AvgPool2d)}
    torch_cls, scratch_cls = twins[kind]
    theirs, ours = _twins(torch_cls, scratch_cls, *args, **kwargs)
    assert isinstance(ours, torch_cls)
    assert list(ours.state_dict()) == [] and list(ours.parameters()) == []  # no learnable parameters (C10)
    _assert_same_forward_backward(theirs, ours, torch.randn(2, 3, 9, 8, dtype=torch.float64))


@pytest.mark.parametrize("build,message", [
    (lambda: scratch.Conv2d(4, 4, 3, groups=2), "groups=2"),
    (lambda: scratch.Conv2d(4, 4, 3, dilation=2), r"dilation=\(2, 2\)"),
    (lambda: scratch.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), "padding_mode='reflect'"),
    (lambda: scratch.Conv2d(4, 4, 2, padding="same"), "even kernel"),
    (lambda: scratch.MaxPool2d(2, ceil_mode=True), "ceil_mode=True"),
    (lambda: scratch.MaxPool2d(2, dilation=2), r"dilation=\(2, 2\)"),
    (lambda: scratch.MaxPool2d(2, return_indices=True), "return_indices=True"),
    (lambda: scratch.AvgPool2d(2, count_include_pad=False), "count_include_pad=False"),
    (lambda: scratch.AvgPool2d(2, divisor_override=3), "divisor_override=3"),
    (lambda: scratch.AvgPool2d(2, ceil_mode=True), "ceil_mode=True"),
])
def test_unsupported_options_raise_when_built(build, message) -> None:
    with pytest.raises(UserError, match=message) as info:
        build()
    assert "conv_impl='torch'" in str(info.value)


def test_switch_builds_scratch_layers() -> None:
    with L.use_conv_impl("scratch"):
        layers = L.Conv2d(1, 2, 3), L.MaxPool2d(2), L.AvgPool2d(2)
    assert [type(m) for m in layers] == [scratch.Conv2d, scratch.MaxPool2d, scratch.AvgPool2d]
    assert type(L.Conv2d(1, 2, 3)) is nn.Conv2d  # the default is back outside the block


@pytest.mark.parametrize("name", ["lenet", "lenet_modern"])
def test_lenet_scratch_equals_torch_while_training(name: str) -> None:
    """Same seed → same weights; then three SGD steps on the same batch give the same losses and weights."""
    models = {}
    for impl in ("torch", "scratch"):
        torch.manual_seed(0)
        models[impl] = deepnn.create_model(name, conv_impl=impl).double()
    theirs, ours = models["torch"], models["scratch"]
    assert any(isinstance(m, scratch.Conv2d) for m in ours.modules())
    assert not any(isinstance(m, scratch.Conv2d) for m in theirs.modules())
    sd_theirs, sd_ours = theirs.state_dict(), ours.state_dict()
    assert list(sd_ours) == list(sd_theirs)
    assert all(torch.equal(sd_ours[k], sd_theirs[k]) for k in sd_theirs)

    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, 1, 28, 28, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (16,), generator=g)
    losses = {}
    for impl, model in models.items():
        opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        losses[impl] = []
        for _ in range(3):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[impl].append(loss.item())
    assert losses["scratch"] == pytest.approx(losses["torch"], rel=1e-10, abs=1e-12)
    assert losses["torch"][-1] != losses["torch"][0]  # the steps did change the model
    for (k, p_theirs), p_ours in zip(theirs.state_dict().items(), ours.state_dict().values(), strict=True):
        assert torch.allclose(p_ours, p_theirs, rtol=1e-9, atol=1e-12), k


def test_checkpoints_move_between_implementations() -> None:
    torch.manual_seed(0)
    trained = deepnn.create_model("lenet")
    ours = deepnn.create_model("lenet", conv_impl="scratch")
    ours.load_state_dict(trained.state_dict())
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(ours(x), trained(x), atol=1e-6)


@pytest.mark.parametrize("name", ["alexnet", "nin", "googlenet", "inception_v3", "resnet18", "vgg11_bn"])
def test_zoo_models_build_from_scratch_layers(name: str) -> None:
    """Models other than LeNet (strided, asymmetric 1×7 kernels, padded max and average pooling) run on
    the scratch layers and give the torch-built twin's outputs."""
    if name not in deepnn.list_models():
        pytest.skip(f"{name} is not registered")
    outputs = []
    for impl in ("torch", "scratch"):
        torch.manual_seed(0)
        model = deepnn.create_model(name, conv_impl=impl, num_classes=10, in_channels=1, input_size=28).eval()
        with torch.no_grad():
            outputs.append(model(torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))))
    theirs, ours = outputs
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5 * theirs.abs().max().item())
