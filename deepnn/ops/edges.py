"""The lecture's vertical-edge example: detecting an edge (C10), and learning the detector
from data (C2).

A 4×5 image whose rows are ``[1, 1, 0, 0, 0]`` has a vertical edge between columns 1 and 2.
Cross-correlating with the 1×2 kernel ``[1, −1]`` gives rows ``[0, 1, 0, 0]``: 1 exactly
at the edge. Move the edge one pixel and the 1 moves too (convolution is sensitive to
position); a 2×2 max pool with stride 1 still fires at the same place for both (C10).
Given only ``(X, Y)``, gradient descent on the squared error recovers the kernel (C2).
"""

from __future__ import annotations

import torch

from ..errors import UserError
from .conv import conv2d, corr2d

EDGE_KERNEL = torch.tensor([[1.0, -1.0]])  # (1, 2): fires where a pixel is brighter than its right neighbour


def vertical_edge_example(shift: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The slide's image ``X`` (4×5, rows ``[1, 1, 0, 0, 0]``) and its edge map ``Y = X ⋆ [1, −1]`` (4×4).

    Args:
        shift: move the edge this many pixels to the right (0, 1 or 2).

    Returns:
        ``X`` of shape ``(4, 5)`` and ``Y`` of shape ``(4, 4)``, float32.

    Example:
        >>> vertical_edge_example()[1][0], vertical_edge_example(shift=1)[1][0]
        (tensor([0., 1., 0., 0.]), tensor([0., 0., 1., 0.]))
    """
    if shift not in (0, 1, 2):
        raise UserError(f"shift must be 0, 1 or 2 (the edge has to stay inside the 5 columns), got {shift!r}")
    X = torch.zeros(4, 5)
    X[:, : 2 + shift] = 1.0  # bright left part, dark right part
    return X, corr2d(X, EDGE_KERNEL)


def learn_kernel(
    X: torch.Tensor,
    Y: torch.Tensor,
    kernel_size: tuple[int, int] = (1, 2),
    *,
    steps: int = 20,
    lr: float = 0.08,
    seed: int = 0,
) -> tuple[torch.Tensor, list[float]]:
    """Learn a kernel ``K`` with ``X ⋆ K ≈ Y`` by plain gradient descent (C2).

    Starts from a random kernel (``seed``) and repeats ``K ← K − lr · ∂L/∂K`` for the loss
    ``L = Σ (X ⋆ K − Y)²``, the gradient coming from autograd through :func:`conv2d`. No bias,
    as in the lecture's edge example. On :func:`vertical_edge_example` the defaults reach
    ``[1, −1]`` to about two decimals.

    Args:
        X: input ``(n_h, n_w)``.
        Y: target ``(n_h − k_h + 1, n_w − k_w + 1)``.
        kernel_size: ``(k_h, k_w)`` of the kernel to learn.
        steps: gradient-descent steps.
        lr: learning rate (step size).
        seed: seed of the random initial kernel.

    Returns:
        The learned kernel ``(k_h, k_w)`` and the loss before each step (``steps`` floats).

    Raises:
        UserError: ``Y`` does not have the shape ``X ⋆ K`` would have, or ``steps < 1``.
    """
    if steps < 1:
        raise UserError(f"steps must be at least 1, got {steps}")
    generator = torch.Generator().manual_seed(seed)
    K = torch.randn(kernel_size, generator=generator, dtype=X.dtype).requires_grad_()
    with torch.no_grad():
        predicted_shape = conv2d(X, K).shape
    if predicted_shape != Y.shape:
        raise UserError(f"Y has shape {tuple(Y.shape)} but X {tuple(X.shape)} ⋆ a {kernel_size} kernel gives "
                        f"{tuple(predicted_shape)}; pass the matching target")
    losses = []
    for _ in range(steps):
        loss = (conv2d(X, K) - Y).square().sum()
        loss.backward()
        losses.append(loss.item())
        with torch.no_grad():
            K -= lr * K.grad
            K.grad = None
    return K.detach(), losses
