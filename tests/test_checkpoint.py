"""Checkpoints: safetensors round trip, atomic writes, corrupt and foreign files, wrong models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import deepnn
from deepnn.errors import UserError
from deepnn.train.checkpoint import (
    load_checkpoint,
    load_model_state,
    load_optimizer_state,
    save_checkpoint,
    set_rng_states,
)


def trained_pair() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = deepnn.create_model("lenet_modern")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    opt.step()
    return model, opt


def test_round_trip_model_optimizer_rng(tmp_path: Path) -> None:
    model, opt = trained_pair()
    rng = torch.get_rng_state()
    path = save_checkpoint(tmp_path / "last.safetensors", model, {"epoch": 3, "note": "é"}, optimizer=opt, rng=True)
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]  # no temporary file left
    expected = torch.rand(3)
    ckpt = load_checkpoint(tmp_path)  # a run folder means its last checkpoint
    assert ckpt.meta["epoch"] == 3 and ckpt.meta["note"] == "é" and ckpt.path == path

    other = deepnn.create_model("lenet_modern")
    other_opt = torch.optim.AdamW(other.parameters(), lr=1e-3)
    load_model_state(other, ckpt)
    load_optimizer_state(other_opt, ckpt)
    for k, v in model.state_dict().items():
        assert torch.equal(v, other.state_dict()[k]), k
    saved, loaded = opt.state_dict(), other_opt.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    for pid, state in saved["state"].items():
        for k, v in state.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(loaded["state"][pid][k])), (pid, k)
    set_rng_states(ckpt.rng)
    assert torch.get_rng_state().equal(rng) and torch.equal(torch.rand(3), expected)


def test_truncated_checkpoint_is_rejected(tmp_path: Path) -> None:
    model, _ = trained_pair()
    path = save_checkpoint(tmp_path / "best.safetensors", model, {})
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_foreign_safetensors_file_is_rejected(tmp_path: Path) -> None:
    save_file({"w": torch.zeros(2)}, tmp_path / "x.safetensors")
    with pytest.raises(UserError, match="not a deepnn checkpoint"):
        load_checkpoint(tmp_path / "x.safetensors")


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_other_model_gives_error_naming_both(tmp_path: Path) -> None:
    model, _ = trained_pair()
    save_checkpoint(tmp_path / "c.safetensors", model, {"config": {"model": {"name": "lenet_modern"}}})
    ckpt = load_checkpoint(tmp_path / "c.safetensors")
    with pytest.raises(UserError, match="holds model 'lenet_modern', which does not fit 'lenet'"):
        load_model_state(deepnn.create_model("lenet"), ckpt, "'lenet'")
    with pytest.raises(UserError, match=r"shape of head.6.weight is \(10, 84\) in the checkpoint but \(7, 84\)"):
        load_model_state(deepnn.create_model("lenet_modern", num_classes=7), ckpt)
