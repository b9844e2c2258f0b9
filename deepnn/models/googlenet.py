"""GoogLeNet (Szegedy et al. 2014, "Going deeper with convolutions"), lecture item C16.

The Inception block runs four paths on the same input — a 1×1 convolution; 1×1 → 3×3; 1×1 → 5×5;
3×3 max pool → 1×1 — and concatenates them on channels; the 1×1 "reduce" convolutions keep it
cheap. For 192 input channels at 28×28 and 256 outputs (inception 3a) it has 0.16M parameters
and 128M multiply-adds, against 0.44M / 346M for one 3×3 convolution and 1.22M / 963M for a 5×5.

GoogLeNet stacks 9 blocks in 5 stages (the paper's Table 1, :data:`BLOCKS`): a 7×7 stem, a
1×1 → 3×3 stage, then blocks 3a–3b, 4a–4e and 5a–5b separated by 3×3 stride-2 max pooling, global
average pooling, dropout 0.4 and one dense layer. As in the paper there is no batch norm (it came
later, see ``inception_bn``); convolutions have biases and the stem has local response
normalisation. That gives 6,998,552 parameters for 1000 classes. The "params" column of the
paper's Table 1 adds up to 6.8M: it leaves out the biases and lists most layers a little below
what their channel counts give (3a: 159K against 163K). torchvision's ``googlenet`` (6,624,904)
differs in two ways: batch norm instead of conv biases, and a 3×3 convolution in the "5×5" path.

The two auxiliary classifiers of the paper (after 4a and 4d: 5×5/3 average pool, 1×1 conv with
128 channels, dense 1024, dropout 0.7, dense classes) are optional (``aux_logits``); they add
6,379,728 parameters. Here the pool is adaptive to 4×4, which is the paper's output size at 224
and keeps the heads working for small inputs.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .. import layers as L
from ._blocks import (
    Classifier,
    Concat,
    check_input_size,
    conv_bn_relu,
    init_weights,
    is_small,
    lrn,
    pool_head,
)
from ._registry import register_model

# Table 1: name, #1×1, (#3×3 reduce, #3×3), (#5×5 reduce, #5×5), pool proj; stages 3, 4, 5.
BLOCKS: list[list[tuple[str, int, tuple[int, int], tuple[int, int], int]]] = [
    [("3a", 64, (96, 128), (16, 32), 32), ("3b", 128, (128, 192), (32, 96), 64)],
    [("4a", 192, (96, 208), (16, 48), 64), ("4b", 160, (112, 224), (24, 64), 64),
     ("4c", 128, (128, 256), (24, 64), 64), ("4d", 112, (144, 288), (32, 64), 64),
     ("4e", 256, (160, 320), (32, 128), 128)],
    [("5a", 256, (160, 320), (32, 128), 128), ("5b", 384, (192, 384), (48, 128), 128)],
]
_AUX_AFTER = ("inception4a", "inception4d")


class Inception(Concat):
    """The lecture's Inception block: four paths concatenated on channels (C16).

    Args:
        in_channels: channels of the input.
        c1: channels of the 1×1 path.
        c2: (1×1 reduce, 3×3) channels of the second path.
        c3: (1×1 reduce, 5×5) channels of the third path.
        c4: channels of the 1×1 convolution after the 3×3 max pool.

    Output: (B, c1 + c2[1] + c3[1] + c4, H, W), same H and W as the input.
    """

    def __init__(self, in_channels: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int):
        super().__init__(
            conv_bn_relu(in_channels, c1, 1, bn=False),
            nn.Sequential(conv_bn_relu(in_channels, c2[0], 1, bn=False),
                          conv_bn_relu(c2[0], c2[1], 3, padding=1, bn=False)),
            nn.Sequential(conv_bn_relu(in_channels, c3[0], 1, bn=False),
                          conv_bn_relu(c3[0], c3[1], 5, padding=2, bn=False)),
            nn.Sequential(L.MaxPool2d(3, stride=1, padding=1), conv_bn_relu(in_channels, c4, 1, bn=False)),
        )
        self.out_channels = c1 + c2[1] + c3[1] + c4


def _aux_head(in_channels: int, num_classes: int) -> nn.Sequential:
    """Auxiliary classifier: (B, C, 14, 14) → pool (B, C, 4, 4) → 1×1 conv (B, 128, 4, 4) → 1024 → classes."""
    return nn.Sequential(
        L.AdaptiveAvgPool2d(4),
        conv_bn_relu(in_channels, 128, 1, bn=False),
        nn.Flatten(),                                   # (B, 2048)
        nn.Linear(128 * 4 * 4, 1024), nn.ReLU(), nn.Dropout(0.7),
        nn.Linear(1024, num_classes),
    )


class GoogLeNet(Classifier):
    """GoogLeNet (Inception v1) as in the lecture (C16).

    Shapes for the paper's input: (B, 3, 224, 224) → stage 1 → (B, 64, 56, 56) → stage 2 →
    (B, 192, 28, 28) → 3a, 3b → (B, 480, 28, 28) → pool → (B, 480, 14, 14) → 4a–4e →
    (B, 832, 14, 14) → pool → (B, 832, 7, 7) → 5a, 5b → (B, 1024, 7, 7) → global pool → classes.

    Args:
        num_classes: outputs of the dense layer.
        in_channels: channels of the input image.
        input_size: side of the square input; below 75 the small stem is used (see ``googlenet``).
        aux_logits: add the two auxiliary classifiers; in training mode ``forward`` then returns
            ``(logits, aux1, aux2)``, in eval mode the logits only.
    """

    def __init__(
        self, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, aux_logits: bool = False
    ):
        check_input_size("googlenet", input_size, 1)
        if is_small(input_size):  # (B, C, 28, 28) -> (B, 64, 28, 28): no stride, no first pool
            stage1 = nn.Sequential(conv_bn_relu(in_channels, 64, 3, padding=1, bn=False), lrn())
        else:  # (B, 3, 224, 224) -> (B, 64, 112, 112) -> (B, 64, 56, 56)
            stage1 = nn.Sequential(conv_bn_relu(in_channels, 64, 7, stride=2, padding=3, bn=False),
                                   L.MaxPool2d(3, stride=2, padding=1), lrn())
        stage2 = nn.Sequential(
            conv_bn_relu(64, 64, 1, bn=False),
            conv_bn_relu(64, 192, 3, padding=1, bn=False), lrn(),
            L.MaxPool2d(3, stride=2, padding=1),        # (B, 192, 28, 28); small: (B, 192, 14, 14)
        )
        stages: OrderedDict[str, nn.Module] = OrderedDict(stage1=stage1, stage2=stage2)
        channels, aux = 192, {}
        for i, stage in enumerate(BLOCKS):
            for name, *widths in stage:
                block = Inception(channels, *widths)
                stages[f"inception{name}"] = block
                channels = block.out_channels
                if aux_logits and f"inception{name}" in _AUX_AFTER:
                    aux[f"inception{name}"] = _aux_head(channels, num_classes)
            if i < len(BLOCKS) - 1:                     # (B, C, 28, 28) -> (B, C, 14, 14) -> (B, C, 7, 7)
                stages[f"pool{i + 3}"] = L.MaxPool2d(3, stride=2, padding=1)
        head = pool_head(channels, num_classes, dropout=0.4)  # (B, 1024, 7, 7) -> (B, classes)
        super().__init__(nn.Sequential(stages), head, num_classes, aux)
        init_weights(self)


@register_model(paper="Szegedy et al. 2014")
def googlenet(
    *, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, aux_logits: bool = False
) -> GoogLeNet:
    """GoogLeNet: 9 Inception blocks (4 paths concatenated) in 5 stages, no batch norm (C16).

    ``aux_logits=True`` adds the paper's two auxiliary classifiers; in training mode the model
    then returns ``(logits, aux1, aux2)``. Small inputs (below 75 px, e.g. 28×28): the 7×7
    stride-2 stem becomes 3×3 stride 1 and its max pool is dropped, so 28×28 reaches 3a at 14×14,
    4a at 7×7 and 5a at 4×4.
    """
    return GoogLeNet(num_classes, in_channels, input_size, aux_logits)
