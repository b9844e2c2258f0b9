"""Network in Network (Lin, Chen & Yan 2013, "Network in network"), lecture item C15.

A NiN block is a convolution (kernel k, stride s, padding p) followed by two 1×1 convolutions,
each with ReLU: the 1×1 convolutions act as a small dense network applied at every pixel. Four
blocks with AlexNet-like sizes (96, 256, 384 channels, then one per class) separated by 3×3
stride-2 max pooling; the last block outputs one channel per class and global average pooling
turns them into logits: no dense layers. This is the ImageNet layout of the authors' released
model as the lecture (and d2l) presents it: 7,439,608 parameters for 1000 classes.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import layers as L
from ..layers import use_conv_impl
from ._blocks import Classifier, check_input_size, conv_bn_relu, init_weights, is_small
from ._registry import register_model

_SMALL_MIN = 15  # small stem: 15 → 7 → 3 → 1 through the three 3×3 stride-2 pools


def nin_block(
    in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int, last_relu: bool = True
) -> nn.Sequential:
    """conv (k, s, p) → ReLU → 1×1 conv → ReLU → 1×1 conv → ReLU (unless not ``last_relu``), all with
    ``out_channels``."""
    return nn.Sequential(
        conv_bn_relu(in_channels, out_channels, kernel_size, stride, padding, bn=False),
        conv_bn_relu(out_channels, out_channels, 1, bn=False),
        conv_bn_relu(out_channels, out_channels, 1, bn=False, relu=last_relu),
    )


class NiN(Classifier):
    """NiN as in the lecture (C15).

    Shapes for the paper's input: (B, 3, 224, 224) → block 11×11/4 → (B, 96, 54, 54) → pool →
    (B, 96, 26, 26) → block 5×5 → (B, 256, 26, 26) → pool → (B, 256, 12, 12) → block 3×3 →
    (B, 384, 12, 12) → pool → (B, 384, 5, 5) → dropout → block 3×3 → (B, classes, 5, 5) →
    global average pool → (B, classes).

    Args:
        num_classes: channels of the last block, one per class.
        in_channels: channels of the input image.
        input_size: side of the square input; below 75 the first block's convolution is 3×3
            stride 1 instead of 11×11 stride 4.
        final_relu: the ReLU after the last 1×1 convolution, as in the paper and d2l. Its outputs
            are the class scores, so a class whose channel turns negative at every pixel scores 0
            for every image and gets no gradient: the class is dead for good. Without batch norm
            this happens early in training (measured: 2 of 3 seeds of an AdamW run lost one or
            two classes, 71.6 % and 82.6 % test accuracy against 92.6 %); ``False`` removes it.

    The class layer is the last NiN block (``features.7``, one output channel per class): it belongs
    to ``forward_head``, so ``forward_features`` returns the (B, 384, H, W) maps it takes (after the
    dropout, ``features.6``), ``forward_head(x, pre_logits=True)`` returns them unchanged and
    ``reset_classifier`` rebuilds the whole block.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224,
                 final_relu: bool = True):
        small = is_small(input_size)
        check_input_size("nin", input_size, _SMALL_MIN if small else 1)
        first = nin_block(in_channels, 96, 3, 1, 1) if small else nin_block(in_channels, 96, 11, 4, 0)
        features = nn.Sequential(
            first, L.MaxPool2d(3, stride=2),                                     # (B, 96, 26, 26)
            nin_block(96, 256, 5, 1, 2), L.MaxPool2d(3, stride=2),               # (B, 256, 12, 12)
            nin_block(256, 384, 3, 1, 1), L.MaxPool2d(3, stride=2),              # (B, 384, 5, 5)
            nn.Dropout(0.5),
            nin_block(384, num_classes, 3, 1, 1, final_relu),                    # (B, classes, 5, 5)
        )
        head = nn.Sequential(L.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, classes)
        super().__init__(features, head, num_classes, head_from=-1)  # the class block starts the head
        self.final_relu = final_relu
        init_weights(self)

    @property
    def classifier_name(self) -> str:
        return f"features.{len(self.features) - 1}"

    def new_classifier(self, old: nn.Module, num_classes: int) -> nn.Sequential:
        """A fresh class block (He-initialised, as built) in the old block's conv implementation."""
        conv = old[0][0]
        impl = "torch" if type(conv) is nn.Conv2d else "scratch"
        with use_conv_impl(impl), torch.device(conv.weight.device):
            block = nin_block(conv.in_channels, num_classes, 3, 1, 1, self.final_relu)
        init_weights(block)
        return block.to(conv.weight.dtype)


@register_model(paper="Lin et al. 2013")
def nin(*, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, final_relu: bool = True) -> NiN:
    """Network in Network: conv + two 1×1 conv blocks, global average pooling, no dense layers (C15).

    Small inputs (below 75 px, e.g. 28×28): the first block's 11×11 stride-4 convolution becomes
    3×3 stride 1, so 28 → 13 → 6 → 2 through the three pools (the smallest input is 15).
    ``final_relu=False`` drops the ReLU on the class scores (see :class:`NiN`).
    """
    return NiN(num_classes, in_channels, input_size, final_relu)
