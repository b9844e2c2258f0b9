"""Pooling from scratch: lecture item C10.

A pooling layer slides a window like a convolution (same padding and stride, same output
shape formula) but has no parameters: it returns the maximum (the strongest signal in the
window) or the mean (the average signal) of each window, separately for every channel, so
``#output channels = #input channels``. Pooling makes a feature map less sensitive to
where exactly a pattern sits (see :func:`deepnn.ops.edges.vertical_edge_example`).
"""

from __future__ import annotations

import torch

from ..errors import UserError
from .windows import IntPair, as_pair, sliding_windows

POOL_MODES = ("max", "avg")


def pool2d(
    x: torch.Tensor,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    mode: str = "max",
) -> torch.Tensor:
    """2-D max or average pooling of every channel (C10), same result as PyTorch's.

    Matches ``F.max_pool2d(x, kernel_size, stride, padding)`` (padding counts as ``-inf``, so
    it never wins; ties send the gradient to the first maximum, as PyTorch does) and
    ``F.avg_pool2d(x, kernel_size, stride, padding)`` (padding counts as zeros and every
    window is divided by ``k_h · k_w``: PyTorch's default ``count_include_pad=True``).

    Args:
        x: ``(..., H, W)``, e.g. ``(B, C, H, W)``; every leading axis is pooled separately.
        kernel_size: window ``(k_h, k_w)`` or an int.
        stride: an int or ``(s_h, s_w)``; ``None`` (default, as in PyTorch) means the window size.
            The lecture's 3×3 example slides by 1: pass ``stride=1``.
        padding: per side, an int or ``(p_h, p_w)``, at most half the window (as in PyTorch).
        mode: ``"max"`` or ``"avg"``.

    Returns:
        ``(..., m_h, m_w)`` with ``(m_h, m_w) = conv_output_shape((H, W), kernel_size,
        pad_total=2 * padding, stride=stride)``.

    Raises:
        UserError: unknown mode, padding over half the window, or a bad window (see
            :func:`~deepnn.ops.windows.sliding_windows`).

    Example (C10):
        >>> X = torch.arange(9.).reshape(3, 3)
        >>> pool2d(X, 2, stride=1), pool2d(X, 2, stride=1, mode="avg")
        (tensor([[4., 5.],
                [7., 8.]]), tensor([[2., 3.],
                [5., 6.]]))
    """
    if mode not in POOL_MODES:
        raise UserError(f"unknown pooling mode {mode!r}; choose one of {', '.join(POOL_MODES)}")
    kh, kw = as_pair(kernel_size, "kernel_size", 1)
    ph, pw = as_pair(padding, "padding", 0)
    if 2 * ph > kh or 2 * pw > kw:
        raise UserError(f"padding {padding!r} is more than half the {kh}×{kw} window, so a window could lie "
                        "entirely in the padding; use padding ≤ kernel_size // 2")
    stride = (kh, kw) if stride is None else stride
    fill = float("-inf") if mode == "max" else 0.0
    windows = sliding_windows(x, (kh, kw), stride, (ph, pw), fill)  # (..., m_h, m_w, k_h, k_w), a view
    if mode == "max":
        return windows.flatten(-2).max(dim=-1).values  # (..., m_h, m_w); max(dim) picks the first maximum
    return windows.mean(dim=(-2, -1))  # (..., m_h, m_w)
