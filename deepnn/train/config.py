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
import math
import re
import types
import typing
from collections.abc import Callable
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
    # text (language models): a UTF-8 file; validation and test are cut from its end (deepnn.data.text)
    path: str | None = None  # the text file (--text)
    seq_len: int = 128  # characters per training sequence (truncated BPTT length)
    batching: str = "sequential"  # "sequential" (state carried across batches) or "random" (random windows)
    val_fraction: float = 0.05  # the part of the text before the test part, for validation
    test_fraction: float = 0.05  # the last part of the text, read once for the run's report
    # translation pairs (seq2seq): `source<TAB>target` files (deepnn.data.pairs); `path` is the training file
    valid_path: str | None = None  # validation pairs (--valid); None: cut holdout_pairs from the training file
    test_path: str | None = None  # test pairs (--test); None: the last holdout_pairs of the training file
    holdout_pairs: int = 2000  # pairs cut from the end of the training file for each split not given
    vocab_size: int = 4000  # sentencepiece pieces, one vocabulary for both languages, trained on training pairs
    tokenizer: str = "unigram"  # sentencepiece model type: "unigram" (Kudo 2018) or "bpe" (Sennrich et al. 2016)
    max_len: int = 128  # the most tokens of a sentence (end token included); longer training pairs are dropped
    max_tokens: int = 4096  # padded tokens per batch (length-bucketed batches; batch_size is ignored)
    bleu_sentences: int = 500  # validation sentences translated (greedy) for BLEU at each validation record


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
    max_minutes: float | None = None  # training time budget; schedules follow the steps that fit in it
    val_every_steps: int | None = None  # also validate + save `last` every N steps (not only at epoch end)
    val_every_minutes: float | None = None  # ... or every N minutes of training
    # data-parallel (torchrun, deepnn.train.distributed): data.batch_size is the GLOBAL batch, lr is not scaled
    ddp: str = "auto"  # "auto": DDP when torchrun starts WORLD_SIZE > 1 processes; "always": also with one
    sync_bn: bool = False  # under DDP on CUDA: batch-norm statistics over the global batch (SyncBatchNorm)
    deterministic: bool = False  # deterministic kernels only (an op without one raises), all generators seeded
    tensorboard: bool = False  # TensorBoard event files in RUN/tensorboard/ (pip install 'deepnn[tensorboard]')
    tensorboard_every_steps: int = 10  # the training loss is logged every N steps (and every record)
    beam_size: int = 5  # translation: the test report scores greedy decoding and beam search of this width
    length_penalty: float = 0.6  # translation: GNMT length penalty alpha of beam search (0: none)


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

    def validate(self) -> Config:
        """Check every value's range (:func:`validate_config`); returns ``self``."""
        validate_config(self)
        return self


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
        if isinstance(value, str):  # YAML 1.1 reads 5e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
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
        except (yaml.YAMLError, RecursionError):
            raise UserError(f"cannot parse the value of override {item!r}") from None
        set_key(cfg, key.strip(), value)
    return cfg


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe as a dict, with clear errors."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"config file {str(path)!r} is a directory; give a YAML file such as recipes/lenet.yaml")
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read config file {str(path)!r}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"config file {str(path)!r} is not a UTF-8 text file (byte {e.start} cannot be decoded); "
                        "a config is a YAML file such as recipes/lenet.yaml") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise UserError(f"{path} is nested too deeply to be a config") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping (model:, data:, optim:, ...), not {type(data).__name__}")
    return data


RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


def recipe_path(model: str, recipe: str | None = None) -> Path | None:
    """The packaged recipe ``recipes/<model>[-<recipe>].yaml`` if it exists."""
    name = f"{model}-{recipe}" if recipe else model
    path = RECIPES_DIR / f"{name}.yaml"
    return path if path.is_file() else None


# ---- value ranges ----------------------------------------------------------------------------
# One table: dotted key → (check, the allowed range in words). ``validate_config`` applies every
# rule and raises the first failure as "KEY=VALUE is out of range: must be ALLOWED". NaN and ±inf
# fail every numeric check. Types were already checked by ``merge_into``; the checks here still
# reject wrong types, since a Config can also be built or changed in Python.

Check = Callable[[Any], bool]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _optional(rule: tuple[Check, str]) -> tuple[Check, str]:
    check, text = rule
    return (lambda v: v is None or check(v)), f"null or {text}"


def _int_at_least(lo: int, hi: int | None = None) -> tuple[Check, str]:
    if hi is None:
        return (lambda v: _is_int(v) and v >= lo), f"an integer ≥ {lo}"
    return (lambda v: _is_int(v) and lo <= v <= hi), f"an integer in [{lo}, {hi}]"


def _number(lo: float | None = None, hi: float | None = None, lo_open: bool = False,
            hi_open: bool = False) -> tuple[Check, str]:
    """A finite number in the interval; ``lo_open``/``hi_open`` exclude the ends."""
    def check(v: Any) -> bool:
        return (_is_number(v) and (lo is None or (v > lo if lo_open else v >= lo))
                and (hi is None or (v < hi if hi_open else v <= hi)))

    if lo is not None and hi is not None:
        text = f"a number in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
    elif lo is not None:
        text = f"a finite number {'>' if lo_open else '≥'} {_fmt(lo)}"
    elif hi is not None:
        text = f"a finite number {'<' if hi_open else '≤'} {_fmt(hi)}"
    else:
        text = "a finite number"
    return check, text


def _one_of(*choices: str) -> tuple[Check, str]:
    return (lambda v: isinstance(v, str) and v in choices), "one of " + ", ".join(choices)


def _each(rule: tuple[Check, str], n: int) -> tuple[Check, str]:
    check, text = rule
    return (lambda v: isinstance(v, (list, tuple)) and len(v) == n and all(check(x) for x in v),
            f"{n} values, each {text}")


_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")
DEVICE_RULE: tuple[Check, str] = (lambda v: isinstance(v, str) and _DEVICE.fullmatch(v) is not None,
                                  "auto, cpu, cuda, cuda:N or mps")

# names the optimizer and schedule builders accept (deepnn.train.optim)
OPTIMIZERS = ("sgd", "adamw")
SCHEDULE_NAMES = ("constant", "cosine", "onecycle")

RULES: dict[str, tuple[Check, str]] = {
    "model.conv_impl": _one_of("torch", "scratch"),
    "data.val_size": _int_at_least(0),
    "data.train_subset": _optional(_int_at_least(1)),
    "data.batch_size": _int_at_least(1),
    "data.eval_batch_size": _int_at_least(1),
    "data.crop_padding": _int_at_least(0, 64),  # pixels; more than the image itself pads nothing useful
    "data.erase_prob": _number(0, 1),
    "data.seq_len": _int_at_least(1),
    "data.batching": _one_of("sequential", "random"),
    "data.val_fraction": _number(0, 1, hi_open=True),
    "data.test_fraction": _number(0, 1, hi_open=True),
    "data.holdout_pairs": _int_at_least(1),
    "data.vocab_size": _int_at_least(8, 1_000_000),
    "data.tokenizer": _one_of("unigram", "bpe"),
    "data.max_len": _int_at_least(2, 100_000),
    "data.max_tokens": _int_at_least(1),
    "data.bleu_sentences": _int_at_least(0),
    "train.beam_size": _int_at_least(1, 1000),
    "train.length_penalty": _number(0, 100),
    "optim.name": _one_of(*OPTIMIZERS),
    "optim.lr": _number(0, 1e30, lo_open=True),  # float32 optimizer state overflows near 3.4e38
    "optim.momentum": _number(0, 1, hi_open=True),
    "optim.betas": _each(_number(0, 1, hi_open=True), 2),
    "optim.weight_decay": _number(0),
    "sched.name": _one_of(*SCHEDULE_NAMES),
    "sched.warmup_epochs": _number(0, 1e6),
    "sched.final_lr_ratio": _number(0, 1),
    "sched.pct_start": _number(0, 1, lo_open=True, hi_open=True),
    "train.epochs": _int_at_least(1),
    "train.seed": ((lambda v: _is_int(v) and 0 <= v < 2**63), "an integer in [0, 2**63)"),
    "train.device": DEVICE_RULE,
    "train.precision": _one_of("fp32", "bf16"),
    "train.grad_clip": _optional(_number(0, lo_open=True)),
    "train.label_smoothing": _number(0, 1, hi_open=True),
    "train.early_stop_patience": _optional(_int_at_least(1)),
    "train.threads": _optional(_int_at_least(1, 1024)),
    "train.ema_decay": _optional(_number(0, 1, lo_open=True, hi_open=True)),
    "train.max_minutes": _optional(_number(0, lo_open=True)),
    "train.val_every_steps": _optional(_int_at_least(1)),
    "train.val_every_minutes": _optional(_number(0, lo_open=True)),
    "train.ddp": _one_of("auto", "always"),
    "train.tensorboard_every_steps": _int_at_least(1),
}

# rules over several keys: (name shown in the message, the value from the config, check, allowed range)
CROSS_RULES: list[tuple[str, Callable[[Config], Any], Check, str]] = [
    ("data.val_fraction+data.test_fraction", lambda c: c.data.val_fraction + c.data.test_fraction,
     lambda v: _is_number(v) and v < 1, "a number < 1 (validation and test text would leave none for training)"),
]


def get_key(cfg: Config, dotted: str) -> Any:
    """``cfg.<dotted>``, e.g. ``get_key(cfg, "optim.lr")``."""
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def validate_config(cfg: Config, where: str = "") -> None:
    """Raise a one-line UserError for the first value outside its allowed range (see :data:`RULES`).

    ``where`` names the source in the message (e.g. ``"checkpoint config"``).
    """
    src = f" (in {where})" if where else ""
    for key, (check, allowed) in RULES.items():
        value = get_key(cfg, key)
        if not check(value):
            raise UserError(f"{key}={value!r}{src} is out of range: must be {allowed}")
    for key, get, check, allowed in CROSS_RULES:
        value = get(cfg)
        if not check(value):
            raise UserError(f"{key}={value!r}{src} is out of range: must be {allowed}")


def check_device_available(name: str) -> None:
    """Raise a one-line UserError if the device ``name`` (``cuda``, ``cuda:N``, ``mps``, ...) is malformed
    or does not exist on this machine; ``auto`` and ``cpu`` always pass."""
    check, allowed = DEVICE_RULE
    if not check(name):
        raise UserError(f"train.device={name!r} is out of range: must be {allowed}")
    import torch  # here, so that reading configs does not need torch

    kind, _, index = name.partition(":")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"train.device={name} but no CUDA GPU is available on this machine; "
                            "use train.device=auto or cpu")
        count = torch.cuda.device_count()
        if index and int(index) >= count:
            raise UserError(f"train.device={name} but this machine has {count} CUDA GPU(s) "
                            f"(cuda:0 to cuda:{count - 1}); use one of them, or train.device=cuda")
    elif kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if not (mps is not None and mps.is_available()):
            raise UserError(f"train.device={name} but Apple's MPS is not available on this machine; "
                            "use train.device=auto or cpu")
