"""``deepnn features RUN IMAGE -o maps.png`` and ``deepnn features RUN --filters -o filters.png``.

What a trained network sees: the image prepared as ``deepnn predict`` prepares it, then the feature
maps of one or more layers (default: what ``forward_features`` returns, the model's
``default_cfg.feature_layer``; ``--layer NAME`` any named module, read with a forward hook), one
small picture per channel. ``--filters`` draws the kernels of the first convolution
(``default_cfg.first_conv``) instead.
"""

from __future__ import annotations

import argparse
import difflib
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..analysis.gradflow import save_figure
from ..errors import UserError
from ..runs import load_run
from .predict import prepare


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features", help="draw a trained run's feature maps for an image, or its first-layer filters",
        description="Feature maps of a trained image classifier: IMAGE is prepared exactly as `deepnn predict` "
                    "prepares it (grey or colour, resized, normalised, inverted when its border is light), then "
                    "the outputs of the chosen layers are drawn, one small picture per channel (each scaled to "
                    "its own range). Default layer: the model's feature layer, whose output forward_features "
                    "returns (the last convolutional maps). --filters draws the first convolution's kernels.",
        epilog="examples:\n"
               "  deepnn features runs/lenet IMAGE.png -o maps.png\n"
               "  deepnn features runs/lenet IMAGE.png --layer features.2 --layer features.7 -o maps.png\n"
               "  deepnn features runs/lenet --filters -o filters.png",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run folder (or a .safetensors checkpoint) of an image classifier")
    p.add_argument("image", metavar="IMAGE", nargs="?", help="image file (PNG/JPEG); not with --filters")
    p.add_argument("-o", "--output", default="features.png", help="PNG to write (default: features.png)")
    p.add_argument("--layer", action="append", metavar="NAME",
                   help="module whose output to draw (repeatable; e.g. features.2); default: the feature layer")
    p.add_argument("--max-maps", type=int, default=32, help="at most this many maps per layer (default 32)")
    p.add_argument("--filters", action="store_true", help="draw the first convolution's kernels instead")
    p.add_argument("--invert", choices=["auto", "yes", "no"], default="auto",
                   help="invert grey levels as `deepnn predict` does: auto when the image's border is light")
    p.add_argument("--checkpoint", choices=["best", "last"], default="last",
                   help="last (default): the weights results.json reports; best: the best validated")
    p.set_defaults(func=run)


def _check_output(path: str) -> Path:
    out = Path(path)
    if out.is_dir() or path.endswith(("/", "\\")):
        raise UserError(f"-o {path!r} is a folder; give a file name such as {str(out / 'features.png')!r}")
    if out.suffix.lower() != ".png":
        raise UserError(f"-o {path!r}: the pictures are written as PNG; give a path ending in .png")
    if not out.parent.is_dir():
        raise UserError(f"-o {path!r}: folder {str(out.parent)!r} does not exist; create it first")
    return out


def _layer_outputs(model: nn.Module, x: Tensor, names: list[str]) -> tuple[dict[str, Tensor], Tensor]:
    """The outputs of the modules ``names`` (forward hooks) and the logits, for one image batch."""
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules or name == "":
            close = difflib.get_close_matches(name, modules, n=3, cutoff=0.5)
            convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)][:4]
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise UserError(f"no layer {name!r} in this {type(model).__name__}; {hint}valid names include "
                            f"{', '.join([*dict.fromkeys([*convs, getattr(model, 'feature_layer', None) or ''])][:6])}"
                            " (`deepnn summary MODEL` lists the layers)")
    outputs: dict[str, Tensor] = {}
    handles = [modules[n].register_forward_hook(lambda m, a, out, n=n: outputs.setdefault(n, out)) for n in names]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    for name, out in outputs.items():
        if not isinstance(out, Tensor):
            raise UserError(f"layer {name!r} returns a {type(out).__name__}, not a tensor; pick another --layer")
    return outputs, logits


COLUMNS = 8  # pictures per row


def _rows(n: int) -> int:
    return max(1, math.ceil(n / COLUMNS))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_maps(image: Tensor, caption: str, maps: dict[str, tuple[str, Tensor]], max_maps: int, out: Path,
              title: str) -> None:
    """The input image, then per layer up to ``max_maps`` channels of its ``(C, H, W)`` maps (a ``(N,)``
    vector is one strip), each on its own colour scale, 8 per row, axes off."""
    plt = _pyplot()
    sections = []
    for name, (kind, m) in maps.items():
        panels = list(m[:max_maps]) if m.ndim == 3 else [m.reshape(1, -1)]
        shape = "×".join(map(str, m.shape))
        shown = f", first {len(panels)}" if m.ndim == 3 and len(panels) < m.shape[0] else ""
        sections.append((f"{name} ({kind}): {shape}{shown}, each on its own colour scale", panels))
    rows = [_rows(len(p)) for _, p in sections]
    fig = plt.figure(figsize=(10, 2.6 + sum(1.25 * r + 0.45 for r in rows)), layout="constrained")
    subfigs = fig.subfigures(len(sections) + 1, 1, height_ratios=[2.2] + [1.25 * r + 0.45 for r in rows])
    ax = subfigs[0].subplots()
    pixels = image.clamp(0, 1).permute(1, 2, 0).numpy()
    ax.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_title(caption, fontsize=10)
    ax.axis("off")
    subfigs[0].suptitle(title, fontsize=12)
    for sf, (label, panels), r in zip(subfigs[1:], sections, rows, strict=True):
        axes = sf.subplots(r, COLUMNS, squeeze=False)
        for i, a in enumerate(axes.flat):
            a.axis("off")
            if i < len(panels):
                a.imshow(panels[i].numpy(), cmap="viridis", interpolation="nearest", aspect="auto"
                         if panels[i].shape[0] == 1 else "equal")
                a.set_title(f"#{i}", fontsize=7, pad=2)
        sf.suptitle(label, fontsize=10)
    save_figure(fig, out)


def plot_filters(weight: Tensor, max_maps: int, out: Path, title: str) -> None:
    """Kernels ``(out, in, kh, kw)`` as small pictures: grey input → red (positive) / blue (negative) around
    0, each on its own symmetric scale; RGB input → colour, each scaled to [0, 1]."""
    plt = _pyplot()
    w = weight[:max_maps].detach().float().cpu()
    r = _rows(len(w))
    fig, axes = plt.subplots(r, COLUMNS, figsize=(10, 1.35 * r + 0.8), squeeze=False)
    for i, a in enumerate(axes.flat):
        a.axis("off")
        if i >= len(w):
            continue
        k = w[i]
        if k.shape[0] == 3:
            lo, hi = k.min(), k.max()
            a.imshow(((k - lo) / (hi - lo + 1e-12)).permute(1, 2, 0).numpy(), interpolation="nearest")
        else:
            k = k.mean(0)
            m = float(k.abs().max()) or 1.0
            a.imshow(k.numpy(), cmap="bwr", vmin=-m, vmax=m, interpolation="nearest")
        a.set_title(f"#{i}", fontsize=7, pad=2)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, out)


def run(args: argparse.Namespace) -> int:
    out = _check_output(args.output)
    if args.max_maps < 1:
        raise UserError(f"--max-maps must be at least 1, got {args.max_maps}")
    if args.filters and args.image:
        raise UserError("--filters draws the first convolution's kernels and takes no IMAGE; drop one of them")
    if not args.filters and not args.image:
        raise UserError("give an IMAGE to draw its feature maps, or --filters for the first-layer kernels")
    if args.filters and args.layer:
        raise UserError("--filters draws the first convolution; --layer is for feature maps of an IMAGE")
    loaded = load_run(args.run, args.checkpoint)
    if loaded.kind.task != "classification":
        raise UserError(f"{args.run} is a {loaded.kind.task} run; features draws an image classifier's maps "
                        "(use `deepnn sample` for a language model)")
    model, d, name = loaded.model, loaded.meta["data"], loaded.cfg.model.name
    cfg = model.default_cfg
    if args.filters:
        if cfg.first_conv is None:
            raise UserError(f"{name} has no convolution, so no filters to draw; try a CNN run")
        weight = model.get_submodule(cfg.first_conv).weight
        o, i, kh, kw = weight.shape
        shown = f", first {min(o, args.max_maps)}" if o > args.max_maps else ""
        title = f"{name}: first convolution {cfg.first_conv}, {o} kernels {kh}×{kw} over {i} input channel(s){shown}"
        colours = "" if i == 3 else "\nred > 0, blue < 0, white 0; each kernel on its own scale"
        plot_filters(weight, args.max_maps, out, title + colours)
        print(f"wrote {out} ({min(o, args.max_maps)} of {o} kernels of {cfg.first_conv}, {kh}×{kw})")
        return 0
    c, h, _ = d["input_shape"]
    x = prepare(args.image, c, h, d["mean"], d["std"], args.invert)  # (C, H, W), normalised
    layers = args.layer or [cfg.feature_layer]
    outputs, logits = _layer_outputs(model, x[None], layers)
    p = logits.softmax(1)[0]
    k = int(p.argmax())
    classes = d["classes"]
    shown = (x * d["std"] + d["mean"]).clamp(0, 1)  # what the network sees, before normalisation
    caption = f"input {Path(args.image).name} ({c}×{h}×{h}): predicted {classes[k]} ({p[k]:.2f})"
    maps = {n: (type(model.get_submodule(n)).__name__, outputs[n][0].float().cpu()) for n in layers}
    plot_maps(shown, caption, maps, args.max_maps, out, f"{name}: feature maps")
    print(f"wrote {out} ({', '.join(f'{n} {tuple(m.shape)}' for n, (_, m) in maps.items())}; "
          f"predicted {classes[k]} {p[k]:.3f})")
    return 0
