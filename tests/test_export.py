"""F1: models built here run in another engine (ONNX Runtime) with the same outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import deepnn
from deepnn.export import _require, check_onnx, export_onnx


@pytest.mark.parametrize("name, args", [("lenet", {}), ("resnet18", {"width_div": 4})])
def test_onnx_runtime_gives_pytorchs_outputs_for_any_batch(tmp_path: Path, name: str, args: dict) -> None:
    torch.manual_seed(0)
    model = deepnn.create_model(name, num_classes=10, in_channels=1, input_size=28, **args).eval()
    path = export_onnx(model, (1, 28, 28), tmp_path / f"{name}.onnx")
    for batch in (1, 5):  # exported with a batch of 2: the batch dimension is free
        assert check_onnx(path, model, torch.randn(batch, 1, 28, 28)) < 1e-5


def test_check_onnx_sees_a_different_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = deepnn.create_model("lenet").eval()
    path = export_onnx(model, (1, 28, 28), tmp_path / "lenet.onnx")
    with torch.no_grad():
        model.head[-1].bias.add_(1.0)  # the last layer's bias moves every logit by 1
    assert check_onnx(path, model, torch.randn(3, 1, 28, 28)) == pytest.approx(1.0, abs=1e-4)


def test_missing_onnx_package_names_the_extra() -> None:
    with pytest.raises(deepnn.UserError, match=r"pip install 'deepnn\[onnx\]'"):
        _require("onnx_package_that_does_not_exist")
