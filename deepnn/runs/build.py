"""A whole training run from a config: data → model → Trainer → test report → run folder.

A run folder holds::

    config.yaml        the resolved config (re-run it with --config)
    metrics.jsonl      one JSON line per epoch (loss, accuracy, lr, time, examples/s)
    curves.png         loss and accuracy curves
    last.safetensors   everything needed to resume
    best.safetensors   weights with the best validation accuracy
    results.json       final test metrics and the facts needed to reproduce them
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from ..analysis import summarize_model
from ..data import TensorLoader, load_image_data
from ..errors import UserError
from ..models import count_parameters, create_model
from .checkpoint import load_checkpoint, load_model_state
from .config import Config
from .plot import plot_curves, read_metrics
from .tasks import ClassificationTask
from .trainer import EarlyStopping, Trainer, resolve_device


class RunLogger:
    """Hook: append each epoch's metrics to ``metrics.jsonl`` and redraw ``curves.png``."""

    def __init__(self, run_dir: Path, title: str) -> None:
        self.path, self.png, self.title = run_dir / "metrics.jsonl", run_dir / "curves.png", title

    def on_fit_start(self, trainer: Trainer) -> None:
        # after a resume, drop lines of epochs the checkpoint does not include
        kept = [r for r in read_metrics(self.path) if r["epoch"] <= trainer.epoch]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(metrics) + "\n")
        plot_curves(read_metrics(self.path), self.png, self.title)


def git_commit() -> str | None:
    """The library's commit, ``<hash>-dirty`` when its tracked files differ from it; ``None`` outside git."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict[str, Any]:
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def build_trainer(cfg: Config, run_dir: Path | None) -> tuple[Trainer, TensorLoader, dict[str, Any]]:
    """Data, model and Trainer for ``cfg``; returns the trainer, the test loader and the data facts."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    data = load_image_data(cfg.data.name, data_dir=cfg.data.data_dir, val_size=cfg.data.val_size,
                           seed=cfg.train.seed)
    device = resolve_device(cfg.train.device)
    c, h, w = data.input_shape
    args = {"num_classes": len(data.classes), "in_channels": c, "input_size": h, **cfg.model.args}
    model = create_model(cfg.model.name, conv_impl=cfg.model.conv_impl, **args)
    if cfg.data.train_subset is not None:
        data.train = (data.train[0][: cfg.data.train_subset], data.train[1][: cfg.data.train_subset])
    on = lambda pair: tuple(t.to(device) for t in pair)  # noqa: E731 - whole dataset on the device
    train = TensorLoader(*on(data.train), cfg.data.batch_size, shuffle=True, seed=cfg.train.seed, drop_last=True)
    val = TensorLoader(*on(data.val), cfg.data.eval_batch_size) if cfg.data.val_size else None
    test = TensorLoader(*on(data.test), cfg.data.eval_batch_size)
    facts = {"model_args": args, "classes": list(data.classes), "mean": data.mean, "std": data.std,
             "input_shape": list(data.input_shape)}
    hooks: list[Any] = []
    if run_dir is not None:
        hooks.append(RunLogger(run_dir, f"{cfg.model.name} on {cfg.data.name}"))
    if cfg.train.early_stop_patience:
        hooks.append(EarlyStopping(cfg.train.early_stop_patience))
    trainer = Trainer(model, ClassificationTask(len(data.classes), cfg.train.label_smoothing), train, val,
                      cfg=cfg, run_dir=run_dir, hooks=hooks, meta={"data": facts})
    return trainer, test, facts


def train_run(cfg: Config, run_dir: str | Path, *, resume: bool = False, command: str | None = None
              ) -> dict[str, Any]:
    """Train per ``cfg`` into ``run_dir`` (resuming from its ``last`` checkpoint if asked); returns results."""
    run_dir = Path(run_dir)
    if not resume and (run_dir / "last.safetensors").exists():
        raise UserError(f"{run_dir} already holds a run; resume it with --resume {run_dir} or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    commit = git_commit()  # the code this run starts with, before anyone edits the checkout during a long run
    trainer, test, facts = build_trainer(cfg, run_dir)
    if resume:
        trainer.resume(run_dir)
    trainer.fit()
    wall = sum(r["train_time"] for r in trainer.history)
    test_metrics = trainer.evaluate(test)
    results = {
        "model": cfg.model.name, "model_args": facts["model_args"], "dataset": cfg.data.name,
        "test_accuracy": test_metrics["accuracy"], "test_loss": test_metrics["loss"],
        "best_val_accuracy": trainer.best_val, "epochs": trainer.epoch, "train_time_s": wall,
        "warmup_time_s": trainer.warmup_time,
        "examples_per_s": sum(r["train_examples_per_s"] for r in trainer.history) / max(len(trainer.history), 1),
        "params": count_parameters(trainer.model),
        "flops": summarize_model(cfg.model.name, facts["input_shape"], **facts["model_args"]).flops,  # per example
        "seed": cfg.train.seed, "precision": cfg.train.precision,
        "device": str(trainer.device), "machine": machine(), "git_commit": commit,
        "command": command or " ".join(sys.argv), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "confusion": test_metrics["confusion"],
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=1))
    return results


def load_run(path: str | Path, which: str = "best") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a trained model from a run folder (or a checkpoint file); returns ``(model, meta)``."""
    path = Path(path)
    if path.is_dir():
        found = [p for p in (path / f"{which}.safetensors", path / "last.safetensors") if p.is_file()]
        if not found:
            raise UserError(f"{path} holds no checkpoint (best.safetensors / last.safetensors); is it a run folder?")
        path = found[0]
    elif not path.exists():
        raise UserError(f"run folder or checkpoint {str(path)!r} does not exist")
    ckpt = load_checkpoint(path)
    cfg = Config.from_dict(ckpt.meta["config"], "checkpoint config")
    model = create_model(cfg.model.name, conv_impl=cfg.model.conv_impl, **ckpt.meta["data"]["model_args"])
    load_model_state(model, ckpt, repr(cfg.model.name))
    model.eval()
    return model, ckpt.meta
