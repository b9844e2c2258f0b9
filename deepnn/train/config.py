"""Run configuration as dataclasses; YAML recipes and ``--set key=value`` overrides on top.

A run is fully described by a :class:`Config` (saved as ``config.yaml`` in the run folder and
inside every checkpoint). Unknown keys and values of the wrong type are errors, never
silently ignored.

    >>> cfg = Config(model=ModelConfig(name="lenet"))
    >>> apply_overrides(cfg, ["optim.lr=0.05", "train.epochs=3"]).optim.lr
    0.05
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError


@dataclass
class ModelConfig:
    name: str = "lenet"
    args: dict[str, Any] = field(default_factory=dict)  # extra builder keywords, e.g. {width: 2}
    conv_impl: str = "torch"  # "torch" or "scratch" (deepnn.layers)


@dataclass
class DataConfig:
    name: str = "fashion_mnist"
    data_dir: str | None = None
    val_size: int = 5000
    train_subset: int | None = None  # use only the first N training examples (quick experiments, tests)
    batch_size: int = 128
    eval_batch_size: int = 1000
    # training-batch augmentation on the device (deepnn.data.augment); all off by default
    crop_padding: int = 0  # zero-pad by this many pixels, then crop back at a random offset (2 or 4)
    flip: bool = False  # horizontal flip with probability 1/2
    erase_prob: float = 0.0  # random erasing (Zhong et al. 2017) with this probability per image


@dataclass
class OptimConfig:
    name: str = "adamw"  # "sgd" or "adamw"
    lr: float = 1e-3
    momentum: float = 0.9  # SGD only
    nesterov: bool = False  # SGD only
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW only
    weight_decay: float = 0.0


@dataclass
class ScheduleConfig:
    name: str = "constant"  # "constant", "cosine" or "onecycle"
    warmup_epochs: float = 0.0  # linear warm-up from 0 (constant and cosine)
    final_lr_ratio: float = 0.0  # cosine decays to lr * final_lr_ratio
    pct_start: float = 0.25  # onecycle: fraction of steps spent increasing


@dataclass
class TrainConfig:
    epochs: int = 10
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", "mps"
    precision: str = "fp32"  # "fp32" or "bf16" (autocast)
    channels_last: bool = False
    compile: bool = False  # torch.compile the model (costs 20-40 s up front)
    grad_clip: float | None = None  # max global gradient norm
    label_smoothing: float = 0.0
    progress: bool = True  # tqdm progress bar per epoch
    early_stop_patience: int | None = None  # epochs without val improvement before stopping
    threads: int | None = None  # torch.set_num_threads on CPU; None keeps torch's default
    ema_decay: float | None = None  # evaluate (and keep as best) an EMA of the weights, e.g. 0.999
    tta_flip: bool = False  # evaluate on each image and its mirror image, averaging the probabilities


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> Config:
        cfg = cls()
        merge_into(cfg, d, where)
        return cfg


def _plain(x: Any) -> Any:
    """Tuples → lists so the dict is YAML/JSON-safe."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; raise a UserError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _coerce(value, opt, key)
            except UserError:
                pass
        raise UserError(f"{key}={value!r} has the wrong type; expected {tp}")
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise UserError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise UserError(f"{key} must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise UserError(f"{key} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise UserError(f"{key} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise UserError(f"{key} must be a string, got {value!r}")
    return value


def merge_into(obj: Any, d: dict[str, Any], where: str = "", path: str = "") -> None:
    """Set the dataclass ``obj``'s fields from the nested dict ``d``, type-checked.

    ``where`` names the source in errors (a file, "--set"); ``path`` is the dotted key of ``obj``.
    """
    src = f" (in {where})" if where else ""
    if not isinstance(d, dict):
        raise UserError(f"{path or 'the config'}{src} must be a mapping of keys to values, got {d!r}")
    hints = typing.get_type_hints(type(obj))
    for key, value in d.items():
        dotted = f"{path}.{key}" if path else str(key)
        if key not in hints:
            valid = ", ".join(f.name for f in dataclasses.fields(obj))
            raise UserError(f"unknown config key {dotted}{src}; valid keys{' of ' + path if path else ''}: {valid}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            merge_into(current, value, where, dotted)
        else:
            setattr(obj, key, _coerce(value, hints[key], dotted + src))


def set_key(cfg: Config, dotted: str, value: Any) -> None:
    """Set ``cfg.<dotted>`` (e.g. ``"optim.lr"``, ``"model.args.width"``) to ``value``, type-checked."""
    parts = dotted.split(".")
    if parts[:2] == ["model", "args"] and len(parts) == 3:
        cfg.model.args[parts[2]] = value
        return
    nested: Any = value
    for p in reversed(parts):
        nested = {p: nested}
    merge_into(cfg, nested, "--set")


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``key=value`` strings; values are parsed as YAML (``0.05``, ``true``, ``[0.9, 0.99]``, ``null``)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"override {item!r} is not of the form key=value (e.g. optim.lr=0.05)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UserError(f"cannot parse the value of override {item!r}") from None
        set_key(cfg, key.strip(), value)
    return cfg


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe as a dict, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping (model:, data:, optim:, ...), not {type(data).__name__}")
    return data


RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


def recipe_path(model: str, recipe: str | None = None) -> Path | None:
    """The packaged recipe ``recipes/<model>[-<recipe>].yaml`` if it exists."""
    name = f"{model}-{recipe}" if recipe else model
    path = RECIPES_DIR / f"{name}.yaml"
    return path if path.is_file() else None
