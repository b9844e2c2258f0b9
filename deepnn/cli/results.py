"""``deepnn results [RUNS...] [-o FILE]``: the results table of trained runs, mean ± std over seeds."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..analysis.chart import DEFAULT_GLOB, find_results
from ..analysis.results import group_results, results_markdown


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "results", help="markdown table of trained runs: accuracy mean ± std over seeds, time, cost, command",
        description="Group training runs by model and recipe (config.yaml without the seed) and print a "
                    "markdown table: seeds, test accuracy mean ± std, training time, examples/s, parameters, "
                    "forward GFLOPs per example, precision, machine and the command (seed as {seed}).",
        epilog="examples:\n  deepnn results\n  deepnn results runs/resnet18-* -o docs/results.md",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", metavar="RUNS",
                   help=f"run folders or results.json files (default: {DEFAULT_GLOB})")
    p.add_argument("-o", "--out", help="also write the table to this markdown file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    files = find_results(args.runs)
    table = results_markdown(group_results(files))
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + "\n")
        print(f"\nwrote {out} ({len(files)} runs)")
    return 0
