"""Checkpoint integrity: tensor digests, metadata schema, RNG and optimizer checks; edits are UserErrors."""

from __future__ import annotations

import json
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from torch import nn

from deepnn.errors import UserError
from deepnn.train.checkpoint import (
    DIGESTS_KEY,
    FORMAT,
    TRAINER_KEYS,
    load_checkpoint,
    load_ema_state,
    load_model_state,
    load_optimizer_state,
    save_checkpoint,
    set_rng_states,
    tensor_digest,
    validate_meta,
)
from deepnn.train.config import Config

CLASSES = [f"class{i}" for i in range(3)]


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.head = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.conv1(x)).flatten(1))


def trained(opt_name: str = "adamw") -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = Tiny()
    groups = [{"params": [model.conv1.weight, model.head.weight], "weight_decay": 0.01},
              {"params": [model.conv1.bias, model.bn.weight, model.bn.bias, model.head.bias], "weight_decay": 0.0}]
    opt = (torch.optim.AdamW(groups, lr=1e-3) if opt_name == "adamw"
           else torch.optim.SGD(groups, lr=0.1, momentum=0.9))
    model(torch.randn(4, 1, 6, 6)).sum().backward()
    opt.step()
    return model, opt


def trainer_meta() -> dict[str, Any]:
    """What Trainer.state_meta() and the run write."""
    cfg = Config().to_dict()
    cfg["train"]["epochs"] = 3
    return {"data": {"model_args": {"num_classes": 3, "in_channels": 1, "input_size": 6}, "classes": CLASSES,
                     "mean": 0.28, "std": 0.35, "input_shape": [1, 6, 6]},
            "config": cfg, "epoch": 2, "step_in_epoch": 1, "global_step": 9,
            "epoch_stats": {"loss": 1.5, "correct": 3.0}, "best_val": 0.5,
            "history": [{"epoch": 1, "val_accuracy": 0.5, "val_loss": float("nan")}],
            "planned_steps": 12, "budget_planned": True, "train_time": 1.5, "units_seen": 36, "stopped": False}


def save_full(path: Path, opt_name: str = "adamw") -> Path:
    model, opt = trained(opt_name)
    ema = Tiny()
    gen = torch.Generator().manual_seed(5)
    return save_checkpoint(path, model, trainer_meta(), optimizer=opt, rng=True, generators={"augment": gen}, ema=ema)


# ---- raw safetensors editing ----------------------------------------------------------------------

def read_raw(path: Path) -> tuple[dict[str, Any], bytes]:
    """(header JSON, tensor data) of a safetensors file: 8-byte little-endian length, JSON, data."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_raw(path: Path, header: dict[str, Any], data: bytes) -> None:
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


class Replace:
    """An edit that replaces the whole metadata with what ``fn(meta)`` returns."""

    def __init__(self, fn: Callable[[dict[str, Any]], Any]) -> None:
        self.fn = fn


def edit_meta(path: Path, edit: Callable[[dict[str, Any]], Any] | Replace) -> None:
    """Rewrite the deepnn metadata JSON in place (the tensor digests stay as they were)."""
    header, data = read_raw(path)
    meta = json.loads(header["__metadata__"]["deepnn"])
    if isinstance(edit, Replace):
        meta = edit.fn(meta)
    else:
        edit(meta)
    header["__metadata__"]["deepnn"] = json.dumps(meta)
    write_raw(path, header, data)


def resave(path: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    """Change the tensors and re-record their digests: a consistent edit only the other checks catch."""
    header, _ = read_raw(path)
    tensors = load_file(str(path))
    edit(tensors)
    metadata = dict(header["__metadata__"])
    metadata[DIGESTS_KEY] = json.dumps({k: tensor_digest(v) for k, v in tensors.items()})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)


def use(path: Path, opt_name: str = "adamw") -> None:
    """Everything a resume does with a checkpoint."""
    ckpt = load_checkpoint(path, require=TRAINER_KEYS)
    model, opt = trained(opt_name)
    load_model_state(model, ckpt)
    load_optimizer_state(opt, ckpt)
    load_ema_state(Tiny(), ckpt)
    state = torch.get_rng_state()
    try:
        set_rng_states(ckpt.rng, {"augment": torch.Generator()})
    finally:
        torch.set_rng_state(state)


# ---- digests ------------------------------------------------------------------------------------------

def test_save_records_format_and_a_digest_per_tensor(tmp_path: Path) -> None:
    path = save_full(tmp_path / "last.safetensors")
    header, _ = read_raw(path)
    digests = json.loads(header["__metadata__"][DIGESTS_KEY])
    tensors = set(header) - {"__metadata__"}
    assert set(digests) == tensors and {"model.conv1.weight", "optim.0.exp_avg", "rng.torch", "rng.augment",
                                        "ema.head.bias"} <= tensors
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in digests.values())
    meta = json.loads(header["__metadata__"]["deepnn"])
    assert meta["format"] == FORMAT and set(meta["meta_keys"]) == set(trainer_meta())
    use(path)  # the untouched file loads and resumes


@pytest.mark.parametrize("name", ["model.conv1.weight", "model.bn.running_var", "optim.1.exp_avg_sq", "rng.torch",
                                  "rng.augment", "ema.head.weight"])
def test_flipped_byte_names_the_tensor(tmp_path: Path, name: str) -> None:
    path = save_full(tmp_path / "last.safetensors")
    header, data = read_raw(path)
    start, end = header[name]["data_offsets"]
    data = bytearray(data)
    data[(start + end) // 2] ^= 0x10
    write_raw(path, header, bytes(data))
    with pytest.raises(UserError) as e:
        load_checkpoint(path)
    assert str(e.value) == (f"checkpoint {path}: tensor {name!r} does not match its recorded digest: the file is "
                            "corrupt or was modified; re-train or restore it")


def test_reshaped_tensor_in_header_is_caught(tmp_path: Path) -> None:
    path = save_full(tmp_path / "last.safetensors")
    header, data = read_raw(path)
    header["model.head.weight"]["shape"] = [32, 3]  # same bytes, other shape
    write_raw(path, header, data)
    with pytest.raises(UserError, match="tensor 'model.head.weight' does not match its recorded digest"):
        load_checkpoint(path)


def test_removed_added_and_undigested_tensors(tmp_path: Path) -> None:
    path = save_full(tmp_path / "last.safetensors")
    header, _ = read_raw(path)
    metadata = header["__metadata__"]
    tensors = load_file(str(path))
    del tensors["optim.2.exp_avg"]
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(UserError, match="tensor 'optim.2.exp_avg' is recorded in its digests but missing"):
        load_checkpoint(path)
    tensors = load_file(str(save_full(path)))
    tensors["model.extra"] = torch.zeros(2)
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(UserError, match="tensor 'model.extra' has no recorded digest"):
        load_checkpoint(path)
    for digests in (None, "not json", "[1, 2]", json.dumps({"model.conv1.weight": 5})):
        save_full(path)
        header, data = read_raw(path)
        if digests is None:
            del header["__metadata__"][DIGESTS_KEY]
        else:
            header["__metadata__"][DIGESTS_KEY] = digests
        write_raw(path, header, data)
        with pytest.raises(UserError, match="digests"):
            load_checkpoint(path)


def test_format_1_files_without_digests_still_load(tmp_path: Path) -> None:
    """Checkpoints written before the digests existed (format 1) load, unverified."""
    model, opt = trained()
    path = tmp_path / "old.safetensors"
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    meta = {**trainer_meta(), "format": "deepnn-checkpoint/1"}
    save_file(tensors, str(path), metadata={"deepnn": json.dumps(meta)})
    ckpt = load_checkpoint(path)
    other = Tiny()
    load_model_state(other, ckpt)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in model.state_dict().items())
    edit_meta(path, lambda m: m.update(epoch=-5))  # their metadata is checked all the same
    with pytest.raises(UserError, match="metadata epoch=-5 is invalid"):
        load_checkpoint(path)
    edit_meta(path, lambda m: m.update(epoch=1, format="deepnn-checkpoint/9"))
    with pytest.raises(UserError, match="has checkpoint format \"deepnn-checkpoint/9\""):
        load_checkpoint(path)


# ---- metadata -----------------------------------------------------------------------------------------

def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(meta: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        d = meta
        for p in parents:
            d = d[int(p)] if isinstance(d, list) else d[p]
        d[int(last) if isinstance(d, list) else last] = value
    return edit


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(meta: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        d = meta
        for p in parents:
            d = d[int(p)] if isinstance(d, list) else d[p]
        del d[int(last) if isinstance(d, list) else last]
    return edit


META_EDITS = [
    (_del("epoch"), r"metadata key 'epoch' is missing \(the file was written with it\)"),
    (_del("config"), "metadata key 'config' is missing"),
    (_del("data"), "metadata key 'data' is missing"),
    (_del("optimizer"), "holds optimizer tensors but no optimizer metadata"),
    (_set("epoch", "2"), 'metadata epoch="2" is invalid: must be an integer ≥ 0'),
    (_set("epoch", -5), "metadata epoch=-5 is invalid"),
    (_set("epoch", 2.0), "metadata epoch=2.0 is invalid"),
    (_set("epoch", True), "metadata epoch=true is invalid"),
    (_set("epoch", 7), r"metadata epoch=7 is invalid: must be an integer in \[0, 3\] \(the config's train.epochs\)"),
    (_set("step_in_epoch", -1), "metadata step_in_epoch=-1 is invalid"),
    (_set("global_step", None), "metadata global_step=null is invalid"),
    (_set("epoch_stats", [1]), "metadata epoch_stats="),
    (_set("epoch_stats", {"loss": "x"}), "metadata epoch_stats="),
    (_set("best_val", "0.5"), "metadata best_val="),
    (_set("history", {"a": 1}), "metadata history="),
    (_set("history", [1, 2]), "metadata history="),
    (_set("config", [1]), "metadata config="),
    (_set("config.optim.lr", -1), r"optim.lr=-1.0 \(in the checkpoint's config\) is out of range"),
    (_set("config.train.epochs", "ten"), r"train.epochs \(in the checkpoint's config\) must be an integer"),
    (_set("config.train.nope", 1), "unknown config key train.nope"),
    (_set("data", "mnist"), "metadata data="),
    (_set("data.classes", "abc"), "metadata data.classes="),
    (_set("data.classes", [1, 2, 3]), "metadata data.classes="),
    (_set("data.classes", ["a", "b"]), r"must be a list of 3 names \(data.model_args.num_classes\)"),
    (_set("data.model_args", [1]), "metadata data.model_args="),
    (_set("data.input_shape", [1, 0, 6]), "metadata data.input_shape="),
    (_set("data.std", 0), "metadata data.std=0"),
    (_set("data.mean", "x"), "metadata data.mean="),
    (_set("data.vocab", "abc"), "metadata data.vocab="),
    (_set("data.tokens", {"train": -1}), "metadata data.tokens="),
    (_set("planned_steps", 1.5), "metadata planned_steps=1.5 is invalid"),
    (_set("budget_planned", 1), "metadata budget_planned=1 is invalid: must be true or false"),
    (_set("train_time", -1), "metadata train_time=-1 is invalid"),
    (_set("units_seen", "many"), "metadata units_seen="),
    (_set("stopped", None), "metadata stopped=null is invalid"),
    (_set("optimizer", []), "metadata optimizer="),
    (_set("optimizer.param_groups", {}), "metadata optimizer="),
    (_set("optimizer.param_groups.0.params", [0, 0]), "metadata optimizer="),
    (_set("optimizer.param_groups.0.params", [-1, 1]), "metadata optimizer="),
    (_set("optimizer.param_groups.0.lr", {"x": 1}), "metadata optimizer="),
    (_set("optimizer.scalars", {"x.step": 1}), "metadata optimizer="),
    (_set("meta_keys", "epoch"), "metadata meta_keys="),
    (Replace(lambda m: [m]), "has checkpoint format null"),
    (Replace(lambda m: "text"), "has checkpoint format null"),
    (_del("format"), "has checkpoint format null"),
]


@pytest.mark.parametrize(("edit", "message"), META_EDITS, ids=[m[:40] for _, m in META_EDITS])
def test_edited_metadata_is_a_one_line_error(tmp_path: Path, edit: Callable, message: str) -> None:
    path = save_full(tmp_path / "last.safetensors")
    edit_meta(path, edit)
    with pytest.raises(UserError, match=message) as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)


def test_consistently_removed_key_is_caught_by_require(tmp_path: Path) -> None:
    path = save_full(tmp_path / "last.safetensors")
    edit_meta(path, lambda m: (m.pop("global_step"), m["meta_keys"].remove("global_step")))
    load_checkpoint(path)  # nothing says the key should be there...
    with pytest.raises(UserError, match="metadata key 'global_step' is missing; "):
        load_checkpoint(path, require=TRAINER_KEYS)  # ... unless the caller needs it


def test_plain_metadata_still_loads(tmp_path: Path) -> None:
    model, _ = trained()
    for meta in ({}, {"epoch": 3, "note": "é"}, {"config": {"model": {"name": "tiny"}}}):
        path = save_checkpoint(tmp_path / "c.safetensors", model, meta)
        assert load_checkpoint(path).meta.items() >= meta.items()
    validate_meta(trainer_meta(), "x")
    with pytest.raises(UserError, match="its deepnn metadata is a JSON list, not a mapping"):
        validate_meta([trainer_meta()], "x")
    with pytest.raises(UserError, match="metadata key 'epoch' is missing; "):
        validate_meta({}, "x", require=["epoch"])


# ---- RNG and optimizer tensors (edits with re-recorded digests) --------------------------------------

RNG_EDITS = [
    (lambda t: t.update({"rng.torch": t["rng.torch"].float()}), "'rng.torch' is a float32 tensor of shape"),
    (lambda t: t.update({"rng.torch": t["rng.torch"][:-8]}), "'rng.torch' is a uint8 tensor of shape"),
    (lambda t: t.update({"rng.torch": t["rng.torch"].reshape(2, -1)}), "'rng.torch' is a uint8 tensor of shape"),
    (lambda t: t.update({"rng.torch": torch.full_like(t["rng.torch"], 255)}), "'rng.torch' is invalid"),
    (lambda t: t.update({"rng.augment": t["rng.augment"][:100]}), "'rng.augment' is a uint8 tensor of shape"),
    (lambda t: t.update({"rng.augment": torch.full_like(t["rng.augment"], 255)}), "'rng.augment' is invalid"),
    (lambda t: t.pop("rng.augment"), "holds no state of the 'augment' random generator"),
    (lambda t: t.update({"rng.augment": t["rng.augment"].to(torch.int16)}), "'rng.augment' is a int16 tensor"),
]


@pytest.mark.parametrize(("edit", "message"), RNG_EDITS, ids=[m for _, m in RNG_EDITS])
def test_bad_rng_state_names_it(tmp_path: Path, edit: Callable, message: str) -> None:
    path = save_full(tmp_path / "last.safetensors")
    resave(path, edit)
    before = torch.get_rng_state()
    with pytest.raises(UserError, match=message) as e:
        use(path)
    assert "\n" not in str(e.value)
    assert torch.equal(torch.get_rng_state(), before)


OPTIM_EDITS = [
    (lambda t: t.pop("optim.1.exp_avg"), "optimizer state of parameter 1 lacks 'exp_avg'"),
    (lambda t: t.update({"optim.0.exp_avg": t["optim.0.exp_avg"].reshape(2, 9)}),
     r"optimizer tensor 'optim.0.exp_avg' is a float32 tensor of shape \(2, 9\), but parameter 0"),
    (lambda t: t.update({"optim.3.exp_avg_sq": torch.zeros(5)}), "optimizer tensor 'optim.3.exp_avg_sq'"),
    (lambda t: t.update({"optim.0.step": torch.ones(2)}), "optimizer tensor 'optim.0.step'"),
    (lambda t: t.update({"optim.0.exp_avg": t["optim.0.exp_avg"].long()}),
     "optimizer tensor 'optim.0.exp_avg' is a int64"),
    (lambda t: t.update({"optim.9.exp_avg": torch.zeros(3)}), "optimizer tensor 'optim.9.exp_avg' names no parameter"),
    (lambda t: t.update({"optim.x": torch.zeros(3)}), "optimizer tensor 'optim.x' names no parameter"),
]


@pytest.mark.parametrize(("edit", "message"), OPTIM_EDITS, ids=[m[:40] for _, m in OPTIM_EDITS])
def test_bad_optimizer_tensor_names_the_parameter(tmp_path: Path, edit: Callable, message: str) -> None:
    path = save_full(tmp_path / "last.safetensors")
    resave(path, edit)
    with pytest.raises(UserError, match=message) as e:
        use(path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(("edit", "message"), [
    (_set("optimizer.param_groups.0.lr", "fast"), r"optimizer setting param_groups\[0\].lr=\"fast\" is invalid"),
    (_set("optimizer.param_groups.0.lr", -1), r"param_groups\[0\].lr=-1 is invalid: must be a finite number ≥ 0"),
    (_set("optimizer.param_groups.1.betas", [0.9]), r"param_groups\[1\].betas=\[0.9\] is invalid"),
    (_set("optimizer.param_groups.0.amsgrad", 3), r"param_groups\[0\].amsgrad=3 is invalid"),
    (_del("optimizer.param_groups.0.eps"), r"parameter group 0 lacks the setting 'eps'"),
    (_set("optimizer.param_groups.1.params", [2, 3, 4, 5, 6]), "parameter group 1 has 5 parameters, this model's 4"),
    (lambda m: m["optimizer"]["param_groups"].append({**m["optimizer"]["param_groups"][0], "params": []}),
     "the optimizer has 3 parameter groups, this one 2"),
])
def test_bad_optimizer_settings(tmp_path: Path, edit: Callable, message: str) -> None:
    path = save_full(tmp_path / "last.safetensors")
    edit_meta(path, edit)
    with pytest.raises(UserError, match=message):
        use(path)


def test_sgd_checkpoint_round_trip_and_missing_momentum(tmp_path: Path) -> None:
    path = save_full(tmp_path / "last.safetensors", "sgd")
    use(path, "sgd")
    resave(path, lambda t: t.update({"optim.2.momentum_buffer": t["optim.2.momentum_buffer"][:1]}))
    with pytest.raises(UserError, match="optimizer tensor 'optim.2.momentum_buffer'"):
        use(path, "sgd")
    with pytest.raises(UserError, match="optimizer parameter group 0 lacks the setting"):
        use(save_full(path, "sgd"), "adamw")  # another optimizer's state: its settings do not fit


def test_ema_of_another_shape(tmp_path: Path) -> None:
    path = save_full(tmp_path / "last.safetensors")
    resave(path, lambda t: t.update({"ema.head.weight": torch.zeros(3, 5)}))
    with pytest.raises(UserError, match=r"shape of head.weight is \(3, 5\) in the checkpoint but \(3, 32\) here"):
        use(path)


# ---- properties: random edits give UserError or success ------------------------------------------------

_BASE: dict[str, bytes] = {}


def base_bytes() -> bytes:
    if not _BASE:
        with tempfile.TemporaryDirectory() as d:
            _BASE["full"] = save_full(Path(d) / "last.safetensors").read_bytes()
    return _BASE["full"]


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.integers(),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6))
json_values = st.recursive(json_scalars, lambda c: st.one_of(st.lists(c, max_size=3),
                                                            st.dictionaries(st.text(max_size=5), c, max_size=3)),
                           max_leaves=6)


def _paths(x: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(x, dict):
        for k, v in x.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_metadata_edits_give_user_error_or_success(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "last.safetensors"
        path.write_bytes(base_bytes())
        header, _ = read_raw(path)
        meta = json.loads(header["__metadata__"]["deepnn"])
        for _ in range(data.draw(st.integers(1, 3))):
            paths = _paths(meta)
            where = data.draw(st.sampled_from(paths))
            parent = meta
            for p in where[:-1]:
                parent = parent[p]
            if data.draw(st.booleans()) and isinstance(parent, dict):
                del parent[where[-1]]
            else:
                parent[where[-1]] = data.draw(json_values)
        edit_meta(path, Replace(lambda m: meta))
        try:
            use(path)
        except UserError as e:
            assert "\n" not in str(e)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 255)), min_size=1, max_size=3))
def test_random_byte_flips_give_user_error_or_success(flips: list[tuple[int, int]]) -> None:
    raw = bytearray(base_bytes())
    for pos, mask in flips:
        raw[pos % len(raw)] ^= mask
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "last.safetensors"
        path.write_bytes(bytes(raw))
        try:
            use(path)
        except UserError as e:
            assert "\n" not in str(e)


def test_trainer_checkpoints_pass_the_checks_and_resume(tmp_path: Path) -> None:
    """What the real Trainer writes passes every check (with require=TRAINER_KEYS) and resumes."""
    from deepnn.data import TensorLoader
    from deepnn.train import ClassificationTask, Trainer, apply_overrides

    def make() -> Trainer:
        torch.manual_seed(1)
        x, y = torch.randn(64, 1, 6, 6), torch.randint(0, 3, (64,))
        cfg = apply_overrides(Config(), ["train.progress=false", "train.epochs=2", "train.ema_decay=0.9"])
        return Trainer(Tiny(), ClassificationTask(3), TensorLoader(x, y, 16, shuffle=True, drop_last=True),
                       TensorLoader(x[:16], y[:16], 16), cfg=cfg, run_dir=tmp_path)

    make().fit()
    for name in ("last", "best"):
        ckpt = load_checkpoint(tmp_path / f"{name}.safetensors", require=TRAINER_KEYS)
        assert ckpt.meta["epoch"] == (2 if name == "last" else ckpt.meta["epoch"]) and ckpt.meta["format"] == FORMAT
    resumed = make()
    resumed.resume(tmp_path)
    assert resumed.epoch == 2
    edit_meta(tmp_path / "last.safetensors", _set("epoch", -1))
    with pytest.raises(UserError, match="metadata epoch=-1 is invalid"):
        make().resume(tmp_path)
