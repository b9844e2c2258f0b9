"""Behaviours of the models (``deepnn.models``: the classifier interface, the shared blocks, LeNet,
AlexNet, VGG, ResNet) that the model tests of the mutation run left open, found by mutation testing
(``benchmarks/mutation.sh``, docs/testing.md). Models are built small (28×28, one channel) or on the
meta device, so every test runs in about a second or less."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import deepnn
from deepnn.models._api import ClassifierMixin, ModelCfg, first_conv_name
from deepnn.models._blocks import Classifier


def _small(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return deepnn.create_model(name, num_classes=10, in_channels=1, input_size=28, **kwargs).eval()


def _x(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(1))


# ---- the classifier interface (deepnn.models._api, Classifier) ---------------------------------------------

@pytest.mark.parametrize("name,classifier", [("lenet", "head.6"), ("alexnet", "head.7"), ("vgg11", "head.7"),
                                             ("resnet18", "head.2")])
def test_reset_classifier_replaces_only_the_class_layer(name: str, classifier: str) -> None:
    model = _small(name)
    x = _x()
    old = model.get_classifier()
    assert model.classifier_name == classifier and model.get_submodule(classifier) is old
    keys = list(model.state_dict())
    with torch.no_grad():
        feats = model.forward_features(x)
        model.reset_classifier(3)
        new = model.get_classifier()
        assert new is not old and isinstance(new, nn.Linear)
        assert (new.in_features, new.out_features) == (old.in_features, 3)
        assert model.num_classes == 3 and model.default_cfg.num_classes == 3
        assert model.default_cfg.name == name  # the rest of the configuration stays
        assert model(x).shape == (2, 3)
        assert torch.equal(model.forward_features(x), feats)
    assert list(model.state_dict()) == keys


@pytest.mark.parametrize("bias", [True, False])
def test_new_classifier_keeps_bias_dtype_and_device(bias: bool) -> None:
    old = nn.Linear(6, 4, bias=bias, dtype=torch.float64, device="meta")
    new = ClassifierMixin().new_classifier(old, 9)
    assert isinstance(new, nn.Linear) and (new.in_features, new.out_features) == (6, 9)
    assert (new.bias is not None) == bias
    assert new.weight.dtype == torch.float64 and new.weight.device.type == "meta"


def test_new_classifier_of_an_unknown_layer_says_which() -> None:
    with pytest.raises(NotImplementedError, match="ClassifierMixin must say how to rebuild its Conv2d classifier"):
        ClassifierMixin().new_classifier(nn.Conv2d(2, 3, 1), 4)


@pytest.mark.parametrize("num_classes", [0, -1])
def test_reset_classifier_rejects_fewer_than_one_class(num_classes: int) -> None:
    model = _small("lenet")
    with pytest.raises(ValueError, match=f"num_classes must be positive, got {num_classes}"):
        model.reset_classifier(num_classes)
    assert model.num_classes == 10


def test_reset_classifier_to_one_class() -> None:
    model = _small("lenet")
    model.reset_classifier(1)
    assert model(_x()).shape == (2, 1)


def test_reset_classifier_of_a_model_built_outside_the_registry() -> None:
    from deepnn.models.lenet import LeNet

    model = LeNet()
    assert model.default_cfg.name is None and "_default_cfg" not in model.__dict__
    model.reset_classifier(4)
    assert "_default_cfg" not in model.__dict__  # nothing to update: default_cfg is computed
    assert model.default_cfg.num_classes == 4


def test_reset_classifier_resets_the_auxiliary_class_layers() -> None:
    head = nn.Sequential(nn.Flatten(), nn.Linear(8, 10))
    aux = nn.Sequential(nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))  # taps the conv output
    features = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AdaptiveAvgPool2d(2))
    model = Classifier(features, head, 10, aux={"0": aux})
    old_aux, old_hidden = aux[-1], aux[1]
    model.reset_classifier(5)
    assert model.aux["0"][-1] is not old_aux and model.aux["0"][-1].out_features == 5
    assert model.aux["0"][1] is old_hidden  # only the class layer is new
    assert model.get_classifier().out_features == 5
    out = model.train()(torch.randn(2, 1, 4, 4))
    assert isinstance(out, tuple) and [o.shape for o in out] == [(2, 5), (2, 5)]


def test_forward_head_of_the_mixin_is_the_familys_job() -> None:
    mixin = ClassifierMixin()
    with pytest.raises(NotImplementedError):
        mixin.forward_head(torch.zeros(1))
    with pytest.raises(NotImplementedError):
        mixin.forward_features(torch.zeros(1))
    assert mixin.feature_layer is None


def test_default_cfg_of_a_model_built_from_its_class() -> None:
    from deepnn.models.resnet import Residual, ResNet

    with torch.device("meta"):
        model = ResNet(Residual, (1, 1, 1, 1), num_classes=7, in_channels=1, input_size=28)
    assert model.default_cfg == ModelCfg(None, "", None, 7, None, "features", "features.stem.0")
    assert first_conv_name(nn.Sequential(nn.Linear(2, 2))) is None


# ---- LeNet (C11) -------------------------------------------------------------------------------------------

def test_lenet_class_defaults_are_the_lectures_setting() -> None:
    from deepnn.models.lenet import LeNet

    model = LeNet()
    assert model.num_classes == 10
    assert model.features[0].in_channels == 1 and model.features[0].padding == (2, 2)  # 28×28 input
    assert isinstance(model.features[2], nn.Sigmoid)  # not modern
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


@pytest.mark.parametrize("name", ["lenet", "lenet_modern", "alexnet", "vgg11", "resnet18"])
def test_models_remember_their_class_count(name: str) -> None:
    model = _small(name)
    assert model.num_classes == 10 and model.default_cfg.num_classes == 10


@pytest.mark.parametrize("name", ["lenet", "lenet_modern"])
def test_lenet_features_end_at_the_second_pooling(name: str) -> None:
    """``forward_features`` gives the (B, 16, 5, 5) maps; the flatten belongs to the head."""
    model = _small(name)
    x = _x()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 16, 5, 5)
        assert model.feature_layer == "features.7"
        assert torch.equal(model.forward_head(feats), model(x))
        assert model.forward_head(feats, pre_logits=True).shape == (2, 84)


# ---- AlexNet (C12) -----------------------------------------------------------------------------------------

def test_alexnet_class_defaults_are_the_papers_network() -> None:
    from deepnn.models.alexnet import AlexNet

    with torch.device("meta"):
        model = AlexNet()
    assert model.num_classes == 1000
    stem = model.features[0][0]
    assert (stem.in_channels, stem.kernel_size, stem.stride) == (3, (11, 11), (4, 4))
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in model.modules())
    assert model.head[1].in_features == 256 * 6 * 6  # a 224×224 input


@pytest.mark.parametrize("size", [93, 95, 224, 227])
def test_alexnet_head_fits_the_large_stem_at_any_size(size: int) -> None:
    """The dense head's input is computed from the stem's output size; a wrong formula fails the forward."""
    with torch.device("meta"):
        model = deepnn.create_model("alexnet", num_classes=5, input_size=size)
        assert model(torch.zeros(1, 3, size, size)).shape == (1, 5)


def test_alexnet_small_stem_needs_15_pixels() -> None:
    with torch.device("meta"):
        deepnn.create_model("alexnet", num_classes=5, in_channels=1, input_size=15)
        with pytest.raises(deepnn.UserError, match="^alexnet needs input_size of at least 15, got 14"):
            deepnn.create_model("alexnet", num_classes=5, in_channels=1, input_size=14)


@pytest.mark.parametrize("name", ["alexnet", "vgg11"])
def test_dense_layers_start_from_a_normal_with_std_0_01(name: str) -> None:
    """Krizhevsky et al. and Simonyan & Zisserman draw the dense weights from N(0, 0.01²), biases 0."""
    model = _small(name)
    dense = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(dense) == 3
    for layer in dense:
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.1)
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))


# ---- ResNet (C16) ------------------------------------------------------------------------------------------

def test_residual_block_defaults_to_stride_one_and_an_identity_shortcut() -> None:
    from deepnn.models.resnet import Residual

    block = Residual(4, 4).eval()
    assert isinstance(block.shortcut, nn.Identity)
    assert block(torch.zeros(1, 4, 6, 6)).shape == (1, 4, 6, 6)


def test_resnet_class_defaults_are_the_papers_network() -> None:
    from deepnn.models.resnet import Residual, ResNet

    with torch.device("meta"):
        model = ResNet(Residual, (2, 2, 2, 2))
    stem_conv = model.features.stem[0][0]
    assert (stem_conv.in_channels, stem_conv.out_channels, stem_conv.kernel_size) == (3, 64, (7, 7))
    assert model.num_classes == 1000 and model.get_classifier().in_features == 512


def test_resnet_width_div_checks_and_floor() -> None:
    for bad in (0, -1, 1.5):
        with pytest.raises(deepnn.UserError, match="^width_div must be a positive integer"):
            deepnn.create_model("resnet18", width_div=bad)
    with torch.device("meta"):
        model = deepnn.create_model("resnet18", num_classes=10, in_channels=1, input_size=28, width_div=128)
    assert model.features.stem[0].out_channels == 1  # 64 // 128 = 0 channels would be none: at least one
    assert model.get_classifier().in_features == 4  # 512 // 128


def test_resnet_takes_inputs_down_to_one_pixel() -> None:
    with torch.device("meta"):
        model = deepnn.create_model("resnet18", num_classes=3, in_channels=1, input_size=1)
        assert model.eval()(torch.zeros(1, 1, 1, 1)).shape == (1, 3)
    with pytest.raises(deepnn.UserError, match="^resnet needs input_size of at least 1, got 0"):
        deepnn.create_model("resnet18", input_size=0)


def test_resnet_needs_four_stage_depths() -> None:
    from deepnn.models.resnet import Residual, ResNet

    with pytest.raises(ValueError):
        ResNet(Residual, (1, 1, 1), num_classes=2, in_channels=1, input_size=28)


# ---- VGG (C13) and the shared blocks -----------------------------------------------------------------------

def test_vgg_class_defaults_are_the_papers_network() -> None:
    from deepnn.models.vgg import VGG

    with torch.device("meta"):
        model = VGG("A")
    first = model.features[0][0]
    assert (first.in_channels, first.out_channels) == (3, 64)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.num_classes == 1000 and model.head[1].in_features == 512 * 7 * 7  # a 224×224 input


def test_vgg_builder_passes_width_div_on() -> None:
    with torch.device("meta"):
        model = deepnn.create_model("vgg11", num_classes=10, in_channels=1, input_size=28, width_div=4)
    assert model.features[0][0].out_channels == 16 and model.head[1].out_features == 1024


def test_vgg_width_div_floors_at_one_channel_and_one_unit() -> None:
    with torch.device("meta"):
        model = deepnn.create_model("vgg11", num_classes=10, in_channels=1, input_size=28, width_div=4096)
    assert model.features[0][0].out_channels == 1  # 64 // 4096 = 0: at least one channel
    assert model.head[1].out_features == 1  # 4096 // 4096
    with pytest.raises(deepnn.UserError, match="^width_div must be a positive integer, got 0"):
        deepnn.create_model("vgg11", width_div=0)


@pytest.mark.parametrize("size,final", [(32, 1), (2, 1), (1, 1), (64, 2)])
def test_vgg_pools_every_map_of_at_least_two_pixels(size: int, final: int) -> None:
    with torch.device("meta"):
        model = deepnn.create_model("vgg11", num_classes=10, in_channels=1, input_size=size)
        feats = model.forward_features(torch.zeros(1, 1, size, size))
    assert feats.shape[-2:] == (final, final)
    assert model.head[1].in_features == 512 * final * final


def test_vgg_input_size_error_names_vgg() -> None:
    with pytest.raises(deepnn.UserError, match="^vgg needs input_size of at least 1, got 0"):
        deepnn.create_model("vgg11", input_size=0)


def test_small_stem_below_75_pixels() -> None:
    from deepnn.models._blocks import SMALL_INPUT, is_small

    assert SMALL_INPUT == 75 and is_small(74) and not is_small(75)
    with torch.device("meta"):
        assert deepnn.create_model("alexnet", input_size=75).features[0][0].kernel_size == (11, 11)
        assert deepnn.create_model("alexnet", input_size=74).features[0][0].kernel_size == (3, 3)


def test_convolutions_start_from_he_normal_fan_out() -> None:
    """He et al. 2015, as torchvision: std = sqrt(2 / fan_out), fan_out = out_channels · k_h · k_w."""
    model = _small("resnet18")
    conv = model.features.stem[0]  # 1 → 64 channels, 3×3: fan_out 576, fan_in 9
    assert conv.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.1)
    assert abs(conv.weight.mean().item()) < 0.01


def test_dense_layers_of_alexnet_are_centred() -> None:
    model = _small("alexnet")
    for layer in (m for m in model.modules() if isinstance(m, nn.Linear)):
        assert abs(layer.weight.mean().item()) < 1e-3


@pytest.mark.parametrize("impl", ["torch", "scratch"])
def test_layer_factories_pass_keyword_arguments(impl: str) -> None:
    from deepnn import layers as L

    with L.use_conv_impl(impl):
        pool = L.AdaptiveAvgPool2d(output_size=(2, 3))
        conv = L.Conv2d(in_channels=1, out_channels=2, kernel_size=3, padding=1)
        maxpool, avgpool = L.MaxPool2d(kernel_size=2, stride=1), L.AvgPool2d(kernel_size=2, stride=1)
    x = torch.randn(1, 1, 4, 6)
    assert pool(x).shape == (1, 1, 2, 3) and conv(x).shape == (1, 2, 4, 6)
    assert maxpool(x).shape == avgpool(x).shape == (1, 1, 3, 5)


def test_recipe_of_names_only_shipped_recipes() -> None:
    from deepnn.models._api import recipe_of

    assert recipe_of("lenet") == "deepnn/recipes/lenet.yaml"
    assert recipe_of("no_such_model") is None


def test_pre_logits_of_a_one_layer_head_is_its_input() -> None:
    model = Classifier(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()), nn.Linear(8, 3), 3).eval()
    x = torch.randn(2, 1, 4, 4)
    feats = model.forward_features(x)
    assert model.classifier_name == "head"
    assert torch.equal(model.forward_head(feats, pre_logits=True), feats)
    assert model.forward_head(feats).shape == (2, 3)
