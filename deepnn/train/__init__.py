"""Training: one readable loop (:class:`Trainer`) used by every task, configs, checkpoints, runs."""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import Config, DataConfig, ModelConfig, OptimConfig, ScheduleConfig, TrainConfig, apply_overrides
from .run import load_run, train_run
from .tasks import ClassificationTask
from .trainer import EarlyStopping, Trainer, WeightEMA, resolve_device

__all__ = [
    "ClassificationTask", "Config", "DataConfig", "EarlyStopping", "ModelConfig", "OptimConfig",
    "ScheduleConfig", "TrainConfig", "Trainer", "WeightEMA", "apply_overrides", "load_checkpoint", "load_run",
    "resolve_device", "save_checkpoint", "train_run",
]
