"""``deepnn export RUN -o model.onnx``: a trained model as an ONNX graph, checked in ONNX Runtime (F1)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..errors import UserError
from ..export import check_onnx, export_onnx
from ..train.run import load_run

TOLERANCE = 1e-4  # float32 outputs of two engines agree to about 1e-6; more means a wrong graph


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a trained model to ONNX and check it in ONNX Runtime (F1)",
        description="Write a run's model (best checkpoint, or last) as an ONNX graph with a free batch "
                    "dimension, then run it in ONNX Runtime on random images and compare with PyTorch. "
                    "Needs the onnx extra: pip install 'deepnn[onnx]'.",
        epilog="example:\n  deepnn export runs/lenet-20261126-101500 -o lenet.onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run folder (or a .safetensors checkpoint) written by deepnn train")
    p.add_argument("-o", "--out", metavar="FILE", help="the .onnx file (default: RUN/model.onnx)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model, meta = load_run(args.run)
    shape = meta["data"]["input_shape"]
    folder = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    out = Path(args.out) if args.out else folder / "model.onnx"
    path = export_onnx(model, shape, out)
    diff = check_onnx(path, model, torch.randn(8, *shape, generator=torch.Generator().manual_seed(0)))
    if diff > TOLERANCE:
        raise UserError(f"{path}: ONNX Runtime's outputs differ from PyTorch's by {diff:.2e} (> {TOLERANCE:g}); "
                        "the exported graph is wrong, please report it")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, input images (B, {', '.join(map(str, shape))}))")
    print(f"ONNX Runtime vs PyTorch on 8 random images: largest difference {diff:.2e}")
    return 0
