"""Image kernels on a real image (C3) and learning an edge kernel by gradient descent (C2).

Part 1 applies the slide's eight 3×3 kernels (identity, edge, blur, sharpen, lighten, darken,
random 1, random 2; slide values divided by 9) to a Fashion-MNIST test image and draws the results
as one PNG grid. Part 2 starts from a random 1×2 kernel and recovers the edge detector [1, -1] from
the slide's vertical-edge image X and its edge map Y alone.

Run:  python examples/02_image_kernels.py [--out kernels.png] [--index 0]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from deepnn.cli.kernels import plot_grid
from deepnn.data.fashion_mnist import CLASSES, load_split
from deepnn.ops import IMAGE_KERNELS, apply_kernels, learn_kernel, vertical_edge_example


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "deepnn_examples" / "kernels.png",
                   help="PNG to write (default: a temporary folder)")
    p.add_argument("--index", type=int, default=0, help="which Fashion-MNIST test image (default 0)")
    args = p.parse_args()

    print("C3  the slide's kernels (× 9):")
    for name, k in IMAGE_KERNELS.items():
        print(f"    {name:<9} {(9 * k).round().int().tolist()}")

    images, labels = load_split("test")  # uint8 (10000, 28, 28); DEEPNN_DATA says where the files are
    image = images[args.index].float().div(255).unsqueeze(0)  # (1, 28, 28) in [0, 1]
    filtered = apply_kernels(image)  # name -> (1, 28, 28), same size (zero padding 1)
    title = f"Fashion-MNIST test #{args.index} ({CLASSES[labels[args.index]]})"
    print(f"\n    applied to {title}, 28×28; value range of each result:")
    for name, y in filtered.items():
        print(f"    {name:<9} [{y.min().item():+.2f}, {y.max().item():+.2f}]")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot_grid(image, filtered, args.out, title)
    print(f"    wrote {args.out} (input and the 8 results, clipped to [0, 1])")

    print("\nC2  learn K from X (4×5, rows [1, 1, 0, 0, 0]) and Y = X ⋆ [1, -1] by gradient descent "
          "on Σ (X ⋆ K − Y)²")
    X, Y = vertical_edge_example()
    kernel, losses = learn_kernel(X, Y, (1, 2), steps=20, lr=0.08, seed=0)
    for step in (1, 2, 5, 10, 15, 20):
        print(f"    step {step:2d}  loss {losses[step - 1]:.6f}")
    print(f"    learned kernel: {[[round(v, 4) for v in row] for row in kernel.tolist()]}  "
          "(the lecture's kernel: [[1, -1]])")


if __name__ == "__main__":
    main()
