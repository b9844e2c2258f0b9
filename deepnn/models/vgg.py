"""VGG (Simonyan & Zisserman 2014, "Very deep convolutional networks for large-scale image
recognition"), lecture item C13.

A VGG block is n × (3×3 conv, pad 1, m channels, ReLU) followed by 2×2 max pooling with stride 2;
five blocks, then FC-4096, FC-4096 (each with dropout) and FC-classes. The configurations of the
paper's Table 1 are data (:data:`CFGS`), as in torchvision: A (11 weight layers), A-LRN (A with
local response normalisation after the first convolution), B (13), C (16, whose blocks 3–5 end
in a 1×1 convolution), D (16) and E (19). The ``_bn`` variants add batch norm after every
convolution (Ioffe & Szegedy 2015), keeping the convolution biases like torchvision does, so the
parameter counts match torchvision's exactly.
"""

from __future__ import annotations

from torch import nn

from .. import layers as L
from ..errors import UserError
from ._blocks import Classifier, check_input_size, conv_bn_relu, dense_head, init_weights, lrn
from ._registry import register_model

# Table 1 of the paper. An int is a 3×3 convolution with that many channels, (channels, 1) a 1×1
# convolution (configuration C), "M" a 2×2 stride-2 max pool, "LRN" local response normalisation.
Entry = int | tuple[int, int] | str
CFGS: dict[str, list[Entry]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M",
          512, 512, (512, 1), "M", 512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(Classifier):
    """VGG from a configuration of :data:`CFGS`.

    Shapes for configuration D at 224×224: (B, 3, 224, 224) → block 1 → (B, 64, 112, 112) → ... →
    block 5 → (B, 512, 7, 7) → flatten (B, 25088) → 4096 → 4096 → classes.

    Args:
        cfg: a key of :data:`CFGS`.
        batch_norm: batch norm after every convolution.
        num_classes: outputs of the last dense layer.
        in_channels: channels of the input image.
        input_size: side of the square input. A max pool that would shrink a map smaller than 2×2
            is left out (at 28×28: 28 → 14 → 7 → 3 → 1, the fifth pool is dropped).
        width_div: divide every channel count and the 4096 hidden units by this (d2l trains VGG-11
            on Fashion-MNIST with a quarter of the channels); 1 is the paper's network.
    """

    def __init__(
        self,
        cfg: str,
        batch_norm: bool = False,
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size: int = 224,
        width_div: int = 1,
    ):
        check_input_size("vgg", input_size, 1)
        if width_div < 1:
            raise UserError(f"width_div must be a positive integer, got {width_div}")
        layers: list[nn.Module] = []
        channels, size = in_channels, input_size
        for entry in CFGS[cfg]:
            if entry == "M":
                if size >= 2:  # (B, C, H, W) -> (B, C, H/2, W/2)
                    layers.append(L.MaxPool2d(2, stride=2))
                    size //= 2
            elif entry == "LRN":
                layers.append(lrn())
            else:
                out, kernel = entry if isinstance(entry, tuple) else (entry, 3)
                out = max(1, out // width_div)
                layers.append(
                    conv_bn_relu(channels, out, kernel, padding=kernel // 2, bn=batch_norm, bias=True)
                )
                channels = out
        hidden = max(1, 4096 // width_div)
        # (B, 512, 7, 7) -> (B, 25088) -> (B, 4096) -> (B, 4096) -> (B, classes)
        head = dense_head(channels * size * size, (hidden, hidden), num_classes, dropout=0.5)
        super().__init__(nn.Sequential(*layers), head, num_classes)
        init_weights(self, linear_std=0.01)


def _vgg(
    cfg: str, batch_norm: bool, num_classes: int, in_channels: int, input_size: int, width_div: int
) -> VGG:
    return VGG(cfg, batch_norm, num_classes, in_channels, input_size, width_div)


_PAPER = "Simonyan & Zisserman 2014"
_PAPER_BN = "Simonyan & Zisserman 2014; Ioffe & Szegedy 2015"


@register_model(paper=_PAPER)
def vgg11(
    *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, width_div: int = 1
) -> VGG:
    """VGG-11, configuration A: 8 conv + 3 dense layers (C13).

    Small inputs: the max pools that would shrink a map below 2×2 are left out (28×28 keeps four);
    ``width_div=4`` gives d2l's quick-training variant.
    """
    return _vgg("A", False, num_classes, in_channels, input_size, width_div)


@register_model(paper=_PAPER)
def vgg11_lrn(
    *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, width_div: int = 1
) -> VGG:
    """VGG-11 with local response normalisation after the first convolution, configuration A-LRN (C13).

    Small inputs: as ``vgg11``.
    """
    return _vgg("A-LRN", False, num_classes, in_channels, input_size, width_div)


@register_model(paper=_PAPER)
def vgg13(
    *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, width_div: int = 1
) -> VGG:
    """VGG-13, configuration B: 10 conv + 3 dense layers (C13).

    Small inputs: as ``vgg11``.
    """
    return _vgg("B", False, num_classes, in_channels, input_size, width_div)


@register_model(paper=_PAPER)
def vgg16_c(
    *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, width_div: int = 1
) -> VGG:
    """VGG-16, configuration C: blocks 3–5 end in a 1×1 convolution; 13 conv + 3 dense layers (C13).

    Small inputs: as ``vgg11``.
    """
    return _vgg("C", False, num_classes, in_channels, input_size, width_div)


@register_model(paper=_PAPER)
def vgg16(
    *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, width_div: int = 1
) -> VGG:
    """VGG-16, configuration D: 13 conv (all 3×3) + 3 dense layers (C13).

    Small inputs: as ``vgg11``.
    """
    return _vgg("D", False, num_classes, in_channels, input_size, width_div)


@register_model(paper=_PAPER)
def vgg19(
    *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, width_div: int = 1
) -> VGG:
    """VGG-19, configuration E: 16 conv + 3 dense layers (C13).

    Small inputs: as ``vgg11``.
    """
    return _vgg("E", False, num_classes, in_channels, input_size, width_div)


@register_model(paper=_PAPER_BN)
def vgg11_bn(
    *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, width_div: int = 1
) -> VGG:
    """VGG-11 (configuration A) with batch norm after every convolution.

    Small inputs: as ``vgg11``.
    """
    return _vgg("A", True, num_classes, in_channels, input_size, width_div)


@register_model(paper=_PAPER_BN)
def vgg13_bn(
    *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, width_div: int = 1
) -> VGG:
    """VGG-13 (configuration B) with batch norm after every convolution.

    Small inputs: as ``vgg11``.
    """
    return _vgg("B", True, num_classes, in_channels, input_size, width_div)


@register_model(paper=_PAPER_BN)
def vgg16_c_bn(
    *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, width_div: int = 1
) -> VGG:
    """VGG-16 (configuration C, with the 1×1 convolutions) with batch norm after every convolution.

    Small inputs: as ``vgg11``.
    """
    return _vgg("C", True, num_classes, in_channels, input_size, width_div)


@register_model(paper=_PAPER_BN)
def vgg16_bn(
    *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, width_div: int = 1
) -> VGG:
    """VGG-16 (configuration D) with batch norm after every convolution.

    Small inputs: as ``vgg11``.
    """
    return _vgg("D", True, num_classes, in_channels, input_size, width_div)


@register_model(paper=_PAPER_BN)
def vgg19_bn(
    *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, width_div: int = 1
) -> VGG:
    """VGG-19 (configuration E) with batch norm after every convolution.

    Small inputs: as ``vgg11``.
    """
    return _vgg("E", True, num_classes, in_channels, input_size, width_div)
