"""The model registry: ``register_model``, ``create_model``, ``list_models``.

Modelled on timm's ``_registry.py`` and torchvision's ``_api.py``: a builder function
is registered under its name; duplicate names raise; an unknown name raises with the
closest matches. Builders are keyword-only and every image classifier accepts
``num_classes``, ``in_channels`` and ``input_size`` (the side of the square input;
the default is the paper's).
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..layers import use_conv_impl
from ._api import ClassifierMixin, ModelCfg, first_conv_name, recipe_of

__all__ = [
    "ModelInfo", "register_model", "create_model", "list_models", "model_info",
    "count_parameters", "parameter_count",
]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a builder."""

    name: str
    builder: Callable[..., nn.Module]
    task: str  # "classification", "language_model" or "seq2seq"
    paper: str  # short citation, e.g. "LeCun et al. 1998"

    @property
    def defaults(self) -> dict[str, Any]:
        """The builder's keyword defaults (``num_classes``, ``in_channels``, ``input_size``, ...)."""
        sig = inspect.signature(self.builder)
        return {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}

    @property
    def summary(self) -> str:
        """First line of the builder's docstring."""
        return (inspect.getdoc(self.builder) or "").splitlines()[0] if self.builder.__doc__ else ""


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    fn: Callable[..., nn.Module] | None = None,
    *,
    name: str | None = None,
    task: str = "classification",
    paper: str = "",
) -> Any:
    """Register a model builder under ``name`` (default: the function's name).

    Usable bare (``@register_model``) or with arguments
    (``@register_model(paper="He et al. 2015")``). Registering a name twice raises. The registered
    builder gives every classifier it builds (a :class:`~deepnn.models._api.ClassifierMixin`) its
    ``default_cfg``: name, paper, input size, classes, recipe, feature layer, first convolution.
    """

    def wrap(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or f.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered (by {_REGISTRY[key].builder.__module__})")

        @functools.wraps(f)
        def build(*args: Any, **kwargs: Any) -> nn.Module:
            model = f(*args, **kwargs)
            if isinstance(model, ClassifierMixin):  # its default_cfg: what it was built for
                bound = inspect.signature(f).bind(*args, **kwargs)
                bound.apply_defaults()
                a = bound.arguments
                size = (a["in_channels"], a["input_size"], a["input_size"]) if {"in_channels", "input_size"} <= set(a) \
                    else None
                model._default_cfg = ModelCfg(key, paper, size, model.num_classes, recipe_of(key),
                                              model.feature_layer, first_conv_name(model))
            return model

        _REGISTRY[key] = ModelInfo(key, build, task, paper)
        return build

    return wrap(fn) if fn is not None else wrap


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of ``name``; unknown names raise with the closest matches."""
    key = name.replace("-", "_")
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, _REGISTRY, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown model {name!r}{hint} (`deepnn models` lists them all)")
    return _REGISTRY[key]


def create_model(name: str, *, conv_impl: str = "torch", **kwargs: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: registered name, e.g. ``"lenet"`` or ``"resnet18"`` (``-`` and ``_`` are interchangeable).
        conv_impl: ``"torch"`` (default) or ``"scratch"``: which convolution and pooling
            layers the model is built from (see :mod:`deepnn.layers`).
        **kwargs: passed to the builder: ``num_classes``, ``in_channels``, ``input_size``, ...

    Example:
        >>> net = create_model("lenet", num_classes=10)
        >>> net(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    info = model_info(name)
    accepted = inspect.signature(info.builder).parameters
    required = [k for k, p in accepted.items() if p.default is inspect.Parameter.empty
                and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and k not in kwargs]
    if required:
        raise UserError(f"model {info.name!r} needs {', '.join(f'{k}=...' for k in required)} "
                        f"(a {info.task} model: `deepnn train` takes it from the data)")
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise UserError(
                f"model {info.name!r} does not take {', '.join(map(repr, unknown))}; "
                f"it takes {', '.join(accepted) or 'no arguments'}"
            )
    with use_conv_impl(conv_impl):
        return info.builder(**kwargs)


def list_models(pattern: str = "*", task: str | None = None) -> list[str]:
    """Sorted names matching a shell-style ``pattern`` (e.g. ``"resnet*"``), optionally of one task."""
    return sorted(
        n for n, i in _REGISTRY.items() if fnmatch.fnmatch(n, pattern) and (task is None or i.task == task)
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def parameter_count(name: str, **kwargs: Any) -> int:
    """Parameters of a registered model at its defaults, built on the meta device (no memory, fast)."""
    with torch.device("meta"):
        return count_parameters(create_model(name, **kwargs))
