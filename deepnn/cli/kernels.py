"""``deepnn kernels [IMAGE] -o kernels.png`` and ``deepnn kernels --learn``: lecture items C3 and C2.

Without ``--learn``: the slide's eight 3×3 image kernels (identity, edge, blur, sharpen,
lighten, darken, two random ones; each divided by 9) applied to IMAGE, or to a Fashion-MNIST
test image when none is given, drawn as one labelled 3×3 grid (the input first).
With ``--learn``: gradient descent recovers the edge kernel ``[1, −1]`` from the slide's
vertical-edge image and its edge map, printing the loss at every step.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from ..analysis.gradflow import save_figure
from ..errors import UserError
from ..ops import IMAGE_KERNELS, apply_kernels, learn_kernel, vertical_edge_example


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kernels", help="apply the lecture's image kernels to an image, or learn an edge kernel",
        description="C3: apply the lecture's eight 3×3 image kernels (identity, edge, blur, sharpen, "
                    "lighten, darken, random 1, random 2; slide values divided by 9) to IMAGE (PNG/JPEG, "
                    "grey or colour) or, without IMAGE, to a Fashion-MNIST test image, and save the results "
                    "as one labelled grid. Outputs are shown clipped to [0, 1]. "
                    "C2 (--learn): learn the 1×2 vertical-edge kernel [1, -1] from the slide's 4×5 image and "
                    "its edge map by gradient descent, printing the loss per step and the learned kernel.",
        epilog="examples: deepnn kernels photo.jpg -o kernels.png | deepnn kernels --index 7 | "
               "deepnn kernels --learn",
    )
    p.add_argument("image", nargs="?", help="image file (default: a Fashion-MNIST test image)")
    p.add_argument("-o", "--output", default="kernels.png",
                   help="PNG to write, or JPEG when it ends in .jpg (a photograph's grid at a third of the "
                        "size; default: kernels.png)")
    p.add_argument("--max-side", type=int, default=1024,
                   help="scale larger images down to this many pixels on the long side, keeping the aspect "
                        "ratio (default 1024)")
    p.add_argument("--index", type=int, default=0,
                   help="which Fashion-MNIST test image, without IMAGE (default 0)")
    p.add_argument("--data-dir",
                   help="folder with the Fashion-MNIST files (default: $DEEPNN_DATA, then the cache)")
    learn = p.add_argument_group("learning a kernel (C2)")
    learn.add_argument("--learn", action="store_true",
                       help="learn the edge kernel instead of drawing the grid")
    learn.add_argument("--steps", type=int, default=20, help="gradient-descent steps (default 20)")
    learn.add_argument("--lr", type=float, default=0.08, help="learning rate (default 0.08)")
    learn.add_argument("--seed", type=int, default=0, help="seed of the random initial kernel (default 0)")
    p.set_defaults(func=run)


def _fashion_mnist_image(index: int, data_dir: str | None) -> tuple[torch.Tensor, str]:
    """Test image ``index`` as a ``(1, 28, 28)`` float tensor in [0, 1], and its caption."""
    from ..data.fashion_mnist import CLASSES, load_split

    images, labels = load_split("test", data_dir)
    if not 0 <= index < len(images):
        raise UserError(f"--index {index} is out of range; the Fashion-MNIST test split has {len(images)} "
                        f"images (0..{len(images) - 1})")
    caption = f"Fashion-MNIST test #{index} ({CLASSES[labels[index]]})"
    return images[index].float().div(255).unsqueeze(0), caption  # (1, 28, 28) in [0, 1]


def _user_image(path: str, max_side: int) -> tuple[torch.Tensor, str]:
    """The image as ``(3, H, W)``, or ``(1, H, W)`` when its three channels are equal (a grey image),
    scaled down (antialiased) when its long side exceeds ``max_side``."""
    from ..data.images import load_image

    if max_side < 3:
        raise UserError(f"--max-side must be at least 3 (the kernels are 3×3), got {max_side}")
    image = load_image(path, channels=3)
    if torch.equal(image[0], image[1]) and torch.equal(image[1], image[2]):
        image = image[:1]
    H, W = image.shape[1:]
    if max(H, W) > max_side:
        scale = max_side / max(H, W)
        size = (max(1, round(H * scale)), max(1, round(W * scale)))
        image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0].clamp(0, 1)
    return image, Path(path).name


def plot_grid(image: torch.Tensor, filtered: dict[str, torch.Tensor], out: Path, title: str) -> None:
    """Save the input and each filtered ``(C, H, W)`` image as one 3×3 grid, clipped to [0, 1]
    (PNG, or JPEG when ``out`` ends in .jpg / .jpeg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {"input": image}
    panels.update({f"({chr(ord('a') + i)}) {name}": y for i, (name, y) in enumerate(filtered.items())})
    fig, axes = plt.subplots(3, 3, figsize=(9, 9.6))
    for ax, (label, panel) in zip(axes.flat, panels.items(), strict=True):
        pixels = panel.clamp(0, 1).permute(1, 2, 0).numpy()  # (H, W, C) for imshow
        ax.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(label)
        ax.axis("off")
    fig.suptitle(f"Lecture C3: image kernels (slide values / 9) on {title}")
    fig.tight_layout()
    save_figure(fig, out)


def _learn(args: argparse.Namespace) -> int:
    X, Y = vertical_edge_example()
    kernel, losses = learn_kernel(X, Y, (1, 2), steps=args.steps, lr=args.lr, seed=args.seed)
    print("C2: learn a 1×2 kernel K from X (4×5, every row [1, 1, 0, 0, 0]) and Y = X ⋆ [1, -1] "
          "(every row [0, 1, 0, 0]) by gradient descent on Σ (X ⋆ K − Y)²")
    for step, loss in enumerate(losses, 1):
        print(f"step {step:3d}  loss {loss:.6f}")
    values = ", ".join(f"{v:.4f}" for v in kernel.flatten().tolist())
    print(f"learned kernel: [[{values}]]  (the lecture's kernel: [[1, -1]])")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.learn:
        if args.image is not None:
            raise UserError("--learn uses the lecture's edge example and takes no IMAGE; drop one of them")
        return _learn(args)
    out = Path(args.output)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UserError(f"-o {args.output!r}: the grid is written as PNG or JPEG; give a path ending in .png "
                        "or .jpg")
    if not out.parent.is_dir():
        raise UserError(f"-o {args.output!r}: folder {str(out.parent)!r} does not exist; create it first")
    if args.image:
        image, title = _user_image(args.image, args.max_side)
    else:
        image, title = _fashion_mnist_image(args.index, args.data_dir)
    plot_grid(image, apply_kernels(image), out, title)
    print(f"wrote {out} ({len(IMAGE_KERNELS)} kernels on {title}, {image.shape[0]} channel(s), "
          f"{image.shape[1]}×{image.shape[2]})")
    return 0
