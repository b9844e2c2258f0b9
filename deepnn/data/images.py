"""Reading users' images (PNG, JPEG, ...) into tensors, with clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import UserError


def load_image(path: str | Path, *, channels: int = 1, size: int | None = None) -> torch.Tensor:
    """Read an image file as a float tensor in [0, 1].

    Args:
        path: any format Pillow reads (PNG, JPEG, BMP, ...).
        channels: 1 (greyscale) or 3 (RGB); colour images are converted as needed.
        size: if given, resize (bilinear) to ``size × size``.

    Returns:
        ``(channels, H, W)`` float32 tensor.

    Raises:
        UserError: the file is missing or is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"image {str(path)!r} does not exist; give the path of a PNG or JPEG file")
    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if size is not None:
                im = im.resize((size, size), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"cannot read {str(path)!r} as an image ({e}); use a PNG or JPEG file") from None
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()
