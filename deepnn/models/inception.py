"""The Inception family after GoogLeNet, lecture item C17 (part 1): Inception-BN and Inception-v3.

``inception_bn`` — Ioffe & Szegedy 2015, "Batch normalization: accelerating deep network
training by reducing internal covariate shift", Figure 5 (Inception v2): GoogLeNet with batch
norm after every convolution, the 5×5 path replaced by two stacked 3×3 convolutions, average
pooling in most pool paths, and blocks 3c and 4e reducing the grid themselves (stride 2, the
pool path passes its input through). No LRN, no dropout, no auxiliary classifiers. We take the
channel counts of the figure as printed; its "output size" column disagrees for 4c–4e (they add
up to 608, 608 and 1056 channels, as in the authors' released Caffe model).

``inception_v3`` — Szegedy, Vanhoucke, Ioffe, Shlens & Wojna 2015, "Rethinking the Inception
architecture for computer vision": factorised convolutions. A 5×5 becomes two 3×3 (Figure 5,
the 35×35 blocks), an n×n becomes 1×n followed by n×1 (Figure 6, n = 7, the 17×17 blocks), and
the 8×8 blocks split their last convolution into parallel 1×3 and 3×1 (Figure 7). Grids shrink
by concatenating a stride-2 convolution path with a stride-2 pool (Figure 10). The layout and
widths follow the released TensorFlow model (as torchvision and timm do), which keeps one 5×5
path in the 35×35 blocks: 23,834,568 parameters without the auxiliary classifier, 27,161,264
with it (torchvision's count).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .. import layers as L
from ._blocks import Classifier, Concat, check_input_size, conv_bn_relu, init_weights, is_small, pool_head
from ._registry import register_model

SMALL_MIN = 13  # small stems of v3, v4 and Inception-ResNet: 13 → 7 → 3 → 1


# --------------------------------------------------------------------------- Inception-BN (v2)

# Figure 5: name, #1×1, (#3×3 reduce, #3×3), (double #3×3 reduce, double #3×3), pool, pool proj,
# stride. Stride-2 blocks have no 1×1 path and pass the max-pooled input through.
BN_BLOCKS: list[tuple[str, int, tuple[int, int], tuple[int, int], str, int, int]] = [
    ("3a", 64, (64, 64), (64, 96), "avg", 32, 1),
    ("3b", 64, (64, 96), (64, 96), "avg", 64, 1),
    ("3c", 0, (128, 160), (64, 96), "max", 0, 2),
    ("4a", 224, (64, 96), (96, 128), "avg", 128, 1),
    ("4b", 192, (96, 128), (96, 128), "avg", 128, 1),
    ("4c", 160, (128, 160), (128, 160), "avg", 128, 1),
    ("4d", 96, (128, 192), (160, 192), "avg", 128, 1),
    ("4e", 0, (128, 192), (192, 256), "max", 0, 2),
    ("5a", 352, (192, 320), (160, 224), "avg", 128, 1),
    ("5b", 352, (192, 320), (192, 224), "max", 128, 1),
]


class InceptionBN(Concat):
    """Inception block of Inception-BN: 1×1; 1×1 → 3×3; 1×1 → 3×3 → 3×3; pool → 1×1.

    Args:
        in_channels: channels of the input.
        c1: channels of the 1×1 path (0: no such path).
        c3: (1×1 reduce, 3×3) channels.
        cd: (1×1 reduce, both 3×3) channels of the double-3×3 path (the factorised 5×5).
        pool: "avg" or "max", the 3×3 pool of the last path.
        proj: channels of the 1×1 after the pool (0: the pooled input passes through).
        stride: 2 halves the grid: the last convolution of each path and the pool stride by 2.
    """

    def __init__(self, in_channels: int, c1: int, c3: tuple[int, int], cd: tuple[int, int],
                 pool: str, proj: int, stride: int = 1):
        pooling = L.AvgPool2d if pool == "avg" else L.MaxPool2d
        paths: list[nn.Module] = [conv_bn_relu(in_channels, c1, 1)] if c1 else []
        paths += [
            nn.Sequential(conv_bn_relu(in_channels, c3[0], 1), conv_bn_relu(c3[0], c3[1], 3, stride, 1)),
            nn.Sequential(conv_bn_relu(in_channels, cd[0], 1), conv_bn_relu(cd[0], cd[1], 3, padding=1),
                          conv_bn_relu(cd[1], cd[1], 3, stride, 1)),
            nn.Sequential(pooling(3, stride=stride, padding=1),
                          *([conv_bn_relu(in_channels, proj, 1)] if proj else [])),
        ]
        super().__init__(*paths)
        self.out_channels = c1 + c3[1] + cd[1] + (proj or in_channels)


class InceptionBNNet(Classifier):
    """Inception-BN (Inception v2).

    Shapes for the paper's input: (B, 3, 224, 224) → stem → (B, 192, 28, 28) → 3a, 3b →
    (B, 320, 28, 28) → 3c → (B, 576, 14, 14) → 4a–4d → (B, 608, 14, 14) → 4e → (B, 1056, 7, 7)
    → 5a, 5b → (B, 1024, 7, 7) → global average pool → (B, classes).

    Args:
        num_classes: outputs of the dense layer.
        in_channels: channels of the input image.
        input_size: side of the square input; below 75 the small stem is used (see ``inception_bn``).
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224):
        check_input_size("inception_bn", input_size, 1)
        if is_small(input_size):  # (B, C, 28, 28) -> (B, 64, 28, 28)
            first = [conv_bn_relu(in_channels, 64, 3, padding=1)]
        else:  # (B, 3, 224, 224) -> (B, 64, 112, 112) -> (B, 64, 56, 56)
            first = [conv_bn_relu(in_channels, 64, 7, stride=2, padding=3),
                     L.MaxPool2d(3, stride=2, padding=1)]
        stem = nn.Sequential(
            *first,
            conv_bn_relu(64, 64, 1), conv_bn_relu(64, 192, 3, padding=1),
            L.MaxPool2d(3, stride=2, padding=1),                # (B, 192, 28, 28); small: (B, 192, 14, 14)
        )
        stages: OrderedDict[str, nn.Module] = OrderedDict(stem=stem)
        channels = 192
        for name, *spec in BN_BLOCKS:
            block = InceptionBN(channels, *spec)
            stages[f"inception{name}"] = block
            channels = block.out_channels
        super().__init__(nn.Sequential(stages), pool_head(channels, num_classes), num_classes)
        init_weights(self)


@register_model(paper="Ioffe & Szegedy 2015")
def inception_bn(*, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224) -> InceptionBNNet:
    """Inception-BN (v2): GoogLeNet with batch norm and the 5×5 paths as two 3×3 convolutions (C17).

    Small inputs (below 75 px, e.g. 28×28): the 7×7 stride-2 stem becomes 3×3 stride 1 and its
    max pool is dropped, so 28×28 reaches 3a at 14×14, 4a at 7×7 and 5a at 4×4.
    """
    return InceptionBNNet(num_classes, in_channels, input_size)


# --------------------------------------------------------------------------- Inception-v3


def conv1xn(in_channels: int, out_channels: int, n: int) -> nn.Sequential:
    """A 1×n convolution (with BN and ReLU) that keeps the grid: half of a factorised n×n."""
    return conv_bn_relu(in_channels, out_channels, (1, n), padding=(0, n // 2))


def convnx1(in_channels: int, out_channels: int, n: int) -> nn.Sequential:
    """An n×1 convolution (with BN and ReLU) that keeps the grid: the other half."""
    return conv_bn_relu(in_channels, out_channels, (n, 1), padding=(n // 2, 0))


def v3_stem(in_channels: int, small: bool) -> nn.Sequential:
    """The stem of Inception-v3 (Table 1) and of the released Inception-ResNet-v2.

    (B, 3, 299, 299) → (B, 32, 149, 149) → (B, 32, 147, 147) → (B, 64, 147, 147) → pool →
    (B, 64, 73, 73) → (B, 80, 73, 73) → (B, 192, 71, 71) → pool → (B, 192, 35, 35).
    Small: stride 1 and "same" padding throughout, one padded pool: (B, C, 28, 28) → (B, 192, 14, 14).
    """
    s, p = (1, 1) if small else (2, 0)
    layers: list[nn.Module] = [
        conv_bn_relu(in_channels, 32, 3, stride=s, padding=p),
        conv_bn_relu(32, 32, 3, padding=p),
        conv_bn_relu(32, 64, 3, padding=1),
        L.MaxPool2d(3, stride=2, padding=p),
        conv_bn_relu(64, 80, 1),
        conv_bn_relu(80, 192, 3, padding=p),
    ]
    if not small:
        layers.append(L.MaxPool2d(3, stride=2))
    return nn.Sequential(*layers)


class Inception35(Concat):
    """35×35 block (Figure 5): 1×1; 1×1 → 5×5; 1×1 → 3×3 → 3×3 (the factorised 5×5); avg pool → 1×1.

    ``c1`` is 64 in Inception-v3 and 96 in Inception-ResNet-v2's first block. Output channels:
    c1 + 64 + 96 + pool_proj.
    """

    def __init__(self, in_channels: int, pool_proj: int, c1: int = 64):
        super().__init__(
            conv_bn_relu(in_channels, c1, 1),
            nn.Sequential(conv_bn_relu(in_channels, 48, 1), conv_bn_relu(48, 64, 5, padding=2)),
            nn.Sequential(conv_bn_relu(in_channels, 64, 1), conv_bn_relu(64, 96, 3, padding=1),
                          conv_bn_relu(96, 96, 3, padding=1)),
            nn.Sequential(L.AvgPool2d(3, stride=1, padding=1), conv_bn_relu(in_channels, pool_proj, 1)),
        )
        self.out_channels = c1 + 64 + 96 + pool_proj


class Reduction35(Concat):
    """Grid reduction 35×35 → 17×17 (Figure 10): 3×3/2; 1×1 → 3×3 → 3×3/2; max pool /2. Output in + 480."""

    def __init__(self, in_channels: int):
        super().__init__(
            conv_bn_relu(in_channels, 384, 3, stride=2),
            nn.Sequential(conv_bn_relu(in_channels, 64, 1), conv_bn_relu(64, 96, 3, padding=1),
                          conv_bn_relu(96, 96, 3, stride=2)),
            L.MaxPool2d(3, stride=2),
        )
        self.out_channels = in_channels + 384 + 96


class Inception17(Concat):
    """17×17 block (Figure 6, n = 7): 1×1; 1×1 → 1×7 → 7×1; 1×1 → 7×1 → 1×7 → 7×1 → 1×7; avg pool → 1×1.

    ``c7`` is the width inside the factorised 7×7 paths (128, 160, 160, 192); output 768 channels.
    """

    def __init__(self, in_channels: int, c7: int):
        super().__init__(
            conv_bn_relu(in_channels, 192, 1),
            nn.Sequential(conv_bn_relu(in_channels, c7, 1), conv1xn(c7, c7, 7), convnx1(c7, 192, 7)),
            nn.Sequential(conv_bn_relu(in_channels, c7, 1), convnx1(c7, c7, 7), conv1xn(c7, c7, 7),
                          convnx1(c7, c7, 7), conv1xn(c7, 192, 7)),
            nn.Sequential(L.AvgPool2d(3, stride=1, padding=1), conv_bn_relu(in_channels, 192, 1)),
        )
        self.out_channels = 4 * 192


class Reduction17(Concat):
    """Grid reduction 17×17 → 8×8: 1×1 → 3×3/2; 1×1 → 1×7 → 7×1 → 3×3/2; max pool /2. Output in + 512."""

    def __init__(self, in_channels: int):
        super().__init__(
            nn.Sequential(conv_bn_relu(in_channels, 192, 1), conv_bn_relu(192, 320, 3, stride=2)),
            nn.Sequential(conv_bn_relu(in_channels, 192, 1), conv1xn(192, 192, 7), convnx1(192, 192, 7),
                          conv_bn_relu(192, 192, 3, stride=2)),
            L.MaxPool2d(3, stride=2),
        )
        self.out_channels = in_channels + 320 + 192


class Inception8(Concat):
    """8×8 block (Figure 7): 1×1; 1×1 → (1×3 ‖ 3×1); 1×1 → 3×3 → (1×3 ‖ 3×1); avg pool → 1×1. Output 2048."""

    def __init__(self, in_channels: int):
        super().__init__(
            conv_bn_relu(in_channels, 320, 1),
            nn.Sequential(conv_bn_relu(in_channels, 384, 1),
                          Concat(conv1xn(384, 384, 3), convnx1(384, 384, 3))),
            nn.Sequential(conv_bn_relu(in_channels, 448, 1), conv_bn_relu(448, 384, 3, padding=1),
                          Concat(conv1xn(384, 384, 3), convnx1(384, 384, 3))),
            nn.Sequential(L.AvgPool2d(3, stride=1, padding=1), conv_bn_relu(in_channels, 192, 1)),
        )
        self.out_channels = 320 + 768 + 768 + 192


def _v3_aux_head(in_channels: int, num_classes: int) -> nn.Sequential:
    """Auxiliary classifier on the 17×17 grid: pool to 5×5, 1×1 conv 128, 5×5 conv 768, dense."""
    return nn.Sequential(
        L.AdaptiveAvgPool2d(5),                         # (B, 768, 5, 5)
        conv_bn_relu(in_channels, 128, 1),              # (B, 128, 5, 5)
        conv_bn_relu(128, 768, 5),                      # (B, 768, 1, 1)
        nn.Flatten(),
        nn.Linear(768, num_classes),
    )


class InceptionV3(Classifier):
    """Inception-v3.

    Shapes for the paper's input: (B, 3, 299, 299) → stem → (B, 192, 35, 35) → 3 × 35×35 blocks →
    (B, 288, 35, 35) → reduction → (B, 768, 17, 17) → 4 × 17×17 blocks → reduction →
    (B, 1280, 8, 8) → 2 × 8×8 blocks → (B, 2048, 8, 8) → global pool, dropout → (B, classes).

    Args:
        num_classes: outputs of the dense layer.
        in_channels: channels of the input image.
        input_size: side of the square input; below 75 the small stem is used (see ``inception_v3``).
        aux_logits: add the auxiliary classifier on the last 17×17 block; in training mode
            ``forward`` then returns ``(logits, aux)``.
    """

    def __init__(
        self, num_classes: int = 1000, in_channels: int = 3, input_size: int = 299, aux_logits: bool = False
    ):
        small = is_small(input_size)
        check_input_size("inception_v3", input_size, SMALL_MIN if small else 1)
        stages: OrderedDict[str, nn.Module] = OrderedDict(stem=v3_stem(in_channels, small))
        stages["mixed5b"] = Inception35(192, pool_proj=32)        # (B, 256, 35, 35)
        stages["mixed5c"] = Inception35(256, pool_proj=64)        # (B, 288, 35, 35)
        stages["mixed5d"] = Inception35(288, pool_proj=64)        # (B, 288, 35, 35)
        stages["mixed6a"] = Reduction35(288)                      # (B, 768, 17, 17)
        for name, c7 in (("mixed6b", 128), ("mixed6c", 160), ("mixed6d", 160), ("mixed6e", 192)):
            stages[name] = Inception17(768, c7)                   # (B, 768, 17, 17)
        stages["mixed7a"] = Reduction17(768)                      # (B, 1280, 8, 8)
        stages["mixed7b"] = Inception8(1280)                      # (B, 2048, 8, 8)
        stages["mixed7c"] = Inception8(2048)                      # (B, 2048, 8, 8)
        aux = {"mixed6e": _v3_aux_head(768, num_classes)} if aux_logits else None
        super().__init__(nn.Sequential(stages), pool_head(2048, num_classes, dropout=0.2), num_classes, aux)
        init_weights(self)


@register_model(paper="Szegedy et al. 2015 (Rethinking the Inception architecture)")
def inception_v3(
    *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 299, aux_logits: bool = False
) -> InceptionV3:
    """Inception-v3: factorised convolutions (5×5 → two 3×3, 7×7 → 1×7 + 7×1, 1×3 ‖ 3×1) (C17).

    ``aux_logits=True`` adds the auxiliary classifier (training mode returns ``(logits, aux)``).
    Small inputs (below 75 px, e.g. 28×28): the stem runs at stride 1 with padding and keeps one
    of its two max pools, so 28×28 reaches the 35×35 blocks at 14×14, then 6×6 and 2×2 (the
    smallest input is 13).
    """
    return InceptionV3(num_classes, in_channels, input_size, aux_logits)
