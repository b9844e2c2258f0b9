"""Handing a model to another runtime (F1): LeNet (modern) trained briefly in PyTorch, exported to ONNX, run in
ONNX Runtime.

The lecture's survey of frameworks ends with interchange: a network defined and trained in one
framework runs in another through a common graph format. ``deepnn.export.export_onnx`` writes the
model as an ONNX graph (PyTorch's ``torch.export``-based exporter) with a free batch dimension;
``check_onnx`` runs it in ONNX Runtime and returns the largest difference from PyTorch's outputs.
Needs the ``onnx`` extra (``pip install 'deepnn[onnx]'``, part of the dev install).

Run:  DEEPNN_DATA=../shared/data python examples/09_export.py [--out lenet.onnx]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from deepnn.export import INPUT_NAME, OUTPUT_NAME, check_onnx, export_onnx
from deepnn.runs import build_training
from deepnn.train.config import Config, load_yaml, recipe_path


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "deepnn_examples" / "lenet.onnx",
                   help="ONNX file to write (default: a temporary folder)")
    args = p.parse_args()

    cfg = Config.from_dict(load_yaml(recipe_path("lenet_modern")), "recipes/lenet_modern.yaml")
    cfg.data.train_subset, cfg.train.epochs = 5000, 1
    cfg.train.device, cfg.train.progress, cfg.train.threads = "cpu", False, 1
    training = build_training(cfg)
    training.trainer.fit()
    model = training.trainer.model.eval()
    test_x, test_y = training.test.x[:1000], training.test.y[:1000]
    print("F1  LeNet (modern: ReLU, batch norm, max pooling) trained in PyTorch, 1 epoch on 5,000 Fashion-MNIST images")

    path = export_onnx(model, (1, 28, 28), args.out)
    print(f"    wrote {path} ({path.stat().st_size / 1e6:.2f} MB), input '{INPUT_NAME}' (B, 1, 28, 28), "
          f"output '{OUTPUT_NAME}' (B, 10), B free")
    for batch in (1, 8, 1000):
        diff = check_onnx(path, model, test_x[:batch])
        print(f"    ONNX Runtime vs PyTorch on {batch:>4} test image(s): largest difference {diff:.2e}")

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run([OUTPUT_NAME], {INPUT_NAME: test_x.numpy()})[0]  # numpy in, numpy out: no torch
    onnx_acc = float((np.argmax(logits, axis=1) == test_y.numpy()).mean())
    with torch.no_grad():
        torch_acc = (model(test_x).argmax(1) == test_y).float().mean().item()
    print(f"    accuracy on 1,000 test images: PyTorch {torch_acc:.4f}, ONNX Runtime {onnx_acc:.4f}")


if __name__ == "__main__":
    main()
