"""``deepnn bench train MODEL``: training-step throughput, achieved FLOP/s and MFU on synthetic data.

``--compare`` times fp32 against bf16 + channels_last, interleaved over ``--rounds``, and
prints the ratio (issue 5's target: at least 1.5×). See :mod:`deepnn.runs.bench` for the
FLOP conventions.
"""

from __future__ import annotations

import argparse

import torch

from ..analysis.summary import parse_shape
from ..errors import UserError
from ..runs.bench import (
    COMPARE,
    PRECISIONS,
    compare_markdown_table,
    compare_settings,
    matmul_peak,
    median_rate,
    train_throughput,
)
from ..runs.build import task_kind
from ..train.trainer import resolve_device


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="measure training throughput (examples/s, FLOP/s, MFU)",
        description="Benchmarks on synthetic data. `deepnn bench train MODEL` times the Trainer's training step "
                    "after warm-up steps and reports examples/s, achieved FLOP/s (3 x the counted forward FLOPs "
                    "per example: forward + backward) and MFU, the ratio to this device's measured matmul peak "
                    "(best of 5 products of 2048x2048 matrices, 8192x8192 on a GPU, in the same precision).")
    what = p.add_subparsers(dest="what", metavar="WHAT")
    what.required = True
    t = what.add_parser(
        "train", help="training-step throughput of a model",
        description="Training-step throughput of a registered model on random images on the device.",
        epilog="examples:\n  deepnn bench train resnet18 --precision bf16 --channels-last\n"
               "  deepnn bench train resnet18 --compare --batch-size 64 --steps 10 --rounds 3",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("model", help="registered model name (see `deepnn models`)")
    t.add_argument("--steps", type=int, default=50, help="timed training steps (default 50)")
    t.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    t.add_argument("--batch-size", type=int, default=128, help="examples per step (default 128)")
    t.add_argument("--precision", choices=list(PRECISIONS), default="fp32", help="fp32 or bf16 autocast")
    t.add_argument("--channels-last", action="store_true", help="channels-last (NHWC) memory format")
    t.add_argument("--input", default="1x28x28", metavar="CxHxW",
                   help="input shape (default 1x28x28, Fashion-MNIST); for a language model the sequence length "
                        "(default 128)")
    t.add_argument("--vocab", type=int, default=84, help="language models: vocabulary size (default 84, Shakespeare)")
    t.add_argument("--compile", action="store_true",
                   help="torch.compile the model (compiled during the warm-up steps, which are not timed)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    t.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads; default: torch's)")
    t.add_argument("--compare", action="store_true",
                   help="time " + " against ".join(f"{p}{' + channels_last' if cl else ''}" for p, cl in COMPARE)
                        + ", interleaved; --precision and --channels-last are then ignored")
    t.add_argument("--rounds", type=int, default=3, help="--compare: rounds of the interleaved runs (default 3)")
    t.set_defaults(func=run)


def _where(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type}, {torch.get_num_threads()} threads"


def _header(model: str, shape: tuple[int, int, int], batch_size: int, device: torch.device) -> str:
    shape_text = "x".join(map(str, shape))
    return f"{model}, input {shape_text}, batch {batch_size}, {_where(device)}, torch {torch.__version__}"


def _lm_run(args: argparse.Namespace, device: torch.device) -> int:
    seq_len = 128 if args.input == "1x28x28" else int(args.input) if args.input.isdigit() else 0
    if seq_len < 1:
        raise UserError(f"--input for a language model is a sequence length such as 128, got {args.input!r}")
    if args.compare or args.channels_last:
        raise UserError("--compare and --channels-last time image models; for a language model give --precision")
    print(f"{args.model}, sequences of {seq_len}, batch {args.batch_size}, vocabulary {args.vocab}, "
          f"{_where(device)}, torch {torch.__version__}")
    r = train_throughput(args.model, (seq_len,), precision=args.precision, batch_size=args.batch_size,
                         steps=args.steps, warmup=args.warmup, device=args.device, compile=args.compile,
                         num_classes=args.vocab)
    print(f"{r.setting}: {r.tokens_per_s:.0f} tokens/s ({r.examples_per_s:.1f} sequences/s; {r.steps} steps after "
          f"{args.warmup} warm-up steps, {r.seconds:.2f} s)")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if task_kind(args.model).task == "language_model":
        return _lm_run(args, device)
    shape = parse_shape(args.input)
    kwargs = {"batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "device": args.device,
              "compile": args.compile}
    print(_header(args.model, shape, args.batch_size, device))
    if args.compare:
        if args.precision != "fp32" or args.channels_last:
            raise UserError("--compare times its own settings; drop --precision and --channels-last")
        runs = compare_settings(args.model, shape, rounds=args.rounds, **kwargs)
        peaks = {p: matmul_peak(p, device) for p in PRECISIONS}
        print(f"{args.steps} timed steps after {args.warmup} warm-up steps per run, {args.rounds} rounds interleaved; "
              f"forward {runs[0][0].forward_flops / 1e9:.3f} GFLOPs per example, x3 per training example\n")
        print(compare_markdown_table(runs, peaks))
        ratio = median_rate(runs[-1]) / median_rate(runs[0])
        print(f"\n{runs[-1][0].setting} vs {runs[0][0].setting}: {ratio:.2f}x examples/s (issue 5 target: >= 1.5x)")
        return 0
    r = train_throughput(args.model, shape, precision=args.precision, channels_last=args.channels_last, **kwargs)
    peak = matmul_peak(args.precision, device)
    print(f"{r.setting}: {r.examples_per_s:.0f} examples/s ({r.steps} steps after {args.warmup} warm-up steps, "
          f"{r.seconds:.2f} s)")
    print(f"model FLOPs: {r.forward_flops / 1e9:.3f} GFLOPs forward per example, x3 per training example")
    print(f"achieved {r.train_flops_per_s / 1e9:.1f} GFLOP/s; {args.precision} matmul peak "
          f"{peak / 1e9:.1f} GFLOP/s; MFU {100 * r.train_flops_per_s / peak:.1f} %")
    return 0
