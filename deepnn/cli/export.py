"""``deepnn export RUN -o model.onnx``: a trained model as an ONNX graph, checked in ONNX Runtime (F1)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from ..errors import UserError
from ..export import LogitsOnly, check_onnx, export_onnx
from ..runs import load_run

TOLERANCE = 1e-4  # float32 outputs of two engines agree to about 1e-6; more means a wrong graph


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a trained model to ONNX and check it in ONNX Runtime (F1)",
        description="Write a run's model (the weights results.json reports) as an ONNX graph with a free batch "
                    "dimension, then run it in ONNX Runtime on random inputs and compare with PyTorch. "
                    "Needs the onnx extra: pip install 'deepnn[onnx]'.",
        epilog="example:\n  deepnn export runs/lenet-20261126-101500 -o lenet.onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run folder (or a .safetensors checkpoint) written by deepnn train")
    p.add_argument("-o", "--out", metavar="FILE", help="the .onnx file (default: RUN/model.onnx)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    loaded = load_run(args.run)
    model, d = loaded.model, loaded.meta["data"]
    folder = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    out = Path(args.out) if args.out else folder / "model.onnx"
    if out.is_dir() or (args.out or "").endswith(("/", os.sep)):
        raise UserError(f"-o {args.out or out} names a folder; give a file name such as {out / 'model.onnx'}")
    if loaded.kind.task == "seq2seq":
        raise UserError(f"{loaded.cfg.model.name} is a translation model (two inputs, a decoding loop); export covers "
                        "image classifiers and language models, e.g. a char_transformer run")
    g = torch.Generator().manual_seed(0)
    if loaded.kind.task == "language_model":
        model, name = LogitsOnly(model).eval(), "tokens"
        vocab = len(d["vocab"])
        example, check = (torch.randint(0, vocab, (2, 16), generator=g), torch.randint(0, vocab, (8, 16), generator=g))
        what = f"input token ids (B, 16), vocabulary {vocab}"
    else:
        shape, name = d["input_shape"], "images"
        example, check = torch.zeros(2, *shape), torch.randn(8, *shape, generator=g)
        what = f"input images (B, {', '.join(map(str, shape))})"
    try:
        path = export_onnx(model, example, out, input_name=name)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}; choose a writable -o FILE") from None
    diff = check_onnx(path, model, check, input_name=name)
    if not diff <= TOLERANCE:
        raise UserError(f"{path}: ONNX Runtime's outputs differ from PyTorch's by {diff:.2e} (> {TOLERANCE:g}); "
                        "the exported graph is wrong, please report it")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {what})")
    print(f"ONNX Runtime vs PyTorch on 8 random {name}: largest difference {diff:.2e}")
    return 0
