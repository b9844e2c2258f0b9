"""Data-parallel training on the CPU: examples/s of 1 process vs 2 processes (torchrun, gloo) vs 2 threads,
and the per-step overhead of DDP itself (world size 1) against the plain loop.

Part 1 runs ``deepnn train MODEL`` as the user would, in alternating rounds, and reads the training
throughput from ``results.json`` (training time only: start-up, data loading and validation excluded):

* ``1 proc x 1 thread``: the plain single-process run (``--threads 1``);
* ``2 procs x 1 thread``: ``torchrun --nproc_per_node=2`` (gloo), the same global batch;
* ``1 proc x 2 threads``: one process with ``--threads 2``.

Part 2 runs, in this process, the Trainer without and with DDP at world size 1 (``train.ddp=always``,
a private one-process gloo group) on the same data, alternately, and reports the time per step (wall
clock, and the process's CPU time, steadier on a shared machine), with the ratio per round. A third
variant registers a DDP communication hook that skips the gradient all-reduce (the mean over one rank
is the gradient itself): the difference to "DDP world size 1" is the cost of that one collective, the
rest is DDP's own bookkeeping. ``--part 2`` runs only this part.

The machine may be shared: every process uses one thread (OMP_NUM_THREADS=1) except the 2-thread
variant; each round's numbers are printed and the spread (min-max over rounds) next to the median.

    python benchmarks/bench_ddp.py [--model lenet_modern] [--subset 16384] [--rounds 3] | tee benchmarks/logs/ddp.txt
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_run(variant: str, args: argparse.Namespace, out: Path) -> float:
    """examples/s of one ``deepnn train`` run of ``variant``."""
    threads = "2" if variant == "1 proc x 2 threads" else "1"
    train = ["train", args.model, "--epochs", "1", "--set", f"data.train_subset={args.subset}",
             "--set", "data.val_size=1000", "--batch-size", str(args.batch_size), "--no-progress",
             "--threads", threads, "--set", "train.val_every_minutes=null", "--out", str(out)]
    if variant == "2 procs x 1 thread":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               f"--master_port={free_port()}", "-m", "deepnn", *train]
    else:
        cmd = [sys.executable, "-m", "deepnn", *train]
    env = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{r.stderr[-2000:]}")
    return json.loads((out / "results.json").read_text())["examples_per_s"]


def spread(xs: list[float]) -> str:
    return f"median {statistics.median(xs):8.0f}  (min {min(xs):.0f}, max {max(xs):.0f})"


def part1(args: argparse.Namespace) -> None:
    variants = ["1 proc x 1 thread", "2 procs x 1 thread", "1 proc x 2 threads"]
    rates: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for i, v in enumerate(variants):
                rates[v].append(cli_run(v, args, Path(tmp) / f"{r}-{i}"))
            print(f"round {r + 1}: " + "  ".join(f"{v}: {rates[v][-1]:.0f}" for v in variants), flush=True)
    base = rates[variants[0]]
    print(f"\n{args.model}, global batch {args.batch_size}, {args.subset} examples per run, examples/s of training:")
    for v in variants:
        ratios = [a / b for a, b in zip(rates[v], base)]
        ratio = statistics.median(rates[v]) / statistics.median(base)
        print(f"  {v:20s} {spread(rates[v])}   ratio to 1x1: {ratio:.2f} "
              f"(per round {min(ratios):.2f}-{max(ratios):.2f})")


def part2(args: argparse.Namespace) -> None:
    import torch

    import deepnn
    from deepnn.data import TensorLoader, load_image_data
    from deepnn.train import ClassificationTask, Config, Trainer, apply_overrides, distributed

    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = load_image_data("fashion_mnist", val_size=1000)
    n = args.steps * args.batch_size
    loader = TensorLoader(data.train[0][:n], data.train[1][:n], args.batch_size, shuffle=True, drop_last=True)
    base = deepnn.create_model(args.model)
    cfg = apply_overrides(Config(), ["train.epochs=1", "train.progress=false", "train.device=cpu"])
    group = distributed.setup("cpu", "always")

    variants = ["plain", "DDP world size 1", "DDP, no all-reduce"]

    def no_all_reduce(state, bucket):  # the mean over one rank is the gradient itself (DDP rejects string annotations)
        fut = torch.futures.Future()
        fut.set_result(bucket.buffer())
        return fut

    def timed(variant: str) -> tuple[float, float]:
        """(wall, CPU) ms per step of one fit; CPU = this process's CPU time (all its threads)."""
        ddp = variant != "plain"
        distributed._CURRENT = group if ddp else None  # the Trainer joins DDP when a group is current
        trainer = Trainer(copy.deepcopy(base), ClassificationTask(10), loader, cfg=cfg)
        assert (trainer.ddp_model is not None) == ddp
        if variant == "DDP, no all-reduce":
            trainer.ddp_model.register_comm_hook(None, no_all_reduce)
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.fit()
        return (time.perf_counter() - t0) / args.steps * 1e3, (time.process_time() - c0) / args.steps * 1e3

    for v in variants:  # warm-up
        timed(v)
    wall: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.rounds * 2):
        for v in variants if r % 2 == 0 else variants[::-1]:
            w, c = timed(v)
            wall[v].append(w)
            cpu[v].append(c)
        print(f"round {r + 1}: " + "  ".join(f"{v} {wall[v][-1]:.2f} ms/step (CPU {cpu[v][-1]:.2f})" for v in variants)
              + f"  DDP/plain {wall[variants[1]][-1] / wall['plain'][-1]:.3f} (CPU "
              f"{cpu[variants[1]][-1] / cpu['plain'][-1]:.3f})", flush=True)
    distributed._CURRENT = group
    distributed.shutdown()
    print(f"\n{args.model}, batch {args.batch_size}, 1 thread, ms per training step (fit, {args.steps} steps):")
    for v in variants:
        print(f"  {v:20s} wall median {statistics.median(wall[v]):.2f} ms (min {min(wall[v]):.2f}, max "
              f"{max(wall[v]):.2f})   CPU median {statistics.median(cpu[v]):.2f} ms")
    for v in variants[1:]:
        for name, t in (("wall", wall), ("CPU", cpu)):
            ratios = [d / p for d, p in zip(t[v], t["plain"])]
            print(f"  {v} overhead ({name}): {statistics.median(t[v]) / statistics.median(t['plain']) - 1:+.1%}"
                  f" (per round {', '.join(f'{x - 1:+.1%}' for x in ratios)})")
    print("  target: DDP world size 1 <= +5 % (wall, on an otherwise idle machine: on a loaded one a process that "
          "waits\n  for its collectives is rescheduled sooner, which can make DDP look faster than the plain loop)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lenet_modern")
    p.add_argument("--batch-size", type=int, default=128, help="the global batch")
    p.add_argument("--subset", type=int, default=16384, help="training examples per CLI run (part 1)")
    p.add_argument("--steps", type=int, default=100, help="steps per timed fit (part 2)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--part", choices=["1", "2", "both"], default="both")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"python {' '.join(sys.argv)}  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    if args.part in ("1", "both"):
        part1(args)
    if args.part in ("2", "both"):
        part2(args)


if __name__ == "__main__":
    main()
