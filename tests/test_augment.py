"""Batch augmentation on the device, the weight average (EMA), flip test-time augmentation, and
exact resume with all of them on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deepnn
from deepnn.data import TensorLoader
from deepnn.data.augment import BatchAugment, FlipAverage, random_crop, random_erase, random_flip
from deepnn.runs import KINDS
from deepnn.train import ClassificationTask, Config, Trainer, apply_overrides
from deepnn.train.checkpoint import load_checkpoint
from deepnn.train.trainer import WeightEMA


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_crop_is_a_window_of_the_zero_padded_image() -> None:
    """Every output equals one of the (2p+1)² windows of its padded input, and offsets vary."""
    x = torch.randn(16, 2, 10, 12)
    p = 2
    out = random_crop(x, p, gen())
    padded = F.pad(x, (p,) * 4)
    offsets = set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                if torch.equal(out[i], padded[i, :, dy:dy + 10, dx:dx + 12])]
        assert hits, f"example {i} is no window of its padded image"
        offsets.add(hits[0])
    assert len(offsets) > 4  # per-example offsets, not one shift for the whole batch
    assert random_crop(x, 0, gen()) is x


def test_random_flip_mirrors_about_half() -> None:
    x = torch.randn(400, 1, 5, 7)
    out = random_flip(x, gen())
    same = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    mirrored = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    assert bool((same | mirrored).all())
    assert 150 < int(mirrored.sum()) < 250


def test_random_erase_zeros_one_rectangle_of_the_papers_size() -> None:
    """Zhong et al. 2017: with probability p, one rectangle of 2-40 % of the image set to the mean (0)."""
    x = torch.rand(300, 1, 28, 28) + 1.0  # no zeros before erasing
    out = random_erase(x, 0.5, gen())
    erased = 0
    for o, i in zip(out, x):
        zero = o[0] == 0  # (H, W)
        if not zero.any():
            assert torch.equal(o, i)
            continue
        erased += 1
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert int(zero.sum()) == h * w  # a filled rectangle
        assert 0.01 <= h * w / 784 <= 0.42  # 2-40 % before rounding the sides to whole pixels
        assert torch.equal(o[0][~zero], i[0][~zero])
    assert 110 < erased < 190


def test_batch_augment_is_seeded_and_keeps_shape_and_device() -> None:
    x = torch.randn(8, 1, 28, 28)
    aug = BatchAugment(crop_padding=4, flip=True, erase_prob=0.5)
    a, b = aug(x, gen(3)), aug(x, gen(3))
    assert torch.equal(a, b) and a.shape == x.shape and a.device == x.device
    assert not torch.equal(a, aug(x, gen(4)))
    assert not BatchAugment().enabled


@pytest.mark.parametrize("world", [2, 4])
def test_sharded_augmentation_is_the_global_batchs_whatever_the_world_size(world: int) -> None:
    """Data-parallel training: the ranks' augmented parts of a global batch, concatenated in rank order,
    are the one-process augmented global batch, batch after batch, through the trainer's hook; every
    rank's generator stays in step with the single process's (one checkpointed state resumes any world
    size); and no two ranks draw the same numbers for their different examples."""
    from types import SimpleNamespace

    from deepnn.data.augment import AugmentHook
    from deepnn.train.distributed import Dist

    aug = BatchAugment(crop_padding=2, flip=True, erase_prob=0.5)
    single = AugmentHook(aug, "cpu", seed=3)
    ranks = [AugmentHook(aug, "cpu", seed=3) for _ in range(world)]
    trainers = [SimpleNamespace(dist=Dist(r, world, r, torch.device("cpu"), "gloo")) for r in range(world)]
    g = gen(0)
    for _ in range(3):  # the generators advance alike
        x, y = torch.rand(16, 1, 12, 12, generator=g) + 1.0, torch.arange(16)  # no zeros before erasing
        want, want_y = single.transform(SimpleNamespace(dist=None), (x, y))
        parts = [h.transform(t, (xs, ys)) for h, t, xs, ys in zip(ranks, trainers, x.chunk(world), y.chunk(world))]
        assert torch.equal(torch.cat([p[0] for p in parts]), want)
        assert torch.equal(torch.cat([p[1] for p in parts]), want_y)
        for h in ranks:
            assert torch.equal(h.generators["augment"].get_state(), single.generators["augment"].get_state())
    # the same image on every rank: each rank crops/flips/erases it its own way
    same = torch.rand(1, 1, 12, 12, generator=g).expand(8, 1, 12, 12) + 1.0
    outs = [h.transform(t, (same, torch.arange(8)))[0] for h, t in zip(ranks, trainers)]
    assert all(not torch.equal(outs[0], o) for o in outs[1:])
    with pytest.raises(ValueError, match="rank < world_size"):
        aug(same, gen(), (2, 2))


@pytest.mark.parametrize("kwargs, fragment", [({"crop_padding": -1}, "data.crop_padding"),
                                              ({"erase_prob": 1.5}, "data.erase_prob")])
def test_bad_augmentation_settings_are_user_errors(kwargs: dict, fragment: str) -> None:
    with pytest.raises(deepnn.UserError, match=fragment):
        BatchAugment(**kwargs)


def test_flip_average_is_the_mean_probability_of_both_views() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x = torch.randn(5, 1, 3, 4)
    out = FlipAverage(net)(x)
    expected = (net(x).softmax(-1) + net(x.flip(-1)).softmax(-1)) / 2
    torch.testing.assert_close(out.exp(), expected)
    torch.testing.assert_close(FlipAverage(net)(x.flip(-1)), out)  # the mirror image gets the same answer


class TinyNet(nn.Module):
    """Conv + batch norm + dropout: resuming must restore weights, buffers and both RNGs."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(4),
                                 nn.Flatten(), nn.Dropout(0.3), nn.Linear(4 * 7 * 7, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def config(*overrides: str) -> Config:
    return apply_overrides(Config(), ["train.progress=false", "train.epochs=2", *overrides])


AUGMENTED = ("data.crop_padding=2", "data.flip=true", "data.erase_prob=0.5", "train.ema_decay=0.9",
             "train.tta_flip=true")


def make_trainer(run_dir: Path | None, *overrides: str, hooks=()) -> Trainer:
    """A Trainer wired as `deepnn train` wires one (the image task kind's task and augmentation hook)."""
    torch.manual_seed(1)
    x, y = torch.randn(192, 1, 28, 28), torch.randint(0, 10, (192,))
    cfg, kind = config(*overrides), KINDS["classification"]
    task = kind.make_task(cfg, {"classes": list("0123456789")})
    return Trainer(TinyNet(), task, TensorLoader(x, y, 32, shuffle=True, drop_last=True),
                   TensorLoader(x[:64], y[:64], 64), cfg=cfg, run_dir=run_dir,
                   hooks=[*kind.hooks(cfg, torch.device("cpu")), *hooks])


class InterruptAt:
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.global_step == self.step:
            trainer._interrupted = True  # what Ctrl-C does


def test_augmentation_changes_training() -> None:
    plain, augmented = make_trainer(None), make_trainer(None, "data.crop_padding=2", "data.flip=true")
    plain.fit()
    augmented.fit()
    assert not torch.equal(plain.model.net[0].weight, augmented.model.net[0].weight)


@pytest.mark.parametrize("stop_at", [4, 9])  # mid-epoch, in the second epoch
def test_resume_with_augmentation_and_ema_is_bit_exact(tmp_path: Path, stop_at: int) -> None:
    straight = make_trainer(tmp_path / "a", *AUGMENTED)
    straight.fit()
    interrupted = make_trainer(tmp_path / "b", *AUGMENTED, hooks=[InterruptAt(stop_at)])
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert "augment" in load_checkpoint(tmp_path / "b").rng
    resumed = make_trainer(tmp_path / "b", *AUGMENTED)
    torch.manual_seed(12345)
    resumed.resume(tmp_path / "b")
    resumed.fit()
    for ours, theirs in ((resumed.model, straight.model), (resumed.ema.module, straight.ema.module)):
        for k, v in theirs.state_dict().items():
            torch.testing.assert_close(ours.state_dict()[k], v, rtol=0, atol=0, msg=k)
    strip = lambda h: [{k: v for k, v in r.items() if "time" not in k and "per_s" not in k} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(straight.history)


def test_warm_up_leaves_the_run_unchanged() -> None:
    """fit() warms up before the clock on CUDA; on any device the warm-up must not change a single
    number of the run: weights, batch-norm statistics, optimizer, EMA, augmentation and dropout draws."""
    straight, warmed = make_trainer(None, *AUGMENTED), make_trainer(None, *AUGMENTED)
    torch.manual_seed(7)  # dropout draws from the global generator, which warm_up must leave alone
    straight.fit()
    torch.manual_seed(7)
    before = {k: v.clone() for k, v in warmed.model.state_dict().items()}
    assert warmed.warm_up(steps=3) > 0
    for k, v in before.items():
        torch.testing.assert_close(warmed.model.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert not warmed.optimizer.state
    warmed.fit()
    for ours, theirs in ((warmed.model, straight.model), (warmed.ema.module, straight.ema.module)):
        for k, v in theirs.state_dict().items():
            torch.testing.assert_close(ours.state_dict()[k], v, rtol=0, atol=0, msg=k)


def test_ema_follows_the_formula_and_is_what_evaluation_and_best_use(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, "train.ema_decay=0.5", "train.epochs=1")
    assert trainer.hooks[0] is trainer.ema and trainer.eval_model is trainer.ema.module
    start = trainer.ema.module.net[0].weight.clone()
    trainer.global_step = 3  # d = min(0.5, 4 / 13) = 4/13
    trainer.model.net[0].weight.data.add_(1.0)
    trainer.ema.on_step_end(trainer)
    torch.testing.assert_close(trainer.ema.module.net[0].weight, 4 / 13 * start + 9 / 13 * trainer.model.net[0].weight)

    trainer = make_trainer(tmp_path / "run", "train.ema_decay=0.9", "train.epochs=1")
    trainer.fit()
    ema = trainer.ema.module
    assert not torch.equal(ema.net[0].weight, trainer.model.net[0].weight)
    val = trainer.evaluate(trainer.val_loader)
    assert val == ClassificationTask(10).evaluate(ema, trainer.device_batches(trainer.val_loader))
    best = load_checkpoint(tmp_path / "run" / "best.safetensors")
    torch.testing.assert_close(best.model["net.0.weight"], ema.net[0].weight, rtol=0, atol=0)
    assert not best.ema and not best.rng
    last = load_checkpoint(tmp_path / "run" / "last.safetensors")
    torch.testing.assert_close(last.model["net.0.weight"], trainer.model.net[0].weight, rtol=0, atol=0)
    torch.testing.assert_close(last.ema["net.0.weight"], ema.net[0].weight, rtol=0, atol=0)


def test_tta_flip_evaluates_the_flip_average() -> None:
    trainer = make_trainer(None, "train.tta_flip=true", "train.epochs=1")
    got = trainer.evaluate(trainer.val_loader)
    want = ClassificationTask(10).evaluate(FlipAverage(trainer.model), trainer.device_batches(trainer.val_loader))
    plain = ClassificationTask(10).evaluate(trainer.model, trainer.device_batches(trainer.val_loader))
    assert got == want and got["loss"] != plain["loss"]


def test_defaults_add_nothing_and_bad_decay_is_refused() -> None:
    trainer = make_trainer(None)
    assert trainer.transforms == [] and trainer.ema is None and trainer.generators == {}
    with pytest.raises(deepnn.UserError, match="train.ema_decay"):
        WeightEMA(nn.Linear(2, 2), 1.0)
