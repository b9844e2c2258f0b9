"""Runs: one function builds a training from a config (:func:`build_training`), one class owns the run
folder's format (:class:`RunFolder`), and :func:`train_run` / :func:`load_run` write and read runs.

This layer sits above :mod:`deepnn.train` (the loop, tasks, checkpoints) and :mod:`deepnn.analysis`
(FLOP counting); nothing below imports it.
"""

from .build import KINDS, LoadedRun, Training, build_training, load_run, task_kind, train_run
from .folder import RunFolder, RunLogger

__all__ = ["KINDS", "LoadedRun", "RunFolder", "RunLogger", "Training", "build_training", "load_run", "task_kind",
           "train_run"]
