"""Checkpoints that loading never executes: one safetensors file per checkpoint.

Layout of ``last.safetensors`` / ``best.safetensors``:

* tensors ``model.<key>``: the model's ``state_dict`` (weights and buffers);
* tensors ``optim.<param>.<key>``: the optimizer's per-parameter state (momentum, Adam moments);
* tensors ``rng.<name>``: random-generator states (``torch``, ``cuda.<i>``, and the trainer's own
  generators such as ``augment``), so a resumed run draws the same dropout masks and crops;
* tensors ``ema.<key>``: the exponential moving average of the weights, when the run keeps one;
* tensors ``task.<key>``: state the task carries between batches (a language model's hidden state);
* the safetensors header's metadata ``deepnn``: JSON with the format version, the run's
  config, epoch and step counters and the optimizer's non-tensor state;
* the metadata ``deepnn.sha256``: JSON ``{tensor name: sha256 hex}`` of every tensor (its dtype,
  shape and bytes, see :func:`tensor_digest`), checked on load, so a flipped bit or an edited
  tensor is an error naming the tensor instead of a silently different model.

Loading also checks the JSON metadata against :data:`META_SCHEMA` (:func:`validate_meta`), the RNG
states and, in :func:`load_optimizer_state`, the optimizer tensors against the optimizer's own
parameters, so a hand-edited file is a one-line :class:`UserError`, never a traceback.
Files of format ``deepnn-checkpoint/1`` (written before the digests existed) still load, unverified.

Nothing is unpickled; a file is written to a temporary name, flushed and renamed over
the old one (``os.replace`` is atomic), so an interrupted write never leaves a broken file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import UserError
from .config import Config, validate_config

FORMAT = "deepnn-checkpoint/2"  # /2 adds the tensor digests
FORMATS_READ = ("deepnn-checkpoint/1", FORMAT)
DIGESTS_KEY = "deepnn.sha256"  # safetensors metadata entry: JSON {tensor name: sha256 hex}
# what Trainer.state_meta() writes; pass as ``require`` where a caller needs them (resume)
TRAINER_KEYS = ("config", "epoch", "step_in_epoch", "global_step", "epoch_stats", "best_val", "history")


@dataclass
class Checkpoint:
    """A loaded checkpoint: tensors grouped by prefix and the JSON metadata."""

    model: dict[str, torch.Tensor]
    meta: dict[str, Any]
    optim: dict[str, torch.Tensor] = field(default_factory=dict)
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    ema: dict[str, torch.Tensor] = field(default_factory=dict)
    path: Path | None = None
    task: dict[str, torch.Tensor] = field(default_factory=dict)


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state_dict → (tensors keyed ``<param>.<key>``, JSON-able rest)."""
    tensors, scalars = {}, {}
    for pid, st in state["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for flat, v in [*tensors.items(), *rest["scalars"].items()]:
        pid, k = flat.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    # JSON turned tuples (Adam's betas) into lists; give them back as torch created them
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
              for g in rest["param_groups"]]
    return {"state": state, "param_groups": groups}


def rng_states(generators: dict[str, torch.Generator] | None = None) -> dict[str, torch.Tensor]:
    """The global CPU (and CUDA) generator states, plus those of the named ``generators``."""
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda.{i}"] = s
    for name, g in (generators or {}).items():
        states[name] = g.get_state()
    return states


def _check_rng_state(name: str, state: torch.Tensor, like: torch.Tensor | None, where: str = "") -> None:
    """A generator state must be a 1-D uint8 tensor (of ``like``'s size when given)."""
    if state.dtype != torch.uint8 or state.ndim != 1 or (like is not None and state.shape != like.shape):
        want = f"{like.numel()} " if like is not None else ""
        raise UserError(f"{where}random-generator state 'rng.{name}' is a {str(state.dtype).removeprefix('torch.')} "
                        f"tensor of shape {tuple(state.shape)}, not {want}bytes (uint8): the file was modified; "
                        "restore it or train again")


def set_rng_states(states: dict[str, torch.Tensor], generators: dict[str, torch.Generator] | None = None) -> None:
    """Restore what :func:`rng_states` returned; a named generator missing from ``states``, or a state of
    the wrong type or size, raises UserError."""
    def restore(name: str, state: torch.Tensor, like: torch.Tensor, setter: Callable[[torch.Tensor], Any]) -> None:
        _check_rng_state(name, state, like, "the checkpoint's ")
        try:
            setter(state)
        except (RuntimeError, TypeError, ValueError) as e:
            raise UserError(f"the checkpoint's random-generator state 'rng.{name}' is invalid "
                            f"({' '.join(str(e).split())}): the file was modified; restore it or train again") from None

    if "torch" in states:
        restore("torch", states["torch"], torch.get_rng_state(), torch.set_rng_state)
    cuda = [k for k in sorted(states) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        for k in cuda:
            _check_rng_state(k, states[k], None, "the checkpoint's ")
        restore("cuda", states[cuda[0]], states[cuda[0]],
                lambda _: torch.cuda.set_rng_state_all([states[k] for k in cuda]))
    for name, g in (generators or {}).items():
        if name not in states:
            raise UserError(f"the checkpoint holds no state of the {name!r} random generator; "
                            "it was written with other settings, so resume it with its own config")
        restore(name, states[name], g.get_state(), g.set_state)


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 (hex) of a CPU tensor's dtype, shape and bytes: what ``deepnn.sha256`` records per tensor."""
    h = hashlib.sha256(f"{str(t.dtype).removeprefix('torch.')} {list(t.shape)}\n".encode())
    h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None, rng: bool = False,
                    generators: dict[str, torch.Generator] | None = None, ema: nn.Module | None = None,
                    task: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``model`` (and optionally optimizer, RNG states including ``generators``, the
    weight average ``ema`` and the task's carried ``task`` tensors) with ``meta`` atomically to ``path``."""
    path = Path(path)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    meta = {k: v for k, v in meta.items() if k not in ("format", "meta_keys")}
    # the keys given, so that loading tells a key deleted by hand from one this writer never wrote
    meta = {**meta, "format": FORMAT, "meta_keys": sorted(meta)}
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _split_optimizer(optimizer.state_dict())
        tensors.update({f"optim.{k}": v for k, v in opt_tensors.items()})
    if rng:
        tensors.update({f"rng.{k}": v for k, v in rng_states(generators).items()})
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    tensors.update({f"task.{k}": v for k, v in (task or {}).items()})
    # safetensors wants contiguous CPU tensors that share no memory
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        digests = {k: tensor_digest(v) for k, v in tensors.items()}
        save_file(tensors, tmp, metadata={"deepnn": json.dumps(meta), DIGESTS_KEY: json.dumps(digests)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | Path, require: Iterable[str] = ()) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; corrupt, modified or foreign files raise UserError.

    Every tensor is checked against its recorded sha256 digest and the metadata against
    :data:`META_SCHEMA` (:func:`validate_meta`); ``require`` names metadata keys the caller needs
    (e.g. :data:`TRAINER_KEYS` to resume) beyond those the file says it was written with.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "last.safetensors"
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} does not exist; give a run folder or a .safetensors file")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError, OverflowError, MemoryError) as e:
        raise UserError(f"checkpoint {path} is corrupt or truncated ({_one_line(e)}); use the run's other checkpoint "
                        "(best/last) or train again") from None
    try:
        meta = json.loads(header["deepnn"])
    except (KeyError, TypeError, ValueError, RecursionError):
        raise UserError(f"{path} is a safetensors file but not a deepnn checkpoint (no deepnn metadata)") from None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt not in FORMATS_READ:
        raise UserError(f"{path} has checkpoint format {_short(fmt)}; this deepnn reads {FORMAT!r} (and older "
                        f"{', '.join(repr(f) for f in FORMATS_READ if f != FORMAT)})")
    if fmt != "deepnn-checkpoint/1":  # format 1 was written before the digests: loaded unverified
        _verify_digests(path, header, tensors)
    groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "optim": {}, "rng": {}, "ema": {}, "task": {}}
    for k, v in tensors.items():
        prefix, _, rest = k.partition(".")
        if prefix not in groups:
            raise UserError(f"{path} holds an unexpected tensor {k!r}; the file is not a deepnn checkpoint")
        groups[prefix][rest] = v
    validate_meta(meta, path, require)
    _check_tensors_against_meta(path, meta, groups)
    return Checkpoint(groups["model"], meta, groups["optim"], groups["rng"], groups["ema"], path, groups["task"])


# ---- verification ------------------------------------------------------------------------------

_MODIFIED = "the file is corrupt or was modified; re-train or restore it"
_EDITED = "the metadata was edited or the file is not from this deepnn; restore it or train again"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _short(value: Any, limit: int = 60) -> str:
    """A value as short one-line JSON for messages."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _verify_digests(path: Path, header: dict[str, str], tensors: dict[str, torch.Tensor]) -> None:
    raw = header.get(DIGESTS_KEY)
    if raw is None:
        raise UserError(f"checkpoint {path} records no tensor digests ({DIGESTS_KEY!r} metadata) although its "
                        f"format requires them: {_MODIFIED}")
    try:
        digests = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        digests = None
    if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
        raise UserError(f"checkpoint {path}: its tensor digests ({DIGESTS_KEY!r} metadata) are not a JSON mapping "
                        f"of tensor names to sha256 digests: {_MODIFIED}")
    for name in sorted(set(digests) - set(tensors)):
        raise UserError(f"checkpoint {path}: tensor {name!r} is recorded in its digests but missing: {_MODIFIED}")
    for name in sorted(tensors):
        if name not in digests:
            raise UserError(f"checkpoint {path}: tensor {name!r} has no recorded digest: {_MODIFIED}")
        if tensor_digest(tensors[name]) != digests[name]:
            raise UserError(f"checkpoint {path}: tensor {name!r} does not match its recorded digest: {_MODIFIED}")


MetaCheck = Callable[[Any], bool]


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_number(v: Any) -> bool:  # NaN/inf allowed: a diverged run's losses are recorded as they were
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)


def _str_map(v: Any, values: MetaCheck = lambda _: True) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and values(x) for k, x in v.items())


def _list_of(v: Any, item: MetaCheck, min_len: int = 0) -> bool:
    return isinstance(v, list) and len(v) >= min_len and all(item(x) for x in v)


_OPTIM_KEY = re.compile(r"(0|[1-9][0-9]{0,8})\.(.+)", re.DOTALL)  # "<parameter index>.<state name>"


def _is_hyper(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str)) or _list_of(v, _is_number)


def _optimizer_ok(v: Any) -> bool:
    if not (isinstance(v, dict) and isinstance(v.get("param_groups"), list) and isinstance(v.get("scalars"), dict)):
        return False
    indices: list[int] = []
    for g in v["param_groups"]:
        if not (_str_map(g, _is_hyper) and _list_of(g.get("params"), _is_count)):
            return False
        indices += g["params"]
    if len(set(indices)) != len(indices):
        return False
    return all(_OPTIM_KEY.fullmatch(k) and int(k.split(".", 1)[0]) in indices
               and (x is None or isinstance(x, (bool, int, float, str))) for k, x in v["scalars"].items())


# The checkpoint metadata: key → (check, allowed value in words). Keys are checked when present;
# present they must be: every key the writer gave (recorded in ``meta_keys``) and those a caller
# requires (``require``, e.g. TRAINER_KEYS). Add a row when the trainer writes something new.
META_SCHEMA: dict[str, tuple[MetaCheck, str]] = {
    "meta_keys": (lambda v: _list_of(v, lambda x: isinstance(x, str)), "a list of key names"),
    "config": (lambda v: isinstance(v, dict), "a mapping of config sections (model, data, optim, sched, train)"),
    "epoch": (_is_count, "an integer ≥ 0"),
    "step_in_epoch": (_is_count, "an integer ≥ 0"),
    "global_step": (_is_count, "an integer ≥ 0"),
    "epoch_stats": (lambda v: _str_map(v, _is_number), "a mapping of names to numbers"),
    "best_val": (lambda v: v is None or _is_number(v), "null or a number"),
    "history": (lambda v: _list_of(v, _str_map), "a list of mappings, one per epoch"),
    "planned_steps": (_is_count, "an integer ≥ 0"),
    "budget_planned": (lambda v: isinstance(v, bool), "true or false"),
    "train_time": (lambda v: _is_finite(v) and v >= 0, "a finite number ≥ 0 (seconds)"),
    "units_seen": (lambda v: _is_finite(v) and v >= 0, "a finite number ≥ 0"),
    "stopped": (lambda v: isinstance(v, bool), "true or false"),
    "data": (lambda v: isinstance(v, dict), "a mapping (model_args, classes, mean, std, input_shape)"),
    "optimizer": (_optimizer_ok, 'a mapping {"param_groups": [{"params": [distinct indices], setting: value}], '
                                 '"scalars": {"<index>.<name>": value}}'),
}
# meta["data"], the facts of the run's dataset (deepnn.train.run)
DATA_SCHEMA: dict[str, tuple[MetaCheck, str]] = {
    "model_args": (_str_map, "a mapping of model keywords"),
    "classes": (lambda v: _list_of(v, lambda x: isinstance(x, str), 1), "a non-empty list of class names (strings)"),
    "mean": (lambda v: _is_finite(v) or _list_of(v, _is_finite, 1), "a finite number or a list of them"),
    "std": (lambda v: (_is_finite(v) and v > 0) or _list_of(v, lambda x: _is_finite(x) and x > 0, 1),
            "a number > 0 or a list of them"),
    "input_shape": (lambda v: _list_of(v, lambda x: _is_count(x) and x > 0, 1), "a list of positive integers"),
    "dataset": (lambda v: isinstance(v, str), "a string"),
    "vocab": (lambda v: _list_of(v, lambda x: isinstance(x, str), 1), "a non-empty list of strings (characters)"),
    "tokens": (lambda v: _str_map(v, _is_count), "a mapping of split names to token counts"),
}


def validate_meta(meta: Any, path: str | Path | None = None, require: Iterable[str] = ()) -> None:
    """Check a checkpoint's JSON metadata against :data:`META_SCHEMA` and :data:`DATA_SCHEMA`, its config
    against the config's ranges, and their agreement; raise a one-line UserError naming the first problem."""
    where = f"checkpoint {path}" if path is not None else "checkpoint"
    if not isinstance(meta, dict):
        raise UserError(f"{where}: its deepnn metadata is a JSON {type(meta).__name__}, not a mapping; {_EDITED}")

    def bad(key: str, value: Any, allowed: str) -> UserError:
        return UserError(f"{where}: metadata {key}={_short(value)} is invalid: must be {allowed}; {_EDITED}")

    for key, (check, allowed) in META_SCHEMA.items():
        if key in meta and not check(meta[key]):
            raise bad(key, meta[key], allowed)
    recorded = meta.get("meta_keys", [])
    for key in [*recorded, *require]:
        if key not in meta:
            written = " (the file was written with it)" if key in recorded else ""
            raise UserError(f"{where}: metadata key {key!r} is missing{written}; {_EDITED}")
    data = meta.get("data", {})
    for key, (check, allowed) in DATA_SCHEMA.items():
        if key in data and not check(data[key]):
            raise bad(f"data.{key}", data[key], allowed)
    if "config" in meta:
        try:
            cfg = Config.from_dict(meta["config"], "the checkpoint's config")
            validate_config(cfg, "the checkpoint's config")
        except UserError as e:
            raise UserError(f"{where}: {e}; {_EDITED}") from None
        if "epoch" in meta and meta["epoch"] > cfg.train.epochs:
            raise bad("epoch", meta["epoch"], f"an integer in [0, {cfg.train.epochs}] (the config's train.epochs)")
    num_classes = data.get("model_args", {}).get("num_classes")
    if "classes" in data and num_classes is not None and len(data["classes"]) != num_classes:
        raise bad("data.classes", data["classes"],
                  f"a list of {_short(num_classes)} names (data.model_args.num_classes)")


def _check_tensors_against_meta(path: Path, meta: dict[str, Any], groups: dict[str, dict[str, torch.Tensor]]) -> None:
    """Optimizer tensors named ``<index>.<name>`` of a listed parameter; RNG states 1-D bytes."""
    where = f"checkpoint {path}"
    if groups["optim"] and "optimizer" not in meta:
        raise UserError(f"{where} holds optimizer tensors but no optimizer metadata; {_EDITED}")
    if "optimizer" in meta:
        listed = {i for g in meta["optimizer"]["param_groups"] for i in g["params"]}
        for k in groups["optim"]:
            m = _OPTIM_KEY.fullmatch(k)
            if not m or int(m.group(1)) not in listed:
                raise UserError(f"{where}: optimizer tensor 'optim.{k}' names no parameter of the optimizer's "
                                f"parameter groups; {_MODIFIED}")
    for name, state in groups["rng"].items():
        like = torch.get_rng_state() if name == "torch" else None
        _check_rng_state(name, state, like, f"{where}: ")
    if "torch" in groups["rng"]:
        try:
            torch.Generator().set_state(groups["rng"]["torch"])  # a scratch generator checks the content
        except (RuntimeError, TypeError, ValueError) as e:
            raise UserError(f"{where}: random-generator state 'rng.torch' is invalid ({_one_line(e)}); "
                            f"{_MODIFIED}") from None


def load_model_state(model: nn.Module, ckpt: Checkpoint, wanted: str = "this model") -> None:
    """Copy the checkpoint's weights into ``model``; a different architecture raises a clear error."""
    own = model.state_dict()
    saved_name = ckpt.meta.get("config", {}).get("model", {}).get("name", "?")
    missing = sorted(set(own) - set(ckpt.model))
    unexpected = sorted(set(ckpt.model) - set(own))
    shapes = [(k, tuple(ckpt.model[k].shape), tuple(own[k].shape)) for k in own
              if k in ckpt.model and ckpt.model[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        detail = (f"shape of {shapes[0][0]} is {shapes[0][1]} in the checkpoint but {shapes[0][2]} here" if shapes
                  else f"keys differ (missing {missing[:3]}, unexpected {unexpected[:3]})")
        raise UserError(f"checkpoint {ckpt.path} holds model {saved_name!r}, which does not fit {wanted}: {detail}")
    model.load_state_dict(ckpt.model)


# optimizer settings: name → (check, allowed range); settings not listed only need the type torch gave them
OPTIM_SETTINGS: dict[str, tuple[MetaCheck, str]] = {
    "lr": (lambda v: _is_finite(v) and v >= 0, "a finite number ≥ 0"),
    "eps": (lambda v: _is_finite(v) and v >= 0, "a finite number ≥ 0"),
    "weight_decay": (lambda v: _is_finite(v) and v >= 0, "a finite number ≥ 0"),
    "momentum": (lambda v: _is_finite(v) and 0 <= v < 1, "a number in [0, 1)"),
    "dampening": (lambda v: _is_finite(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "betas": (lambda v: _list_of(v, lambda x: _is_finite(x) and 0 <= x < 1) and len(v) == 2,
              "2 numbers in [0, 1)"),
}


def _same_kind(own: Any, saved: Any) -> bool:
    """Does the saved optimizer setting have the type of the optimizer's own value?"""
    if own is None or isinstance(own, bool):  # flags such as foreach / fused: None or a bool
        return saved is None or isinstance(saved, bool)
    if _is_number(own):
        return _is_finite(saved)
    if isinstance(own, (tuple, list)):
        return isinstance(saved, (tuple, list)) and len(saved) == len(own) and all(_is_finite(x) for x in saved)
    if isinstance(own, str):
        return isinstance(saved, str)
    return True


def load_optimizer_state(optimizer: torch.optim.Optimizer, ckpt: Checkpoint) -> None:
    """Restore the optimizer's state; groups, settings and every state tensor are checked against the
    optimizer's own parameters first, so a modified file is a UserError naming the parameter."""
    where = f"checkpoint {ckpt.path}"
    fix = "resume with the model and config the run was written with, or restore the file"
    rest = ckpt.meta.get("optimizer")
    if not _optimizer_ok(rest):
        raise UserError(f"{where} holds no (valid) optimizer state; resume from a last.safetensors checkpoint")
    saved_groups, own_groups = rest["param_groups"], optimizer.param_groups
    if len(saved_groups) != len(own_groups):
        raise UserError(f"{where}: the optimizer has {len(saved_groups)} parameter groups, this one "
                        f"{len(own_groups)}; {fix}")
    index: dict[int, torch.Tensor] = {}
    for gi, (sg, og) in enumerate(zip(saved_groups, own_groups)):
        if len(sg["params"]) != len(og["params"]):
            raise UserError(f"{where}: optimizer parameter group {gi} has {len(sg['params'])} parameters, "
                            f"this model's {len(og['params'])}; {fix}")
        index.update(zip(sg["params"], og["params"]))
        for k, own in og.items():
            if k == "params":
                continue
            if k not in sg:
                if _is_number(own) or isinstance(own, (tuple, list)):  # torch fills in missing flags, not numbers
                    raise UserError(f"{where}: optimizer parameter group {gi} lacks the setting {k!r}; {_EDITED}")
                continue
            check, allowed = OPTIM_SETTINGS.get(k, (lambda v, own=own: _same_kind(own, v), f"like {own!r}"))
            if not check(sg[k]):
                raise UserError(f"{where}: optimizer setting param_groups[{gi}].{k}={_short(sg[k])} is invalid: "
                                f"must be {allowed}; {_EDITED}")
    keys: dict[int, set[str]] = {}
    for flat in [*ckpt.optim, *rest["scalars"]]:
        pid, _, k = flat.partition(".")
        keys.setdefault(int(pid), set()).add(k)
    every = set().union(*keys.values()) if keys else set()
    for pid, have in sorted(keys.items()):
        if pid not in index:
            raise UserError(f"{where}: optimizer state names parameter {pid}, which no parameter group lists; "
                            f"{_MODIFIED}")
        if every - have:
            k = sorted(every - have)[0]
            raise UserError(f"{where}: optimizer state of parameter {pid} lacks {k!r} (tensor 'optim.{pid}.{k}' "
                            f"is missing); {_MODIFIED}")
    for flat, t in sorted(ckpt.optim.items()):
        pid, _, k = flat.partition(".")
        param = index[int(pid)]
        own_t = optimizer.state.get(param, {}).get(k)
        want = own_t.shape if torch.is_tensor(own_t) else torch.Size([]) if k == "step" else param.shape
        if t.shape != want or not t.is_floating_point():
            raise UserError(f"{where}: optimizer tensor 'optim.{flat}' is a {str(t.dtype).removeprefix('torch.')} "
                            f"tensor of shape {tuple(t.shape)}, but parameter {pid} (shape {tuple(param.shape)}) "
                            f"needs a floating-point {tuple(want)}; {_MODIFIED}")
    try:
        optimizer.load_state_dict(_join_optimizer(ckpt.optim, rest))
    except (ValueError, KeyError, RuntimeError, TypeError) as e:
        raise UserError(f"{where}: cannot restore the optimizer ({_one_line(e)}); {fix}") from None


def load_ema_state(module: nn.Module, ckpt: Checkpoint) -> None:
    """Copy the checkpoint's weight average into ``module`` (the EMA copy), checked like the weights."""
    if not ckpt.ema:
        raise UserError(f"{ckpt.path} holds no weight average but train.ema_decay is set; "
                        "resume it with the config it was written with")
    load_model_state(module, Checkpoint(ckpt.ema, ckpt.meta, path=ckpt.path), "the weight average of this model")
