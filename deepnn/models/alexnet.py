"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, "ImageNet classification with deep
convolutional neural networks"), lecture item C12.

Five convolutions (96-256-384-384-256 channels, an 11×11 stride-4 stem), ReLU everywhere,
overlapping 3×3 stride-2 max pooling, then two hidden dense layers of 4096 units, each followed
by dropout, and the class layer. Optional local response normalisation after the first two
convolutions, as in the paper (§3.3).

The paper split every layer over two GPUs; this is the single-tower network with the paper's
layer sizes: 62,378,344 parameters. The paper's two-tower model, whose conv2, conv4 and conv5 only
see their own GPU's half of the channels, has 60,965,224 — the "60 million parameters" of the
abstract. The paper's 224×224 inputs only give its 55×55 first feature map with 2 pixels of
padding (or 227×227 inputs); we pad, as torchvision does.
"""

from __future__ import annotations

from torch import nn

from .. import layers as L
from ._blocks import Classifier, check_input_size, conv_bn_relu, dense_head, init_weights, is_small
from ._blocks import lrn as local_response_norm
from ._registry import register_model

_SMALL_MIN = 15  # small stem: 15 → 7 → 3 → 1 through the three 3×3 stride-2 pools


class AlexNet(Classifier):
    """AlexNet as in the lecture (C12).

    Shapes for the paper's input: (B, 3, 224, 224) → conv 11×11/4 → (B, 96, 55, 55) → pool →
    (B, 96, 27, 27) → conv 5×5 → (B, 256, 27, 27) → pool → (B, 256, 13, 13) → 3 × conv 3×3 →
    (B, 256, 13, 13) → pool → (B, 256, 6, 6) → flatten (B, 9216) → 4096 → 4096 → classes.

    Args:
        num_classes: outputs of the last dense layer.
        in_channels: channels of the input image.
        input_size: side of the square input; below 75 the stem is a 3×3 stride-1 convolution.
        lrn: local response normalisation after the ReLUs of conv1 and conv2.
    """

    def __init__(
        self, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, lrn: bool = False
    ):
        small = is_small(input_size)
        check_input_size("alexnet", input_size, _SMALL_MIN if small else 1)
        if small:  # 3×3 stride 1: (B, C, 28, 28) -> (B, 96, 28, 28)
            stem, size = conv_bn_relu(in_channels, 96, 3, padding=1, bn=False), input_size
        else:  # 11×11 stride 4, pad 2: (B, 3, 224, 224) -> (B, 96, 55, 55)
            stem = conv_bn_relu(in_channels, 96, 11, stride=4, padding=2, bn=False)
            size = (input_size + 2 * 2 - 11) // 4 + 1
        for _ in range(3):  # the three overlapping 3×3 stride-2 max pools
            size = (size - 3) // 2 + 1

        def norm() -> list[nn.Module]:
            return [local_response_norm()] if lrn else []

        features = nn.Sequential(
            stem, *norm(), L.MaxPool2d(3, stride=2),                                   # (B, 96, 27, 27)
            conv_bn_relu(96, 256, 5, padding=2, bn=False), *norm(),                    # (B, 256, 27, 27)
            L.MaxPool2d(3, stride=2),                                                  # (B, 256, 13, 13)
            conv_bn_relu(256, 384, 3, padding=1, bn=False),                            # (B, 384, 13, 13)
            conv_bn_relu(384, 384, 3, padding=1, bn=False),                            # (B, 384, 13, 13)
            conv_bn_relu(384, 256, 3, padding=1, bn=False),                            # (B, 256, 13, 13)
            L.MaxPool2d(3, stride=2),                                                  # (B, 256, 6, 6)
        )
        # (B, 9216) -> (B, 4096) -> (B, 4096) -> (B, classes)
        head = dense_head(256 * size * size, (4096, 4096), num_classes, dropout=0.5)
        super().__init__(features, head, num_classes)
        init_weights(self, linear_std=0.01)


@register_model(paper="Krizhevsky et al. 2012")
def alexnet(
    *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, lrn: bool = False
) -> AlexNet:
    """AlexNet: 5 conv (96-256-384-384-256), ReLU, max pooling, dense 4096-4096 with dropout (C12).

    The default is the paper's single-tower network on 224×224 images (62,378,344 parameters).
    ``lrn=True`` adds the paper's local response normalisation after conv1 and conv2.
    Small inputs (below 75 px, e.g. 28×28): the 11×11 stride-4 stem becomes 3×3 stride 1; the rest
    is unchanged, so 28 → 13 → 6 → 2 through the three pools (the smallest input is 15).
    """
    return AlexNet(num_classes, in_channels, input_size, lrn)
