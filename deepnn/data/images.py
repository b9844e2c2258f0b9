"""Reading users' images (PNG, JPEG, ...) into tensors, with clear errors."""

from __future__ import annotations

import re
import warnings
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
        UserError: the file is missing, is not a readable image, or has more pixels than Pillow's
            ``Image.MAX_IMAGE_PIXELS`` (its guard against decompression bombs: a small file that
            decodes to gigabytes).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"image {str(path)!r} does not exist; give the path of a PNG or JPEG file")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it (and raises above): both are errors here
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im = im.convert("L" if channels == 1 else "RGB")
                if size is not None:
                    im = im.resize((size, size), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.float32) / 255.0
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UserError(_too_large(path, e)) from None
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"cannot read {str(path)!r} as an image ({e}); use a PNG or JPEG file") from None
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


def _too_large(path: Path, e: Exception) -> str:
    """The one-line message for an image over Pillow's pixel limit, with its size and the limit."""
    from PIL import Image

    found = re.search(r"\((\d+) pixels\)", str(e))  # Pillow: "Image size (N pixels) exceeds limit of ..."
    size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    return (f"image {str(path)!r} has {size}, more than the {Image.MAX_IMAGE_PIXELS or 0:,} pixels Pillow decodes "
            "(its guard against decompression bombs); scale the image down first")
