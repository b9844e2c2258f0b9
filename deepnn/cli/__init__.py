"""The ``deepnn`` command line: one module per subcommand.

Each module in ``COMMANDS`` defines ``add_parser(subparsers)`` (which registers its
arguments and sets ``func``) and a ``run(args) -> int``. User errors
(:class:`deepnn.UserError`) are printed as one line and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import UserError

# subcommand -> module under deepnn.cli (kept in the order `deepnn --help` shows them)
COMMANDS = {
    "models": "models",
    "train": "train",
    "eval": "evaluate",
    "sample": "sample",
    "translate": "translate",
    "attention": "attention",
    "predict": "predict",
    "features": "features",
    "kernels": "kernels",
    "summary": "summary",
    "chart": "chart",
    "bench": "bench",
    "results": "results",
    "export": "export",
    "nas": "nas",
    "gradflow": "gradflow",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepnn",
        description="The Deep NN lecture as a tool: see each building block work, train every classic network.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"deepnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS.values():
        importlib.import_module(f"{__name__}.{module}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``deepnn`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"deepnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deepnn {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped early (`deepnn eval RUN | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush stays quiet
        return 0


if __name__ == "__main__":
    sys.exit(main())
