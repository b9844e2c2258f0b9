"""The results tables: training runs grouped by recipe, the test score as mean ± std over seeds.

Image classifiers are scored by test accuracy, language models by test loss (nats per character,
lower is better); each task gets its own table.

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
import math
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


SCORES = {"classification": "test_accuracy", "language_model": "test_loss"}  # task -> what a row reports
RATES = {"classification": "examples_per_s", "language_model": "tokens_per_s"}


@dataclass(frozen=True)
class ResultRow:
    """The runs of one model and recipe."""

    model: str
    command: str  # how to reproduce one run, the seed as {seed}
    seeds: tuple[int, ...]
    scores: tuple[float, ...]  # the task's test score of each run: accuracy (fraction) or loss (nats/char)
    train_times: tuple[float, ...]  # seconds of training (validation excluded)
    rates: tuple[float, ...]  # examples/s or tokens/s: the task's units ÷ training time
    params: int
    flops: int | None  # forward FLOPs per example (FlopCounterMode: 1 multiply-add = 2 FLOPs)
    precision: str
    machines: tuple[str, ...]
    task: str = "classification"

    @property
    def score(self) -> float:
        return statistics.mean(self.scores)

    @property
    def score_std(self) -> float:
        """Sample standard deviation over the runs (0 for a single run)."""
        return statistics.stdev(self.scores) if len(self.scores) > 1 else 0.0


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
    machine (a GPU's runs never share a row with a CPU's), sorted by task, model, then best score first."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for path in map(Path, paths):
        record = read_result(path)
        key = (record["task"], record["model"], _recipe_key(path, record), _machine(record))
        groups.setdefault(key, []).append(record)
    rows = []
    for (_, model, _, _), records in groups.items():
        records.sort(key=lambda r: r.get("seed", 0))
        commands = [str(r.get("command", "")) for r in records]
        fresh = [c for c in commands if "--resume" not in c]  # a resumed run's command names no settings
        rows.append(ResultRow(
            model=model, command=command_template((fresh or commands)[0]),
            seeds=tuple(int(r.get("seed", 0)) for r in records),
            scores=tuple(float(r[SCORES[r["task"]]]) for r in records),
            train_times=tuple(float(r.get("train_time_s", 0.0)) for r in records),
            rates=tuple(float(r.get(RATES[r["task"]], 0.0)) for r in records),
            params=int(records[0]["params"]),
            flops=int(records[0]["flops"]) if records[0].get("flops") is not None else None,
            precision=str(records[0].get("precision", "fp32")),
            machines=tuple(sorted({_machine(r) for r in records})), task=records[0]["task"],
        ))
    higher_is_better = {"classification": -1, "language_model": 1}
    return sorted(rows, key=lambda r: (r.task, r.model, higher_is_better[r.task] * r.score))


def _mean_std(values: Sequence[float], scale: float, digits: int) -> str:
    text = f"{scale * statistics.mean(values):.{digits}f}"
    return text + (f" ± {scale * statistics.stdev(values):.{digits}f}" if len(values) > 1 else "")


def _table(header: str, columns: str, rows: list[list[str]]) -> list[str]:
    lines = [header, "", "| " + " | ".join(columns.split(",")) + " |",
             "|" + "|".join("---:" if c.strip().startswith(("test", "train", "examples", "tokens", "params", "GFLOPs",
                                                               "bits")) else "---" for c in columns.split(",")) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in rows]
    return lines


def results_markdown(rows: Sequence[ResultRow]) -> str:
    """Markdown tables of ``rows``, one per task, each with a line saying what its columns mean."""
    if not rows:
        raise UserError(f"no training results found (looked for {DEFAULT_GLOB}); train a model first, "
                        "e.g. `deepnn train lenet_modern`, or pass run folders or results.json files")
    common = lambda r: [f"{statistics.mean(r.train_times):.1f}", f"{statistics.mean(r.rates):.0f}",  # noqa: E731
                        si(r.params)]
    tables: list[list[str]] = []
    images = [r for r in rows if r.task == "classification"]
    if images:
        tables.append(_table(
            "Test accuracy in %: mean ± sample standard deviation over the seeds listed. Train time: seconds of "
            "training per run (validation excluded), mean. GFLOPs: forward FLOPs per example (FlopCounterMode, "
            "1 multiply-add = 2 FLOPs). Commands show the seed as `{seed}`.",
            "model,seeds,test accuracy (%),train time (s),examples/s,params,GFLOPs,precision,machine,command",
            [[r.model, ", ".join(map(str, r.seeds)), _mean_std(r.scores, 100, 2), *common(r),
              f"{(r.flops or 0) / 1e9:.3g}", r.precision, "; ".join(r.machines), f"`{r.command}`"] for r in images]))
    texts = [r for r in rows if r.task == "language_model"]
    if texts:
        tables.append(_table(
            "Language models: test loss in nats per character (lower is better; bits = nats / ln 2) on the last "
            "part of the text, which training never saw: mean ± sample standard deviation over the seeds listed. "
            "Train time: seconds of training per run (validation excluded), mean. Commands show the seed as "
            "`{seed}`.",
            "model,seeds,test loss (nats/char),bits/char,train time (s),tokens/s,params,precision,machine,command",
            [[r.model, ", ".join(map(str, r.seeds)), _mean_std(r.scores, 1, 3),
              f"{statistics.mean(r.scores) / math.log(2):.3f}", *common(r), r.precision, "; ".join(r.machines),
              f"`{r.command}`"] for r in texts]))
    return "\n\n".join("\n".join(t) for t in tables)
