"""One readable training loop for every task (minGPT / Lightning Fabric style).

The loop is ``for epoch: for batch: set lr → transform (hooks) → forward (task.step) → backward →
clip → step``, then validation, checkpoints and hooks. What is task-specific (the loss, the metrics,
which metric picks ``best``, what throughput counts, state carried between batches) belongs to the
task object (:mod:`deepnn.train.tasks`); what is data-specific (image augmentation) to a hook.
Everything else is an option of the config: bf16 autocast, ``channels_last``, ``torch.compile``,
gradient clipping, schedules, a time budget (``train.max_minutes``), validation inside an epoch
(``train.val_every_steps`` / ``train.val_every_minutes``) and a weight average for evaluation
(``train.ema_decay``, the :class:`WeightEMA` hook).

Hooks are plain objects with any of ``on_fit_start(trainer)``, ``on_step_end(trainer)``,
``on_epoch_end(trainer, metrics)`` (called after every validation record), ``on_fit_end(trainer)``
and ``transform(trainer, batch) -> batch`` (training batches only); setting ``trainer.stop = True``
ends training after the current step (see :class:`EarlyStopping`).

Interrupting (Ctrl-C or SIGTERM, which schedulers send) finishes the current step, writes
``last.safetensors`` and raises ``KeyboardInterrupt``; :meth:`Trainer.resume` continues bit-for-bit
from there. A loss that becomes NaN or infinite stops the run with :class:`Diverged` before anything
is saved over the last good checkpoint.

Data-parallel training (``torchrun``, :mod:`deepnn.train.distributed`) runs through this same loop:
when :func:`~deepnn.train.distributed.setup` has joined a process group, the training loader is
sharded, forward/backward go through ``DistributedDataParallel``, statistics are reduced over ranks,
every decision (interrupt, stop, budget, validation) is agreed at agreement steps, each rank draws
its own dropout stream, and only rank 0 writes. Hooks see ``trainer.dist`` (``None`` in a single
process) and ``trainer.is_main``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import UserError
from . import distributed
from .checkpoint import (
    TRAINER_KEYS,
    load_checkpoint,
    load_ema_state,
    load_model_state,
    load_optimizer_state,
    save_checkpoint,
    set_rng_states,
)
from .config import Config, check_device_available
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
    check_device_available(name)  # a malformed or missing device is a one-line error
    return torch.device(name)


class EarlyStopping:
    """Stop when ``metric`` has not improved for ``patience`` epochs."""

    def __init__(self, patience: int, metric: str = "val_accuracy", mode: str = "max") -> None:
        """``metric``: a key of the metrics records; ``mode``: ``"max"`` or ``"min"`` (is higher better?)."""
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
    """Train ``model`` on ``task`` with the options in ``cfg``: the one loop every task runs through.

    Args:
        model: any ``nn.Module``; the task decides what its outputs mean.
        task: a task object (:mod:`deepnn.train.tasks`): the loss step, the metrics, which validation
            metric picks ``best`` (and whether higher or lower is better), what throughput counts.
        train_loader: batches for training (their order depends only on seed and epoch).
        val_loader: batches for validation after each epoch (optional).
        cfg: the run's :class:`~deepnn.train.config.Config`.
        run_dir: where ``last``/``best`` checkpoints go; ``None`` writes nothing.
        hooks: objects with optional ``on_*`` methods (see the module docstring); a hook with
            ``transform(trainer, batch)`` changes training batches (image augmentation), and its
            ``generators`` (name → ``torch.Generator``) are saved in ``last`` checkpoints.
        meta: extra JSON-able facts stored in checkpoints (class names, vocabulary, ...).

    With ``train.ema_decay`` set, ``trainer.ema`` (a :class:`WeightEMA`, the first hook) holds the
    averaged model: validation, :meth:`evaluate` and ``best`` checkpoints use it, ``last`` keeps both.

    Time budget: with ``train.max_minutes`` training stops when that much training time (validation
    and checkpoints not counted) has passed. After the first seconds the trainer measures the time per
    step and plans the number of steps that fit, and plans again at every validation record with the
    latest speed, so the learning-rate schedule (cosine, one-cycle) runs its course within the budget
    (:attr:`planned_steps`) even when the machine gets busier or quieter. ``train.val_every_steps`` /
    ``train.val_every_minutes`` validate and save ``last`` (and ``best``) inside an epoch too.
    """

    BUDGET_PROBE_S = 10.0  # seconds of training measured before the budget plan is fixed

    def __init__(self, model: nn.Module, task: Any, train_loader: Any,
                 val_loader: Any | None = None, *, cfg: Config, run_dir: str | Path | None = None,
                 hooks: Iterable[Any] = (), meta: dict[str, Any] | None = None) -> None:
        if cfg.train.precision not in PRECISIONS:
            raise UserError(f"train.precision={cfg.train.precision!r} is not supported; "
                            f"use one of {', '.join(PRECISIONS)}")
        self.cfg, self.task = cfg, task
        self.train_loader, self.val_loader = train_loader, val_loader
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.meta = dict(meta or {})
        self.dist = distributed.current()  # None: one process
        self.device = self.dist.device if self.dist is not None else resolve_device(cfg.train.device)
        if cfg.train.deterministic:
            distributed.deterministic(cfg.train.seed, self.device)
        elif self.device.type == "cuda":  # fixed shapes: cuDNN times its algorithms once, then reuses the fastest
            torch.backends.cudnn.benchmark = True
        self.memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        ddp_model = None
        if self.dist is not None:
            self.model, ddp_model = distributed.wrap(self.model, self.dist, cfg.train.sync_bn)
            if self.dist.world_size > 1:
                if not hasattr(train_loader, "shard"):
                    raise UserError(f"data-parallel training needs a loader with shard(rank, world_size); "
                                    f"{type(train_loader).__name__} has none")
                train_loader = train_loader.shard(self.dist.rank, self.dist.world_size)
                self.train_loader = train_loader
        # DDP, several processes: the step of the next agreement on interrupts/stops/clock, and the agreed
        # (clock, step) of the last one, from which the next is planned (distributed.agree_interval)
        self._next_agree = 0
        self._agreed: tuple[float, int] | None = None
        self.last_loss: torch.Tensor | None = None  # the latest step's loss (this process's shard), detached
        self.ema = WeightEMA(self.model, cfg.train.ema_decay) if cfg.train.ema_decay is not None else None
        self.hooks = [self.ema, *hooks] if self.ema is not None else list(hooks)
        self.transforms = [h.transform for h in self.hooks if hasattr(h, "transform")]
        # the trainer's own random draws (augmentation), saved in `last` checkpoints so that resuming is exact
        self.generators: dict[str, torch.Generator] = {}
        for h in self.hooks:
            self.generators.update(getattr(h, "generators", {}))
        self.ddp_model = ddp_model
        self.forward_model = ddp_model if ddp_model is not None else self.model  # forward/backward go through DDP
        if cfg.train.compile:
            self.forward_model = torch.compile(self.forward_model)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        if len(train_loader) == 0:
            raise UserError(f"no training batch: data.batch_size={cfg.data.batch_size} exceeds the "
                            f"{len(getattr(train_loader, 'x', ()))} training examples (an incomplete last batch is "
                            "dropped); lower data.batch_size or raise data.train_subset")
        self.planned_steps = cfg.train.epochs * len(train_loader)  # shortened by a time budget
        self.budget_planned = cfg.train.max_minutes is None
        lr_factor(cfg.sched, 0, self.planned_steps, len(train_loader))  # reject a bad schedule before training
        self.epoch = 0  # epochs completed
        self.step_in_epoch = 0  # batches done in the current epoch
        self.global_step = 0
        self.train_time = 0.0  # seconds of training so far, over every session of a resumed run
        self.units_seen = 0  # examples (or tokens) trained on so far
        self.epoch_stats: dict[str, float] = {}  # running sums of the current epoch (kept on resume)
        self.best_val: float | None = None
        self.history: list[dict[str, Any]] = []
        self.stop = False
        self._interrupted = False
        self.warmup_time = 0.0  # seconds of :meth:`warm_up` before training (CUDA only)
        self._last_val_time = 0.0  # train_time at the last validation (train.val_every_minutes)
        self.weight_divergence: float | None = None  # DDP: max |w_rank - w_rank0| at the end of fit

    @property
    def is_main(self) -> bool:
        """Whether this process writes (rank 0, or the only process)."""
        return self.dist is None or self.dist.is_main

    @property
    def world_size(self) -> int:
        return self.dist.world_size if self.dist is not None else 1

    # ---- helpers -------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when ``train.precision=bf16`` (CPU with AVX-512/AMX, CUDA), else a no-op (a
        ``nullcontext``: entering a disabled autocast costs about 10 µs a step)."""
        if self.cfg.train.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def to_device(self, batch: tuple[Any, ...], train: bool = False) -> tuple[Any, ...]:
        """Move the batch's tensors to the device; training batches go through the hooks' transforms."""
        batch = tuple(t.to(self.device, non_blocking=True) if torch.is_tensor(t) else t for t in batch)
        if train:
            for transform in self.transforms:
                batch = transform(self, batch)
        x = batch[0]
        if x.ndim == 4:
            batch = (x.contiguous(memory_format=self.memory_format), *batch[1:])
        return batch

    def device_batches(self, loader: Any, epoch: int = 0, start: int = 0, train: bool = False) -> Iterator[tuple]:
        return (self.to_device(b, train) for b in loader.batches(epoch, start))

    @property
    def total_steps(self) -> int:
        """The steps the schedule runs over: ``train.epochs`` epochs, or what fits the time budget."""
        return self.planned_steps

    def _call(self, event: str, *args: Any) -> None:
        for h in self.hooks:
            fn = getattr(h, event, None)
            if fn is not None:
                fn(self, *args)

    def _check_finite(self, loss_sum: float) -> None:
        if not math.isfinite(loss_sum):
            last = self.run_dir / "last.safetensors" if self.run_dir is not None else None
            kept = (f"the last good checkpoint is {last}" if last is not None and last.exists()
                    else "no checkpoint was written")
            epoch = (self.global_step - 1) // len(self.train_loader) + 1  # the epoch of the last step taken
            raise Diverged(f"training diverged: the loss became {loss_sum} by step {self.global_step} "
                           f"(epoch {epoch}); {kept}; lower the learning rate (optim.lr) or set train.grad_clip")

    def _global_sums(self, sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The running sums over every rank (rank 0 carries what earlier sessions summed)."""
        if self.dist is None or not sums:
            return sums
        keys = sorted(sums)
        local = torch.stack([sums[k].detach().to(torch.float64).reshape(()).cpu() for k in keys])
        total = distributed.all_reduce(local, self.dist)
        return {k: total[i] for i, k in enumerate(keys)}

    def _agree(self, now: float) -> float:
        """DDP: one all_reduce(MAX) so that every rank sees any interrupt or stop, and the slowest clock;
        then the step of the next agreement, from agreed values only (so the same on every rank)."""
        flags = torch.tensor([float(self._interrupted), float(self.stop), now], dtype=torch.float64)
        flags = distributed.all_reduce(flags, self.dist, "max")
        self._interrupted, self.stop = bool(flags[0] > 0), bool(flags[1] > 0)
        now = float(flags[2])
        interval = 1
        if self._agreed is not None:
            interval = distributed.agree_interval(now - self._agreed[0], self.global_step - self._agreed[1],
                                                  self.device.type)
        self._agreed, self._next_agree = (now, self.global_step), self.global_step + interval
        return now

    def _plan_budget(self, steps: int, seconds: float, elapsed: float) -> None:
        """Set :attr:`planned_steps` so that the schedule ends with the time budget: the steps done plus
        those that fit in the rest of the budget (``elapsed`` seconds of it are spent) at ``seconds / steps``
        per step, the latest measurement; at most ``train.epochs`` epochs. Called once the first seconds are
        measured, then at every record (validation), so a machine that gets busier or quieter moves the
        plan; at a steady speed the plan stays put and the learning rate follows one cosine."""
        budget = self.cfg.train.max_minutes * 60
        fits = self.global_step + int(0.98 * max(budget - elapsed, 0) / (seconds / max(steps, 1)))
        cap = self.cfg.train.epochs * len(self.train_loader)
        self.planned_steps = max(self.global_step + 1, min(cap, fits))
        if self.dist is not None:  # the clocks agree already; rank 0's plan is the plan
            self.planned_steps = distributed.broadcast_int(self.planned_steps, self.dist)
        self.budget_planned = True

    # ---- the loop ------------------------------------------------------------------------
    def train_one_epoch(self) -> None:
        """Run the remaining batches of epoch ``self.epoch`` (up to the plan, the budget or a stop);
        validation and ``last`` checkpoints happen where ``train.val_every_*`` asks."""
        self.model.train()
        cfg = self.cfg.train
        n = len(self.train_loader)
        budget = cfg.max_minutes * 60 if cfg.max_minutes is not None else math.inf
        # DDP: rank 0 carries the sums of earlier sessions, the others add their own from zero
        sums = {k: torch.tensor(v if self.is_main else 0.0) for k, v in self.epoch_stats.items()}
        step_hooks = [h.on_step_end for h in self.hooks if hasattr(h, "on_step_end")]
        bar = tqdm(total=n, initial=self.step_in_epoch, desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                   disable=not cfg.progress or not self.is_main, unit="batch", dynamic_ncols=True, leave=True)
        seg = _Segment(self)
        session_steps, session_start = 0, self.train_time
        several = self.world_size > 1
        for batch in self.device_batches(self.train_loader, self.epoch, self.step_in_epoch, train=True):
            if several:  # each rank its own dropout stream, a function of (seed, step, rank)
                distributed.seed_step(self.dist, cfg.seed, self.global_step)
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
            self.last_loss = loss.detach()
            for k, v in stats.items():  # in place: no new tensor per statistic and step
                if k in sums:
                    sums[k].add_(v.detach())
                else:
                    sums[k] = v.detach().clone()
            self.global_step += 1
            self.step_in_epoch += 1
            session_steps += 1
            seg.units += self.task.units(batch)
            seg.steps += 1
            for fn in step_hooks:
                fn(self)
            if self.step_in_epoch % 25 == 0 or self.step_in_epoch == n:  # one host sync per 25 steps
                m = self.task.summarize(self._global_sums(sums))
                self._check_finite(m["loss"])
                if not bar.disable:
                    bar.set_postfix(**self.task.progress(m), **{f"{self.task.unit[:3]}/s": f"{seg.rate():.0f}"},
                                    refresh=False)
                    bar.update(self.step_in_epoch - bar.n)
            now = seg.train_time()
            if several:  # decide only at agreement steps, where every rank decides, on agreed flags and clock
                every = cfg.val_every_steps
                if not (self.global_step >= self._next_agree or self.step_in_epoch == n
                        or self.global_step >= self.planned_steps or (every and self.global_step % every == 0)):
                    continue
                now = self._agree(now)
            if (not self.budget_planned and session_steps >= 5
                    and now - session_start >= min(self.BUDGET_PROBE_S, 0.05 * budget)):
                self._plan_budget(session_steps, now - session_start, now)
            if self._interrupted or self.stop:
                break
            if self.global_step >= self.planned_steps or now >= budget:
                self.stop = True  # the plan or the time budget is spent: end of training
                break
            if self.step_in_epoch < n and self._validation_due(now):
                self.epoch_stats = {k: float(v) for k, v in self._global_sums(sums).items()}
                self._record(seg.close())
                self.model.train()
                seg = _Segment(self)
        bar.close()
        global_sums = self._global_sums(sums)
        self.epoch_stats = {k: float(v) for k, v in global_sums.items()}
        if self._interrupted:
            seg.close()
            return
        if self.step_in_epoch == n:
            self.epoch += 1
            self.step_in_epoch, self.epoch_stats = 0, {}
            self._record(seg.close(), self.task.summarize(global_sums))
        else:  # stopped inside the epoch (budget or plan)
            self._record(seg.close())

    def _validation_due(self, train_time: float) -> bool:
        every_steps, every_min = self.cfg.train.val_every_steps, self.cfg.train.val_every_minutes
        return bool((every_steps and self.global_step % every_steps == 0)
                    or (every_min and train_time - self._last_val_time >= every_min * 60))

    def _record(self, segment: dict[str, float], train: dict[str, float] | None = None) -> dict[str, Any]:
        """Validate, keep ``best`` (by the task's metric), save ``last``, log one metrics record."""
        if train is None:
            train = self.task.summarize({k: torch.tensor(v) for k, v in self.epoch_stats.items()})
        self._check_finite(train["loss"])
        if self.cfg.train.max_minutes is not None and segment["steps"]:
            self._plan_budget(segment["steps"], segment["time"], self.train_time)
        n = len(self.train_loader)
        metrics: dict[str, Any] = {"epoch": round(self.epoch + self.step_in_epoch / n, 4), "step": self.global_step,
                                   "lr": self.optimizer.param_groups[0]["lr"]}
        metrics.update({f"train_{k}": v for k, v in train.items()})
        metrics.update({"train_time": segment["time"], f"train_{self.task.unit}_per_s": segment["rate"],
                        "train_time_total": self.train_time})
        self._last_val_time = self.train_time
        self._sync_buffers()
        if self.val_loader is not None:
            val = self.evaluate(self.val_loader)
            self._check_finite(val["loss"])
            metrics.update({f"val_{k}": v for k, v in val.items() if k != "confusion"})
        self.history.append(metrics)
        value = metrics.get(f"val_{self.task.metric}")
        sign = 1 if self.task.mode == "max" else -1
        if value is not None and (self.best_val is None or sign * value > sign * self.best_val):
            self.best_val = value
            self.save("best")
        self.save("last")
        self._call("on_epoch_end", metrics)
        return metrics

    def _sync_buffers(self) -> None:
        """DDP: rank 0's buffers (batch-norm statistics) everywhere, so every rank evaluates the same weights."""
        if self.dist is not None:
            distributed.broadcast_buffers(self.model, self.dist)
            if self.ema is not None:
                distributed.broadcast_buffers(self.ema.module, self.dist)

    def warm_up(self, steps: int = 2) -> float:
        """Pay the one-time costs of the first training steps before the clock starts; returns seconds.

        On CUDA the first step of each shape is slow (cuDNN times every algorithm of every convolution,
        ``cudnn.benchmark``; the caching allocator grows): 2 of the 10 s of a short GPU run.
        :meth:`fit` therefore first trains a throwaway copy of the model, with its own optimizer, for
        ``steps`` steps on the first training batch, so that ``train_time`` counts training alone (as
        airbench does; the seconds are reported as ``warmup_time_s``). The model, the optimizer, the
        data order, the task's carried state and every random stream are left as they were: a run is
        the same with or without it.
        """
        t0 = time.perf_counter()
        shadow = copy.deepcopy(self.model)
        optimizer = build_optimizer(shadow, self.cfg.optim)
        first = next(self.train_loader.batches(self.epoch, self.step_in_epoch))
        generators = {k: g.get_state() for k, g in self.generators.items()}
        carried = self.task.carried()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else [], device_type="cuda"):
            for _ in range(steps):
                with self.autocast():
                    loss, _ = self.task.step(shadow, self.to_device(first, train=True))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        for k, state in generators.items():
            self.generators[k].set_state(state)
        self.task.restore(carried)
        synchronize(self.device)
        return time.perf_counter() - t0

    @property
    def eval_model(self) -> nn.Module:
        """The weights evaluation uses: the moving average with ``train.ema_decay``, else the model."""
        return self.ema.module if self.ema is not None else self.model

    def evaluate(self, loader: Any) -> dict[str, Any]:
        """The task's metrics on ``loader`` (eval mode, autocast as in training, :attr:`eval_model`)."""
        return self.task.evaluate(self.eval_model, self.device_batches(loader), autocast=self.autocast)

    def fit(self) -> list[dict[str, Any]]:
        """Train until ``train.epochs``, the time budget, or a hook's ``stop``; returns the metrics records."""
        self._call("on_fit_start")
        if self.device.type == "cuda" and self.epoch < self.cfg.train.epochs:
            self.warmup_time = self.warm_up()
        with _graceful_interrupt(self):
            while self.epoch < self.cfg.train.epochs and not self.stop and self.global_step < self.planned_steps:
                self.train_one_epoch()
                if self._interrupted:
                    self.save("last")
                    raise KeyboardInterrupt
        if self.dist is not None:
            self._sync_buffers()
            modules = [self.model] + ([self.ema.module] if self.ema is not None else [])
            self.weight_divergence = distributed.max_divergence(modules, self.dist)
            if self.is_main:
                print(f"ddp: {self.world_size} process(es), max |w_rank - w_0| = {self.weight_divergence:g} "
                      f"after {self.global_step} steps", file=sys.stderr, flush=True)
        self._call("on_fit_end")
        return self.history

    # ---- checkpoints ---------------------------------------------------------------------
    def state_meta(self) -> dict[str, Any]:
        return {**self.meta, "config": self.cfg.to_dict(), "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step, "epoch_stats": self.epoch_stats, "best_val": self.best_val,
                "history": self.history, "planned_steps": self.planned_steps,
                "budget_planned": self.budget_planned, "train_time": self.train_time,
                "units_seen": self.units_seen, "stopped": self.stop}

    def save(self, which: str) -> Path | None:
        """Write ``<run_dir>/<which>.safetensors``: ``last`` holds everything to resume, ``best`` the
        weights that were validated (:attr:`eval_model`)."""
        carried = self.task.carried() if which == "last" else {}
        if self.dist is not None and carried:  # every rank's rows of the carried state (a collective)
            carried = distributed.gather_carried(carried, self.dist)
        if self.run_dir is None or not self.is_main:
            return None
        path, meta = self.run_dir / f"{which}.safetensors", self.state_meta()
        try:
            if which != "last":
                return save_checkpoint(path, self.eval_model, meta)
            return save_checkpoint(path, self.model, meta, optimizer=self.optimizer, rng=True,
                                   generators=self.generators, ema=self.ema.module if self.ema is not None else None,
                                   task=carried)
        except OSError as e:  # a full disk, a folder made read-only: the previous file is intact (atomic write)
            kept = "its previous version is intact" if path.exists() else "none was written before"
            raise UserError(f"cannot write {path}: {e.strerror or e}; {kept}; free space or fix the folder, then "
                            f"continue with --resume {self.run_dir}") from None

    def resume(self, path: str | Path) -> None:
        """Restore weights, optimizer, counters, the task's carried state and RNG from a ``last``
        checkpoint (or its run folder)."""
        ckpt = load_checkpoint(path, require=TRAINER_KEYS)
        if not ckpt.optim and not ckpt.meta.get("optimizer"):
            raise UserError(f"{ckpt.path} holds weights only (a 'best' checkpoint); resume from last.safetensors")
        load_model_state(self.model, ckpt, repr(self.cfg.model.name))
        load_optimizer_state(self.optimizer, ckpt)
        if self.ema is not None:
            if not ckpt.ema:
                raise UserError(f"{ckpt.path} holds no weight average but train.ema_decay is set; "
                                "resume it with the config it was written with")
            load_ema_state(self.ema.module, ckpt)
        m = ckpt.meta
        self.epoch, self.step_in_epoch, self.global_step = m["epoch"], m["step_in_epoch"], m["global_step"]
        self.epoch_stats, self.best_val, self.history = m["epoch_stats"], m["best_val"], m["history"]
        self.planned_steps, self.budget_planned = m["planned_steps"], m["budget_planned"]
        self.train_time, self.units_seen, self.stop = m["train_time"], m["units_seen"], m["stopped"]
        self._last_val_time = self.train_time
        carried = {k: v.to(self.device) for k, v in ckpt.task.items()}
        if self.dist is not None and self.dist.world_size > 1:  # this rank's rows of the whole state
            carried = distributed.split_carried(carried, self.dist)
        self.task.restore(carried)
        set_rng_states(ckpt.rng, self.generators)


class Diverged(UserError):
    """The training loss became NaN or infinite; nothing after the last good checkpoint was saved."""


class _Segment:
    """Training time and units between two records; adds its time to ``trainer.train_time`` on close."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer, self.units, self.steps, self.t0 = trainer, 0, 0, time.perf_counter()

    def train_time(self) -> float:
        """The run's training time so far, this segment included (not synchronised: a step may be queued)."""
        return self.trainer.train_time + time.perf_counter() - self.t0

    def rate(self) -> float:
        return self.units * self.trainer.world_size / max(time.perf_counter() - self.t0, 1e-9)

    def close(self) -> dict[str, float]:
        synchronize(self.trainer.device)  # the GPU may still be running the steps the loop queued
        elapsed = time.perf_counter() - self.t0
        units = self.units
        if self.trainer.dist is not None:  # the slowest rank's time; every rank trains an equal share
            elapsed = float(distributed.all_reduce(torch.tensor([elapsed], dtype=torch.float64),
                                                   self.trainer.dist, "max")[0])
            units *= self.trainer.world_size
        self.trainer.train_time += elapsed
        self.trainer.units_seen += units
        return {"time": elapsed, "rate": units / max(elapsed, 1e-9), "steps": self.steps}


class _graceful_interrupt:  # noqa: N801 - used as a context manager
    """First Ctrl-C (or SIGTERM): finish the step, checkpoint, stop. A second one: stop at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.trainer._interrupted:
            raise KeyboardInterrupt
        self.trainer._interrupted = True
        if not self.trainer.is_main:
            return
        print(f"\n{signal.Signals(signum).name}: finishing this step and saving a checkpoint "
              "(Ctrl-C again to abort)", flush=True)

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}

    def __exit__(self, *exc: Any) -> None:
        for s, previous in self.previous.items():
            signal.signal(s, previous)
