"""PyTorch's convolution and pooling layers with our from-scratch forward (:mod:`deepnn.ops`).

Each class subclasses its ``torch.nn`` twin and only replaces ``forward``, so constructor
arguments, parameter initialisation (and the random numbers it draws), ``repr`` and
state-dict keys are PyTorch's: a model built with ``conv_impl="scratch"`` loads a
``conv_impl="torch"`` checkpoint and vice versa. Options our ops do not implement
(``groups``, ``dilation``, ``ceil_mode``, non-zero padding modes, ...) raise a
:class:`~deepnn.errors.UserError` when the layer is built instead of computing something else.
:class:`AdaptiveAvgPool2d` (the global average pooling of NiN, GoogLeNet and ResNet, C15) is
average pooling whose window is computed from the input size.

    >>> layer = Conv2d(1, 6, kernel_size=5, padding=2)
    >>> layer(torch.zeros(8, 1, 28, 28)).shape
    torch.Size([8, 6, 28, 28])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..ops import conv2d, pool2d
from ..ops.windows import as_pair


def _require_defaults(layer: nn.Module, **options: tuple[Any, Any]) -> None:
    """Raise if an option (name → (value, the only supported value)) is set to something else."""
    for name, (value, supported) in options.items():
        if value != supported:
            raise UserError(
                f"the scratch {type(layer).__name__} does not support {name}={value!r} (only {supported!r}); "
                "build the model with conv_impl='torch' to use it"
            )


def _explicit_padding(padding: str | tuple[int, ...], kernel_size: tuple[int, ...]) -> tuple[int, int]:
    """PyTorch's ``'valid'`` / ``'same'`` padding strings as per-side ``(p_h, p_w)``."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        if any(k % 2 == 0 for k in kernel_size):
            raise UserError(f"padding='same' with the even kernel {tuple(kernel_size)} pads unevenly, which "
                            "the scratch Conv2d does not support; use an odd kernel or conv_impl='torch'")
        return kernel_size[0] // 2, kernel_size[1] // 2
    return as_pair(padding, "padding", 0)


class Conv2d(nn.Conv2d):
    """``torch.nn.Conv2d`` computed by :func:`deepnn.ops.conv2d` (im2col + matrix multiply).

    Input ``(B, c_i, H, W)`` or ``(c_i, H, W)`` → ``(B, c_o, m_h, m_w)`` (or ``(c_o, m_h, m_w)``).
    Supports every constructor argument at PyTorch's defaults for ``groups`` (1),
    ``dilation`` (1) and ``padding_mode`` (``'zeros'``); other values raise.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _require_defaults(self, groups=(self.groups, 1), dilation=(self.dilation, (1, 1)),
                          padding_mode=(self.padding_mode, "zeros"))
        _explicit_padding(self.padding, self.kernel_size)  # rejects 'same' with even kernels now

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding = _explicit_padding(self.padding, self.kernel_size)
        return conv2d(x, self.weight, self.bias, self.stride, padding)


class MaxPool2d(nn.MaxPool2d):
    """``torch.nn.MaxPool2d`` computed by :func:`deepnn.ops.pool2d` (``mode="max"``).

    ``(..., H, W)`` → ``(..., m_h, m_w)``. ``dilation``, ``ceil_mode`` and ``return_indices``
    must keep PyTorch's defaults.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _require_defaults(self, dilation=(as_pair(self.dilation, "dilation"), (1, 1)),
                          ceil_mode=(self.ceil_mode, False), return_indices=(self.return_indices, False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool2d(x, self.kernel_size, self.stride, self.padding, mode="max")


class AvgPool2d(nn.AvgPool2d):
    """``torch.nn.AvgPool2d`` computed by :func:`deepnn.ops.pool2d` (``mode="avg"``).

    ``(..., H, W)`` → ``(..., m_h, m_w)``. ``ceil_mode``, ``count_include_pad`` and
    ``divisor_override`` must keep PyTorch's defaults.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _require_defaults(self, ceil_mode=(self.ceil_mode, False),
                          count_include_pad=(self.count_include_pad, True),
                          divisor_override=(self.divisor_override, None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool2d(x, self.kernel_size, self.stride, self.padding, mode="avg")


def _averaging_matrix(m: int, n: int, like: torch.Tensor) -> torch.Tensor:
    """``(m, n)`` matrix whose row ``i`` averages inputs ``floor(i·n/m)`` to ``ceil((i+1)·n/m) - 1``."""
    a = torch.zeros(m, n, dtype=like.dtype, device=like.device)
    for i in range(m):
        start, end = (i * n) // m, -(-(i + 1) * n // m)
        a[i, start:end] = 1.0 / (end - start)
    return a


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """``torch.nn.AdaptiveAvgPool2d``: average pooling to a fixed output size, from scratch.

    Output cell ``i`` of an axis with ``n`` inputs and ``m`` outputs averages inputs
    ``floor(i·n/m)`` to ``ceil((i+1)·n/m) - 1``, as PyTorch does. When ``m`` divides ``n`` these
    are the windows of plain ``n/m``-wide average pooling with stride ``n/m``, computed by
    :func:`deepnn.ops.pool2d`: global average pooling (``output_size=1``) is average pooling
    whose window is the whole map. Otherwise the windows differ in size (and may overlap), and
    each axis is averaged by a matrix product, ``(m_h, H) @ x @ (W, m_w)``.

    ``(..., H, W)`` → ``(..., m_h, m_w)``; ``None`` in ``output_size`` keeps that axis' size.

        >>> AdaptiveAvgPool2d(1)(torch.arange(4.).reshape(1, 2, 2))
        tensor([[[1.5000]]])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        size = (self.output_size, self.output_size) if isinstance(self.output_size, int) else self.output_size
        mh, mw = (h if size[0] is None else size[0]), (w if size[1] is None else size[1])
        if h % mh == 0 and w % mw == 0:  # equal windows: (..., H, W) -> (..., m_h, m_w)
            window = (h // mh, w // mw)
            return pool2d(x, window, window, mode="avg")
        return _averaging_matrix(mh, h, x) @ x @ _averaging_matrix(mw, w, x).T  # (..., m_h, m_w)
