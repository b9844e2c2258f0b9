"""Per-layer anatomy of a network: output shapes, parameters, FLOPs, receptive field, memory.

The lecture compares the classic CNNs by what they cost: the complexity table AlexNet vs
LeNet (C12), the curse of the last layer (C14), Inception vs plain convolutions (C16).
:func:`summary` measures all of it on one forward pass of a single example:

* **FLOPs** come from PyTorch's :class:`torch.utils.flop_counter.FlopCounterMode`, which
  counts a multiply-add as 2 FLOPs (matmul, convolution; bias additions, activations and
  pooling count 0). The lecture's tables count multiply-adds, so every table shows
  **MACs = FLOPs / 2** and says so.
* **Receptive field** of each output pixel, per axis: a layer with kernel k, stride s and
  dilation d maps (size r, jump j) to (r + d·(k-1)·j, j·s). Fields travel with the tensors
  (through ``torch.cat``, additions, activations), so branching blocks such as Inception and
  residual units get the right numbers; after flatten or global pooling there is none ("—").
* **Memory** is the bytes of each layer's output for one example.

Build big models on the meta device (:func:`summarize_model` does): shapes and FLOPs need no
data, so VGG-16 at 224×224 takes milliseconds and no memory.

    >>> from deepnn.models import create_model
    >>> s = summary(create_model("lenet"), (1, 28, 28))
    >>> s.params, s.macs
    (61706, 416520)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from ..errors import UserError
from ..models import create_model, model_info
from ..models.googlenet import Inception

__all__ = ["LayerRow", "LastLayer", "Summary", "summary", "summarize_model", "parse_shape",
           "compare_markdown", "inception_comparison", "totals_markdown", "si"]

# ((size_h, jump_h), (size_w, jump_w)) of a 4-D activation, stored on the tensor itself
Field = tuple[tuple[int, int], tuple[int, int]]
_FIELD = "_deepnn_receptive_field"
_POOLS = (nn.MaxPool2d, nn.AvgPool2d)
_ADAPTIVE_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass(frozen=True)
class LayerRow:
    """One call of a leaf module (shapes are per example, without the batch dimension)."""

    name: str  # qualified module name, e.g. "features.0"
    type: str  # class name, e.g. "Conv2d"
    kind: str  # "conv", "dense", "pool" or "other": how the lecture's tables group layers
    input_shape: tuple[int, ...] | None
    output_shape: tuple[int, ...] | None
    params: int  # counted at the module's first call only, so rows add up to the model's total
    flops: int  # FlopCounterMode's count: 2 per multiply-add
    field: Field | None  # receptive field of one output pixel, None after flatten/global pooling
    memory: int  # bytes of the output

    @property
    def macs(self) -> int:
        """Multiply-adds, the unit of the lecture's tables (FlopCounterMode FLOPs / 2)."""
        return self.flops // 2


@dataclass(frozen=True)
class LastLayer:
    """The first dense layer after the convolutions, the lecture's "curse of the last layer" (C14):
    c × m_h × m_w × n weights for c feature maps of m_h × m_w flattened into n outputs."""

    channels: int
    height: int
    width: int
    outputs: int
    share: float  # of all the model's parameters

    @property
    def weights(self) -> int:
        return self.channels * self.height * self.width * self.outputs

    def __str__(self) -> str:
        return (
            f"{self.channels} × {self.height} × {self.width} × {self.outputs} = {self.weights:,} weights, "
            f"{self.share:.1%} of all parameters"
        )


@dataclass(frozen=True)
class Summary:
    """A network's per-layer anatomy for one example, with totals that equal the model's own:
    ``params`` = all its parameters, ``flops`` = FlopCounterMode's total for the forward pass."""

    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    rows: list[LayerRow]
    params: int
    flops: int

    @property
    def macs(self) -> int:
        """Total multiply-adds per example (FLOPs / 2)."""
        return self.flops // 2

    @property
    def memory(self) -> int:
        """Bytes of all layer outputs for one example, roughly what training keeps for the backward pass
        (an upper bound: an in-place ReLU's output is counted again although it reuses its input's memory)."""
        return sum(r.memory for r in self.rows)

    @property
    def last_layer(self) -> LastLayer | None:
        """The first dense layer that reads flattened feature maps (C14), or None (e.g. NiN has none)."""
        maps = None
        for row in self.rows:
            if row.kind == "dense":
                if maps is None or row.input_shape != (maps[0] * maps[1] * maps[2],):
                    return None
                c, h, w = maps
                n = row.output_shape[-1]
                return LastLayer(c, h, w, n, share=c * h * w * n / self.params)
            if row.output_shape is not None and len(row.output_shape) == 3:
                maps = row.output_shape
        return None

    def to_markdown(self) -> str:
        """The per-layer table (Markdown, readable as plain text) and the totals."""
        head = ["#", "layer", "type", "output", "params", "MACs", "RF", "jump", "memory"]
        lines = [
            _md_row(head),
            _md_row(["---:", "---", "---", "---", "---:", "---:", "---:", "---:", "---:"]),
        ]
        for i, r in enumerate(self.rows, 1):
            size, jump = _field_str(r.field)
            lines.append(_md_row([str(i), r.name, r.type, _shape_str(r.output_shape), f"{r.params:,}",
                                  si(r.macs), size, jump, si(r.memory, "B")]))
        lines.append(_md_row(["", "**total**", "", _shape_str(self.output_shape), f"**{self.params:,}**",
                              f"**{si(self.macs)}**", "", "", si(self.memory, "B")]))
        lines.append("")
        lines.append(
            f"{self.name}, input {_shape_str(self.input_shape)}: {self.params:,} parameters, "
            f"{self.macs:,} MACs = {self.flops:,} FLOPs per example (FlopCounterMode; 1 MAC = 2 FLOPs), "
            f"{si(self.memory, 'B')} of activations."
        )
        if self.last_layer is not None:
            lines.append(f"Curse of the last layer (C14): the first dense layer has {self.last_layer}.")
        return "\n".join(lines)


class _ReceptiveFields(TorchFunctionMode):
    """Carries receptive fields through every torch op that keeps the spatial grid.

    An op's 4-D outputs take the largest field among its 4-D inputs of the same height and
    width (elementwise ops, batch norm, ``torch.cat`` of Inception paths, residual additions).
    An op that changes the grid leaves its output without a field; the conv and pooling
    modules then set the right one from their kernel, stride and dilation (:func:`_step`).
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        fields = [
            (t.shape[-2:], f)
            for t in tree_leaves((args, kwargs))
            if isinstance(t, Tensor) and t.dim() == 4 and (f := getattr(t, _FIELD, None))
        ]
        if fields:
            for y in tree_leaves(out):
                if isinstance(y, Tensor) and y.dim() == 4:
                    same_grid = [f for hw, f in fields if hw == y.shape[-2:]]
                    if same_grid:
                        setattr(y, _FIELD, max(same_grid))
        return out


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[1])


def _step(module: nn.Module, field: Field, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> Field | None:
    """Receptive field after a conv or pooling layer: (r, j) → (r + d·(k-1)·j, j·s) per axis."""
    if isinstance(module, nn.Conv2d):
        kernel, stride, dilation = module.kernel_size, module.stride, module.dilation
    elif isinstance(module, _POOLS):
        kernel, stride = _pair(module.kernel_size), _pair(module.stride)
        dilation = _pair(getattr(module, "dilation", 1))  # average pooling has no dilation
    else:  # adaptive pooling: identity, global (no field), or even windows of in/out pixels
        if out_hw == in_hw:
            return field
        if out_hw == (1, 1) or any(i % o for i, o in zip(in_hw, out_hw, strict=True)):
            return None
        kernel = stride = (in_hw[0] // out_hw[0], in_hw[1] // out_hw[1])
        dilation = (1, 1)
    return tuple(
        (r + d * (k - 1) * j, j * s)  # type: ignore[return-value]
        for (r, j), k, s, d in zip(field, kernel, stride, dilation, strict=True)
    )


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "dense"
    if isinstance(module, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
                           nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)):
        return "pool"
    return "other"


def _first_tensor(obj: Any) -> Tensor | None:
    return next((t for t in tree_leaves(obj) if isinstance(t, Tensor)), None)


def summary(model: nn.Module, input_shape: Sequence[int], *, name: str | None = None) -> Summary:
    """Per-layer rows for the leaf modules of ``model``, in forward order, and totals.

    Runs one forward pass in eval mode on an input of shape (1, *input_shape) (zeros, on the
    device and dtype of the model's parameters; build the model on the meta device to
    skip the arithmetic). Forward hooks record each leaf call; FLOPs per call are the
    difference of FlopCounterMode's running total around it, so a module called twice gets
    two rows and the rows add up to FlopCounterMode's total. FLOPs and parameters that
    belong to no leaf call (functional ops in a ``forward``, unused modules) go into a last
    row named ``(outside leaf modules)``.

    Args:
        model: any ``nn.Module`` that takes one tensor.
        input_shape: one example's shape without the batch, e.g. ``(1, 28, 28)``.
        name: title of the summary (default: the model's class name).

    Returns:
        A :class:`Summary`; ``summary(...).to_markdown()`` renders it.
    """
    shape = tuple(int(s) for s in input_shape)
    ref = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    x = torch.zeros((1, *shape), device=device, dtype=dtype)  # (1, C, H, W)
    if len(shape) == 3:
        setattr(x, _FIELD, ((1, 1), (1, 1)))  # each input pixel sees itself

    counter = FlopCounterMode(display=False)
    rows: list[LayerRow] = []
    counted: set[int] = set()  # ids of parameters already in a row (shared modules, tied weights)
    started: dict[int, int] = {}

    def pre_hook(module: nn.Module, inputs: tuple) -> None:
        started[id(module)] = counter.get_total_flops()

    def make_hook(qualified: str):
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            x_in, y = _first_tensor(inputs), _first_tensor(output)
            spatial = isinstance(module, (nn.Conv2d, *_POOLS, *_ADAPTIVE_POOLS))
            if spatial and x_in is not None and y is not None and x_in.dim() == 4 and y.dim() == 4:
                field_in = getattr(x_in, _FIELD, None)
                in_hw, out_hw = tuple(x_in.shape[-2:]), tuple(y.shape[-2:])
                setattr(y, _FIELD, field_in and _step(module, field_in, in_hw, out_hw))
            own = [p for p in module.parameters(recurse=False) if id(p) not in counted]
            counted.update(map(id, own))
            rows.append(LayerRow(
                name=qualified, type=type(module).__name__, kind=_kind(module),
                input_shape=tuple(x_in.shape[1:]) if x_in is not None else None,
                output_shape=tuple(y.shape[1:]) if y is not None else None,
                params=sum(p.numel() for p in own),
                flops=counter.get_total_flops() - started.pop(id(module)),
                field=getattr(y, _FIELD, None) if y is not None and y.dim() == 4 else None,
                memory=y.numel() * y.element_size() if y is not None else 0,
            ))

        return hook

    leaves = [(n, m) for n, m in model.named_modules() if next(m.children(), None) is None]
    handles = [h for n, m in leaves for h in (m.register_forward_pre_hook(pre_hook),
                                              m.register_forward_hook(make_hook(n or type(m).__name__)))]
    training = model.training
    model.eval()  # batch norm on a single example, dropout off: same shapes and FLOPs
    try:
        with torch.no_grad(), counter, _ReceptiveFields():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(training)

    total_params, total_flops = sum(p.numel() for p in model.parameters()), counter.get_total_flops()
    rest_params = total_params - sum(r.params for r in rows)
    rest_flops = total_flops - sum(r.flops for r in rows)
    if rest_params or rest_flops:
        rows.append(LayerRow("(outside leaf modules)", "—", "other", None, None, rest_params, rest_flops,
                             field=None, memory=0))
    y = _first_tensor(out)
    output_shape = tuple(y.shape[1:]) if y is not None else ()
    return Summary(name or type(model).__name__, shape, output_shape, rows, total_params, total_flops)


def parse_shape(text: str, what: str = "--input") -> tuple[int, int, int]:
    """``"3x224x224"`` (or ``3×224×224``) → ``(3, 224, 224)``; anything else raises :class:`UserError`."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise UserError(
            f"bad {what} {text!r}: write channels x height x width with positive integers, e.g. 3x224x224"
        )
    c, h, w = (int(p) for p in parts)
    return c, h, w


def summarize_model(name: str, input_shape: Sequence[int] | None = None, **kwargs: Any) -> Summary:
    """:func:`summary` of a registered image classifier, built on the meta device (fast at any size).

    ``input_shape`` (C, H, W) defaults to the model's paper input (``in_channels`` ×
    ``input_size`` × ``input_size``); another shape builds the model with those
    ``in_channels`` and ``input_size`` (e.g. ``(1, 28, 28)``: the Fashion-MNIST variant).
    ``kwargs`` go to the builder (``num_classes``, ...).

    Example:
        >>> summarize_model("lenet").output_shape
        (10,)
    """
    info = model_info(name)
    if info.task != "classification":
        raise UserError(f"summary covers image classifiers; {info.name!r} is a {info.task} model")
    defaults = info.defaults
    default_shape = (defaults.get("in_channels"), defaults.get("input_size"), defaults.get("input_size"))
    shape = tuple(input_shape) if input_shape is not None else default_shape
    if None in shape:
        raise UserError(f"{info.name!r} has no default input shape; pass one, e.g. --input 3x224x224")
    if shape != default_shape:
        c, h, w = shape
        if h != w:
            raise UserError(
                f"the zoo's models take square images, not {h}×{w}; pass e.g. --input {c}x{h}x{h}"
            )
        kwargs = {"in_channels": c, "input_size": h, **kwargs}
    with torch.device("meta"):
        model = create_model(info.name, **kwargs)
    return summary(model, shape, name=info.name)


def compare_markdown(a: Summary, b: Summary) -> str:
    """Two models side by side, layer kind by layer kind, like the lecture's complexity table (C12).

    Rows are the layers that do multiply-adds (Conv1, Conv2, ..., Dense1, ...), then the
    totals (all parameters, including normalisation layers) and the ratio a / b.
    """

    def numbered(s: Summary) -> dict[str, LayerRow]:
        count: dict[str, int] = {}
        out = {}
        for r in s.rows:
            if r.flops:
                label = {"conv": "Conv", "dense": "Dense"}.get(r.kind, r.type)
                count[label] = count.get(label, 0) + 1
                out[f"{label}{count[label]}"] = r
        return out

    ra, rb = numbered(a), numbered(b)
    cell = lambda rows, k, f: f(rows[k]) if k in rows else ""  # noqa: E731
    lines = [
        _md_row(["layer", f"{a.name} params", f"{b.name} params", f"{a.name} MACs", f"{b.name} MACs"]),
        _md_row(["---", "---:", "---:", "---:", "---:"]),
    ]
    for k in [*ra, *(k for k in rb if k not in ra)]:
        params = [cell(rows, k, lambda r: f"{r.params:,}") for rows in (ra, rb)]
        macs = [cell(rows, k, lambda r: si(r.macs)) for rows in (ra, rb)]
        lines.append(_md_row([k, *params, *macs]))
    lines.append(_md_row(["**total**", f"{a.params:,}", f"{b.params:,}", si(a.macs), si(b.macs)]))
    lines.append(
        _md_row([f"{a.name} / {b.name}", _ratio(a.params, b.params), "1×", _ratio(a.macs, b.macs), "1×"])
    )
    lines.append("")
    lines.append(
        f"inputs: {a.name} {_shape_str(a.input_shape)}, {b.name} {_shape_str(b.input_shape)}; "
        f"MACs = multiply-adds per example (FlopCounterMode FLOPs / 2)."
    )
    return "\n".join(lines)


def inception_comparison(in_shape: Sequence[int] = (192, 28, 28), out_channels: int = 256) -> list[Summary]:
    """The lecture's C16 table: an Inception block vs one 3×3 and one 5×5 convolution, same input and output.

    The block (:class:`deepnn.models.googlenet.Inception`) is GoogLeNet's 3a (Szegedy et al.
    2014, Table 1) scaled to ``out_channels``:
    1×1 → out/4; 1×1 (in/2) → 3×3 → out/2; 1×1 (in/12) → 5×5 → out/8; 3×3 max pool → 1×1 → out/8.
    For (192, 28, 28) → 256 that is 64; 96 → 128; 16 → 32; 32, the lecture's 0.16M parameters and
    128M MACs against 0.44M / 346M (3×3) and 1.22M / 963M (5×5). Shapes: (192, 28, 28) → (256, 28, 28).
    """
    c, h, w = (int(v) for v in in_shape)
    if out_channels <= 0 or out_channels % 8:
        raise UserError(
            f"--out {out_channels}: the Inception split needs a positive multiple of 8 "
            "(1/4, 1/2, 1/8, 1/8 of the channels), e.g. --out 256"
        )
    with torch.device("meta"):
        candidates = {
            "Inception": Inception(
                c,
                out_channels // 4,
                (max(1, round(c / 2)), out_channels // 2),
                (max(1, round(c / 12)), out_channels // 8),
                out_channels // 8,
            ),
            "3×3 conv": nn.Conv2d(c, out_channels, 3, padding=1),
            "5×5 conv": nn.Conv2d(c, out_channels, 5, padding=2),
        }
    return [summary(m, (c, h, w), name=name) for name, m in candidates.items()]


def totals_markdown(summaries: Sequence[Summary]) -> str:
    """One row of totals per summary: output shape, parameters and MACs, rounded and exact."""
    lines = [
        _md_row(["", "output", "params", "MACs", "params (exact)", "MACs (exact)", "FLOPs (exact)"]),
        _md_row(["---", "---", "---:", "---:", "---:", "---:", "---:"]),
    ]
    for s in summaries:
        lines.append(_md_row([s.name, _shape_str(s.output_shape), si(s.params), si(s.macs), f"{s.params:,}",
                              f"{s.macs:,}", f"{s.flops:,}"]))
    return "\n".join(lines)


def si(n: float, unit: str = "") -> str:
    """Three significant digits with K/M/G (1000-based): ``si(105_415_200) == "105M"``."""
    rounded = abs(float(f"{n:.3g}"))  # choose the prefix after rounding: 999,999 is "1.00M", not "1000K"
    prefix, scale = next(((p, s) for p, s in (("G", 1e9), ("M", 1e6), ("K", 1e3)) if rounded >= s), ("", 1))
    v = math.copysign(rounded, n) / scale
    digits = max(0, 3 - len(str(int(abs(v))))) if v and prefix else 0
    return f"{v:.{digits}f}{prefix}{unit}"


def _ratio(a: int, b: int) -> str:
    r = a / b if b else math.inf
    return f"{r:,.0f}×" if r >= 100 else f"{r:.3g}×"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _shape_str(shape: tuple[int, ...] | None) -> str:
    return "×".join(map(str, shape)) if shape else "—"


def _field_str(field: Field | None) -> tuple[str, str]:
    if field is None:
        return "—", "—"
    (rh, jh), (rw, jw) = field
    return (str(rh) if rh == rw else f"{rh}×{rw}"), (str(jh) if jh == jw else f"{jh}×{jw}")
