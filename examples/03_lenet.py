"""LeNet (C11): its layers and shapes, then a short training run on Fashion-MNIST.

The lecture's LeNet-5: two 5×5 convolutions with sigmoid and 2×2 stride-2 average pooling, then
dense layers of 120, 84 and 10. The per-layer table comes from ``deepnn.analysis.summary``; the
training uses the model's recipe (``deepnn/recipes/lenet.yaml``: AdamW, one-cycle) through
``deepnn.runs.build_training``, the function ``deepnn train`` uses, shortened to two epochs on the first
10,000 training images, validated on the 5,000 held-out ones.

Run:  DEEPNN_DATA=../shared/data python examples/03_lenet.py [--subset 10000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import time

import torch

import deepnn
from deepnn.analysis import summary
from deepnn.runs import build_training
from deepnn.train.config import Config, load_yaml, recipe_path


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--subset", type=int, default=10_000, help="training images (default 10000)")
    p.add_argument("--epochs", type=int, default=2, help="epochs (default 2)")
    args = p.parse_args()

    net = deepnn.create_model("lenet", num_classes=10)
    s = summary(net, (1, 28, 28), name="LeNet")
    print("C11 LeNet, one 1×28×28 image:")
    print(f"    {'layer':<14} {'type':<10} {'output':<10} {'params':>7}")
    for row in s.rows:
        if row.type == "Identity":  # placeholders where lenet_modern has batch norm
            continue
        shape = "×".join(map(str, row.output_shape)) if row.output_shape else "—"
        print(f"    {row.name:<14} {row.type:<10} {shape:<10} {row.params:>7,}")
    print(f"    total: {s.params:,} parameters, {s.macs:,} multiply-adds per image")

    cfg = Config.from_dict(load_yaml(recipe_path("lenet")), "recipes/lenet.yaml")
    cfg.data.train_subset, cfg.train.epochs = args.subset, args.epochs
    cfg.train.device, cfg.train.progress, cfg.train.threads = "cpu", False, 1
    print(f"\ntraining: {args.epochs} epoch(s) on {args.subset:,} images, batch {cfg.data.batch_size}, "
          f"{cfg.optim.name} lr {cfg.optim.lr}, {cfg.sched.name} schedule")
    t0 = time.perf_counter()
    training = build_training(cfg)  # data, model, task, Trainer; no run folder
    for record in training.trainer.fit():
        print(f"    epoch {record['epoch']:g}: train loss {record['train_loss']:.3f}, "
              f"train accuracy {record['train_accuracy']:.3f}, validation accuracy {record['val_accuracy']:.4f}")
    test = training.trainer.evaluate(training.test)
    print(f"    test accuracy {test['accuracy']:.4f} (10,000 test images), {time.perf_counter() - t0:.1f} s")
    print("    (all 55,000 images for 10 epochs, `deepnn train lenet`, reach about 89.8 %)")


if __name__ == "__main__":
    main()
