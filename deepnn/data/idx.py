"""The IDX file format of (Fashion-)MNIST (LeCun et al.): a big-endian header, then raw data.

Header: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions,
then one 4-byte big-endian size per dimension. Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
           0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_bytes(path: Path) -> bytes:
    """Contents of ``path``, decompressed when it is gzip (by magic number, not by name)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise UserError(f"{path} is a corrupt or truncated gzip file ({e}); delete it and fetch it again") from None
    return raw


def parse_idx(data: bytes, source: str = "<bytes>") -> torch.Tensor:
    """Parse IDX bytes into a tensor of the header's shape.

    >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9])).tolist()
    [7, 9]
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise UserError(f"{source} is not an IDX file (bad magic number); delete it and fetch it again")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{source} is truncated (incomplete IDX header); delete it and fetch it again")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[data[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise UserError(
            f"{source} has {len(data)} bytes but its header {tuple(shape)} promises {expected}; "
            "the file is truncated or corrupt: delete it and fetch it again"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True))
