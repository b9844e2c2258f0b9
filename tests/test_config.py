"""Configs: recipes, overrides, type checks, unknown keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepnn.errors import UserError
from deepnn.train.config import Config, apply_overrides, load_yaml, merge_into, recipe_path


def test_overrides_are_typed() -> None:
    cfg = apply_overrides(Config(), ["optim.lr=0.05", "train.epochs=3", "optim.betas=[0.8, 0.9]",
                                     "train.grad_clip=null", "train.channels_last=true", "model.args.width=2"])
    assert cfg.optim.lr == 0.05 and cfg.train.epochs == 3 and cfg.optim.betas == (0.8, 0.9)
    assert cfg.train.grad_clip is None and cfg.train.channels_last is True and cfg.model.args == {"width": 2}
    assert isinstance(apply_overrides(Config(), ["optim.lr=1"]).optim.lr, float)


@pytest.mark.parametrize(
    "override, message",
    [("optim.lrr=1", "unknown config key optim.lrr .*valid keys of optim: name, lr"),
     ("optim.lr=abc", "optim.lr .*must be a number"),
     ("train.epochs=2.5", "train.epochs .*must be an integer"),
     ("train.compile=1", "must be true or false"),
     ("optim.betas=[1]", "list of 2 values"),
     ("nonsense", "not of the form key=value"),
     ("bogus.x=1", "unknown config key bogus")],
)
def test_bad_overrides(override: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        apply_overrides(Config(), [override])


def test_round_trip_through_dict() -> None:
    cfg = apply_overrides(Config(), ["optim.betas=[0.8, 0.9]", "data.data_dir=/x"])
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_yaml(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        load_yaml(tmp_path / "list.yaml")
    (tmp_path / "key.yaml").write_text("train:\n  epoch: 3\n")
    with pytest.raises(UserError, match=r"unknown config key train.epoch \(in .*key.yaml\)"):
        merge_into(Config(), load_yaml(tmp_path / "key.yaml"), str(tmp_path / "key.yaml"))


@pytest.mark.parametrize("model", ["lenet", "lenet_modern"])
def test_packaged_recipes_parse(model: str) -> None:
    path = recipe_path(model)
    assert path is not None, f"recipes/{model}.yaml is missing"
    cfg = Config()
    merge_into(cfg, load_yaml(path), str(path))
    assert cfg.model.name == model and cfg.train.epochs > 0
