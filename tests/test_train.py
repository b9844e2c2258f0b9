"""The training loop: learning on real data, parity with a hand-written loop, exact resume."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deepnn
from deepnn.data import TensorLoader
from deepnn.runs import build_training
from deepnn.train import ClassificationTask, Config, EarlyStopping, Trainer, apply_overrides
from deepnn.train.optim import lr_factor


def small_config(*overrides: str) -> Config:
    return apply_overrides(Config(), ["train.progress=false", *overrides])


def test_short_run_learns_well_above_chance(fmnist) -> None:
    """lenet_modern on 4k real training images for 2 epochs: validation accuracy far above 10%."""
    torch.manual_seed(0)
    cfg = small_config("model.name=lenet_modern", "train.epochs=2", "optim.lr=0.003", "data.batch_size=64")
    x, y = fmnist.train
    trainer = Trainer(deepnn.create_model("lenet_modern"), ClassificationTask(10),
                      TensorLoader(x[:4000], y[:4000], 64, shuffle=True, drop_last=True),
                      TensorLoader(*fmnist.val, 1000), cfg=cfg)
    history = trainer.fit()
    assert history[-1]["val_accuracy"] > 0.75
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_parity_with_hand_written_loop() -> None:
    """Same seed, same data order: the Trainer's weights equal a plain PyTorch loop's after 3 epochs."""
    torch.manual_seed(0)
    x, y = torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))
    loader = TensorLoader(x, y, 32, shuffle=True, seed=3, drop_last=True)
    model = deepnn.create_model("lenet_modern")
    reference = copy.deepcopy(model)

    cfg = small_config("train.epochs=3", "optim.name=sgd", "optim.lr=0.05", "optim.momentum=0.9")
    Trainer(model, ClassificationTask(10), loader, cfg=cfg).fit()

    opt = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9)
    reference.train()
    for epoch in range(3):
        for xb, yb in loader.batches(epoch):
            opt.zero_grad()
            F.cross_entropy(reference(xb), yb).backward()
            opt.step()
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


class DropoutNet(nn.Module):
    """Small model with dropout and batch norm so resuming must restore RNG and buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(),
                                 nn.Dropout(0.5), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class InterruptAt:
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.global_step == self.step:
            trainer._interrupted = True  # what Ctrl-C does (see _graceful_interrupt)


def make_trainer(run_dir: Path, hooks=()) -> Trainer:
    torch.manual_seed(1)
    x, y = torch.randn(320, 1, 28, 28), torch.randint(0, 10, (320,))
    cfg = small_config("train.epochs=3", "sched.name=cosine", "optim.weight_decay=0.01", "train.grad_clip=1.0")
    return Trainer(DropoutNet(), ClassificationTask(10), TensorLoader(x, y, 32, shuffle=True, drop_last=True),
                   TensorLoader(x[:64], y[:64], 64), cfg=cfg, run_dir=run_dir, hooks=hooks)


@pytest.mark.parametrize("stop_at", [7, 10, 23])  # mid-epoch, epoch boundary, later epoch
def test_resume_after_interrupt_is_bit_exact(tmp_path: Path, stop_at: int) -> None:
    straight = make_trainer(tmp_path / "a")
    straight.fit()

    interrupted = make_trainer(tmp_path / "b", hooks=[InterruptAt(stop_at)])
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    resumed = make_trainer(tmp_path / "b")
    torch.manual_seed(12345)  # whatever happened in between must not matter
    resumed.resume(tmp_path / "b")
    assert resumed.global_step == stop_at
    resumed.fit()

    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=0, atol=0, msg=k)
    strip = lambda h: [{k: v for k, v in r.items() if "time" not in k and "per_s" not in k} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(straight.history)


def test_resume_from_weights_only_checkpoint_is_refused(tmp_path: Path) -> None:
    make_trainer(tmp_path).fit()
    with pytest.raises(deepnn.UserError, match="weights only"):
        make_trainer(tmp_path).resume(tmp_path / "best.safetensors")


def test_early_stopping_hook() -> None:
    stopper = EarlyStopping(patience=2)
    trainer = type("T", (), {"stop": False})()
    for acc in (0.5, 0.6, 0.6, 0.55):
        stopper.on_epoch_end(trainer, {"val_accuracy": acc})
    assert trainer.stop


def test_schedules() -> None:
    cfg = Config().sched
    assert lr_factor(cfg, 0, 100, 10) == 1.0
    cfg.name, cfg.warmup_epochs = "cosine", 1.0
    assert lr_factor(cfg, 0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(cfg, 10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 55, 100, 10) == pytest.approx(0.5)
    assert lr_factor(cfg, 100, 100, 10) == pytest.approx(0.0)
    cfg.name = "onecycle"
    assert lr_factor(cfg, 0, 100, 10) == pytest.approx(0.04)
    assert lr_factor(cfg, 25, 100, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 100, 100, 10) == pytest.approx(0.0)
    cfg.name = "bogus"
    with pytest.raises(deepnn.UserError, match="unknown schedule"):
        lr_factor(cfg, 0, 1, 1)


def test_bf16_and_channels_last_run() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    cfg = small_config("train.epochs=1", "train.precision=bf16", "train.channels_last=true",
                       "train.label_smoothing=0.1")
    trainer = Trainer(deepnn.create_model("lenet_modern"), ClassificationTask(10, 0.1),
                      TensorLoader(x, y, 16, shuffle=True), TensorLoader(x, y, 32), cfg=cfg)
    history = trainer.fit()
    assert torch.isfinite(torch.tensor(history[0]["train_loss"]))


def test_build_training_from_config_uses_subset(tmp_path: Path) -> None:
    cfg = small_config("model.name=lenet", "data.train_subset=256", "data.batch_size=64")
    training = build_training(cfg, None)
    trainer, test, facts = training.trainer, training.test, training.facts
    assert len(trainer.train_loader) == 4 and len(test.x) == 10000
    assert facts["classes"][0] == "T-shirt/top" and facts["model_args"]["input_size"] == 28


def test_unknown_device_and_optimizer() -> None:
    from deepnn.train import resolve_device

    with pytest.raises(deepnn.UserError, match="train.device=.tpu7. is out of range"):
        resolve_device("tpu7")
    with pytest.raises(deepnn.UserError, match="train.precision='fp16' is not supported"):
        Trainer(nn.Linear(2, 2), ClassificationTask(2), TensorLoader(torch.zeros(2, 2), torch.zeros(2), 1),
                cfg=small_config("train.precision=fp16"))
    with pytest.raises(deepnn.UserError, match="unknown optimizer"):
        Trainer(nn.Linear(2, 2), ClassificationTask(2), TensorLoader(torch.zeros(2, 2), torch.zeros(2), 1),
                cfg=small_config("optim.name=lion"))


def test_batch_larger_than_the_training_set_is_named() -> None:
    loader = TensorLoader(torch.zeros(100, 2), torch.zeros(100), 128, drop_last=True)
    with pytest.raises(deepnn.UserError, match=r"data.batch_size=128 exceeds the 100 training examples"):
        Trainer(nn.Linear(2, 2), ClassificationTask(2), loader, cfg=small_config("data.batch_size=128"))


def test_git_commit_names_the_checkout(tmp_path: Path) -> None:
    import subprocess

    from deepnn.runs.build import git_commit

    head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True,
                          cwd=Path(deepnn.__file__).parent).stdout.strip()
    commit = git_commit()
    if not head:  # an installed copy outside a checkout
        assert commit is None
    else:
        assert commit is not None and commit.removesuffix("-dirty") == head


def test_oversubscription_warning_only_when_busy_and_threaded(capsys: pytest.CaptureFixture) -> None:
    import os
    from unittest import mock

    from deepnn.runs.build import busy_cores, warn_if_oversubscribed

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        busy = "deepnn.runs.build.busy_cores"
        with mock.patch("os.cpu_count", return_value=2), mock.patch(busy, return_value=2.0):
            assert warn_if_oversubscribed(torch.device("cpu"))
        assert "--threads 1" in capsys.readouterr().err
        with mock.patch("os.cpu_count", return_value=2), mock.patch(busy, return_value=0.1):
            assert not warn_if_oversubscribed(torch.device("cpu"))
        torch.set_num_threads(1)
        with mock.patch("os.cpu_count", return_value=2), mock.patch(busy, return_value=5.0):
            assert not warn_if_oversubscribed(torch.device("cpu"))
        assert 0.0 <= busy_cores(0.05) <= (os.cpu_count() or 1) + 0.01
    finally:
        torch.set_num_threads(before)
