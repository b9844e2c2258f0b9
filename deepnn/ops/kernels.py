"""The lecture's eight image kernels (C3), as data, and a function that applies them.

Each 3×3 kernel is the slide's integer matrix divided by 9, so the "identity" kernel
(centre 9) really is the identity, "lighten" (centre 12) scales brightness by 4/3 and
"darken" (centre 6) by 2/3, and "blur" (all ones) averages the 3×3 neighbourhood.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from .conv import conv2d

_SLIDE_KERNELS = {  # the integers shown on the slide, before the division by 9
    "identity": [[0, 0, 0], [0, 9, 0], [0, 0, 0]],
    "edge": [[0, 9, 0], [9, -36, 9], [0, 9, 0]],
    "blur": [[1, 1, 1], [1, 1, 1], [1, 1, 1]],
    "sharpen": [[0, -3, 0], [-3, 21, -3], [0, -3, 0]],
    "lighten": [[0, 0, 0], [0, 12, 0], [0, 0, 0]],
    "darken": [[0, 0, 0], [0, 6, 0], [0, 0, 0]],
    "random 1": [[-2, 2, 18], [-3, 0, 2], [-3, -3, -2]],
    "random 2": [[9, 6, 0], [6, 0, -6], [0, -6, -1]],
}

IMAGE_KERNELS: dict[str, torch.Tensor] = {
    name: torch.tensor(values, dtype=torch.float32) / 9 for name, values in _SLIDE_KERNELS.items()
}
"""name → ``(3, 3)`` float32 kernel, in the slide's order (a)–(h)."""


def apply_kernels(
    image: torch.Tensor, kernels: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Cross-correlate ``image`` with each kernel, channel by channel, keeping its size (C3).

    Every channel of a colour image is filtered separately with the same kernel (the
    channels go through :func:`conv2d` as a batch of one-channel images), padded with zeros
    by half the kernel so the output has the input's size.
    Values are not clipped: "edge" and the random kernels go negative and "lighten" above 1.

    Args:
        image: ``(C, H, W)`` (e.g. from :func:`deepnn.data.images.load_image`) or ``(H, W)``, float.
        kernels: name → ``(k, k)`` kernel with odd ``k``; default :data:`IMAGE_KERNELS`.

    Returns:
        name → filtered image, same shape as ``image``.
    """
    if image.ndim not in (2, 3) or not image.is_floating_point():
        raise UserError(f"expected a float image (C, H, W) or (H, W), got {image.dtype} "
                        f"of shape {tuple(image.shape)}")
    kernels = IMAGE_KERNELS if kernels is None else kernels
    planes = image.reshape(-1, 1, *image.shape[-2:])  # (C, 1, H, W): each channel is a batch item
    out = {}
    for name, kernel in kernels.items():
        kh, kw = kernel.shape
        if kh % 2 == 0 or kw % 2 == 0:
            raise UserError(f"kernel {name!r} is {kh}×{kw}; size-keeping padding needs odd sides")
        filtered = conv2d(planes, kernel.to(image.dtype).reshape(1, 1, kh, kw), padding=(kh // 2, kw // 2))
        out[name] = filtered.reshape(image.shape)  # (C, 1, H, W) -> image's shape
    return out
