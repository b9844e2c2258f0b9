"""Pieces shared by the CNN zoo (C12–C18): the conv → batch norm → ReLU unit, parallel paths
concatenated on channels, the ``features`` → ``head`` classifier frame (with the uniform
interface of :mod:`deepnn.models._api`), weight initialisation,
Krizhevsky's local response normalisation and the input-size rules.

Conv → BN → ReLU is the unit of Inception-BN, v3, v4 and ResNet (Ioffe & Szegedy 2015,
"Batch normalization"; He et al. 2015, "Deep residual learning"); without batch norm it is the
conv → ReLU of AlexNet, VGG, NiN and GoogLeNet.

Small inputs. Every image model defaults to its paper's input (224 or 299 px). Inputs smaller
than :data:`SMALL_INPUT` (75 px, the smallest the Inception-v3 stem takes) get the family's
*small stem*: the large strided first convolution becomes a 3×3 stride-1 one and early
reductions are dropped, so 28×28 Fashion-MNIST keeps useful feature maps instead of collapsing.
Each builder's docstring says what changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .. import layers as L
from ..errors import UserError
from ._api import ClassifierMixin

__all__ = [
    "SMALL_INPUT", "is_small", "check_input_size", "conv_bn_relu", "lrn", "Concat",
    "Classifier", "init_weights", "dense_head", "pool_head",
]

SMALL_INPUT = 75


def is_small(input_size: int) -> bool:
    """Whether ``input_size`` gets the small stem (below :data:`SMALL_INPUT` px)."""
    return input_size < SMALL_INPUT


def check_input_size(model: str, input_size: int, minimum: int) -> None:
    """Raise :class:`UserError` when ``input_size`` is below the smallest side ``model`` takes."""
    if input_size < minimum:
        raise UserError(
            f"{model} needs input_size of at least {minimum}, got {input_size}: its feature maps "
            f"would shrink to nothing; resize the images or pick a larger input_size"
        )


def conv_bn_relu(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    *,
    bn: bool = True,
    relu: bool = True,
    bias: bool | None = None,
) -> nn.Sequential:
    """Convolution, then batch norm (``bn``), then ReLU (``relu``).

    The convolution has a bias only without batch norm (BN's shift makes it redundant), unless
    ``bias`` says otherwise (torchvision's VGG-BN keeps it).

    Example:
        >>> conv_bn_relu(3, 64, 7, stride=2, padding=3)(torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 64, 112, 112])
    """
    layers: list[nn.Module] = [
        L.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                 bias=(not bn) if bias is None else bias)
    ]
    if bn:
        layers.append(nn.BatchNorm2d(out_channels))
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def lrn() -> nn.LocalResponseNorm:
    """Local response normalisation of Krizhevsky et al. 2012 (§3.3): k=2, n=5, α=1e-4, β=0.75.

    PyTorch divides α by n, so the paper's α=1e-4 is ``alpha=5e-4`` here.
    """
    return nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)


class Concat(nn.Module):
    """Parallel paths on the same input, their outputs concatenated on channels.

    Every Inception block is one (Szegedy et al. 2014): the spatial size of all paths must agree.
    """

    def __init__(self, *paths: nn.Module):
        super().__init__()
        self.paths = nn.ModuleList(paths)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, sum of path channels, H', W')
        return torch.cat([path(x) for path in self.paths], dim=1)


class Classifier(ClassifierMixin, nn.Module):
    """The frame of every zoo model: ``features`` (the trunk) → ``head`` (pooling/flatten + dense),
    with the uniform interface of :class:`~deepnn.models._api.ClassifierMixin`.

    Args:
        features: the trunk, a sequence of named stages.
        head: maps the trunk's output to ``num_classes`` logits.
        num_classes: outputs of the head.
        aux: auxiliary heads keyed by the name of the ``features`` stage they tap (GoogLeNet,
            Inception-v3). In training mode, ``forward`` then returns ``(logits, *aux_logits)`` in
            the order of the stages; in eval mode it returns the logits only.
        head_from: index of the first ``features`` stage that belongs to the head rather than to
            :meth:`forward_features` (LeNet's flatten, NiN's class block); default: none does. The
            modules keep their names, so state dicts are the same either way.
    """

    def __init__(
        self,
        features: nn.Sequential,
        head: nn.Module,
        num_classes: int,
        aux: dict[str, nn.Module] | None = None,
        head_from: int | None = None,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.features = features
        self.head = head
        self.aux = nn.ModuleDict(aux) if aux else None
        self.head_from = len(features) if head_from is None else head_from % len(features)

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C', H', W')
        if self.head_from == len(self.features):
            return self.features(x)
        for stage in list(self.features)[: self.head_from]:
            x = stage(x)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:  # (B, C', H', W') -> (B, classes)
        classifier = self.get_classifier() if pre_logits else None
        for stage in list(self.features)[self.head_from:]:
            if stage is classifier:
                return x
            x = stage(x)
        if not pre_logits:
            return self.head(x)
        for layer in self.head if isinstance(self.head, nn.Sequential) else [self.head]:
            if layer is classifier:
                break
            x = layer(x)
        return x

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:  # (B, C, H, W) -> (B, num_classes)
        if self.aux is None or not self.training:
            return self.forward_head(self.forward_features(x))
        aux_logits = []
        for name, stage in list(self.features.named_children())[: self.head_from]:
            x = stage(x)
            if name in self.aux:
                aux_logits.append(self.aux[name](x))
        return (self.forward_head(x), *aux_logits)

    @property
    def classifier_name(self) -> str:
        """``head`` when it is one layer, else its last layer (``head.<i>``)."""
        return f"head.{len(self.head) - 1}" if isinstance(self.head, nn.Sequential) else "head"

    @property
    def feature_layer(self) -> str:
        return "features" if self.head_from == len(self.features) else f"features.{self.head_from - 1}"

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh class layer for ``num_classes`` classes, and fresh class layers in the auxiliary heads."""
        super().reset_classifier(num_classes)
        for aux in (self.aux or {}).values():
            aux[-1] = self.new_classifier(aux[-1], num_classes)


def init_weights(model: nn.Module, linear_std: float | None = None) -> None:
    """He (Kaiming) normal initialisation for convolutions, zero biases, unit BN scales.

    Dense layers keep PyTorch's default unless ``linear_std`` is given (VGG and AlexNet draw them
    from N(0, 0.01²), as Simonyan & Zisserman 2014 and Krizhevsky et al. 2012 did).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)


def dense_head(in_features: int, hidden: Sequence[int], num_classes: int, dropout: float) -> nn.Sequential:
    """Flatten, then dense → ReLU → dropout per hidden width, then the class layer (AlexNet, VGG)."""
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU(), nn.Dropout(dropout)]
        in_features = width
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


def pool_head(in_channels: int, num_classes: int, dropout: float = 0.0) -> nn.Sequential:
    """Global average pooling, flatten, optional dropout, one dense layer (GoogLeNet onward)."""
    layers: list[nn.Module] = [L.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(in_channels, num_classes))
    return nn.Sequential(*layers)
