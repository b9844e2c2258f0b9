"""Layers: modules built on the lecture's primitives, and the switch that picks them.

Models never name ``nn.Conv2d`` / ``nn.MaxPool2d`` / ``nn.AvgPool2d`` / ``nn.AdaptiveAvgPool2d``
directly; they call :func:`Conv2d`, :func:`MaxPool2d`, :func:`AvgPool2d` and :func:`AdaptiveAvgPool2d`
from this module, which return PyTorch's layer (``"torch"``, the default) or our from-scratch twin (``"scratch"``,
:mod:`deepnn.layers.conv`) depending on the active implementation. The scratch layers
subclass PyTorch's, so constructor arguments, initialisation and state-dict keys are
identical and checkpoints move freely between the two.

The recurrent cells and layers (:mod:`deepnn.layers.rnn`, R2 and R4–R6; the stacked
:class:`RNN` / :class:`LSTM` / :class:`GRU` choose PyTorch's fused kernels or ours with ``impl``) and attention
(:mod:`deepnn.layers.attention`, T2–T3 and T4's causal mask) and the Transformer layers
(:mod:`deepnn.layers.transformer`, T4's encoder, decoder and greedy decoding, T5's teacher forcing)
are from scratch only; they subclass their PyTorch twins in the same way, so their weights load
from and into PyTorch's.

    >>> with use_conv_impl("scratch"):
    ...     layer = Conv2d(1, 6, kernel_size=5, padding=2)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from torch import nn

from ..decoding import greedy_decode  # every generator's decoding lives in deepnn.decoding
from .attention import (
    MultiHeadAttention,
    additive_scores,
    attention,
    causal_mask,
    dot_product_scores,
)
from .rnn import (
    GRU,
    LSTM,
    RNN,
    GRUCell,
    LSTMCell,
    PeepholeLSTMCell,
    RNNCell,
    detach_state,
    hidden_jacobian_norms,
    power_example,
    unroll,
)
from .transformer import (
    PositionalEncoding,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
    shift_right,
    teacher_forcing_logits,
)

CONV_IMPLS = ("torch", "scratch")
_active = "torch"


@contextlib.contextmanager
def use_conv_impl(name: str) -> Iterator[None]:
    """Within the block, :func:`Conv2d` and the pooling factories build ``name``'s layers."""
    global _active
    if name not in CONV_IMPLS:
        from ..errors import UserError

        raise UserError(f"unknown conv implementation {name!r}; choose one of {', '.join(CONV_IMPLS)}")
    previous, _active = _active, name
    try:
        yield
    finally:
        _active = previous


def _pick(torch_cls: type[nn.Module], scratch_name: str) -> type[nn.Module]:
    if _active == "torch":
        return torch_cls
    from . import conv  # the from-scratch layers (deepnn.ops underneath)

    return getattr(conv, scratch_name)


def Conv2d(*args: Any, **kwargs: Any) -> nn.Module:  # noqa: N802 - reads like the class it builds
    """A 2-D convolution layer, same arguments as ``torch.nn.Conv2d``."""
    return _pick(nn.Conv2d, "Conv2d")(*args, **kwargs)


def MaxPool2d(*args: Any, **kwargs: Any) -> nn.Module:  # noqa: N802
    """2-D max pooling, same arguments as ``torch.nn.MaxPool2d``."""
    return _pick(nn.MaxPool2d, "MaxPool2d")(*args, **kwargs)


def AvgPool2d(*args: Any, **kwargs: Any) -> nn.Module:  # noqa: N802
    """2-D average pooling, same arguments as ``torch.nn.AvgPool2d``."""
    return _pick(nn.AvgPool2d, "AvgPool2d")(*args, **kwargs)


def AdaptiveAvgPool2d(*args: Any, **kwargs: Any) -> nn.Module:  # noqa: N802
    """Average pooling to a fixed output size (1: global average pooling), as ``torch.nn.AdaptiveAvgPool2d``."""
    return _pick(nn.AdaptiveAvgPool2d, "AdaptiveAvgPool2d")(*args, **kwargs)


__all__ = [
    "CONV_IMPLS", "use_conv_impl", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "RNNCell", "LSTMCell", "PeepholeLSTMCell", "GRUCell", "unroll", "hidden_jacobian_norms", "power_example",
    "RNN", "LSTM", "GRU", "detach_state",
    "dot_product_scores", "additive_scores", "attention", "causal_mask", "MultiHeadAttention",
    "TransformerEncoderLayer", "TransformerDecoderLayer", "PositionalEncoding",
    "greedy_decode", "shift_right", "teacher_forcing_logits",
]
