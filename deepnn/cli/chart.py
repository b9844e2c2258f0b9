"""``deepnn chart [RESULTS...] -o chart.png``: accuracy vs FLOPs vs parameters of trained models (C19)."""

from __future__ import annotations

import argparse

from ..analysis.chart import DEFAULT_GLOB, FIELDS, bubble_chart, find_results, load_results
from ..errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "chart",
        help="bubble chart: test accuracy vs GFLOPs vs parameters of trained runs",
        description="Draw the lecture's 'GOPS vs accuracy vs #params' chart (C19) from training "
        f"results: x = GFLOPs per example, y = test accuracy, bubble area = "
        f"parameters. Reads the fields {', '.join(FIELDS)} of each results.json; "
        "runs of the same model are averaged.",
    )
    p.add_argument(
        "results",
        nargs="*",
        metavar="RESULTS",
        help=f"results.json files or run folders (default: {DEFAULT_GLOB})",
    )
    p.add_argument("-o", "--out", default="chart.png", help="PNG to write (default: chart.png)")
    p.add_argument("--title", default="", help="chart title")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    files = find_results(args.results)
    points = load_results(files)
    if files and not points:
        raise UserError(f"none of the {len(files)} results files is an image classifier's; the chart plots test "
                        "accuracy against FLOPs per image (language models: `deepnn results`)")
    out = bubble_chart(points, args.out, title=args.title)
    print(f"wrote {out}: {len(points)} models from {len(files)} results files")
    return 0
