"""Optimizers and learning-rate schedules.

Schedules are plain functions of the global step, applied by the trainer before each step,
so they carry no state of their own: resuming at step ``s`` gives the same learning rate.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError
from .config import OptimConfig, ScheduleConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and kernels only, not on biases and norm scales (common practice)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (with momentum / Nesterov) or AdamW (Loshchilov & Hutter 2019).

    On CUDA the update runs as one fused kernel per parameter group (``fused=True``); elsewhere
    PyTorch's default (``foreach``) implementation.
    """
    groups = param_groups(model, cfg.weight_decay)
    params = [p for g in groups for p in g["params"]]
    fused = {"fused": True} if params and all(p.is_cuda for p in params) else {}
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **fused)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, **fused)
    raise UserError(f"unknown optimizer {cfg.name!r}; use optim.name=sgd or optim.name=adamw")


SCHEDULES = ("constant", "cosine", "onecycle")


def lr_factor(cfg: ScheduleConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total_steps``.

    * ``constant``: 1, after an optional linear warm-up;
    * ``cosine``: warm-up, then half a cosine down to ``final_lr_ratio`` (Loshchilov & Hutter 2017);
    * ``onecycle``: linear rise from 1/25 to 1 over ``pct_start`` of the steps, then cosine to 0
      (Smith & Topin 2018).
    """
    if cfg.name not in SCHEDULES:
        raise UserError(f"unknown schedule {cfg.name!r}; use sched.name=" + ", ".join(SCHEDULES))
    total_steps = max(total_steps, 1)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if cfg.name == "onecycle":
        peak = max(int(cfg.pct_start * total_steps), 1)
        if step < peak:
            return 0.04 + 0.96 * step / peak
        t = (step - peak) / max(total_steps - peak, 1)
        return 0.5 * (1 + math.cos(math.pi * t))
    if step < warmup:
        return (step + 1) / warmup
    if cfg.name == "constant":
        return 1.0
    t = (step - warmup) / max(total_steps - warmup, 1)  # cosine
    return cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
