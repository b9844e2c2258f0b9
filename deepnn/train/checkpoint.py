"""Checkpoints that loading never executes: one safetensors file per checkpoint.

Layout of ``last.safetensors`` / ``best.safetensors``:

* tensors ``model.<key>``: the model's ``state_dict`` (weights and buffers);
* tensors ``optim.<param>.<key>``: the optimizer's per-parameter state (momentum, Adam moments);
* tensors ``rng.<name>``: random-generator states (``torch``, ``cuda.<i>``, and the trainer's own
  generators such as ``augment``), so a resumed run draws the same dropout masks and crops;
* tensors ``ema.<key>``: the exponential moving average of the weights, when the run keeps one;
* the safetensors header's metadata ``deepnn``: JSON with the format version, the run's
  config, epoch and step counters and the optimizer's non-tensor state.

Nothing is unpickled; a file is written to a temporary name, flushed and renamed over
the old one (``os.replace`` is atomic), so an interrupted write never leaves a broken file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import UserError

FORMAT = "deepnn-checkpoint/1"


@dataclass
class Checkpoint:
    """A loaded checkpoint: tensors grouped by prefix and the JSON metadata."""

    model: dict[str, torch.Tensor]
    meta: dict[str, Any]
    optim: dict[str, torch.Tensor] = field(default_factory=dict)
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    ema: dict[str, torch.Tensor] = field(default_factory=dict)
    path: Path | None = None


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


def set_rng_states(states: dict[str, torch.Tensor], generators: dict[str, torch.Generator] | None = None) -> None:
    """Restore what :func:`rng_states` returned; a named generator missing from ``states`` raises UserError."""
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    cuda = [states[k] for k in sorted(states) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    for name, g in (generators or {}).items():
        if name not in states:
            raise UserError(f"the checkpoint holds no state of the {name!r} random generator; "
                            "it was written with other settings, so resume it with its own config")
        g.set_state(states[name])


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None, rng: bool = False,
                    generators: dict[str, torch.Generator] | None = None, ema: nn.Module | None = None) -> Path:
    """Write ``model`` (and optionally optimizer, RNG states including ``generators``, and the
    weight average ``ema``) with ``meta`` atomically to ``path``."""
    path = Path(path)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    meta = {**meta, "format": FORMAT}
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _split_optimizer(optimizer.state_dict())
        tensors.update({f"optim.{k}": v for k, v in opt_tensors.items()})
    if rng:
        tensors.update({f"rng.{k}": v for k, v in rng_states(generators).items()})
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    # safetensors wants contiguous CPU tensors that share no memory
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"deepnn": json.dumps(meta)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; corrupt or foreign files raise UserError."""
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
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"checkpoint {path} is corrupt or truncated ({e}); use the run's other checkpoint "
                        "(best/last) or train again") from None
    try:
        meta = json.loads(header["deepnn"])
    except (KeyError, json.JSONDecodeError):
        raise UserError(f"{path} is a safetensors file but not a deepnn checkpoint (no deepnn metadata)") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path} has checkpoint format {meta.get('format')!r}; this deepnn reads {FORMAT!r}")
    groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "optim": {}, "rng": {}, "ema": {}}
    for k, v in tensors.items():
        prefix, _, rest = k.partition(".")
        if prefix not in groups:
            raise UserError(f"{path} holds an unexpected tensor {k!r}; the file is not a deepnn checkpoint")
        groups[prefix][rest] = v
    return Checkpoint(groups["model"], meta, groups["optim"], groups["rng"], groups["ema"], path)


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


def load_optimizer_state(optimizer: torch.optim.Optimizer, ckpt: Checkpoint) -> None:
    optimizer.load_state_dict(_join_optimizer(ckpt.optim, ckpt.meta["optimizer"]))
