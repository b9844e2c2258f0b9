"""The results table: training runs grouped by recipe, test accuracy as mean ± std over seeds.

Each run folder of ``deepnn train`` holds ``results.json`` (read and checked by
:mod:`deepnn.analysis.chart`'s reader) and ``config.yaml``, the resolved config. Runs are one
row when they trained the same model with the same config apart from the settings that
differ between the seeds of one recipe (:data:`PER_RUN`: the seed, the progress bar, the data
folder); a run without ``config.yaml`` is grouped by its command instead. Numbers are reported
as airbench does: mean ± sample standard deviation over seeds, with the seeds and the exact
command (its seed shown as ``{seed}``).

    >>> command_template("deepnn train lenet --seed 3 --out runs/a --epochs 5")
    'deepnn train lenet --epochs 5 --seed {seed}'
"""

from __future__ import annotations

import json
import shlex
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..train.config import load_yaml
from .chart import DEFAULT_GLOB, read_result
from .summary import si

__all__ = ["PER_RUN", "ResultRow", "command_template", "group_results", "results_markdown"]

PER_RUN = ("train.seed", "train.progress", "data.data_dir")  # config keys that do not define the recipe
_DROPPED_FLAGS = ("--seed", "--out")  # flags whose value differs per run


@dataclass(frozen=True)
class ResultRow:
    """The runs of one model and recipe."""

    model: str
    command: str  # how to reproduce one run, the seed as {seed}
    seeds: tuple[int, ...]
    accuracies: tuple[float, ...]  # test accuracy of each run, fractions
    train_times: tuple[float, ...]  # seconds of training (validation excluded)
    examples_per_s: tuple[float, ...]
    params: int
    flops: int  # forward FLOPs per example (FlopCounterMode: 1 multiply-add = 2 FLOPs)
    precision: str
    machines: tuple[str, ...]

    @property
    def accuracy(self) -> float:
        return statistics.mean(self.accuracies)

    @property
    def accuracy_std(self) -> float:
        """Sample standard deviation over the runs (0 for a single run)."""
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0


def command_template(command: str) -> str:
    """The command with ``--out`` dropped and the seed as ``--seed {seed}`` (appended if absent).

    A ``--resume`` command is returned unchanged: it cannot take a seed.
    """
    tokens = shlex.split(command)
    if "--resume" in tokens or any(t.startswith("--resume=") for t in tokens):
        return command
    kept: list[str] = []
    skip_value = False
    for tok in tokens:
        if skip_value:
            skip_value = False
            continue
        if tok in _DROPPED_FLAGS:
            skip_value = True
        elif not tok.startswith(tuple(f"{f}=" for f in _DROPPED_FLAGS)):
            kept.append(tok)
    for i in range(len(kept) - 1):  # --set train.seed=N counts as the seed too
        if kept[i] == "--set" and kept[i + 1].startswith("train.seed="):
            del kept[i : i + 2]
            break
    return shlex.join(kept) + " --seed {seed}"


def _machine(record: dict[str, Any]) -> str:
    m = record.get("machine") or {}
    if m.get("gpu"):
        return str(m["gpu"])
    threads = m.get("cpu_threads", "?")
    return f"{m.get('processor', '?')}, {threads} thread{'' if threads == 1 else 's'}"


def _recipe_key(path: Path, record: dict[str, Any]) -> str:
    """What makes two runs the same recipe: the config without :data:`PER_RUN` keys, else the command."""
    config_file = path.parent / "config.yaml"
    if not config_file.is_file():
        return "command:" + command_template(str(record.get("command", "")))
    config = load_yaml(config_file)
    for dotted in PER_RUN:
        section, key = dotted.split(".")
        if isinstance(config.get(section), dict):
            config[section].pop(key, None)
    return "config:" + json.dumps(config, sort_keys=True)


def group_results(paths: Iterable[str | Path]) -> list[ResultRow]:
    """Read ``results.json`` files and group them into one :class:`ResultRow` per model, recipe and
    machine (a GPU's runs never share a row with a CPU's), sorted by model, then by mean accuracy."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for path in map(Path, paths):
        record = read_result(path)
        groups.setdefault((record["model"], _recipe_key(path, record), _machine(record)), []).append(record)
    rows = []
    for (model, _, _), records in groups.items():
        records.sort(key=lambda r: r.get("seed", 0))
        commands = [str(r.get("command", "")) for r in records]
        fresh = [c for c in commands if "--resume" not in c]  # a resumed run's command names no settings
        rows.append(ResultRow(
            model=model, command=command_template((fresh or commands)[0]),
            seeds=tuple(int(r.get("seed", 0)) for r in records),
            accuracies=tuple(float(r["test_accuracy"]) for r in records),
            train_times=tuple(float(r.get("train_time_s", 0.0)) for r in records),
            examples_per_s=tuple(float(r.get("examples_per_s", 0.0)) for r in records),
            params=int(records[0]["params"]), flops=int(records[0]["flops"]),
            precision=str(records[0].get("precision", "fp32")),
            machines=tuple(sorted({_machine(r) for r in records})),
        ))
    return sorted(rows, key=lambda r: (r.model, -r.accuracy))


def results_markdown(rows: Sequence[ResultRow]) -> str:
    """A markdown table of ``rows`` with a line saying what its columns mean."""
    if not rows:
        raise UserError(f"no training results found (looked for {DEFAULT_GLOB}); train a model first, "
                        "e.g. `deepnn train lenet_modern`, or pass run folders or results.json files")
    lines = [
        "Test accuracy in %: mean ± sample standard deviation over the seeds listed. Train time: seconds of "
        "training per run (validation excluded), mean. GFLOPs: forward FLOPs per example (FlopCounterMode, "
        "1 multiply-add = 2 FLOPs). Commands show the seed as `{seed}`.",
        "",
        "| model | seeds | test accuracy (%) | train time (s) | examples/s | params | GFLOPs | precision | machine "
        "| command |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        acc = f"{100 * r.accuracy:.2f}" + (f" ± {100 * r.accuracy_std:.2f}" if len(r.accuracies) > 1 else "")
        cells = [r.model, ", ".join(map(str, r.seeds)), acc, f"{statistics.mean(r.train_times):.1f}",
                 f"{statistics.mean(r.examples_per_s):.0f}", si(r.params), f"{r.flops / 1e9:.3g}", r.precision,
                 "; ".join(r.machines), f"`{r.command}`"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
