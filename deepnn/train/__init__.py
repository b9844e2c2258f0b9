"""Training: one readable loop (:class:`Trainer`) for every task, tasks, configs, checkpoints.

Runs (data + model + trainer + run folder) are built by :mod:`deepnn.runs`, a layer above this one.
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import Config, DataConfig, ModelConfig, OptimConfig, ScheduleConfig, TrainConfig, apply_overrides
from .tasks import ClassificationTask, LanguageModelTask
from .trainer import Diverged, EarlyStopping, Trainer, WeightEMA, resolve_device

__all__ = [
    "ClassificationTask", "Config", "DataConfig", "Diverged", "EarlyStopping", "LanguageModelTask", "ModelConfig",
    "OptimConfig", "ScheduleConfig", "TrainConfig", "Trainer", "WeightEMA", "apply_overrides", "load_checkpoint",
    "resolve_device", "save_checkpoint",
]
