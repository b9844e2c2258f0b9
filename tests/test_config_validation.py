"""Config validation: every out-of-range value is a one-line UserError naming the key; recipes pass."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepnn.errors import UserError
from deepnn.train.config import (
    RECIPES_DIR,
    RULES,
    Config,
    apply_overrides,
    check_device_available,
    load_yaml,
    set_key,
    validate_config,
)

BAD = [
    ("data.batch_size", "0"), ("data.batch_size", "-3"),
    ("data.eval_batch_size", "0"),
    ("data.val_size", "-1"),
    ("data.train_subset", "0"), ("data.train_subset", "-100"),
    ("data.crop_padding", "-1"),
    ("data.erase_prob", "-0.1"), ("data.erase_prob", "1.5"), ("data.erase_prob", ".nan"),
    ("data.seq_len", "0"),
    ("data.batching", "shuffled"),
    ("data.val_fraction", "1"), ("data.val_fraction", "-0.1"), ("data.val_fraction", ".nan"),
    ("data.test_fraction", "1.0"), ("data.test_fraction", "-.inf"),
    ("optim.name", "rmsprop"), ("optim.name", "SGD"),
    ("optim.lr", "0"), ("optim.lr", "-0.1"), ("optim.lr", ".nan"), ("optim.lr", ".inf"),
    ("optim.momentum", "1"), ("optim.momentum", "-0.5"), ("optim.momentum", ".nan"),
    ("optim.betas", "[0.9, 1.0]"), ("optim.betas", "[-0.1, 0.99]"), ("optim.betas", "[.nan, 0.9]"),
    ("optim.weight_decay", "-0.0001"), ("optim.weight_decay", ".inf"),
    ("sched.name", "linear"),
    ("sched.warmup_epochs", "-1"), ("sched.warmup_epochs", ".nan"),
    ("sched.final_lr_ratio", "1.5"), ("sched.final_lr_ratio", "-0.1"),
    ("sched.pct_start", "0"), ("sched.pct_start", "1"), ("sched.pct_start", ".nan"),
    ("train.epochs", "0"), ("train.epochs", "-1"),
    ("train.seed", "-1"), ("train.seed", "100000000000000000000"),
    ("train.threads", "0"),
    ("train.precision", "fp16"),
    ("train.grad_clip", "0"), ("train.grad_clip", "-1"), ("train.grad_clip", ".inf"),
    ("train.label_smoothing", "1"), ("train.label_smoothing", "-0.1"),
    ("train.early_stop_patience", "0"),
    ("train.ema_decay", "0"), ("train.ema_decay", "1"), ("train.ema_decay", ".nan"),
    ("train.max_minutes", "0"), ("train.max_minutes", "-5"), ("train.max_minutes", ".inf"),
    ("train.val_every_steps", "0"),
    ("train.val_every_minutes", "0"), ("train.val_every_minutes", ".nan"),
    ("model.conv_impl", "numpy"),
    ("train.device", "gpu"), ("train.device", "cuda:x"), ("train.device", "CPU"),
    ("train.device", "cuda:-1"),
]


@pytest.mark.parametrize(("key", "raw"), BAD, ids=[f"{k}={v}" for k, v in BAD])
def test_out_of_range_value_names_key_value_and_range(key: str, raw: str) -> None:
    cfg = apply_overrides(Config(), [f"{key}={raw}"])  # the type is right: only the range is wrong
    with pytest.raises(UserError) as e:
        validate_config(cfg)
    msg = str(e.value)
    assert msg.startswith(f"{key}=") and "is out of range: must be" in msg and "\n" not in msg
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        cfg.validate()


def test_message_format() -> None:
    with pytest.raises(UserError) as e:
        apply_overrides(Config(), ["data.batch_size=0"]).validate()
    assert str(e.value) == "data.batch_size=0 is out of range: must be an integer ≥ 1"
    with pytest.raises(UserError) as e:
        apply_overrides(Config(), ["optim.name=rmsprop"]).validate()
    assert str(e.value) == "optim.name='rmsprop' is out of range: must be one of sgd, adamw"


def test_fractions_must_leave_training_text() -> None:
    apply_overrides(Config(), ["data.val_fraction=0.5", "data.test_fraction=0.4"]).validate()
    with pytest.raises(UserError, match=r"data\.val_fraction\+data\.test_fraction=1\.0 is out of range"):
        apply_overrides(Config(), ["data.val_fraction=0.5", "data.test_fraction=0.5"]).validate()


@pytest.mark.parametrize(("key", "value"), [
    ("optim.lr", math.nan), ("optim.lr", math.inf), ("train.epochs", True), ("train.epochs", 2.0),
    ("data.batch_size", "8"), ("optim.betas", (0.9,)), ("optim.betas", None), ("train.device", None),
    ("model.conv_impl", ["torch"]), ("data.val_fraction", "0.1"), ("train.grad_clip", -math.inf),
])
def test_values_set_in_python_are_checked_too(key: str, value: object) -> None:
    cfg = Config()
    section, name = key.split(".")
    setattr(getattr(cfg, section), name, value)
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        validate_config(cfg)


def test_every_rule_key_exists_and_the_defaults_pass() -> None:
    cfg = Config()
    for key in RULES:
        section, name = key.split(".")
        assert hasattr(getattr(cfg, section), name), key
    assert cfg.validate() is cfg
    validate_config(cfg)


@pytest.mark.parametrize("recipe", sorted(RECIPES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_packaged_recipes_pass(recipe: Path) -> None:
    validate_config(Config.from_dict(load_yaml(recipe), str(recipe)))


def test_edge_values_are_allowed() -> None:
    apply_overrides(Config(), [
        "data.val_size=0", "data.train_subset=1", "data.train_subset=null", "data.crop_padding=0",
        "data.erase_prob=1", "data.batching=random", "data.val_fraction=0", "data.test_fraction=0",
        "optim.name=sgd", "optim.momentum=0", "optim.betas=[0, 0.5]", "optim.weight_decay=0", "sched.name=cosine",
        "sched.final_lr_ratio=1", "sched.pct_start=0.5", "train.epochs=1", "train.threads=1", "train.grad_clip=0.5",
        "train.precision=bf16", "train.early_stop_patience=1", "train.ema_decay=0.999", "train.max_minutes=0.5",
        "train.val_every_steps=1", "train.val_every_minutes=0.1", "model.conv_impl=scratch", "train.device=cuda:3",
    ]).validate()
    for device in ("auto", "cpu", "cuda", "cuda:0", "mps"):
        apply_overrides(Config(), [f"train.device={device}"]).validate()


def test_existing_type_errors_are_kept() -> None:
    with pytest.raises(UserError, match="unknown config key optim.lrr"):
        apply_overrides(Config(), ["optim.lrr=0.1"])
    with pytest.raises(UserError, match=r"train.epochs \(in --set\) must be an integer"):
        apply_overrides(Config(), ["train.epochs=1.5"])
    with pytest.raises(UserError, match="not of the form key=value"):
        apply_overrides(Config(), ["train.epochs"])


# ---- device availability ------------------------------------------------------------------------

def test_device_availability(monkeypatch: pytest.MonkeyPatch) -> None:
    check_device_available("cpu")
    check_device_available("auto")
    with pytest.raises(UserError, match="train.device='gpu' is out of range"):
        check_device_available("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="train.device=cuda but no CUDA GPU is available") as e:
        check_device_available("cuda")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="train.device=cuda:1 but no CUDA GPU"):
        check_device_available("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device_available("cuda:1")
    with pytest.raises(UserError, match=r"cuda:2 but this machine has 2 CUDA GPU\(s\) \(cuda:0 to cuda:1\)"):
        check_device_available("cuda:2")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UserError, match="train.device=mps but Apple's MPS is not available"):
        check_device_available("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    check_device_available("mps")


# ---- load_yaml ------------------------------------------------------------------------------------

def test_load_yaml_binary_latin1_and_directory(tmp_path: Path) -> None:
    binary = tmp_path / "model.safetensors"
    binary.write_bytes(bytes(range(256)) * 4)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("model: {name: l\xe9net}\n".encode("latin-1"))
    for path in (binary, latin):
        with pytest.raises(UserError, match="is not a UTF-8 text file") as e:
            load_yaml(path)
        assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="is a directory") as e:
        load_yaml(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(UserError, match="is not valid YAML") as e:
        load_yaml(bad)
    assert "\n" not in str(e.value)
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"model:\x00 x\n")
    with pytest.raises(UserError):
        load_yaml(nul)
    bom = tmp_path / "bom.yaml"
    bom.write_bytes("train: {epochs: 2}\n".encode("utf-8-sig"))
    assert load_yaml(bom) == {"train": {"epochs": 2}}


# ---- property: random values at random keys ---------------------------------------------------------

def _leaf_keys(obj: object, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        dotted = f"{prefix}{f.name}"
        keys += _leaf_keys(value, dotted + ".") if dataclasses.is_dataclass(value) else [dotted]
    return keys


KEYS = _leaf_keys(Config()) + ["model.args.width", "optim", "nope.key", "train.nope", "model.args", "train."]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-3, 3),
                    st.floats(allow_nan=True, allow_infinity=True), st.floats(-2, 2), st.text(max_size=12),
                    st.sampled_from(["sgd", "adamw", "cosine", "onecycle", "bf16", "cuda:0", "mps", "random", "torch"]))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=4), scalars, max_size=2))


def _as_yaml(v: object) -> str:
    return yaml.safe_dump(v, default_flow_style=True, width=10**6).removesuffix("\n...\n").strip()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(KEYS), st.one_of(values.map(_as_yaml), st.text(max_size=20))),
                min_size=1, max_size=4))
def test_random_overrides_give_user_error_or_success(items: list[tuple[str, str]]) -> None:
    try:
        validate_config(apply_overrides(Config(), [f"{k}={raw}" for k, raw in items]))
    except UserError as e:
        assert "\n" not in str(e).strip() or "YAML" in str(e)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KEYS), values)
def test_random_python_values_give_user_error_or_success(key: str, value: object) -> None:
    cfg = Config()
    try:
        set_key(cfg, key, value)
        validate_config(cfg)
    except UserError:
        pass
