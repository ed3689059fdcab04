"""Reading the IDX format (LeCun's MNIST files, also used by Fashion-MNIST).

An IDX file is a big-endian header (two zero bytes, a type code, the number of dimensions, then
one 32-bit size per dimension) followed by the raw array.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx_bytes(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file.

    Args:
        data: the file's contents.
        source: a name for error messages.

    Returns:
        The array with the shape stored in the header.

    Raises:
        ValueError: the bytes are not a complete IDX file.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{source} is not an IDX file (bad magic number); delete it and fetch it again.")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{source} is truncated or padded: {len(data)} bytes where its header promises {expected}; "
            "delete it and fetch it again."
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed (``.gz``) or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        return read_idx_bytes(handle.read(), source=str(path))
