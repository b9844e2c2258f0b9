"""``deepnn nas report``: compare architecture searches (REINFORCE vs random search, lecture item C20).

For each strategy: best-so-far validation accuracy against trials and against wall time, the mean ±
std over its searches (the search seeds), and the controller's mean entropy per update; a markdown
table of the searches (best, mean of the top 5) and of the top architectures with parameters and FLOPs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.gradflow import save_figure
from ..errors import UserError
from .runner import SETTINGS, read_trials


def load_search(folder: str | Path) -> dict[str, Any]:
    """``{"name", "strategy", "seed", "records"}`` of a search folder (records by trial)."""
    path = Path(folder)
    if not (path / SETTINGS).is_file():
        raise UserError(f"{path} is not a search folder ({SETTINGS} missing); "
                        "give folders written by `deepnn nas search`")
    settings = json.loads((path / SETTINGS).read_text())["search"]
    records = sorted(read_trials(path), key=lambda r: r["trial"])
    if not records:
        raise UserError(f"{path} holds no finished trial yet")
    return {"name": path.name or str(path), "strategy": settings["strategy"], "seed": settings["seed"],
            "records": records}


def best_so_far(records: list[dict[str, Any]]) -> np.ndarray:
    return np.maximum.accumulate(np.array([r["reward"] for r in records], dtype=float))


def _mean_std(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(c) for c in curves)  # over the trials every search reached
    stack = np.stack([c[:n] for c in curves])
    return stack.mean(0), stack.std(0)


def _by_strategy(searches: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in searches:
        groups[s["strategy"]].append(s)
    return dict(sorted(groups.items()))


def report(dirs: list[str], output: str | Path | None, top: int = 10) -> str:
    """Read the search folders ``dirs``, draw ``output`` (a PNG; skipped when None) with
    :func:`draw_report` and return the markdown tables of :func:`report_markdown`."""
    if output is not None:
        out = Path(output)
        if out.is_dir() or not out.parent.is_dir():
            raise UserError(f"-o {out}: give a PNG file in an existing folder")
    searches = [load_search(d) for d in dirs]
    if output is not None:
        draw_report(searches, Path(output))
    return report_markdown(searches, top)


def draw_report(searches: list[dict[str, Any]], out: Path) -> None:
    """Three panels: best-so-far validation accuracy vs trials (each search faint, mean ± std over the
    searches of a strategy bold) and vs search wall time, and the controller's mean entropy per update."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_strategy = _by_strategy(searches)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = {"rl": "tab:blue", "random": "tab:orange"}
    firsts = []  # each search's first best-so-far above 0 (its first trained child)
    for strategy, group in by_strategy.items():
        color = colors.get(strategy, "tab:gray")
        curves = [best_so_far(s["records"]) for s in group]
        firsts += [c[c > 0].min() for c in curves if c.max() > 0]
        for s, c in zip(group, curves):
            axes[0].plot(np.arange(1, len(c) + 1), c, color=color, alpha=0.25, lw=0.8)
            axes[1].step([r["wall_s"] / 60 for r in s["records"]], c, where="post", color=color, alpha=0.6, lw=1,
                         label=f"{strategy} seed {s['seed']}")
        mean, std = _mean_std(curves)
        x = np.arange(1, len(mean) + 1)
        n = len(group)
        axes[0].plot(x, mean, color=color, lw=2, label=f"{strategy} (mean ± std, {n} search{'es' * (n != 1)})")
        axes[0].fill_between(x, mean - std, mean + std, color=color, alpha=0.2)
        for s in group:
            per_update: dict[int, list[float]] = defaultdict(list)
            for r in s["records"]:
                if r.get("entropy") is not None:
                    per_update[r["update"]].append(r["entropy"])
            if per_update:
                u = sorted(per_update)
                axes[2].plot(u, [np.mean(per_update[k]) for k in u], color=color, alpha=0.7,
                             label=f"{strategy} seed {s['seed']}")
    axes[0].set(xlabel="trial", ylabel="best validation accuracy so far", title="best so far vs trials")
    axes[1].set(xlabel="search wall time (min)", ylabel="best validation accuracy so far", title="best so far vs time")
    axes[2].set(xlabel="controller update", ylabel="entropy of a sampled architecture (nats)",
                title="controller entropy")
    rewards = np.array([r["reward"] for s in searches for r in s["records"]])
    if firsts and (rewards == 0).any():  # failed children (reward 0) would squash the curves:
        for ax in axes[:2]:  # show them from the lowest first success
            ax.set_ylim(min(firsts) - 0.005, rewards.max() + 0.005)
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out)


def report_markdown(searches: list[dict[str, Any]], top: int = 10) -> str:
    """Markdown tables: one row per search (trials, failed children, architectures redrawn for being over
    the size limits, cached repeats, best and mean of the top 5 validation accuracies, wall time),
    mean ± std (population std) over the searches of each strategy, and the ``top`` architectures of all
    searches (cached repeats and failed children left out), best first."""
    lines = ["| search | strategy | seed | trials | failed | redrawn | cached | best val acc | mean of top 5 "
             "| wall time (min) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in searches:
        rewards = sorted((r["reward"] for r in s["records"]), reverse=True)
        rs = s["records"]
        failed = sum(bool(r["failure"]) for r in rs)
        lines.append(f"| {s['name']} | {s['strategy']} | {s['seed']} | {len(rs)} | {failed} "
                     f"| {sum(r.get('redrawn', 0) for r in rs)} | {sum(r['cached'] for r in rs)} "
                     f"| {rewards[0]:.4f} | {np.mean(rewards[:5]):.4f} "
                     f"| {rs[-1]['wall_s'] / 60:.1f} |")
    lines += ["", "| strategy | searches | best val acc (mean ± std) | mean of top 5 (mean ± std) |",
              "|---|---|---|---|"]
    for strategy, group in _by_strategy(searches).items():
        bests = [max(r["reward"] for r in s["records"]) for s in group]
        top5 = [np.mean(sorted((r["reward"] for r in s["records"]), reverse=True)[:5]) for s in group]
        lines.append(f"| {strategy} | {len(group)} | {np.mean(bests):.4f} ± {np.std(bests):.4f} "
                     f"| {np.mean(top5):.4f} ± {np.std(top5):.4f} |")
    lines += ["", "| rank | val acc | architecture | parameters | FLOPs | search | trial |",
              "|---|---|---|---|---|---|---|"]
    everything = [(r, s) for s in searches for r in s["records"] if not r["cached"] and not r["failure"]]
    everything.sort(key=lambda rs: (-rs[0]["reward"], rs[1]["name"], rs[0]["trial"]))
    for rank, (r, s) in enumerate(everything[:top], start=1):
        lines.append(f"| {rank} | {r['reward']:.4f} | `{r['arch']}` | {r['params']:,} | {r['flops']:,} | {s['name']} "
                     f"| {r['trial']} |")
    return "\n".join(lines)
