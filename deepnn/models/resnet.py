"""ResNet (He, Zhang, Ren & Sun 2015, "Deep residual learning for image recognition"), lecture
item C18.

A residual block learns f(x) − x instead of f(x): y = ReLU(F(x) + shortcut(x)), where F is two
3×3 conv-BN layers (:class:`Residual`, ResNet-18/34) or a 1×1 → 3×3 → 1×1 bottleneck that
widens the output 4× (:class:`Bottleneck`, ResNet-50/101/152). The shortcut is the identity,
or a 1×1 convolution with batch norm (projection, the paper's option B) where the block changes
the shape. A 7×7 stride-2 stem and a max pool, then four stages of 64, 128, 256, 512 channels;
every stage after the first halves the map with stride 2 in its first block. Global average
pooling and one dense layer finish the network (the paper's Table 1).

As torchvision (ResNet "v1.5"), the bottleneck strides in its 3×3 rather than its first 1×1
convolution; the parameter counts are the same and match torchvision exactly.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from .. import layers as L
from ..errors import UserError
from ._blocks import Classifier, check_input_size, conv_bn_relu, init_weights, is_small, pool_head
from ._registry import register_model


class Residual(nn.Module):
    """The lecture's residual block (basic block): y = ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x)).

    Args:
        in_channels: channels of the input.
        channels: channels of the 3×3 convolutions; the output has ``channels * expansion``.
        stride: stride of the first 3×3 convolution (2 halves the map).

    The shortcut is a 1×1 convolution + batch norm when the stride or the channel count changes.
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        out_channels = channels * self.expansion
        self.body = self.make_body(in_channels, channels, stride)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:  # (B, in, H, W) -> (B, out, H/stride, W/stride)
            self.shortcut = conv_bn_relu(in_channels, out_channels, 1, stride, relu=False)
        self.relu = nn.ReLU()

    @staticmethod
    def make_body(in_channels: int, channels: int, stride: int) -> nn.Sequential:
        """F(x): 3×3 conv-BN-ReLU, 3×3 conv-BN."""
        return nn.Sequential(
            conv_bn_relu(in_channels, channels, 3, stride, 1),
            conv_bn_relu(channels, channels, 3, 1, 1, relu=False),
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, in, H, W) -> (B, out, H/stride, W/stride)
        return self.relu(self.body(x) + self.shortcut(x))


class Bottleneck(Residual):
    """Residual block with a bottleneck: 1×1 (reduce) → 3×3 (stride) → 1×1 (expand 4×)."""

    expansion = 4

    @staticmethod
    def make_body(in_channels: int, channels: int, stride: int) -> nn.Sequential:
        """F(x): 1×1 conv-BN-ReLU, 3×3 conv-BN-ReLU, 1×1 conv-BN to ``4 * channels``."""
        return nn.Sequential(
            conv_bn_relu(in_channels, channels, 1),
            conv_bn_relu(channels, channels, 3, stride, 1),
            conv_bn_relu(channels, channels * Bottleneck.expansion, 1, relu=False),
        )


class ResNet(Classifier):
    """ResNet from a block type and the number of blocks per stage.

    Shapes for ResNet-18 at 224×224: (B, 3, 224, 224) → stem → (B, 64, 56, 56) → layer1 →
    (B, 64, 56, 56) → layer2 → (B, 128, 28, 28) → layer3 → (B, 256, 14, 14) → layer4 →
    (B, 512, 7, 7) → global average pool → (B, 512) → (B, classes). Bottleneck networks have
    4× the channels after each stage (up to 2048).

    Args:
        block: :class:`Residual` or :class:`Bottleneck`.
        layers: blocks in each of the four stages.
        num_classes: outputs of the dense layer.
        in_channels: channels of the input image.
        input_size: side of the square input; below 75 the stem is a 3×3 stride-1 convolution
            without max pool (as for CIFAR-sized images), so 28×28 stages run at 28, 14, 7, 4.
        width_div: divide every channel count (64, 128, 256, 512) by this, as VGG's ``width_div``;
            FLOPs fall about ``width_div²``-fold. 1 is the paper's network.
    """

    def __init__(
        self,
        block: type[Residual],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size: int = 224,
        width_div: int = 1,
    ):
        check_input_size("resnet", input_size, 1)
        if not isinstance(width_div, int) or width_div < 1:
            raise UserError(f"width_div must be a positive integer, got {width_div!r}")
        widths = [max(1, w // width_div) for w in (64, 128, 256, 512)]
        channels = widths[0]
        if is_small(input_size):  # (B, C, 28, 28) -> (B, 64, 28, 28)
            stem = conv_bn_relu(in_channels, channels, 3, padding=1)
        else:  # (B, 3, 224, 224) -> (B, 64, 112, 112) -> (B, 64, 56, 56)
            stem = nn.Sequential(conv_bn_relu(in_channels, channels, 7, stride=2, padding=3),
                                 L.MaxPool2d(3, stride=2, padding=1))
        stages: OrderedDict[str, nn.Module] = OrderedDict(stem=stem)
        for i, (width, depth) in enumerate(zip(widths, layers, strict=True)):
            blocks = []
            for j in range(depth):  # the first block of stages 2–4 halves the map
                blocks.append(block(channels, width, stride=2 if i > 0 and j == 0 else 1))
                channels = width * block.expansion
            stages[f"layer{i + 1}"] = nn.Sequential(*blocks)
        head = pool_head(channels, num_classes)  # (B, 512 or 2048, 7, 7) -> (B, classes)
        super().__init__(nn.Sequential(stages), head, num_classes)
        init_weights(self)


def _resnet(
    block: type[Residual],
    layers: tuple[int, int, int, int],
    num_classes: int,
    in_channels: int,
    input_size: int,
    width_div: int,
) -> ResNet:
    return ResNet(block, layers, num_classes, in_channels, input_size, width_div)


_PAPER = "He et al. 2015"


@register_model(paper=_PAPER)
def resnet18(*, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224,
             width_div: int = 1) -> ResNet:
    """ResNet-18: basic residual blocks, 2-2-2-2 per stage (C18).

    Small inputs (below 75 px): 3×3 stride-1 stem without max pool; ``width_div`` narrows every stage.
    """
    return _resnet(Residual, (2, 2, 2, 2), num_classes, in_channels, input_size, width_div)


@register_model(paper=_PAPER)
def resnet34(*, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224,
             width_div: int = 1) -> ResNet:
    """ResNet-34: basic residual blocks, 3-4-6-3 per stage (C18).

    Small inputs (below 75 px): 3×3 stride-1 stem without max pool; ``width_div`` narrows every stage.
    """
    return _resnet(Residual, (3, 4, 6, 3), num_classes, in_channels, input_size, width_div)


@register_model(paper=_PAPER)
def resnet50(*, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224,
             width_div: int = 1) -> ResNet:
    """ResNet-50: bottleneck blocks, 3-4-6-3 per stage (C18).

    Small inputs (below 75 px): 3×3 stride-1 stem without max pool; ``width_div`` narrows every stage.
    """
    return _resnet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels, input_size, width_div)


@register_model(paper=_PAPER)
def resnet101(*, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224,
             width_div: int = 1) -> ResNet:
    """ResNet-101: bottleneck blocks, 3-4-23-3 per stage (C18).

    Small inputs (below 75 px): 3×3 stride-1 stem without max pool; ``width_div`` narrows every stage.
    """
    return _resnet(Bottleneck, (3, 4, 23, 3), num_classes, in_channels, input_size, width_div)


@register_model(paper=_PAPER)
def resnet152(*, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224,
             width_div: int = 1) -> ResNet:
    """ResNet-152: bottleneck blocks, 3-8-36-3 per stage (C18).

    Small inputs (below 75 px): 3×3 stride-1 stem without max pool; ``width_div`` narrows every stage.
    """
    return _resnet(Bottleneck, (3, 8, 36, 3), num_classes, in_channels, input_size, width_div)
