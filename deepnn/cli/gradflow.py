"""``deepnn gradflow -o gradflow.png``: vanishing and exploding gradients through time (lecture item R4)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gradflow",
        help="gradient reaching k steps back in RNN, LSTM and GRU cells; clipping; the toy powers (R4)",
        description="Measure how much gradient reaches each earlier time step, ‖∂h_T/∂s_{T-k}‖₂ (s = h, or "
        "(h, c) for an LSTM), for tanh RNN, LSTM and GRU cells at initialisation on the same random input "
        "sequences, plus an LSTM and a GRU whose forget / update gate is held open (the constant error "
        "carousel). Plots the norms on a log scale, prints them as a markdown table, shows gradient "
        "clipping stopping an explosion, and the lecture's toy powers 1.01^1000 and 0.99^1000.",
    )
    p.add_argument("-o", "--out", default="gradflow.png", help="PNG to write (default: gradflow.png)")
    p.add_argument("--steps", type=int, default=100, help="sequence length T (default: 100)")
    p.add_argument("--hidden", type=int, default=64, help="hidden size H of every cell (default: 64)")
    p.add_argument("--input", type=int, default=32, dest="input_size", help="input size I (default: 32)")
    p.add_argument("--batch", type=int, default=8, help="sequences the norms are averaged over (default: 8)")
    p.add_argument("--gate-bias", type=float, default=3.0,
                   help="forget / update gate bias of the open-gate LSTM and GRU (default: 3)")
    p.add_argument("--seed", type=int, default=0, help="seeds the cells and the inputs (default: 0)")
    p.add_argument("--runs", nargs="+", metavar="RUN",
                   help="trained language-model runs: measure their first recurrent layer on --batch windows of "
                        "--steps characters of their validation text, after training and at initialisation")
    p.add_argument("--table", action="store_true",
                   help="print only the markdown table of norms (no clipping demo, no toy powers)")
    p.set_defaults(func=run)


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise UserError(f"-o {str(out)!r} is a folder; give a file name, e.g. {str(out / 'gradflow.png')!r}")
    if out.suffix.lower() != ".png":
        raise UserError(f"-o {str(out)!r}: the plot is written as PNG; give a path ending in .png")
    if not out.parent.is_dir():
        raise UserError(f"-o {str(out)!r}: folder {str(out.parent)!r} does not exist; create it first")


def _trained_flows(runs: list[str], steps: int, batch: int, seed: int) -> dict:
    """Flows of each run's trained model and of the same architecture freshly initialised (seed ``seed``),
    on ``batch`` windows of ``steps`` characters spread over the run's validation split."""
    import torch

    from ..analysis.gradflow import model_flow
    from ..data.text import CharVocab, load_text_data
    from ..models import create_model
    from ..runs import load_run

    flows = {}
    for run in runs:
        loaded = load_run(run)
        if loaded.kind.task != "language_model" or not hasattr(loaded.model, "rnn"):
            raise UserError(f"{run} is not a recurrent language-model run; --runs takes char_rnn/lstm/gru runs")
        cfg = loaded.cfg
        data = load_text_data(cfg.data.path, val_fraction=cfg.data.val_fraction, test_fraction=cfg.data.test_fraction,
                              vocab=CharVocab.from_list(loaded.meta["data"]["vocab"]))
        if len(data.val) < batch * steps:
            raise UserError(f"{run}: the validation text has {len(data.val)} characters, fewer than --batch x --steps")
        stride = len(data.val) // batch
        tokens = torch.stack([data.val[i * stride: i * stride + steps] for i in range(batch)])  # (B, T)
        torch.manual_seed(seed)
        fresh = create_model(cfg.model.name, **loaded.meta["data"]["model_args"]).eval()
        name = cfg.model.name.removeprefix("char_").upper()
        flows[f"{name} trained"] = model_flow(loaded.model, tokens)
        flows[f"{name} at init"] = model_flow(fresh, tokens)
    return flows


def run(args: argparse.Namespace) -> int:
    for flag, value in (("--steps", args.steps), ("--hidden", args.hidden), ("--input", args.input_size),
                        ("--batch", args.batch)):
        if value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    out = Path(args.out)
    _check_out(out)
    import torch

    from ..analysis.gradflow import clipping_demo, default_cells, flow_table, gradient_flow, plot_gradient_flow
    from ..layers.rnn import power_example

    threads = torch.get_num_threads()
    if args.runs:
        flows = _trained_flows(args.runs, args.steps, args.batch, args.seed)
        title = (f"gradient reaching k steps back, ‖∂h_T/∂s_(T−k)‖₂, first layer\n"
                 f"trained and at initialisation, T = {args.steps}, mean over {args.batch} windows of text")
    else:
        cells = default_cells(args.input_size, args.hidden, args.seed, gate_bias=args.gate_bias)
        torch.set_num_threads(1)  # thousands of tiny ops: on a busy 2-core machine 2 threads ran 10x slower than 1
        try:
            flows = gradient_flow(cells, steps=args.steps, input_size=args.input_size, batch=args.batch,
                                  seed=args.seed)
        finally:
            torch.set_num_threads(threads)
        title = (f"gradient reaching k steps back, ‖∂h_T/∂s_(T−k)‖₂\n"
                 f"at initialisation, H = {args.hidden}, T = {args.steps}, mean over {args.batch} random sequences")
    plot_gradient_flow(flows, out, title=title)
    where = ("first recurrent layer of each run, trained and at initialisation, on its validation text" if args.runs
             else f"H = {args.hidden}, at initialisation")
    print(f"R4: ‖∂h_T/∂s_(T-k)‖₂, gradient reaching k steps back (s = h; (h, c) for an LSTM), "
          f"T = {args.steps}, mean over {args.batch} sequences, {where}")
    print()
    print(flow_table(flows))
    if not args.table:
        print()
        print("\n".join(clipping_demo().lines()))
        print()
        powers = power_example(1000)
        print("toy powers (a factor multiplied in 1000 times): "
              + ", ".join(f"{base:g}^1000 = {value:.5g}" for base, value in powers.items()))
    print()
    print(f"wrote {out}")
    return 0
