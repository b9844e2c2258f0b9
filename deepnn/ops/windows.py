"""Sliding windows: the shape arithmetic of lecture items C4–C6 and the strided view that
convolution (:mod:`deepnn.ops.conv`) and pooling (:mod:`deepnn.ops.pool`) share.

Two conventions for padding meet here, so the names say which one is meant:

* the lecture's formula counts the **total** padding ``p`` (rows added top *and* bottom),
  ``⌊(n − k + p + s)/s⌋``; :func:`conv_output_shape` takes it as ``pad_total``;
* PyTorch (``F.conv2d``, ``nn.MaxPool2d``) and our :func:`~deepnn.ops.conv2d` /
  :func:`~deepnn.ops.pool2d` take ``padding`` **per side**, so ``pad_total = 2 * padding``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import UserError

IntPair = int | Sequence[int]


def as_pair(value: IntPair, name: str, minimum: int | None = None) -> tuple[int, int]:
    """``value`` as ``(h, w)``: an int means the same for both axes (as in PyTorch).

    Raises:
        UserError: ``value`` is not an int or a pair of ints, or an entry is below ``minimum``.
    """
    pair = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, Sequence) else ()
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise UserError(f"{name} must be an int or a pair of ints (h, w), got {value!r}")
    if minimum is not None and min(pair) < minimum:
        raise UserError(f"{name} must be at least {minimum} on both axes, got {value!r}")
    return pair  # type: ignore[return-value]


def conv_output_shape(
    size: IntPair, kernel: IntPair, *, pad_total: IntPair = 0, stride: IntPair = 1, layers: int = 1
) -> tuple[int, int]:
    """Output height and width after ``layers`` identical convolution (or pooling) layers.

    The lecture's formula (C4–C6), applied once per layer:
    ``⌊(n_h − k_h + p_h + s_h)/s_h⌋ × ⌊(n_w − k_w + p_w + s_w)/s_w⌋``, where ``p`` is the
    **total** padding of an axis (both sides together). PyTorch's per-side ``padding``
    corresponds to ``pad_total = 2 * padding``.

    Args:
        size: input ``(n_h, n_w)``, or an int for a square input.
        kernel: ``(k_h, k_w)`` or an int.
        pad_total: rows and columns added in all, ``(p_h, p_w)`` or an int.
        stride: ``(s_h, s_w)`` or an int.
        layers: how many such layers are stacked.

    Returns:
        ``(m_h, m_w)``, always a pair.

    Raises:
        UserError: a non-positive size, kernel, stride or layer count, negative padding, or a
            kernel larger than the padded input at some layer.

    Example (C4: a 32×32 image through 5×5 kernels shrinks by 4 per layer):
        >>> conv_output_shape((32, 32), kernel=5), conv_output_shape((32, 32), kernel=5, layers=7)
        ((28, 28), (4, 4))
    """
    h, w = as_pair(size, "size", 1)
    kh, kw = as_pair(kernel, "kernel", 1)
    ph, pw = as_pair(pad_total, "pad_total", 0)
    sh, sw = as_pair(stride, "stride", 1)
    if not isinstance(layers, int) or layers < 1:
        raise UserError(f"layers must be a positive int, got {layers!r}")
    for layer in range(1, layers + 1):
        if kh > h + ph or kw > w + pw:
            at = f" at layer {layer}" if layers > 1 else ""
            raise UserError(
                f"kernel {kh}×{kw} is larger than the padded input {h + ph}×{w + pw}{at} "
                f"(input {h}×{w}, total padding {ph}×{pw}); "
                "use a smaller kernel, more padding or fewer layers"
            )
        h, w = (h - kh + ph + sh) // sh, (w - kw + pw + sw) // sw
    return h, w


def sliding_windows(
    x: torch.Tensor, kernel: IntPair, stride: IntPair = 1, padding: IntPair = 0, fill: float = 0.0
) -> torch.Tensor:
    """Every ``k_h × k_w`` window of the last two axes, as a view (no copy) of the padded input.

    ``x`` of shape ``(..., H, W)`` is padded by ``padding`` per side with ``fill`` and read
    with ``Tensor.unfold`` twice, giving ``(..., m_h, m_w, k_h, k_w)`` where
    ``(m_h, m_w) = conv_output_shape((H, W), kernel, pad_total=2 * padding, stride=stride)``.
    Window ``[i, j]`` starts at row ``i·s_h`` and column ``j·s_w`` of the padded input.
    Autograd differentiates through it (the backward adds each window's gradient back).

    Raises:
        UserError: ``x`` has fewer than two axes, or a bad kernel, stride or padding
            (see :func:`conv_output_shape`).
    """
    if x.ndim < 2:
        raise UserError(f"expected a tensor of shape (..., H, W), got shape {tuple(x.shape)}")
    kh, kw = as_pair(kernel, "kernel_size", 1)
    sh, sw = as_pair(stride, "stride", 1)
    ph, pw = as_pair(padding, "padding", 0)
    conv_output_shape(tuple(x.shape[-2:]), (kh, kw), pad_total=(2 * ph, 2 * pw), stride=(sh, sw))  # validates
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph), value=fill)  # (..., H + 2p_h, W + 2p_w)
    return x.unfold(-2, kh, sh).unfold(-2, kw, sw)  # (..., m_h, W', k_h) -> (..., m_h, m_w, k_h, k_w)
