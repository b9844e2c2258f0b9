"""Trainer overhead: examples/s of deepnn's loop vs a minimal hand-written PyTorch loop.

Same model, same data (real Fashion-MNIST tensors), same batch size and optimizer; the two
loops run alternately several times in one process and the ratio of medians is reported,
so machine noise hits both alike. Target (issue 2): ratio >= 0.97. Each round's ratio is printed too, and
the spread (min–max of the per-round ratios) next to the ratio of medians: a margin inside the spread is noise.

    python benchmarks/bench_trainer.py [--model lenet] [--steps 200] [--rounds 5] | tee benchmarks/logs/trainer.txt
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

import deepnn
from deepnn.data import TensorLoader, load_image_data
from deepnn.train import ClassificationTask, Trainer, apply_overrides
from deepnn.train.config import Config


def hand_written(model, loader: TensorLoader, lr: float) -> float:
    """The minimal loop: forward, cross-entropy, backward, step. Returns seconds."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    t0 = time.perf_counter()
    for x, y in loader.batches(0):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return time.perf_counter() - t0


def with_trainer(model, loader: TensorLoader, lr: float, progress: bool) -> float:
    cfg = apply_overrides(Config(), ["train.epochs=1", f"optim.lr={lr}", f"train.progress={str(progress).lower()}"])
    trainer = Trainer(model, ClassificationTask(10), loader, cfg=cfg)
    t0 = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lenet")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)
    data = load_image_data("fashion_mnist")
    n = args.steps * args.batch_size
    loader = TensorLoader(data.train[0][:n], data.train[1][:n], args.batch_size, shuffle=True, drop_last=True)
    base = deepnn.create_model(args.model)
    times: dict[str, list[float]] = {"hand-written": [], "Trainer": [], "Trainer+progress bar": []}
    with_trainer(copy.deepcopy(base), loader, 1e-3, False)  # warm-up (allocator, kernels)
    for _ in range(args.rounds):
        times["hand-written"].append(hand_written(copy.deepcopy(base), loader, 1e-3))
        times["Trainer"].append(with_trainer(copy.deepcopy(base), loader, 1e-3, False))
        times["Trainer+progress bar"].append(with_trainer(copy.deepcopy(base), loader, 1e-3, True))
    ref = statistics.median(times["hand-written"])
    print(f"{args.model}, batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print("raw seconds per round: " + "; ".join(f"{k} " + ", ".join(f"{t:.3f}" for t in ts) for k, ts in times.items()))
    print(f"{'loop':<22} {'examples/s':>11} {'ratio':>7} {'per-round ratio min-max':>24}")
    for name, ts in times.items():
        med = statistics.median(ts)
        rounds = [h / t for h, t in zip(times["hand-written"], ts)]
        print(f"{name:<22} {n / med:>11.0f} {ref / med:>7.3f} {min(rounds):>11.3f} - {max(rounds):.3f}")


if __name__ == "__main__":
    main()
