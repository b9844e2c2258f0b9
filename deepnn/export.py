"""Hand a trained model to another runtime: ONNX export and its check (lecture item F1).

The lecture's survey of frameworks ends with interchange: a network defined and trained in one
framework runs in another through a common graph format, ONNX (Open Neural Network Exchange,
Bai et al. 2017, onnx.ai). :func:`export_onnx` writes a model as an ONNX graph with PyTorch's
exporter (``torch.onnx.export(..., dynamo=True)``: the model is traced by ``torch.export``, then
translated op by op), with a free batch dimension; :func:`check_onnx` runs the file in ONNX Runtime,
a different engine, and returns the largest difference from PyTorch's outputs on the same images.

Needs the ``onnx`` extra (``pip install 'deepnn[onnx]'``: onnx, onnxscript, onnxruntime).

    >>> model = deepnn.create_model("lenet").eval()                       # doctest: +SKIP
    >>> export_onnx(model, (1, 28, 28), "lenet.onnx")                     # doctest: +SKIP
    >>> check_onnx("lenet.onnx", model, torch.randn(5, 1, 28, 28))        # doctest: +SKIP
    1.2e-07
"""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from .errors import UserError

INPUT_NAME, OUTPUT_NAME = "images", "logits"


def _require(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"ONNX export needs the {module!r} package; install the extra: pip install 'deepnn[onnx]' "
                        "(onnx, onnxscript, onnxruntime)") from None


def export_onnx(model: nn.Module, input_shape: Sequence[int], path: str | Path) -> Path:
    """Write ``model`` (in eval mode) as an ONNX graph taking ``images`` ``(B, C, H, W)`` and returning
    ``logits`` ``(B, classes)``; ``B`` is free, ``(C, H, W)`` = ``input_shape``. Returns the path."""
    for module in ("onnx", "onnxscript"):
        _require(module)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.zeros(2, *input_shape)  # two images: a batch of one would let the exporter fix B = 1
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping ...": not ours to act on
    try:
        with warnings.catch_warnings():  # the exporter's own deprecation notices, likewise
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=[INPUT_NAME],
                                        output_names=[OUTPUT_NAME], verbose=False,
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
    finally:
        registration.setLevel(level)
    program.save(str(path))
    return path


def check_onnx(path: str | Path, model: nn.Module, images: torch.Tensor) -> float:
    """Largest absolute difference between ONNX Runtime's outputs for ``path`` and ``model``'s, on
    ``images`` ``(B, C, H, W)`` (float32, CPU)."""
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = images.detach().float().cpu()
    theirs = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])
    with torch.no_grad():
        ours = model.eval().cpu()(x).float()
    return (theirs - ours).abs().max().item()
