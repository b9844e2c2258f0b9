"""Convolution and pooling by hand: the lecture's worked numbers (C1, C2, C4–C10).

Every number below is computed by ``deepnn.ops`` (the from-scratch primitives) and is the one the
slides (``LECTURE.md``) show: cross-correlation, the shrinking shape, padding, stride, several input
and output channels, the 1×1 convolution as a dense layer per pixel, max and average pooling, and the
vertical-edge example with pooling's tolerance to a one-pixel shift.

Run:  python examples/01_convolution_and_pooling.py
"""

from __future__ import annotations

import torch

from deepnn.ops import conv1x1, conv2d, conv_output_shape, corr2d, pool2d, vertical_edge_example


def show(label: str, t: torch.Tensor) -> None:
    """One labelled line; whole-number results are printed as integers, like the slides."""
    values = t.int().tolist() if torch.equal(t, t.round()) else t.tolist()
    print(f"{label:<44} {values}")


def main() -> None:
    torch.set_num_threads(1)
    X = torch.arange(9.0).reshape(3, 3)  # [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    K = torch.arange(4.0).reshape(2, 2)  # [[0, 1], [2, 3]]
    print(f"X = {X.int().tolist()}   K = {K.int().tolist()}\n")

    print("C1  cross-correlation (the double loop, corr2d)")
    show("    X ⋆ K", corr2d(X, K))
    show("    the same with conv2d (vectorised)", conv2d(X, K))

    print("\nC4  the shape shrinks: (n - k + 1) per layer")
    print(f"    32×32 input, 5×5 kernel, 1 layer:  {conv_output_shape((32, 32), kernel=5)}")
    print(f"    32×32 input, 5×5 kernel, 7 layers: {conv_output_shape((32, 32), kernel=5, layers=7)}")

    print("\nC5  padding: (n - k + p + 1), p = total padding of an axis")
    show("    X ⋆ K, one zero row/column on each side", conv2d(X, K, padding=1))
    print(f"    shape formula with p = 2: {conv_output_shape((3, 3), kernel=2, pad_total=2)}")

    print("\nC6  stride: ⌊(n - k + p + s) / s⌋")
    show("    padding 1, stride 3 (rows) and 2 (cols)", conv2d(X, K, padding=1, stride=(3, 2)))

    print("\nC7  several input channels: sum of per-channel cross-correlations")
    X2, K2 = torch.stack([X, X + 1]), torch.stack([K, K + 1])  # (c_i=2, 3, 3), (c_i=2, 2, 2)
    show("    X (2×3×3) ⋆ K (2×2×2)", conv2d(X2, K2))

    print("\nC8  several output channels: W is c_o × c_i × k_h × k_w")
    Y = conv2d(X2, torch.stack([K2, K2 + 1, K2 + 2]))  # (c_o=3, 2, 2)
    print(f"    W (3×2×2×2) gives Y of shape {tuple(Y.shape)}")
    for c in range(3):
        show(f"    output channel {c}", Y[c])

    print("\nC9  1×1 convolution = a dense layer (c_o × c_i) applied at every pixel")
    torch.manual_seed(0)
    x, w = torch.randn(2, 3, 4, 5), torch.randn(6, 3)
    same = torch.allclose(conv1x1(x, w), conv2d(x, w[:, :, None, None]), atol=1e-6)
    per_pixel = torch.allclose(conv1x1(x, w)[0, :, 1, 2], w @ x[0, :, 1, 2], atol=1e-6)
    print(f"    x {tuple(x.shape)} -> {tuple(conv1x1(x, w).shape)}; equals a 1×1 conv2d: {same}; "
          f"pixel (1, 2) = W @ x[:, 1, 2]: {per_pixel}")

    print("\nC10 pooling: 2×2 window, stride 1, no parameters")
    show("    max pooling of X", pool2d(X, 2, stride=1))
    show("    average pooling of X", pool2d(X, 2, stride=1, mode="avg"))
    print(f"    per channel: pooling X (2×3×3) keeps 2 channels -> {tuple(pool2d(X2, 2, stride=1).shape)}")

    print("\nC2/C10 vertical edge: X 4×5 with rows [1, 1, 0, 0, 0], K = [1, -1]")
    for shift in (0, 1):
        Xe, Ye = vertical_edge_example(shift)
        where = "as on the slide" if shift == 0 else "edge one pixel to the right"
        print(f"    {where:<28} row of X {Xe[0].int().tolist()}  row of Y {Ye[0].int().tolist()}  "
              f"2×2 max pool of Y {pool2d(Ye, 2, stride=1)[0].int().tolist()}")
    print("    the convolution's 1 moves with the edge; after max pooling both still fire at column 1")


if __name__ == "__main__":
    main()
