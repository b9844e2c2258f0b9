"""Neural architecture search with reinforcement learning (C20, Zoph & Le 2016).

An LSTM controller writes a CNN token by token: per conv layer a filter size (1, 3, 5) and a number
of filters (8, 16, 32). The architecture's reward R scales the gradient of its log-probability
(REINFORCE, with a moving-average baseline b): loss = −(R − b) · log p(arch).

1. A synthetic reward (the fraction of tokens equal to a hidden target architecture) stands in for
   training a child, so 300 controller steps take a second; the controller ends up writing the target.
2. One real child: the architecture the controller settled on, trained for one epoch on 1,000
   Fashion-MNIST images; its validation accuracy is the reward the real search would use
   (``deepnn nas`` runs that loop; each step costs one child training). ``--no-child`` skips it.

Run:  DEEPNN_DATA=../shared/data python examples/05_nas.py [--steps 300] [--no-child]
"""

from __future__ import annotations

import argparse

import torch

from deepnn.data import load_image_data
from deepnn.nas import SearchSpace, child_reward, search
from deepnn.train.config import Config

TARGET = [2, 0, 1, 2, 0, 1]  # 5x5-8 3x3-32 1x1-16: one of 3^6 = 729 architectures


def match_fraction(arch: list[int]) -> float:
    """Synthetic reward in [0, 1]: the fraction of the 6 tokens equal to TARGET's."""
    return sum(a == t for a, t in zip(arch, TARGET)) / len(TARGET)


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=300, help="controller steps on the synthetic reward (default 300)")
    p.add_argument("--no-child", action="store_true", help="skip training the one real child")
    args = p.parse_args()

    space = SearchSpace(num_layers=3)
    print(f"C20 search space: 3 conv layers × (filter size {space.filter_sizes}, filters {space.num_filters}) "
          f"= {3 ** space.num_decisions} architectures; hidden target {space.to_string(TARGET)}")

    def report(s) -> None:
        if s.step <= 3 or s.step % 50 == 0:
            print(f"    step {s.step:>3}  {s.arch:<22} reward {s.reward:.3f}  baseline {s.baseline:.3f}"
                  f"{'  (cached)' if s.cached else ''}")

    result = search(match_fraction, space, steps=args.steps, seed=0, on_step=report)
    first = sum(s.reward for s in result.history[:50]) / 50
    last = sum(s.reward for s in result.history[-50:]) / 50
    print(f"    mean reward, first 50 steps {first:.3f} -> last 50 steps {last:.3f}")
    print(f"    best sampled: {result.best.arch} (reward {result.best.reward:.3f}, step {result.best.step})")
    print(f"    controller's most likely architecture: {result.greedy_arch}"
          f"{'  = the target' if result.greedy_arch == space.to_string(TARGET) else ''}")

    if args.no_child:
        return
    cfg = Config()
    cfg.data.train_subset, cfg.data.batch_size, cfg.data.val_size = 1000, 64, 1000
    cfg.optim.lr = 0.01
    cfg.train.epochs, cfg.train.device, cfg.train.progress, cfg.train.threads = 1, "cpu", False, 1
    data = load_image_data(val_size=cfg.data.val_size, seed=cfg.train.seed)
    reward = child_reward(TARGET, space, data, cfg)
    print(f"\n    a real child, {space.to_string(TARGET)}, 1 epoch on 1,000 Fashion-MNIST images: "
          f"reward R = validation accuracy {reward:.4f} (1,000 held-out images)")


if __name__ == "__main__":
    main()
