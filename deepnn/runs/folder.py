"""The run folder: the one place that knows its format.

A run folder holds::

    config.yaml        the resolved config (re-run it with --config)
    metrics.jsonl      one JSON line per validation record (epoch ends, and every N steps/minutes)
    curves.png         loss and the task's metric over training
    last.safetensors   everything needed to resume
    best.safetensors   the weights with the best validation metric (the task says which)
    results.json       the test report and the facts needed to reproduce it
    run.lock           present while a process owns the folder (its pid)

A folder is claimed before anything is written: a new run needs an empty or missing folder, a resumed
run an unfinished run of its own; a second process cannot write into a folder another one owns.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError
from ..train.plot import plot_curves, read_metrics

FILES = ("config.yaml", "metrics.jsonl", "curves.png", "last.safetensors", "best.safetensors", "results.json")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, flush it to disk and rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunFolder:
    """A run folder (see the module docstring); :meth:`claim` it before writing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock = self.path / "run.lock"
        self.config, self.metrics, self.curves = (self.path / n for n in ("config.yaml", "metrics.jsonl", "curves.png"))
        self.last, self.best, self.results = (self.path / n for n in ("last.safetensors", "best.safetensors",
                                                                       "results.json"))

    def check(self, resume: bool) -> None:
        """Raise a one-line UserError unless this folder can take a new run (``resume=False``) or be resumed."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise UserError(f"--out {p} is a file, not a folder; choose a new folder name")
        owner = self.owner()
        if owner is not None:
            raise UserError(f"{p} is in use by another run (process {owner}); wait for it or choose another --out")
        if resume:
            if not self.last.is_file():
                raise UserError(f"{p} holds no last.safetensors to resume; give the run folder of an interrupted run")
            return
        if self.last.exists() or self.results.exists():
            raise UserError(f"{p} already holds a run; resume it with --resume {p} or choose another --out")
        others = sorted(q.name for q in p.iterdir() if q != self.lock) if p.is_dir() else []
        if others:
            raise UserError(f"--out {p} is not empty (it holds {others[0]!r}, ...); "
                            "a run needs a new or empty folder so it overwrites none of your files")

    def owner(self) -> int | None:
        """The process id holding :attr:`lock` if that process is alive (a stale lock counts as none)."""
        try:
            pid = int(self.lock.read_text().strip() or 0)
        except (OSError, ValueError):
            return None
        return pid if pid and pid != os.getpid() and _pid_alive(pid) else None

    def claim(self, resume: bool) -> None:
        """Check the folder, create it and take its lock (released by :meth:`release`)."""
        self.check(resume)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = self.owner()
            if owner is not None:
                raise UserError(f"{self.path} is in use by another run (process {owner}); wait for it or choose "
                                "another --out") from None
            self.lock.unlink(missing_ok=True)  # left by a process that died: take it over
            return self.claim(resume)
        except OSError as e:
            raise UserError(f"cannot write the run folder {self.path}: {e.strerror or e}; "
                            "choose a writable --out") from None
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))

    def release(self) -> None:
        try:
            if self.lock.is_file() and self.lock.read_text().strip() == str(os.getpid()):
                self.lock.unlink()
        except OSError:
            pass

    def write_config(self, cfg_dict: dict[str, Any]) -> None:
        atomic_write(self.config, yaml.safe_dump(cfg_dict, sort_keys=False))

    def write_results(self, results: dict[str, Any]) -> None:
        atomic_write(self.results, json.dumps(results, indent=1))


class RunLogger:
    """Hook: append each validation record to ``metrics.jsonl`` and redraw ``curves.png``."""

    def __init__(self, folder: RunFolder, title: str, metric: str) -> None:
        self.folder, self.title, self.metric = folder, title, metric

    def on_fit_start(self, trainer: Any) -> None:
        # after a resume, drop records the checkpoint does not include (and a torn last line)
        kept = [r for r in read_metrics(self.folder.metrics) if r.get("step", 0) <= trainer.global_step]
        atomic_write(self.folder.metrics, "".join(json.dumps(r) + "\n" for r in kept))

    def on_epoch_end(self, trainer: Any, metrics: dict[str, Any]) -> None:
        with self.folder.metrics.open("a") as f:
            f.write(json.dumps(metrics) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            plot_curves(read_metrics(self.folder.metrics), self.folder.curves, self.title, self.metric)
        except OSError as e:  # a full disk must not cost the run: the checkpoint is what matters
            if e.errno != errno.ENOSPC:
                raise
