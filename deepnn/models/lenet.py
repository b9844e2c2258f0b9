"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to
document recognition"), lecture item C11, and a modern variant to compare against.

The lecture's LeNet: two 5×5 convolutions with sigmoid activations, each followed by
2×2 average pooling with stride 2, then dense layers 120 → 84 → classes. The paper takes
32×32 inputs; for 28×28 Fashion-MNIST the first convolution pads by 2 so the feature
maps keep the paper's sizes (28 → 14 → 10 → 5), exactly as in the lecture.

``lenet_modern`` keeps the layout and swaps in what a decade of practice found better:
ReLU instead of sigmoid, max instead of average pooling, batch norm after each
convolution and hidden dense layer.
"""

from __future__ import annotations

from torch import nn

from .. import layers as L
from ._blocks import Classifier
from ._registry import register_model


def _check_size(input_size: int) -> int:
    """Padding of the first conv so the second conv sees 14×14 → 10×10 → 5×5 as in the paper."""
    if input_size not in (28, 32):
        from ..errors import UserError

        raise UserError(f"LeNet takes 28×28 or 32×32 inputs, not {input_size}×{input_size}; resize the images")
    return (32 - input_size) // 2


class LeNet(Classifier):
    """LeNet-5 as in the lecture (C11).

    Shapes for a 28×28 input: (B, C, 28, 28) → conv 5×5 pad 2 → (B, 6, 28, 28) → avgpool →
    (B, 6, 14, 14) → conv 5×5 → (B, 16, 10, 10) → avgpool → (B, 16, 5, 5) → flatten (B, 400)
    → (B, 120) → (B, 84) → (B, num_classes).

    Args:
        num_classes: outputs of the last dense layer.
        in_channels: channels of the input image (1 for Fashion-MNIST).
        input_size: side of the square input, 28 or 32.
        modern: ReLU, max pooling and batch norm instead of sigmoid and average pooling.

    ``forward_features`` returns the (B, 16, 5, 5) maps of the second pooling (``features.7``);
    the flatten (``features.8``) belongs to ``forward_head``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28, modern: bool = False):
        pad = _check_size(input_size)
        act = nn.ReLU if modern else nn.Sigmoid
        pool = (lambda: L.MaxPool2d(2, stride=2)) if modern else (lambda: L.AvgPool2d(2, stride=2))
        norm2d = nn.BatchNorm2d if modern else (lambda c: nn.Identity())
        norm1d = nn.BatchNorm1d if modern else (lambda c: nn.Identity())
        features = nn.Sequential(
            L.Conv2d(in_channels, 6, kernel_size=5, padding=pad, bias=not modern), norm2d(6), act(),  # (B, 6, 28, 28)
            pool(),                                                                                   # (B, 6, 14, 14)
            L.Conv2d(6, 16, kernel_size=5, bias=not modern), norm2d(16), act(),                      # (B, 16, 10, 10)
            pool(),                                                                                   # (B, 16, 5, 5)
            nn.Flatten(),                                                                             # (B, 400)
        )
        head = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120, bias=not modern), norm1d(120), act(),                         # (B, 120)
            nn.Linear(120, 84, bias=not modern), norm1d(84), act(),                                   # (B, 84)
            nn.Linear(84, num_classes),                                                               # (B, classes)
        )
        super().__init__(features, head, num_classes, head_from=-1)  # the flatten starts the head


@register_model(paper="LeCun et al. 1998")
def lenet(*, num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> LeNet:
    """LeNet-5 as in the lecture: sigmoid, 2×2 average pooling, dense 120-84 (C11)."""
    return LeNet(num_classes, in_channels, input_size)


@register_model(paper="LeCun et al. 1998; Ioffe & Szegedy 2015")
def lenet_modern(*, num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> LeNet:
    """LeNet-5 with ReLU, max pooling and batch norm, to compare with the original."""
    return LeNet(num_classes, in_channels, input_size, modern=True)
