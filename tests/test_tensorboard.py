"""``deepnn train --tensorboard``: event files in RUN/tensorboard/, read back with TensorBoard's own reader."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import deepnn
from deepnn.runs import train_run
from deepnn.train import Config, apply_overrides

try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
except ImportError:  # pragma: no cover - the dev extra installs it
    EventAccumulator = None

needs_tensorboard = pytest.mark.skipif(EventAccumulator is None,
                                       reason="the tensorboard package is not installed (pip install "
                                              "'deepnn[tensorboard]', part of the dev extra)")


def read_events(run: Path) -> EventAccumulator:
    files = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1, files
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0, "images": 0})
    acc.Reload()
    return acc


@needs_tensorboard
def test_image_run_logs_scalars_per_record_and_per_step(tmp_path: Path) -> None:
    cfg = apply_overrides(Config(), ["model.name=lenet", "train.progress=false", "train.epochs=2",
                                     "data.train_subset=512", "data.val_size=256", "data.batch_size=64",
                                     "train.tensorboard=true", "train.tensorboard_every_steps=4"])
    results = train_run(cfg, tmp_path / "run")
    acc = read_events(tmp_path / "run")
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr", "throughput/examples_per_s",
            "train/step_loss"} <= tags
    val_acc = acc.Scalars("val/accuracy")
    assert [e.step for e in val_acc] == [8, 16]  # one per record (epoch end), at the global step
    records = [r for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    import json

    last = json.loads(records[-1])
    assert val_acc[-1].value == pytest.approx(last["val_accuracy"])
    assert acc.Scalars("val/loss")[-1].value == pytest.approx(last["val_loss"], rel=1e-6)
    assert results["best_val_accuracy"] == pytest.approx(max(e.value for e in val_acc))
    assert [e.step for e in acc.Scalars("train/step_loss")] == [4, 8, 12, 16]
    assert "val/predictions" in acc.Tags()["images"]


@needs_tensorboard
def test_language_model_run_logs_a_text_sample(tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog.\n" * 60)
    cfg = apply_overrides(Config(), ["model.name=char_gru", f"data.path={text}", "train.progress=false",
                                     "train.epochs=1", "data.batch_size=4", "data.seq_len=16",
                                     "model.args.hidden_size=16", "train.tensorboard=true"])
    train_run(cfg, tmp_path / "run")
    acc = read_events(tmp_path / "run")
    assert {"train/loss", "val/loss", "val/perplexity", "val/bits_per_char", "throughput/tokens_per_s"} <= set(
        acc.Tags()["scalars"])
    assert "sample/text_summary" in acc.Tags()["tensors"]
    sample = acc.Tensors("sample/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert len(sample.strip()) > 100


def test_without_the_package_it_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    cfg = apply_overrides(Config(), ["model.name=lenet", "train.progress=false", "train.epochs=1",
                                     "data.train_subset=128", "data.val_size=128", "train.tensorboard=true"])
    with pytest.raises(deepnn.UserError, match=r"pip install 'deepnn\[tensorboard\]'"):
        train_run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
