"""The confusion matrix of a classifier as a picture (``deepnn eval RUN --confusion-png cm.png``).

Rows are the true classes, columns the predicted ones, as in the table ``deepnn eval`` prints. Each cell
shows its count; its colour is the count's share of the true class (the row), so the diagonal reads as
per-class recall whatever the class sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .gradflow import save_figure

__all__ = ["confusion_figure", "plot_confusion"]


def confusion_figure(confusion: list[list[int]], classes: list[str], title: str = "") -> Any:
    """A matplotlib figure of ``confusion`` (``confusion[true][pred]`` counts) labelled with ``classes``.

    The image's data is each count's share of its row (colour scale 0 to 1); each cell carries its count
    as text, so the figure holds exactly the numbers ``deepnn eval`` prints.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    counts = np.asarray(confusion, dtype=np.int64)
    n = len(classes)
    if counts.shape != (n, n):
        raise UserError(f"the confusion matrix is {counts.shape}, but there are {n} classes")
    totals = counts.sum(axis=1, keepdims=True)
    shares = counts / np.maximum(totals, 1)

    size = max(4.0, 0.6 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    cmap = plt.get_cmap("Blues")
    image = ax.imshow(shares, cmap=cmap, norm=Normalize(0, 1), interpolation="nearest")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total = int(counts.sum())
    accuracy = np.trace(counts) / total if total else 0.0
    ax.set_title(f"{title}{': ' if title else ''}accuracy {accuracy:.4f} on {total} examples", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    return fig


def plot_confusion(confusion: list[list[int]], classes: list[str], out: str | Path, title: str = "") -> Path:
    """Write :func:`confusion_figure` as a PNG; returns the path."""
    return save_figure(confusion_figure(confusion, classes, title), out)
