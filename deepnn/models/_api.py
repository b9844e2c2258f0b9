"""One interface for every image classifier of the zoo (timm's lesson): trunk, head, configuration.

Every registered classification model (``list_models(task="classification")``) is a
:class:`ClassifierMixin` and offers, whatever its family:

* ``forward_features(x)``: the trunk's output before the classifier head: for a CNN its last
  convolutional feature map ``(B, C, H, W)`` (before global pooling or flattening), for the
  highway network its last hidden vector ``(B, width)``;
* ``forward_head(features, pre_logits=False)``: pooling / flattening and the classifier;
  ``forward(x) == forward_head(forward_features(x))`` exactly. ``pre_logits=True`` stops just
  before the final class layer and returns its input (AlexNet, VGG: the 4096-unit vector;
  GoogLeNet onward: the pooled vector; NiN, whose class layer is its last mlpconv block: the
  ``(B, 384, H, W)`` map that block takes);
* ``get_classifier()`` and ``reset_classifier(num_classes)``: the final class layer, and a fresh one
  (PyTorch's default initialisation) for another number of classes; everything before it keeps its
  weights, so ``forward_features`` is unchanged. Auxiliary heads (GoogLeNet, Inception-v3) get
  fresh class layers too;
* ``default_cfg``: a frozen :class:`ModelCfg` (``paper``, ``input_size``, ``num_classes``,
  ``recipe``, ``feature_layer``, ``first_conv``), set by the registry when the model is built.

Auxiliary heads: in training mode with ``aux_logits=True``, GoogLeNet and Inception-v3's
``forward`` returns ``(forward_head(forward_features(x)), *aux_logits)``; the auxiliary heads tap
intermediate stages and are no part of ``forward_features`` or ``forward_head``. In eval mode (and
without auxiliary heads) ``forward`` returns the logits only.

The methods are shared: :class:`deepnn.models._blocks.Classifier` implements them once for the
``features`` → ``head`` frame of every zoo model; a family only says where its head starts when
that is not at ``head`` (LeNet's flatten, NiN's class block) and how to build a fresh class layer
when it is not a ``nn.Linear`` (NiN).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

__all__ = ["ModelCfg", "ClassifierMixin", "first_conv_name", "recipe_of"]

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


@dataclass(frozen=True)
class ModelCfg:
    """What a classifier was built for (timm's ``pretrained_cfg``, reduced to what the lecture uses).

    Attributes:
        name: registered name (``None`` for a model built from its class, outside the registry).
        paper: short citation, e.g. ``"LeCun et al. 1998"``.
        input_size: ``(C, H, W)`` of the input the model was built for.
        num_classes: outputs of the class layer.
        recipe: the default recipe, ``"deepnn/recipes/<name>.yaml"``, or ``None`` when there is none.
        feature_layer: the module whose output ``forward_features`` returns (a ``--layer`` of
            ``deepnn features``).
        first_conv: the first convolution (its kernels are the filter pictures); ``None`` without one.
    """

    name: str | None
    paper: str
    input_size: tuple[int, int, int] | None
    num_classes: int
    recipe: str | None
    feature_layer: str | None
    first_conv: str | None


def first_conv_name(model: nn.Module) -> str | None:
    """Dotted name of the first ``nn.Conv2d`` (scratch convolutions included) in registration order."""
    return next((name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def recipe_of(name: str) -> str | None:
    """``"deepnn/recipes/<name>.yaml"`` when the package ships that recipe, else ``None``."""
    return f"deepnn/recipes/{name}.yaml" if (RECIPES / f"{name}.yaml").is_file() else None


class ClassifierMixin:
    """The uniform classifier interface (see the module docstring); mixed into an ``nn.Module``.

    A class using it implements :meth:`forward_features`, :meth:`forward_head`, names its final class
    layer in :attr:`classifier_name` and its feature layer in :attr:`feature_layer`; the rest is here.
    """

    num_classes: int

    # --- what a family implements

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        raise NotImplementedError

    @property
    def classifier_name(self) -> str:
        """Dotted name of the final class layer."""
        raise NotImplementedError

    @property
    def feature_layer(self) -> str | None:
        """Dotted name of the module whose output :meth:`forward_features` returns."""
        return None

    def new_classifier(self, old: nn.Module, num_classes: int) -> nn.Module:
        """A fresh class layer shaped like ``old`` with ``num_classes`` outputs (dense layers here)."""
        if isinstance(old, nn.Linear):
            return nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                             device=old.weight.device, dtype=old.weight.dtype)
        raise NotImplementedError(f"{type(self).__name__} must say how to rebuild its {type(old).__name__} classifier")

    # --- shared

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final class layer (a ``nn.Linear``, or NiN's last mlpconv block)."""
        return self.get_submodule(self.classifier_name)  # type: ignore[attr-defined]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final class layer by a fresh one with ``num_classes`` outputs (same module name)."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.set_submodule(self.classifier_name, self.new_classifier(self.get_classifier(), num_classes))  # type: ignore[attr-defined]
        self.num_classes = num_classes
        cfg = getattr(self, "_default_cfg", None)
        if cfg is not None:
            self._default_cfg = dataclasses.replace(cfg, num_classes=num_classes)

    @property
    def default_cfg(self) -> ModelCfg:
        """The model's :class:`ModelCfg`; for a model built outside the registry, what it knows itself."""
        cfg = self.__dict__.get("_default_cfg")
        if cfg is None:
            cfg = ModelCfg(None, "", None, self.num_classes, None, self.feature_layer, first_conv_name(self))  # type: ignore[arg-type]
        return cfg
