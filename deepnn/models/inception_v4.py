"""The Inception family, lecture item C17 (part 2): Inception-v4 and Inception-ResNet-v2
(Szegedy, Ioffe, Vanhoucke & Alemi 2016, "Inception-v4, Inception-ResNet and the impact of
residual connections on learning").

``inception_v4`` — a uniform design (Figures 3–9): the stem of Figure 3, 4 × Inception-A (35×35),
Reduction-A, 7 × Inception-B (17×17, factorised 7×7), Reduction-B, 3 × Inception-C (8×8, split
1×3 ‖ 3×1), global average pooling, dropout (keep 0.8), dense. 42,679,816 parameters, the count of
the released TensorFlow model (timm, Cadene's and osmr's ports report the same).

``inception_resnet_v2`` — Inception blocks whose concatenated paths are projected back by a
linear 1×1 convolution and *added* to the input, ResNet style: y = ReLU(x + s · W·paths(x)), with
the residual scaled by s = 0.1–0.2 to keep the training of the wide blocks stable (§3.3). Layout
and widths follow the released TensorFlow model (whose stem is Inception-v3's plus a 35×35
Inception block, not the paper's Figure 3): 10 × block A (35×35), Reduction-A (k, l, m, n =
256, 256, 384, 384, Table 1), 20 × block B (17×17), Reduction-B, 10 × block C (8×8, the last one
without scale and ReLU), a 1×1 convolution to 1536 channels. 55,843,464 parameters, as timm.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from .. import layers as L
from ._blocks import Classifier, Concat, check_input_size, conv_bn_relu, init_weights, is_small, pool_head
from ._registry import register_model
from .inception import SMALL_MIN, Inception35, conv1xn, convnx1, v3_stem

# --------------------------------------------------------------------------- Inception-v4


def v4_stem(in_channels: int, small: bool) -> nn.Sequential:
    """The stem of Figure 3: (B, 3, 299, 299) → (B, 384, 35, 35).

    Small: stride 1 and "same" padding except one stride-2 pair, (B, C, 28, 28) → (B, 384, 14, 14).
    """
    s, p = (1, 1) if small else (2, 0)
    return nn.Sequential(
        conv_bn_relu(in_channels, 32, 3, stride=s, padding=p),                      # (B, 32, 149, 149)
        conv_bn_relu(32, 32, 3, padding=p),                                         # (B, 32, 147, 147)
        conv_bn_relu(32, 64, 3, padding=1),                                         # (B, 64, 147, 147)
        Concat(L.MaxPool2d(3, stride=2, padding=p),
               conv_bn_relu(64, 96, 3, stride=2, padding=p)),                       # (B, 160, 73, 73)
        Concat(
            nn.Sequential(conv_bn_relu(160, 64, 1), conv_bn_relu(64, 96, 3, padding=p)),
            nn.Sequential(conv_bn_relu(160, 64, 1), conv1xn(64, 64, 7), convnx1(64, 64, 7),
                          conv_bn_relu(64, 96, 3, padding=p)),
        ),                                                                          # (B, 192, 71, 71)
        Concat(conv_bn_relu(192, 192, 3, stride=s, padding=p),
               L.MaxPool2d(3, stride=s, padding=p)),                                # (B, 384, 35, 35)
    )


class InceptionA(Concat):
    """35×35 block (Figure 4): 1×1; 1×1 → 3×3; 1×1 → 3×3 → 3×3; avg pool → 1×1; 384 → 384 channels."""

    def __init__(self, in_channels: int = 384):
        super().__init__(
            conv_bn_relu(in_channels, 96, 1),
            nn.Sequential(conv_bn_relu(in_channels, 64, 1), conv_bn_relu(64, 96, 3, padding=1)),
            nn.Sequential(conv_bn_relu(in_channels, 64, 1), conv_bn_relu(64, 96, 3, padding=1),
                          conv_bn_relu(96, 96, 3, padding=1)),
            nn.Sequential(L.AvgPool2d(3, stride=1, padding=1), conv_bn_relu(in_channels, 96, 1)),
        )


class ReductionA(Concat):
    """35×35 → 17×17 (Figure 7): 3×3/2 (n); 1×1 (k) → 3×3 (l) → 3×3/2 (m); max pool /2.

    (k, l, m, n) is (192, 224, 256, 384) in Inception-v4 and (256, 256, 384, 384) in
    Inception-ResNet-v2 (Table 1). Output: in + m + n channels.
    """

    def __init__(self, in_channels: int, k: int, l: int, m: int, n: int):
        super().__init__(
            conv_bn_relu(in_channels, n, 3, stride=2),
            nn.Sequential(conv_bn_relu(in_channels, k, 1), conv_bn_relu(k, l, 3, padding=1),
                          conv_bn_relu(l, m, 3, stride=2)),
            L.MaxPool2d(3, stride=2),
        )
        self.out_channels = in_channels + m + n


class InceptionB(Concat):
    """17×17 block (Figure 5), 1024 → 1024 channels.

    Paths: 1×1; 1×1 → 1×7 → 7×1; 1×1 → 7×1 → 1×7 → 7×1 → 1×7; avg pool → 1×1.
    """

    def __init__(self, in_channels: int = 1024):
        super().__init__(
            conv_bn_relu(in_channels, 384, 1),
            nn.Sequential(conv_bn_relu(in_channels, 192, 1), conv1xn(192, 224, 7), convnx1(224, 256, 7)),
            nn.Sequential(conv_bn_relu(in_channels, 192, 1), convnx1(192, 192, 7), conv1xn(192, 224, 7),
                          convnx1(224, 224, 7), conv1xn(224, 256, 7)),
            nn.Sequential(L.AvgPool2d(3, stride=1, padding=1), conv_bn_relu(in_channels, 128, 1)),
        )


class ReductionB(Concat):
    """17×17 → 8×8 (Figure 8): 1×1 → 3×3/2; 1×1 → 1×7 → 7×1 → 3×3/2; max pool /2; 1024 → 1536."""

    def __init__(self, in_channels: int = 1024):
        super().__init__(
            nn.Sequential(conv_bn_relu(in_channels, 192, 1), conv_bn_relu(192, 192, 3, stride=2)),
            nn.Sequential(conv_bn_relu(in_channels, 256, 1), conv1xn(256, 256, 7), convnx1(256, 320, 7),
                          conv_bn_relu(320, 320, 3, stride=2)),
            L.MaxPool2d(3, stride=2),
        )


class InceptionC(Concat):
    """8×8 block (Figure 6), 1536 → 1536 channels.

    Paths: 1×1; 1×1 → (1×3 ‖ 3×1); 1×1 → 3×1 → 1×3 → (1×3 ‖ 3×1); avg pool → 1×1.
    """

    def __init__(self, in_channels: int = 1536):
        super().__init__(
            conv_bn_relu(in_channels, 256, 1),
            nn.Sequential(conv_bn_relu(in_channels, 384, 1),
                          Concat(conv1xn(384, 256, 3), convnx1(384, 256, 3))),
            nn.Sequential(conv_bn_relu(in_channels, 384, 1), convnx1(384, 448, 3), conv1xn(448, 512, 3),
                          Concat(conv1xn(512, 256, 3), convnx1(512, 256, 3))),
            nn.Sequential(L.AvgPool2d(3, stride=1, padding=1), conv_bn_relu(in_channels, 256, 1)),
        )


class InceptionV4(Classifier):
    """Inception-v4.

    Shapes for the paper's input: (B, 3, 299, 299) → stem → (B, 384, 35, 35) → 4 × A →
    Reduction-A → (B, 1024, 17, 17) → 7 × B → Reduction-B → (B, 1536, 8, 8) → 3 × C →
    global pool, dropout → (B, classes).

    Args:
        num_classes: outputs of the dense layer.
        in_channels: channels of the input image.
        input_size: side of the square input; below 75 the small stem is used (see ``inception_v4``).
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, input_size: int = 299):
        small = is_small(input_size)
        check_input_size("inception_v4", input_size, SMALL_MIN if small else 1)
        features = nn.Sequential(OrderedDict(
            stem=v4_stem(in_channels, small),                                   # (B, 384, 35, 35)
            inception_a=nn.Sequential(*(InceptionA() for _ in range(4))),       # (B, 384, 35, 35)
            reduction_a=ReductionA(384, 192, 224, 256, 384),                    # (B, 1024, 17, 17)
            inception_b=nn.Sequential(*(InceptionB() for _ in range(7))),       # (B, 1024, 17, 17)
            reduction_b=ReductionB(),                                           # (B, 1536, 8, 8)
            inception_c=nn.Sequential(*(InceptionC() for _ in range(3))),       # (B, 1536, 8, 8)
        ))
        super().__init__(features, pool_head(1536, num_classes, dropout=0.2), num_classes)
        init_weights(self)


@register_model(paper="Szegedy et al. 2016 (Inception-v4)")
def inception_v4(*, num_classes: int = 1000, in_channels: int = 3, input_size: int = 299) -> InceptionV4:
    """Inception-v4: uniform Inception-A/B/C blocks with Reduction-A/B between them (C17).

    Small inputs (below 75 px, e.g. 28×28): the stem runs at stride 1 with padding except its
    first concatenated pool/conv pair, so 28×28 reaches the 35×35 blocks at 14×14, then 6×6 and
    2×2 (the smallest input is 13).
    """
    return InceptionV4(num_classes, in_channels, input_size)


# --------------------------------------------------------------------------- Inception-ResNet-v2


class InceptionResNet(nn.Module):
    """Residual Inception block: y = ReLU(x + scale · conv1×1(paths(x))).

    The 1×1 convolution is linear (bias, no batch norm or ReLU) and restores the input's channels
    so the sum is defined. ``relu=False`` drops the final ReLU (the network's last block).
    """

    def __init__(self, paths: Concat, paths_channels: int, channels: int, scale: float, relu: bool = True):
        super().__init__()
        self.paths = paths
        self.project = L.Conv2d(paths_channels, channels, 1)
        self.scale = scale
        self.relu = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return self.relu(x + self.scale * self.project(self.paths(x)))


def inception_resnet_a(channels: int = 320, scale: float = 0.17) -> InceptionResNet:
    """35×35 residual block (Figure 16): 1×1; 1×1 → 3×3; 1×1 → 3×3 → 3×3; 128 → 1×1 to ``channels``."""
    return InceptionResNet(Concat(
        conv_bn_relu(channels, 32, 1),
        nn.Sequential(conv_bn_relu(channels, 32, 1), conv_bn_relu(32, 32, 3, padding=1)),
        nn.Sequential(conv_bn_relu(channels, 32, 1), conv_bn_relu(32, 48, 3, padding=1),
                      conv_bn_relu(48, 64, 3, padding=1)),
    ), 128, channels, scale)


def inception_resnet_b(channels: int = 1088, scale: float = 0.10) -> InceptionResNet:
    """17×17 residual block (Figure 17): 1×1; 1×1 → 1×7 → 7×1; 384 → 1×1 to ``channels``."""
    return InceptionResNet(Concat(
        conv_bn_relu(channels, 192, 1),
        nn.Sequential(conv_bn_relu(channels, 128, 1), conv1xn(128, 160, 7), convnx1(160, 192, 7)),
    ), 384, channels, scale)


def inception_resnet_c(channels: int = 2080, scale: float = 0.20, relu: bool = True) -> InceptionResNet:
    """8×8 residual block (Figure 19): 1×1; 1×1 → 1×3 → 3×1; 448 → 1×1 to ``channels``."""
    return InceptionResNet(Concat(
        conv_bn_relu(channels, 192, 1),
        nn.Sequential(conv_bn_relu(channels, 192, 1), conv1xn(192, 224, 3), convnx1(224, 256, 3)),
    ), 448, channels, scale, relu)


class ResNetReductionB(Concat):
    """17×17 → 8×8 of Inception-ResNet-v2 (Figure 18): three 1×1 → 3×3/2 paths, a max pool; +992 channels."""

    def __init__(self, in_channels: int = 1088):
        super().__init__(
            nn.Sequential(conv_bn_relu(in_channels, 256, 1), conv_bn_relu(256, 384, 3, stride=2)),
            nn.Sequential(conv_bn_relu(in_channels, 256, 1), conv_bn_relu(256, 288, 3, stride=2)),
            nn.Sequential(conv_bn_relu(in_channels, 256, 1), conv_bn_relu(256, 288, 3, padding=1),
                          conv_bn_relu(288, 320, 3, stride=2)),
            L.MaxPool2d(3, stride=2),
        )


class InceptionResNetV2(Classifier):
    """Inception-ResNet-v2 (the released layout).

    Shapes for the paper's input: (B, 3, 299, 299) → stem → (B, 192, 35, 35) → Inception block →
    (B, 320, 35, 35) → 10 × A → Reduction-A → (B, 1088, 17, 17) → 20 × B → Reduction-B →
    (B, 2080, 8, 8) → 10 × C → 1×1 conv → (B, 1536, 8, 8) → global pool, dropout → (B, classes).

    Args:
        num_classes: outputs of the dense layer.
        in_channels: channels of the input image.
        input_size: side of the square input; below 75 the small stem is used
            (see ``inception_resnet_v2``).
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, input_size: int = 299):
        small = is_small(input_size)
        check_input_size("inception_resnet_v2", input_size, SMALL_MIN if small else 1)
        features = nn.Sequential(OrderedDict(
            stem=v3_stem(in_channels, small),                                           # (B, 192, 35, 35)
            mixed5b=Inception35(192, pool_proj=64, c1=96),                              # (B, 320, 35, 35)
            block_a=nn.Sequential(*(inception_resnet_a() for _ in range(10))),          # (B, 320, 35, 35)
            reduction_a=ReductionA(320, 256, 256, 384, 384),                            # (B, 1088, 17, 17)
            block_b=nn.Sequential(*(inception_resnet_b() for _ in range(20))),          # (B, 1088, 17, 17)
            reduction_b=ResNetReductionB(1088),                                         # (B, 2080, 8, 8)
            block_c=nn.Sequential(*(inception_resnet_c() for _ in range(9)),
                                  inception_resnet_c(scale=1.0, relu=False)),           # (B, 2080, 8, 8)
            conv=conv_bn_relu(2080, 1536, 1),                                           # (B, 1536, 8, 8)
        ))
        super().__init__(features, pool_head(1536, num_classes, dropout=0.2), num_classes)
        init_weights(self)


@register_model(paper="Szegedy et al. 2016 (Inception-v4)")
def inception_resnet_v2(
    *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 299
) -> InceptionResNetV2:
    """Inception-ResNet-v2: Inception blocks with scaled residual connections (C17).

    Small inputs (below 75 px, e.g. 28×28): Inception-v3's small stem, so 28×28 reaches the 35×35
    blocks at 14×14, then 6×6 and 2×2 (the smallest input is 13).
    """
    return InceptionResNetV2(num_classes, in_channels, input_size)
