"""Convolution from scratch: lecture items C1, C2 and C5–C9.

:func:`corr2d` is the lecture's readable double loop (C1), kept as the reference.
:func:`conv2d` is the same operation done fast: every input window is copied into one
column of a matrix ("im2col", Chellapilla, Puri & Simard 2006, "High performance
convolutional neural networks for document processing"), and one matrix multiply with the
flattened kernels then computes every output pixel of every channel in the batch at once.
Autograd differentiates it; the backward of the window view adds gradients back into the
input (col2im). :func:`conv1x1` shows C9: a 1×1 convolution is a dense layer applied at
every pixel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UserError
from .windows import IntPair, conv_output_shape, sliding_windows


def corr2d(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """2-D cross-correlation of one channel, as a double loop over output pixels (C1, C2).

    ``Y[i, j] = sum(X[i:i + k_h, j:j + k_w] * K)``.

    Args:
        X: input ``(n_h, n_w)``.
        K: kernel ``(k_h, k_w)``.

    Returns:
        ``(n_h − k_h + 1, n_w − k_w + 1)``.

    Example (C1):
        >>> corr2d(torch.arange(9.).reshape(3, 3), torch.arange(4.).reshape(2, 2))
        tensor([[19., 25.],
                [37., 43.]])
    """
    if X.ndim != 2 or K.ndim != 2:
        raise UserError(f"corr2d takes a 2-D input and a 2-D kernel, got shapes {tuple(X.shape)} and "
                        f"{tuple(K.shape)}; use conv2d for channels and batches")
    kh, kw = K.shape
    out_shape = conv_output_shape(tuple(X.shape), (kh, kw))  # (n_h − k_h + 1, n_w − k_w + 1), or raises
    Y = torch.zeros(out_shape, dtype=torch.result_type(X, K), device=X.device)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + kh, j:j + kw] * K).sum()
    return Y


def _as_4d(x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of ``x`` as ``(B, c_i, H, W)`` and ``weight`` as ``(c_o, c_i, k_h, k_w)``; see :func:`conv2d`."""
    if not 2 <= x.ndim <= 4:
        raise UserError(f"conv2d input must be (B, c_i, H, W), (c_i, H, W) or (H, W), "
                        f"got shape {tuple(x.shape)}")
    if not 2 <= weight.ndim <= 4:
        raise UserError("conv2d weight must be (c_o, c_i, k_h, k_w), (c_i, k_h, k_w) or (k_h, k_w), "
                        f"got shape {tuple(weight.shape)}")
    x4 = x.reshape((1,) * (4 - x.ndim) + tuple(x.shape))
    w4 = weight.reshape((1,) * (4 - weight.ndim) + tuple(weight.shape))
    if x4.shape[1] != w4.shape[1]:
        raise UserError(f"the input has {x4.shape[1]} channels (shape {tuple(x.shape)}) but the kernel "
                        f"expects {w4.shape[1]} (weight shape {tuple(weight.shape)}, c_o × c_i × k_h × k_w); "
                        "make the weight's c_i match the input's channels")
    return x4, w4


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
) -> torch.Tensor:
    """2-D convolution layer ``Y = X ⋆ W + b`` by im2col and one matrix multiply (C2, C5–C8).

    Same result as ``torch.nn.functional.conv2d(x, weight, bias, stride, padding)``
    (cross-correlation, as in every deep-learning library). Output channel ``o`` is the sum
    over input channels ``i`` of ``corr2d(X[i], W[o, i])`` plus ``b[o]`` (C7, C8).

    Args:
        x: ``(B, c_i, H, W)``; also ``(c_i, H, W)`` without the batch axis, or ``(H, W)`` for
            one channel.
        weight: ``(c_o, c_i, k_h, k_w)``; also ``(c_i, k_h, k_w)`` for a single output channel
            (C7: the output then has no channel axis), or ``(k_h, k_w)`` for ``c_i = c_o = 1``.
        bias: ``(c_o,)``, one number per output channel (a scalar for a single channel).
        stride: rows and columns per slide, an int or ``(s_h, s_w)`` (C6).
        padding: zeros added on **each** side, an int or ``(p_h, p_w)`` as in PyTorch (C5);
            the lecture's total padding is twice this.

    Returns:
        ``(B, c_o, m_h, m_w)``, without the axes the inputs left out, where
        ``(m_h, m_w) = conv_output_shape((H, W), (k_h, k_w), pad_total=2 * padding, stride=stride)``.
        It is a view of a ``(c_o, B, m_h, m_w)`` buffer (the matrix-multiply layout; batches whose
        column matrix would exceed :data:`COLS_BUDGET` run in chunks, then are concatenated); call
        ``.contiguous()`` if you need row-major memory.

    Raises:
        UserError: bad shapes, channel mismatch, non-positive stride, negative padding, or a
            kernel larger than the padded input.

    Example (C6, padding 1, strides 3 and 2):
        >>> X, K = torch.arange(9.).reshape(3, 3), torch.arange(4.).reshape(2, 2)
        >>> conv2d(X, K, padding=1, stride=(3, 2))
        tensor([[0., 8.],
                [6., 8.]])
    """
    x4, w4 = _as_4d(x, weight)
    c_o, c_i, kh, kw = w4.shape
    if bias is not None and bias.numel() != c_o:
        raise UserError(f"bias has {bias.numel()} entries but there are {c_o} output channels; "
                        "give one bias per output channel")
    windows = sliding_windows(x4, (kh, kw), stride, padding)  # (B, c_i, m_h, m_w, k_h, k_w), a view
    # Large batches go in chunks whose column matrix stays within COLS_BUDGET bytes: a matrix the
    # CPU caches can hold makes the copy, the GEMMs and the backward's col2im faster (ResNet-18
    # stage 1 at batch 16: ~15 % less time; docs/benchmarks.md). Small layers are one chunk.
    per_example = c_i * kh * kw * windows.shape[2] * windows.shape[3] * x4.element_size()
    chunk = max(1, COLS_BUDGET // per_example)
    flat_w = w4.reshape(c_o, c_i * kh * kw)  # one row per output channel
    parts = [_im2col_matmul(win, flat_w, bias) for win in windows.split(chunk)]
    y = parts[0] if len(parts) == 1 else torch.cat(parts)  # (B, c_o, m_h, m_w)
    if weight.ndim < 4:
        y = y[:, 0]  # the weight had no output-channel axis
    if x.ndim < 4:
        y = y[0]  # the input had no batch axis
    return y


COLS_BUDGET = 32 << 20  # bytes of one im2col matrix before conv2d splits the batch


def _im2col_matmul(windows: torch.Tensor, flat_w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``(B, c_i, m_h, m_w, k_h, k_w)`` windows ⋆ ``(c_o, c_i·k_h·k_w)`` kernels → ``(B, c_o, m_h, m_w)``."""
    B, c_i, m_h, m_w, kh, kw = windows.shape
    c_o = flat_w.shape[0]
    # im2col, the one copy: row (i, u, v) holds input pixel (u, v) of channel i under every window
    cols = windows.permute(1, 4, 5, 0, 2, 3).reshape(c_i * kh * kw, B * m_h * m_w)
    if bias is None:
        out = flat_w @ cols  # (c_o, B·m_h·m_w)
    else:
        out = torch.addmm(bias.reshape(c_o, 1), flat_w, cols)  # (c_o, B·m_h·m_w), bias added in the GEMM
    return out.view(c_o, B, m_h, m_w).transpose(0, 1)  # (B, c_o, m_h, m_w), a view of the GEMM's output


def conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """A 1×1 convolution written as what it is: a dense layer over channels at every pixel (C9).

    It sees no spatial pattern; it mixes the ``c_i`` channels of each pixel into ``c_o``
    (Lin, Chen & Yan 2013, "Network in network"). Equals
    ``conv2d(x, weight[:, :, None, None], bias)``.

    Args:
        x: ``(B, c_i, H, W)`` or ``(c_i, H, W)``.
        weight: ``(c_o, c_i)``, the dense layer's weight.
        bias: ``(c_o,)`` or ``None``.

    Returns:
        ``(B, c_o, H, W)`` (or ``(c_o, H, W)``).
    """
    if x.ndim not in (3, 4) or weight.ndim != 2 or x.shape[-3] != weight.shape[1]:
        raise UserError(f"conv1x1 takes x (B, c_i, H, W) and weight (c_o, c_i); got shapes {tuple(x.shape)} "
                        f"and {tuple(weight.shape)}")
    pixels = x.movedim(-3, -1)  # (B, H, W, c_i): one c_i-vector per pixel
    return F.linear(pixels, weight, bias).movedim(-1, -3)  # (B, H, W, c_o) -> (B, c_o, H, W)
