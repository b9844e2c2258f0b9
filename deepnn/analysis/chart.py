"""The zoo at a glance: accuracy vs compute vs size, one bubble per model (lecture item C19).

The lecture's chart (Canziani, Paszke & Culurciello 2016, "An analysis of deep neural
network models for practical applications") puts ImageNet networks on axes of G-ops per
image and top-1 accuracy, with bubble area proportional to the parameter count. This
module draws the same chart from our own training runs.

A results file is a JSON object; these fields are read, the rest is ignored:

=================  ==================================================================
``model``          registered model name, e.g. ``"lenet"``
``test_accuracy``  fraction of test examples classified correctly, in [0, 1]
``params``         number of parameters
``flops``          forward FLOPs per example (FlopCounterMode: 1 multiply-add = 2 FLOPs;
                   ``summarize_model(name, ...).flops`` computes it)
=================  ==================================================================

Runs with the same model, parameter count and FLOPs are one bubble: the mean accuracy,
with the spread (min to max) as an error bar.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from ..errors import UserError
from .summary import si

__all__ = ["FIELDS", "ModelPoint", "load_results", "find_results", "bubble_chart"]

FIELDS = ("model", "test_accuracy", "params", "flops")  # an image classifier's results.json
TASK_FIELDS = {"classification": FIELDS, "language_model": ("model", "test_loss", "params"),
               "seq2seq": ("model", "test_bleu", "params")}
DEFAULT_GLOB = "runs/*/results.json"


@dataclass(frozen=True)
class ModelPoint:
    """One bubble: a model configuration and the test accuracies of its runs."""

    model: str
    params: int
    flops: int  # per example
    accuracies: tuple[float, ...]

    @property
    def accuracy(self) -> float:
        return mean(self.accuracies)


def find_results(paths: Sequence[str | Path] = ()) -> list[Path]:
    """Results files: the given files, the ``results.json`` of given run folders, every ``results.json``
    below a given folder of runs, or by default every ``runs/*/results.json``. A path that holds
    none raises :class:`UserError`."""
    if not paths:
        return sorted(Path().glob(DEFAULT_GLOB))
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            inside = [p]
        elif (p / "results.json").is_file():  # a run folder
            inside = [p / "results.json"]
        else:  # a folder of runs (or nothing)
            inside = sorted(p.rglob("results.json")) if p.is_dir() else []
        if not inside:
            raise UserError(f"no results file at or below {p}; pass results.json files, run folders from "
                            "`deepnn train`, or folders of them")
        found += inside
    return found


def read_result(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(
            f"cannot read {path} as JSON ({e}); pass the results.json a training run wrote"
        ) from e
    task = record.get("task", "classification") if isinstance(record, dict) else None
    if task not in TASK_FIELDS:
        raise UserError(f"{path}: unknown task {task!r}; results files of {', '.join(TASK_FIELDS)} runs are read")
    fields = TASK_FIELDS[task]
    missing = [f for f in fields if f not in record]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}; a {task} results file needs {', '.join(fields)}")
    bad = [f for f in fields[1:] if isinstance(record[f], bool) or not isinstance(record[f], (int, float))
           or not math.isfinite(record[f])]
    if bad:
        raise UserError(
            f"{path}: {', '.join(bad)} must be finite numbers; got {', '.join(repr(record[f]) for f in bad)}"
        )
    if task == "classification" and not 0 <= record["test_accuracy"] <= 1:
        raise UserError(f"{path}: test_accuracy {record['test_accuracy']} is not a fraction in [0, 1]")
    record["task"] = task
    return record


def load_results(paths: Iterable[str | Path]) -> list[ModelPoint]:
    """Group the image classifiers' runs in ``paths`` into one :class:`ModelPoint` per (model, params,
    flops); runs of other tasks (accuracy vs FLOPs per image means nothing for them) are left out."""
    groups: dict[tuple[str, int, int], list[float]] = {}
    for path in paths:
        r = read_result(Path(path))
        if r["task"] != "classification":
            continue
        groups.setdefault((r["model"], int(r["params"]), int(r["flops"])), []).append(
            float(r["test_accuracy"])
        )
    return [ModelPoint(m, p, f, tuple(acc)) for (m, p, f), acc in sorted(groups.items())]


LABEL_BOX = (130.0, 30.0)  # pixels a two-line label of the chart covers (width, height), at 100 dpi


def label_shifts(anchors: Sequence[tuple[float, float]], box: tuple[float, float]) -> list[float]:
    """Vertical shifts (pixels, up positive) that keep labels of size ``box`` centred on ``anchors``
    from overlapping: from the highest anchor down, each label moves down just below any label already
    placed that it would overlap."""
    width, height = box
    placed: list[tuple[float, float]] = []
    shifts = [0.0] * len(anchors)
    for i in sorted(range(len(anchors)), key=lambda k: -anchors[k][1]):
        x, y = anchors[i]
        moved = True
        while moved:
            moved = False
            for px, py in placed:
                if abs(px - x) < width and abs(py - y) < height:
                    y, moved = py - height, True
        placed.append((x, y))
        shifts[i] = y - anchors[i][1]
    return shifts


def bubble_chart(points: Sequence[ModelPoint], out: str | Path, title: str = "") -> Path:
    """x: GFLOPs per example (log scale), y: test accuracy (%), bubble area ∝ parameters; returns the PNG."""
    if not points:
        raise UserError(
            f"no training results to chart (looked for {DEFAULT_GLOB}); "
            "train a model first, e.g. `deepnn train lenet`, or pass results.json files"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    biggest = max(p.params for p in points)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    xs, ys = [p.flops / 1e9 for p in points], [100 * p.accuracy for p in points]
    for i, p in enumerate(points):
        ax.scatter([xs[i]], [ys[i]], s=2500 * p.params / biggest + 20, alpha=0.5, color=f"C{i % 10}",
                   edgecolors="black")
        if len(p.accuracies) > 1:
            lo, hi = 100 * min(p.accuracies), 100 * max(p.accuracies)
            ax.errorbar([xs[i]], [ys[i]], yerr=[[ys[i] - lo], [hi - ys[i]]], color="black", capsize=3, linewidth=1)
    ax.set_xscale("log")
    ax.margins(x=0.3, y=0.15)
    ax.set_xlabel("GFLOPs per example (forward, 1 multiply-add = 2 FLOPs)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or f"accuracy vs compute vs size (bubble area ∝ parameters, largest {si(biggest)})")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    ax.autoscale_view()
    anchors = ax.transData.transform(list(zip(xs, ys)))  # pixels
    points_per_pixel = 72 / fig.dpi
    shifts = label_shifts([(float(x), float(y)) for x, y in anchors], LABEL_BOX)
    for i, p in enumerate(points):
        ax.annotate(f"{p.model}\n{si(p.params)} params, n={len(p.accuracies)}", (xs[i], ys[i]),
                    xytext=(0, shifts[i] * points_per_pixel), textcoords="offset points", fontsize=8,
                    ha="center", va="center",
                    arrowprops={"arrowstyle": "-", "linewidth": 0.5} if shifts[i] else None)
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
