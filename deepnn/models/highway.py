"""Highway networks (Srivastava, Greff & Schmidhuber 2015, "Highway networks" and "Training very
deep networks"), lecture item R7.

A highway layer lets a learned gate choose, per unit, between transforming its input and carrying
it unchanged: g = σ(W_T x + b_T), y = g ⊙ H(x) + (1 − g) ⊙ x with H(x) = ReLU(W_H x + b_H).
The gate bias b_T starts negative (the paper suggests −1 to −3), so an untrained layer mostly
carries its input and a deep stack starts close to the identity: gradients reach the first
layers, as through the LSTM's memory cell and, later, ResNet's shortcuts.

The network of the paper's MNIST experiments: the flattened image, one plain dense layer to the
highway width (the carry needs equal input and output sizes), then highway layers of 50 units,
then the class layer. ``depth`` counts the plain layer and the highway layers (10, 20, 50 or 100
in the paper).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import UserError
from ._blocks import Classifier, check_input_size
from ._registry import register_model


class Highway(nn.Module):
    """One highway layer: y = g ⊙ H(x) + (1 − g) ⊙ x, g = σ(W_T x + b_T), H(x) = ReLU(W_H x + b_H).

    Args:
        width: units of the input and of the output.
        gate_bias: initial value of b_T; negative favours carrying the input.

    Example:
        >>> layer = Highway(4)
        >>> layer(torch.zeros(2, 4)).shape
        torch.Size([2, 4])
    """

    def __init__(self, width: int, gate_bias: float = -2.0):
        super().__init__()
        self.transform = nn.Linear(width, width)  # H
        self.gate = nn.Linear(width, width)       # T
        nn.init.constant_(self.gate.bias, gate_bias)

    def forward(self, x: Tensor) -> Tensor:  # (B, width) -> (B, width)
        g = torch.sigmoid(self.gate(x))
        return g * torch.relu(self.transform(x)) + (1 - g) * x


class HighwayNet(Classifier):
    """Flatten → plain dense layer → (depth − 1) highway layers → class layer.

    Shapes for MNIST: (B, 1, 28, 28) → flatten (B, 784) → (B, width) → highway layers →
    (B, width) → (B, classes).

    Args:
        num_classes: outputs of the class layer.
        in_channels: channels of the input image.
        input_size: side of the square input; ``in_channels * input_size²`` inputs after flattening.
        depth: the plain layer plus the highway layers.
        width: units of every hidden layer.
        gate_bias: initial transform-gate bias of every highway layer.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
                 depth: int = 10, width: int = 50, gate_bias: float = -2.0):
        check_input_size("highway", input_size, 1)
        if depth < 1 or width < 1:
            raise UserError(f"highway needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
        features = nn.Sequential(
            nn.Flatten(),                                              # (B, C·H·W)
            nn.Linear(in_channels * input_size * input_size, width),   # (B, width)
            nn.ReLU(),
            *(Highway(width, gate_bias) for _ in range(depth - 1)),   # (B, width)
        )
        super().__init__(features, nn.Linear(width, num_classes), num_classes)


@register_model(paper="Srivastava et al. 2015")
def highway(
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 28,
    depth: int = 10,
    width: int = 50,
    gate_bias: float = -2.0,
) -> HighwayNet:
    """Highway network: dense layers with transform gates, y = g ⊙ H(x) + (1 − g) ⊙ x (R7).

    The default is the paper's 10-layer MNIST network (one plain layer, nine highway layers of 50
    units, gate bias −2) on flattened 28×28 images; any ``input_size`` works, as the image is
    flattened to ``in_channels * input_size²`` inputs.
    """
    return HighwayNet(num_classes, in_channels, input_size, depth, width, gate_bias)
