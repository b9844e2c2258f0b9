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


class LogitsOnly(nn.Module):
    """A language model ``(tokens (B, T)) -> (logits (B, T, V), state)`` as ``tokens -> logits``: the graph
    ONNX gets starts from a zero state and returns the scores of every position."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)[0]


def _require(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"ONNX export needs the {module!r} package; install the extra: pip install 'deepnn[onnx]' "
                        "(onnx, onnxscript, onnxruntime)") from None


def export_onnx(model: nn.Module, input_shape: Sequence[int] | torch.Tensor, path: str | Path,
                input_name: str = INPUT_NAME) -> Path:
    """Write ``model`` (in eval mode) as an ONNX graph taking ``images`` ``(B, C, H, W)`` and returning
    ``logits`` ``(B, classes)``; ``B`` is free, ``(C, H, W)`` = ``input_shape``. Returns the path.

    ``input_shape`` may instead be an example input of two or more rows, e.g. token ids ``(2, T)`` of a
    language model wrapped in :class:`LogitsOnly` (``input_name="tokens"``); its first dimension is free."""
    for module in ("onnx", "onnxscript"):
        _require(module)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    # two rows: a batch of one would let the exporter fix B = 1
    example = input_shape if torch.is_tensor(input_shape) else torch.zeros(2, *input_shape)
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping ...": not ours to act on
    try:
        with warnings.catch_warnings():  # the exporter's own deprecation notices, likewise
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message="The tensor attributes .*_flat_weights")  # nn.LSTM's cache
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=[input_name],
                                        output_names=[OUTPUT_NAME], verbose=False,
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
    finally:
        registration.setLevel(level)
    program.save(str(path))
    return path


def check_onnx(path: str | Path, model: nn.Module, images: torch.Tensor, input_name: str = INPUT_NAME) -> float:
    """Largest absolute difference between ONNX Runtime's outputs for ``path`` and ``model``'s, on
    ``images`` ``(B, C, H, W)`` (float32, CPU) or token ids; NaN anywhere gives ``inf`` (never a pass)."""
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = images.detach().cpu()
    x = x.float() if x.is_floating_point() else x
    theirs = torch.from_numpy(session.run([OUTPUT_NAME], {input_name: x.numpy()})[0])
    with torch.no_grad():
        ours = model.eval().cpu()(x).float()
    if theirs.shape != ours.shape or not (torch.isfinite(theirs).all() and torch.isfinite(ours).all()):
        return float("inf")
    return (theirs - ours).abs().max().item()
