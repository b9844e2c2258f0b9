"""One readable training loop for every task (minGPT / Lightning Fabric style).

The loop is ``for epoch: for batch: set lr → augment → forward (task.step) → backward → clip → step``,
then validation, checkpoints and hooks. Everything else is an option of the config:
bf16 autocast, ``channels_last``, ``torch.compile``, gradient clipping, schedules, batch
augmentation on the device (``data.crop_padding``/``flip``/``erase_prob``, applied to training
batches only, in :meth:`Trainer.to_device`), a weight average for evaluation
(``train.ema_decay``, the :class:`WeightEMA` hook) and flip test-time augmentation (``train.tta_flip``).

Hooks are plain objects with any of ``on_fit_start(trainer)``, ``on_step_end(trainer)``,
``on_epoch_end(trainer, metrics)``, ``on_fit_end(trainer)``; setting ``trainer.stop = True``
ends training after the current epoch (see :class:`EarlyStopping`).

Interrupting (Ctrl-C) finishes the current step, writes ``last.safetensors`` and raises
``KeyboardInterrupt``; :meth:`Trainer.resume` continues bit-for-bit from there.
"""

from __future__ import annotations

import copy
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import TensorLoader
from ..data.augment import BatchAugment, FlipAverage
from ..errors import UserError
from .checkpoint import (
    load_checkpoint,
    load_model_state,
    load_optimizer_state,
    save_checkpoint,
    set_rng_states,
)
from .config import Config
from .optim import build_optimizer, lr_factor

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}  # train.precision -> compute dtype


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA and MPS run asynchronously), so a clock read after it is honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple's MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device=cuda but no CUDA GPU is available; use train.device=auto or cpu")
    return dev


class EarlyStopping:
    """Stop when ``metric`` has not improved for ``patience`` epochs."""

    def __init__(self, patience: int, metric: str = "val_accuracy", mode: str = "max") -> None:
        self.patience, self.metric, self.sign = patience, metric, 1 if mode == "max" else -1
        self.best: float | None = None
        self.bad_epochs = 0

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        value = self.sign * metrics[self.metric]
        if self.best is None or value > self.best:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                trainer.stop = True


class WeightEMA:
    """Hook: an exponential moving average of the weights, used for evaluation.

    Averaging the iterates (Polyak & Juditsky 1992) in its exponential form, as in Szegedy et al.
    2016 and TensorFlow's ``ExponentialMovingAverage``: after step t,
    ``ema ← d·ema + (1 − d)·w`` with ``d = min(decay, (1 + t) / (10 + t))``, so early on the
    average forgets the random initialisation quickly. Floating-point buffers (batch-norm
    statistics) are averaged the same way; integer buffers are copied.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise UserError(f"train.ema_decay must be between 0 and 1 (e.g. 0.999), got {decay}; null turns it off")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def on_step_end(self, trainer: Trainer) -> None:
        t = trainer.global_step
        d = min(self.decay, (1 + t) / (10 + t))
        ema, live = self.module.state_dict(), trainer.model.state_dict()  # tensors sharing the modules' storage
        floats = [k for k, v in ema.items() if v.is_floating_point()]
        torch._foreach_lerp_([ema[k] for k in floats], [live[k] for k in floats], 1 - d)  # one fused launch
        for k in ema.keys() - set(floats):
            ema[k].copy_(live[k])


class Trainer:
    """Train ``model`` on ``task`` with the options in ``cfg``.

    Args:
        model: any ``nn.Module``; the task decides what its outputs mean.
        task: e.g. :class:`~deepnn.train.tasks.ClassificationTask`.
        train_loader: batches for training (their order depends only on seed and epoch).
        val_loader: batches for validation after each epoch (optional).
        cfg: the run's :class:`~deepnn.train.config.Config`.
        run_dir: where ``last``/``best`` checkpoints go; ``None`` writes nothing.
        hooks: objects with optional ``on_*`` methods (see the module docstring).
        meta: extra JSON-able facts stored in checkpoints (class names, normalisation, ...).

    With ``train.ema_decay`` set, ``trainer.ema`` (a :class:`WeightEMA`, the first hook) holds the
    averaged model: validation, :meth:`evaluate` and ``best`` checkpoints use it, ``last`` keeps both.
    """

    def __init__(self, model: nn.Module, task: Any, train_loader: TensorLoader,
                 val_loader: TensorLoader | None = None, *, cfg: Config, run_dir: str | Path | None = None,
                 hooks: Iterable[Any] = (), meta: dict[str, Any] | None = None) -> None:
        if cfg.train.precision not in PRECISIONS:
            raise UserError(f"train.precision={cfg.train.precision!r} is not supported; "
                            f"use one of {', '.join(PRECISIONS)}")
        self.cfg, self.task = cfg, task
        self.train_loader, self.val_loader = train_loader, val_loader
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.meta = dict(meta or {})
        self.device = resolve_device(cfg.train.device)
        if self.device.type == "cuda":  # fixed shapes: cuDNN times its algorithms once, then reuses the fastest
            torch.backends.cudnn.benchmark = True
        self.memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        augment = BatchAugment(cfg.data.crop_padding, cfg.data.flip, cfg.data.erase_prob)
        self.augment = augment if augment.enabled else None
        # the trainer's own random draws (augmentation), saved in `last` checkpoints so that resuming is exact
        self.generators: dict[str, torch.Generator] = {}
        if self.augment is not None:
            self.generators["augment"] = torch.Generator(device=self.device).manual_seed(cfg.train.seed)
        self.ema = WeightEMA(self.model, cfg.train.ema_decay) if cfg.train.ema_decay is not None else None
        self.hooks = [self.ema, *hooks] if self.ema is not None else list(hooks)
        self.forward_model = torch.compile(self.model) if cfg.train.compile else self.model
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        if len(train_loader) == 0:
            raise UserError(f"no training batch: data.batch_size={cfg.data.batch_size} exceeds the "
                            f"{len(getattr(train_loader, 'x', ()))} training examples (an incomplete last batch is "
                            "dropped); lower data.batch_size or raise data.train_subset")
        lr_factor(cfg.sched, 0, self.total_steps, len(train_loader))  # reject a bad schedule before training
        self.epoch = 0  # epochs completed
        self.step_in_epoch = 0  # batches done in the current epoch
        self.global_step = 0
        self.epoch_stats: dict[str, float] = {}  # running sums of the current epoch (kept on resume)
        self.best_val: float | None = None
        self.history: list[dict[str, Any]] = []
        self.stop = False
        self._interrupted = False
        self.warmup_time = 0.0  # seconds of :meth:`warm_up` before training (CUDA only)

    # ---- helpers -------------------------------------------------------------------------
    def autocast(self) -> torch.autocast:
        """bf16 autocast when ``train.precision=bf16`` (CPU with AVX-512/AMX, CUDA), else a no-op."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.train.precision == "bf16")

    def to_device(self, batch: tuple[torch.Tensor, ...], augment: bool = False) -> tuple[torch.Tensor, ...]:
        """Move ``batch`` to the device; ``augment`` (training batches) applies the augmentation to its inputs."""
        x, *rest = (t.to(self.device, non_blocking=True) for t in batch)
        if augment and self.augment is not None:
            x = self.augment(x, self.generators["augment"])
        if x.ndim == 4:
            x = x.contiguous(memory_format=self.memory_format)
        return (x, *rest)

    def device_batches(self, loader: TensorLoader, epoch: int = 0, start: int = 0,
                       augment: bool = False) -> Iterator[tuple]:
        return (self.to_device(b, augment) for b in loader.batches(epoch, start))

    @property
    def total_steps(self) -> int:
        return self.cfg.train.epochs * len(self.train_loader)

    def _call(self, event: str, *args: Any) -> None:
        for h in self.hooks:
            fn = getattr(h, event, None)
            if fn is not None:
                fn(self, *args)

    # ---- the loop ------------------------------------------------------------------------
    def train_one_epoch(self) -> dict[str, float]:
        """Run the remaining batches of epoch ``self.epoch``; returns loss, accuracy, examples/s."""
        self.model.train()
        cfg = self.cfg.train
        n = len(self.train_loader)
        sums = {k: torch.tensor(v) for k, v in self.epoch_stats.items()}
        step_hooks = [h.on_step_end for h in self.hooks if hasattr(h, "on_step_end")]
        bar = tqdm(total=n, initial=self.step_in_epoch, desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                   disable=not cfg.progress, unit="batch", dynamic_ncols=True, leave=True)
        seen, t0 = 0, time.perf_counter()
        for batch in self.device_batches(self.train_loader, self.epoch, self.step_in_epoch, augment=True):
            factor = lr_factor(self.cfg.sched, self.global_step, self.total_steps, n)
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = base * factor
            with self.autocast():
                loss, stats = self.task.step(self.forward_model, batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            for k, v in stats.items():
                sums[k] = sums[k] + v.detach() if k in sums else v.detach()
            self.global_step += 1
            self.step_in_epoch += 1
            seen += len(batch[0])
            for fn in step_hooks:
                fn(self)
            if bar.disable is False and (self.step_in_epoch % 25 == 0 or self.step_in_epoch == n):
                m = self.task.summarize(sums)
                bar.set_postfix(loss=f"{m['loss']:.4f}", acc=f"{m.get('accuracy', 0):.4f}",
                                ex_s=f"{seen / (time.perf_counter() - t0):.0f}", refresh=False)
                bar.update(self.step_in_epoch - bar.n)
            if self._interrupted:
                break
        bar.close()
        synchronize(self.device)  # the GPU may still be running the last steps the loop queued
        elapsed = time.perf_counter() - t0
        self.epoch_stats = {k: float(v) for k, v in sums.items()}
        return {**self.task.summarize(sums), "time": elapsed, "examples_per_s": seen / max(elapsed, 1e-9)}

    def warm_up(self, steps: int = 2) -> float:
        """Pay the one-time costs of the first training steps before the clock starts; returns seconds.

        On CUDA the first step of each shape is slow (cuDNN times every algorithm of every convolution,
        ``cudnn.benchmark``; the caching allocator grows): 2 of the 10 s of a short GPU run.
        :meth:`fit` therefore first trains a throwaway copy of the model, with its own optimizer, for
        ``steps`` steps on the first training batch, so that ``train_time`` counts training alone (as
        airbench does; the seconds are reported as ``warmup_time_s``). The model, the optimizer, the
        data order and every random stream are left as they were: a run is the same with or without it.
        """
        t0 = time.perf_counter()
        shadow = copy.deepcopy(self.model)
        optimizer = build_optimizer(shadow, self.cfg.optim)
        first = next(self.train_loader.batches(self.epoch, self.step_in_epoch))
        generators = {k: g.get_state() for k, g in self.generators.items()}
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else [], device_type="cuda"):
            for _ in range(steps):
                with self.autocast():
                    loss, _ = self.task.step(shadow, self.to_device(first, augment=True))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        for k, state in generators.items():
            self.generators[k].set_state(state)
        synchronize(self.device)
        return time.perf_counter() - t0

    @property
    def eval_model(self) -> nn.Module:
        """The weights evaluation uses: the moving average with ``train.ema_decay``, else the model."""
        return self.ema.module if self.ema is not None else self.model

    def evaluate(self, loader: TensorLoader) -> dict[str, Any]:
        """The task's metrics on ``loader`` (eval mode, autocast as in training; :attr:`eval_model`,
        averaged over each image and its mirror image with ``train.tta_flip``)."""
        model = FlipAverage(self.eval_model) if self.cfg.train.tta_flip else self.eval_model
        return self.task.evaluate(model, self.device_batches(loader), autocast=self.autocast)

    def fit(self) -> list[dict[str, Any]]:
        """Train until ``train.epochs`` (or a hook sets ``stop``); returns the per-epoch metrics."""
        self._call("on_fit_start")
        if self.device.type == "cuda" and self.epoch < self.cfg.train.epochs:
            self.warmup_time = self.warm_up()
        with _graceful_interrupt(self):
            while self.epoch < self.cfg.train.epochs and not self.stop:
                train = self.train_one_epoch()
                if self._interrupted:
                    self.save("last")
                    raise KeyboardInterrupt
                metrics: dict[str, Any] = {"epoch": self.epoch + 1, "step": self.global_step,
                                           "lr": self.optimizer.param_groups[0]["lr"]}
                metrics.update({f"train_{k}": v for k, v in train.items()})
                if self.val_loader is not None:
                    val = self.evaluate(self.val_loader)
                    metrics.update({f"val_{k}": v for k, v in val.items() if k != "confusion"})
                self.epoch += 1
                self.step_in_epoch, self.epoch_stats = 0, {}
                self.history.append(metrics)
                val_acc = metrics.get("val_accuracy")
                if val_acc is not None and (self.best_val is None or val_acc > self.best_val):
                    self.best_val = val_acc
                    self.save("best")
                self.save("last")
                self._call("on_epoch_end", metrics)
        self._call("on_fit_end")
        return self.history

    # ---- checkpoints ---------------------------------------------------------------------
    def state_meta(self) -> dict[str, Any]:
        return {**self.meta, "config": self.cfg.to_dict(), "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step, "epoch_stats": self.epoch_stats, "best_val": self.best_val,
                "history": self.history}

    def save(self, which: str) -> Path | None:
        """Write ``<run_dir>/<which>.safetensors``: ``last`` holds everything to resume, ``best`` the
        weights that were validated (:attr:`eval_model`)."""
        if self.run_dir is None:
            return None
        path, meta = self.run_dir / f"{which}.safetensors", self.state_meta()
        if which != "last":
            return save_checkpoint(path, self.eval_model, meta)
        return save_checkpoint(path, self.model, meta, optimizer=self.optimizer, rng=True, generators=self.generators,
                               ema=self.ema.module if self.ema is not None else None)

    def resume(self, path: str | Path) -> None:
        """Restore weights, optimizer, counters and RNG from a ``last`` checkpoint (or its run folder)."""
        ckpt = load_checkpoint(path)
        if not ckpt.optim:
            raise UserError(f"{ckpt.path} holds weights only (a 'best' checkpoint); resume from last.safetensors")
        load_model_state(self.model, ckpt, repr(self.cfg.model.name))
        load_optimizer_state(self.optimizer, ckpt)
        if self.ema is not None:
            if not ckpt.ema:
                raise UserError(f"{ckpt.path} holds no weight average but train.ema_decay is set; "
                                "resume it with the config it was written with")
            self.ema.module.load_state_dict(ckpt.ema)
        m = ckpt.meta
        self.epoch, self.step_in_epoch, self.global_step = m["epoch"], m["step_in_epoch"], m["global_step"]
        self.epoch_stats, self.best_val, self.history = m["epoch_stats"], m["best_val"], m["history"]
        set_rng_states(ckpt.rng, self.generators)


class _graceful_interrupt:  # noqa: N801 - used as a context manager
    """First Ctrl-C: finish the step, checkpoint, stop. Second Ctrl-C: stop at once."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.trainer._interrupted:
            raise KeyboardInterrupt
        self.trainer._interrupted = True
        print("\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to abort)", flush=True)

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
