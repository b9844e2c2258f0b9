"""The child networks of architecture search (lecture item C20; Zoph & Le 2017, "Neural architecture
search with reinforcement learning", ICLR, section 3.3 and Fig. 4), as a registered model.

An architecture is a string, one token per conv layer, separated by spaces::

    HxW-N            filter height H, filter width W, N filters, stride 1
    HxW-N/S          the same with stride S (2 halves the maps)
    HxW-N/S[j,k]     ... and skip connections from the outputs of earlier layers j and k (1-based)

e.g. ``"3x3-32 3x5-32/2 5x5-64[1] 3x3-64/2[1,2]"``. Every layer is conv (same padding, no bias) →
batch norm → ReLU (Ioffe & Szegedy 2015). Layer ``i`` always reads the output of layer ``i − 1``
(layer 1 reads the image); its skip connections name earlier layers ``1 ≤ j ≤ i − 2``, whose outputs
are **concatenated along channels** with it, as in the paper. The paper pads smaller maps; here
shapes are made to match the other way: *an earlier output whose maps are larger than the current
input's is average-pooled down to the current size* (:class:`~deepnn.layers.AdaptiveAvgPool2d`; with
stride-2 layers the sizes differ by powers of two, so these are plain 2ᵏ×2ᵏ average pools, except
when an odd size was rounded up). Maps never grow (strides are ≥ 1), so that rule always applies.

Head: the last layer's maps are average-pooled to at most 4×4, flattened and classified by one dense
layer (global average pooling starves shallow children; a 4×4 grid keeps where things are, at a small
cost). The paper's rule that unconnected layers are concatenated into the last one is left out.

    >>> format_arch(parse_arch("3x3-8 5x3-16/2 1x1-8[1]"))
    '3x3-8 5x3-16/2 1x1-8[1]'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import layers as L
from ..errors import UserError
from ._api import ClassifierMixin
from ._blocks import conv_bn_relu
from ._registry import register_model

__all__ = ["DEFAULT_ARCH", "LayerSpec", "NASChild", "format_arch", "parse_arch", "map_sizes", "nas_child"]

DEFAULT_ARCH = "3x3-32 3x3-32/2 5x5-64[1] 3x3-64/2[2]"
HEAD_GRID = 4  # the last maps are pooled to at most HEAD_GRID × HEAD_GRID before the dense layer
MAX_KERNEL, MAX_FILTERS, MAX_STRIDE, MAX_LAYERS = 15, 4096, 4, 64

_LAYER = re.compile(r"^(\d+)x(\d+)-(\d+)(?:/(\d+))?(?:\[(\d+(?:,\d+)*)\])?$")
_FORM = "HxW-N, HxW-N/S or HxW-N/S[j,k] (e.g. 3x5-32/2[1])"


@dataclass(frozen=True)
class LayerSpec:
    """One conv layer: filter ``height`` × ``width``, ``filters`` output channels, ``stride``, and the
    1-based numbers of the earlier layers whose outputs are concatenated to its input (``skips``)."""

    height: int
    width: int
    filters: int
    stride: int = 1
    skips: tuple[int, ...] = ()

    def __str__(self) -> str:
        stride = f"/{self.stride}" if self.stride != 1 else ""
        skips = f"[{','.join(map(str, self.skips))}]" if self.skips else ""
        return f"{self.height}x{self.width}-{self.filters}{stride}{skips}"


def parse_arch(text: str) -> tuple[LayerSpec, ...]:
    """Parse an architecture string (see the module docstring); anything malformed is a one-line
    :class:`~deepnn.errors.UserError` naming the layer, the problem and the fix.

        >>> parse_arch("3x5-16/2 1x1-8")[0]
        LayerSpec(height=3, width=5, filters=16, stride=2, skips=())
    """
    if not isinstance(text, str):
        raise UserError(f"an architecture is a string such as {DEFAULT_ARCH!r}, got {type(text).__name__}")
    tokens = text.split()
    if not tokens:
        raise UserError(f"the architecture string is empty; give one token per conv layer, e.g. {DEFAULT_ARCH!r}")
    if len(tokens) > MAX_LAYERS:
        raise UserError(f"the architecture has {len(tokens)} layers; at most {MAX_LAYERS} are allowed")
    layers = []
    for i, token in enumerate(tokens, start=1):
        m = _LAYER.match(token)
        where = f"architecture layer {i} {token!r}"
        if m is None:
            raise UserError(f"{where} is not of the form {_FORM}")
        h, w, n = int(m[1]), int(m[2]), int(m[3])
        stride = int(m[4]) if m[4] is not None else 1
        skips = tuple(int(j) for j in m[5].split(",")) if m[5] else ()
        for side, name in ((h, "height"), (w, "width")):
            if not 1 <= side <= MAX_KERNEL or side % 2 == 0:
                raise UserError(f"{where}: filter {name} {side} must be odd and in 1..{MAX_KERNEL} (same padding); "
                                f"use e.g. {side + 1 if side % 2 == 0 and side < MAX_KERNEL else 3}")
        if not 1 <= n <= MAX_FILTERS:
            raise UserError(f"{where}: the number of filters must be in 1..{MAX_FILTERS}, got {n}")
        if not 1 <= stride <= MAX_STRIDE:
            raise UserError(f"{where}: the stride must be in 1..{MAX_STRIDE}, got {stride}")
        if list(skips) != sorted(set(skips)):
            raise UserError(f"{where}: list skip connections once each, in increasing order, e.g. [1,2]")
        bad = [j for j in skips if not 1 <= j <= i - 2]
        if bad:
            allowed = f"layers 1..{i - 2}" if i > 2 else "none (layer 1 reads the image, layer 2 layer 1)"
            raise UserError(f"{where}: skip connection from layer {bad[0]} is not allowed; layer {i} always reads "
                            f"layer {i - 1} and may skip from {allowed}")
        layers.append(LayerSpec(h, w, n, stride, skips))
    return tuple(layers)


def format_arch(layers: Sequence[LayerSpec]) -> str:
    """The canonical string of ``layers``; ``parse_arch(format_arch(a)) == a``."""
    return " ".join(str(layer) for layer in layers)


def map_sizes(layers: Sequence[LayerSpec], input_size: int) -> list[int]:
    """Side of each layer's output maps, the input first: ``[input_size, s_1, ..., s_L]``,
    ``s_i = ⌈s_{i−1} / stride_i⌉`` (same padding)."""
    sizes = [input_size]
    for layer in layers:
        sizes.append(-(-sizes[-1] // layer.stride))
    return sizes


class NASChild(ClassifierMixin, nn.Module):
    """A child CNN described by an architecture string (see the module docstring).

    Shapes: ``(B, C, S, S)`` → layer ``i``: ``(B, N_i, s_i, s_i)`` → ... → pool to ``(B, N_L, g, g)``
    (``g = min(4, s_L)``) → flatten ``(B, N_L·g²)`` → ``(B, num_classes)``.

    Args:
        arch: the architecture string.
        num_classes: outputs of the dense layer.
        in_channels: channels of the input image.
        input_size: side of the square input.
    """

    def __init__(self, arch: str = DEFAULT_ARCH, num_classes: int = 10, in_channels: int = 1, input_size: int = 28):
        super().__init__()
        specs = parse_arch(arch)
        if input_size < 1:
            raise UserError(f"nas_child needs input_size of at least 1, got {input_size}")
        self.arch, self.specs, self.num_classes = format_arch(specs), specs, num_classes
        sizes = map_sizes(specs, input_size)
        self.features = nn.ModuleList()
        self.resize = nn.ModuleDict()  # "i_j": pools layer j's output down to layer i's input size
        outs = [in_channels]  # channels of the image, then of each layer's output
        for i, spec in enumerate(specs, start=1):
            channels = outs[i - 1] + sum(outs[j] for j in spec.skips)
            for j in spec.skips:
                if sizes[j] != sizes[i - 1]:
                    self.resize[f"{i}_{j}"] = L.AdaptiveAvgPool2d(sizes[i - 1])
            self.features.append(conv_bn_relu(channels, spec.filters, (spec.height, spec.width), stride=spec.stride,
                                            padding=(spec.height // 2, spec.width // 2)))
            outs.append(spec.filters)
        grid = min(HEAD_GRID, sizes[-1])
        self.head = nn.Sequential(L.AdaptiveAvgPool2d(grid), nn.Flatten(),
                                  nn.Linear(outs[-1] * grid * grid, num_classes))

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, S, S) -> (B, N_L, s_L, s_L)
        outputs = [x]
        for i, (spec, layer) in enumerate(zip(self.specs, self.features), start=1):
            inputs = [outputs[i - 1]]
            for j in spec.skips:  # (B, N_j, s_j, s_j) pooled to (B, N_j, s_{i-1}, s_{i-1})
                key = f"{i}_{j}"
                inputs.append(self.resize[key](outputs[j]) if key in self.resize else outputs[j])
            h = torch.cat(inputs, dim=1) if len(inputs) > 1 else inputs[0]  # channels concatenated
            outputs.append(layer(h))  # (B, N_i, s_i, s_i)
        return outputs[-1]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.head[1](self.head[0](x))  # (B, N_L · g²)
        return x if pre_logits else self.head[2](x)

    @property
    def classifier_name(self) -> str:
        return "head.2"

    @property
    def feature_layer(self) -> str:
        return f"features.{len(self.features) - 1}"


@register_model(paper="Zoph & Le 2017")
def nas_child(*, arch: str = DEFAULT_ARCH, num_classes: int = 10, in_channels: int = 1,
              input_size: int = 28) -> NASChild:
    """A child CNN of architecture search, given as a string such as "3x3-32 3x5-32/2 5x5-64[1]" (C20)."""
    return NASChild(arch, num_classes, in_channels, input_size)
