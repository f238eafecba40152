"""Reader for the IDX format of MNIST and Fashion-MNIST (``.gz`` or plain)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from zspace.errors import DataError

__all__ = ["read_idx"]

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Reads one IDX file into an array of its declared shape and dtype.

    Raises:
        FileNotFoundError: no such file.
        DataError: bad magic number, unknown type code, or a size that does not match the header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read as {'gzip' if opener is gzip.open else 'IDX'}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (the magic number must start with two zero bytes).")
    type_code, n_dims = data[2], data[3]
    if type_code not in _DTYPES:
        raise DataError(f"{path}: unknown IDX type code 0x{type_code:02x}; expected one of "
                        f"{', '.join(f'0x{c:02x}' for c in _DTYPES)}.")
    header_end = 4 + 4 * n_dims
    if n_dims == 0 or len(data) < header_end:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes, {n_dims} dimensions).")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims))
    dtype = np.dtype(_DTYPES[type_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header_end != expected:
        raise DataError(
            f"{path}: header declares shape {shape} ({expected} bytes of data) but the file "
            f"holds {len(data) - header_end} bytes."
        )
    return np.frombuffer(data, dtype=dtype, offset=header_end).reshape(shape)
