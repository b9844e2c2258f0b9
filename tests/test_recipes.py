"""The packaged recipes (issue 5): each parses, names its own model, builds, and one trains end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_cli import deepnn

from deepnn.analysis.summary import summarize_model
from deepnn.models import create_model, model_info
from deepnn.train.config import RECIPES_DIR, Config, load_yaml, recipe_path

ISSUE = ["resnet18", "alexnet", "vgg11", "vgg16_bn", "nin", "googlenet", "inception_bn", "highway", "lenet_modern"]
FAST = sorted(p.name.removesuffix("-fast.yaml") for p in RECIPES_DIR.glob("*-fast.yaml"))
ALL = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def test_every_zoo_model_of_the_issue_has_a_fast_recipe() -> None:
    assert set(ISSUE) <= set(FAST)
    assert {"lenet", "lenet_modern"} <= set(ALL)  # the defaults


@pytest.mark.parametrize("stem", ALL)
def test_recipe_parses_names_its_model_and_builds(stem: str) -> None:
    model, _, recipe = stem.partition("-")
    path = recipe_path(model, recipe or None)
    assert path is not None and path.stem == stem
    cfg = Config.from_dict(load_yaml(path), str(path))  # unknown keys and wrong types raise
    cfg.validate()  # every value in range
    assert cfg.model.name == model
    assert path.read_text().startswith("# ")  # says what it is for and where its results are
    if model_info(model).task in ("language_model", "seq2seq"):  # cosine over the time-budgeted planned steps
        assert cfg.sched.name == "cosine"
        create_model(model, vocab_size=84, **cfg.model.args)  # the builder takes model.args
        return
    assert cfg.sched.name == "onecycle"
    summarize_model(model, (1, 28, 28), num_classes=10, **cfg.model.args)  # the builder takes model.args


def test_fast_recipe_trains_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = deepnn("train", "vgg11_bn", "--recipe", "fast", "--set", "data.train_subset=256", "--epochs", "1",
               "--set", "train.ema_decay=0.9", "--set", "train.tta_flip=true", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout and (out / "results.json").is_file()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["crop_padding"] == 2 and saved["data"]["flip"] and saved["train"]["label_smoothing"] == 0.1
    assert saved["train"]["epochs"] == 1 and saved["data"]["train_subset"] == 256
