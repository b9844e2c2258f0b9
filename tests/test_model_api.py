"""The uniform classifier interface (deepnn/models/_api.py) on every registered image classifier, and
``deepnn features`` on a tiny trained run.

Every model: ``forward(x) == forward_head(forward_features(x))`` exactly (eval mode, a 28×28 grey
input, narrowed with ``width_div`` where the builder takes it, to stay fast on one thread), the
feature layer's output is ``forward_features``' output, ``reset_classifier`` changes the outputs but
not the features or the state-dict keys, ``default_cfg`` describes the model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_cli import assert_user_error, deepnn
from torch import nn

import deepnn as dn
from deepnn.models import model_info
from deepnn.models._api import ClassifierMixin, ModelCfg

CLASSIFIERS = dn.list_models(task="classification")
SIZE = 28


def build(name: str, **kwargs) -> nn.Module:
    """The model in the Fashion-MNIST setting, narrowed where it can be, seeded, in eval mode."""
    torch.manual_seed(0)
    if "width_div" in model_info(name).defaults:
        kwargs.setdefault("width_div", 8)
    return dn.create_model(name, num_classes=10, in_channels=1, input_size=SIZE, **kwargs).eval()


def test_every_classifier_is_covered() -> None:
    assert len(CLASSIFIERS) >= 25 and {"lenet", "nin", "highway", "googlenet", "resnet18"} <= set(CLASSIFIERS)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_forward_is_head_of_features_and_reset_classifier(name: str) -> None:
    model = build(name)
    assert isinstance(model, ClassifierMixin)
    x = torch.randn(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    keys = list(model.state_dict())
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
        assert torch.equal(model.forward_head(feats), logits)
        assert logits.shape == (2, 10)
        # CNNs: the last convolutional maps (B, C, H, W); the highway network: its last hidden vector
        assert feats.ndim == (2 if name == "highway" else 4)
        pre = model.forward_head(feats, pre_logits=True)
        # the feature layer's output is what forward_features returns
        seen = {}
        layer = model.get_submodule(model.default_cfg.feature_layer)
        handle = layer.register_forward_hook(lambda m, a, out: seen.setdefault("out", out))
        model(x)
        handle.remove()
        assert torch.equal(seen["out"], feats)

        model.reset_classifier(7)
        assert model.num_classes == 7 and model.default_cfg.num_classes == 7
        assert model(x).shape == (2, 7)
        assert torch.equal(model.forward_features(x), feats)  # the trunk keeps its weights
        assert model.forward_head(feats, pre_logits=True).shape == pre.shape
    assert list(model.state_dict()) == keys  # same module names: checkpoints keep loading


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_default_cfg(name: str) -> None:
    with torch.device("meta"):
        model = dn.create_model(name, num_classes=10, in_channels=1, input_size=SIZE)
    cfg = model.default_cfg
    assert isinstance(cfg, ModelCfg)
    assert cfg.name == name and cfg.paper == model_info(name).paper and cfg.paper
    assert cfg.input_size == (1, SIZE, SIZE) and cfg.num_classes == 10
    if cfg.recipe is not None:
        assert (Path(dn.__file__).resolve().parent.parent / cfg.recipe).is_file()
    assert cfg.recipe == (f"deepnn/recipes/{name}.yaml" if name in ("lenet", "lenet_modern") else None)
    model.get_submodule(cfg.feature_layer)
    if name == "highway":
        assert cfg.first_conv is None
    else:
        conv = model.get_submodule(cfg.first_conv)
        assert isinstance(conv, nn.Conv2d) and conv.in_channels == 1
    with pytest.raises(dataclasses_frozen_error()):
        cfg.num_classes = 3  # type: ignore[misc]


def dataclasses_frozen_error() -> type[Exception]:
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_default_cfg_at_the_papers_input() -> None:
    with torch.device("meta"):
        cfg = dn.create_model("inception_v3").default_cfg
    assert cfg.input_size == (3, 299, 299) and cfg.num_classes == 1000 and cfg.first_conv == "features.stem.0.0"
    assert dn.create_model("lenet").default_cfg.feature_layer == "features.7"  # before LeNet's flatten


@pytest.mark.parametrize("name, n_aux", [("googlenet", 2), ("inception_v3", 1)])
def test_auxiliary_heads(name: str, n_aux: int) -> None:
    """Training mode with aux heads: forward returns (logits, *aux); eval mode: the logits, as the API says."""
    model = build(name, aux_logits=True)
    x = torch.randn(2, 1, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(model(x), model.forward_head(model.forward_features(x)))
        model.reset_classifier(4)
        out = model.train()(x)
    assert isinstance(out, tuple) and len(out) == 1 + n_aux
    assert all(o.shape == (2, 4) for o in out)  # the auxiliary class layers are reset too


def test_nin_reset_keeps_the_scratch_convolutions() -> None:
    from deepnn.layers import conv as scratch

    model = dn.create_model("nin", num_classes=10, in_channels=1, input_size=SIZE, conv_impl="scratch")
    model.reset_classifier(3)
    block = model.get_classifier()
    assert block is model.features[7] and isinstance(block[0][0], scratch.Conv2d)
    assert block[-1][0].out_channels == 3


# --------------------------------------------------------------------------- deepnn features


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("features") / "lenet"
    r = deepnn("train", "lenet", "--epochs", "1", "--set", "data.train_subset=256", "--set", "data.val_size=256",
               "--batch-size", "64", "--no-progress", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "shoe.png"
    pixels = torch.zeros(40, 40, dtype=torch.uint8)
    pixels[20:32, 5:35] = 200
    Image.fromarray(pixels.numpy()).save(path)
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``deepnn ARGS`` in this process (no interpreter start-up): exit status, stdout, stderr."""
    from deepnn.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


PNG = b"\x89PNG\r\n\x1a\n"


def test_features_draws_maps_and_filters(tiny_run: Path, image: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    maps, filters, two = tmp_path / "maps.png", tmp_path / "filters.png", tmp_path / "two.png"
    r = deepnn("features", str(tiny_run), str(image), "-o", str(maps))  # once as a user runs it
    assert r.returncode == 0, r.stderr
    assert "features.7 (16, 5, 5)" in r.stdout and maps.read_bytes()[:8] == PNG
    code, out, err = cli(capsys, "features", str(tiny_run), str(image), "--layer", "features.2",
                         "--layer", "features.7", "--max-maps", "4", "-o", str(two))
    assert code == 0, err
    assert "features.2 (6, 28, 28)" in out and two.read_bytes()[:8] == PNG
    code, out, err = cli(capsys, "features", str(tiny_run), "--filters", "-o", str(filters))
    assert code == 0, err
    assert "6 of 6 kernels of features.0, 5×5" in out and filters.read_bytes()[:8] == PNG


@pytest.mark.parametrize("args, fragments", [
    (["{image}", "--layer", "features.99"], ["no layer 'features.99'", "features.0"]),
    (["{tmp}/missing.png"], ["does not exist"]),
    (["{tmp}/notes.png"], ["cannot read"]),
    (["{image}", "-o", "{tmp}"], ["is a folder"]),
    (["{image}", "-o", "{tmp}/no/x.png"], ["does not exist"]),
    (["{image}", "-o", "/proc/x.png"], ["cannot write"]),
    ([], ["give an IMAGE"]),
    (["{image}", "--filters"], ["takes no IMAGE"]),
], ids=["unknown-layer", "missing-image", "not-an-image", "output-is-folder", "no-such-folder", "unwritable",
        "no-image", "filters-and-image"])
def test_features_bad_inputs_are_one_line_errors(tiny_run: Path, image: Path, tmp_path: Path, args: list[str],
                                                 fragments: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    args = [a.format(image=image, tmp=tmp_path) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "x.png")]
    code, out, err = cli(capsys, "features", str(tiny_run), *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    assert all(f in lines[0] for f in fragments), lines[0]
    assert not (tmp_path / "x.png").exists()


def test_features_error_from_the_command_line(image: Path, tmp_path: Path) -> None:
    assert_user_error(deepnn("features", str(tmp_path / "norun"), str(image), "-o", str(tmp_path / "x.png")),
                      "does not exist")
