"""Reader for the IDX format of MNIST and Fashion-MNIST (``.gz`` or plain)."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from zspace.errors import DataError

__all__ = ["read_idx"]

DEFAULT_MAX_IDX_BYTES = 16 * 2**30
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
            # The header first: it says how many bytes follow, so a gzip bomb or a lying header
            # costs at most one byte past the declared size, never the whole stream.
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
                raise DataError(f"{path}: not an IDX file (the magic number must start with two zero bytes).")
            type_code, n_dims = magic[2], magic[3]
            if type_code not in _DTYPES:
                raise DataError(f"{path}: unknown IDX type code 0x{type_code:02x}; expected one of "
                                f"{', '.join(f'0x{c:02x}' for c in _DTYPES)}.")
            dims = f.read(4 * n_dims)
            if n_dims == 0 or len(dims) < 4 * n_dims:
                raise DataError(f"{path}: truncated IDX header ({4 + len(dims)} bytes, {n_dims} dimensions).")
            shape = tuple(int.from_bytes(dims[4 * i: 4 * i + 4], "big") for i in range(n_dims))
            dtype = np.dtype(_DTYPES[type_code])
            expected = math.prod(shape) * dtype.itemsize
            limit = max_idx_bytes()
            if expected > limit:
                raise DataError(f"{path}: header declares shape {shape} ({expected} bytes), above the limit of "
                                f"{limit} bytes (ZSPACE_MAX_IDX_BYTES).")
            data = f.read(expected + 1)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: cannot be read as {'gzip' if opener is gzip.open else 'IDX'}: {exc}") from None
    if len(data) != expected:
        held = f"{len(data)} bytes" if len(data) <= expected else "more"
        raise DataError(
            f"{path}: header declares shape {shape} ({expected} bytes of data) but the file holds {held}."
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def env_bytes(name: str, default: int) -> int:
    """A byte limit from environment variable ``name`` when set, else ``default``; DataError naming it otherwise."""
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise DataError(f"{name} must be a number of bytes. Received: {value[:40]!r}") from None


def max_idx_bytes() -> int:
    """Bound on the data of one IDX file: ZSPACE_MAX_IDX_BYTES, default 16 GiB (all of MNIST: 55 MB)."""
    return env_bytes("ZSPACE_MAX_IDX_BYTES", DEFAULT_MAX_IDX_BYTES)
