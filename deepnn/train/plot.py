"""Learning curves as a PNG: the loss and the task's metric over training, train vs validation."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` file (none if it does not exist).

    A torn last line, what a kill or a full disk leaves mid-write, is dropped; a bad line anywhere
    else means the file was damaged or edited, a UserError naming the line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(errors="replace").splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise UserError(f"{path} line {i + 1} is not valid JSON; the metrics file is damaged") from None
    return records


def plot_curves(records: list[dict], out: str | Path, title: str = "", metric: str = "accuracy") -> Path:
    """Two panels (loss, ``metric``) over epochs; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = ("loss", metric) if metric != "loss" else ("loss", "perplexity")
    for ax, name in zip(axes, panels):
        for split in ("train", "val"):
            key = f"{split}_{name}"
            if any(key in r for r in records):
                ax.plot(epochs, [r.get(key) for r in records], marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
