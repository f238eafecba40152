"""Reading ``.npz`` files a user may have been handed, with every size checked before it is allocated.

``numpy.load`` trusts each member's header: a 600-byte file whose header claims 1e11 float32s
makes it allocate 373 GiB. :func:`read_npz` reads every header first and refuses the file unless
each array's byte count matches the member's declared size, the members' total stays under a limit
and no member expands more than deflate can (so a file cannot be a decompression bomb).
Object arrays (pickles) are refused.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["read_npz", "max_array_bytes", "NpzError"]

# Default bound on the arrays of one file: an analysis of all of CelebA (200k points, z, mu and
# logvar of dimension 256, float32) is 0.6 GiB. ZSPACE_MAX_ARRAY_BYTES overrides it (bytes).
DEFAULT_MAX_ARRAY_BYTES = 8 * 2**30
_MAX_MEMBERS = 1024
_MAX_HEADER_BYTES = 10_000
# Deflate cannot expand data by more than ~1032x; anything claiming more is lying.
_MAX_DEFLATE_RATIO = 1100


class NpzError(ValueError):
    """The file is not an .npz of plain numeric / text arrays within the limits; says which member and why."""


def max_array_bytes() -> int:
    """The limit on the total array bytes of one file (ZSPACE_MAX_ARRAY_BYTES, default 8 GiB)."""
    value = os.environ.get("ZSPACE_MAX_ARRAY_BYTES")
    if value is None:
        return DEFAULT_MAX_ARRAY_BYTES
    try:
        limit = int(value)
    except ValueError:
        raise NpzError(f"ZSPACE_MAX_ARRAY_BYTES must be a number of bytes. Received: {value[:40]!r}") from None
    if limit <= 0:
        raise NpzError(f"ZSPACE_MAX_ARRAY_BYTES must be positive. Received: {limit}")
    return limit


def _header(member, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        major, _ = np.lib.format.read_magic(member)
        read = {1: np.lib.format.read_array_header_1_0, 2: np.lib.format.read_array_header_2_0}.get(major)
        if read is None:
            raise NpzError(f"member {name} has .npy format version {major}; expected 1 or 2")
        return read(member, max_header_size=_MAX_HEADER_BYTES)
    except NpzError:
        raise
    except (ValueError, SyntaxError, TypeError, OverflowError, EOFError) as exc:
        raise NpzError(f"member {name} has no valid .npy header ({str(exc)[:80]})") from None


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo):
    """(bytes, shape, fortran order, dtype) of one member, its header checked against its declared size."""
    name = info.filename
    with archive.open(info) as member:
        shape, fortran, dtype = _header(member, name)
        if dtype.hasobject or dtype.kind not in "biufU":
            raise NpzError(f"member {name} holds {dtype} values; only numbers and text are read (no pickles)")
        nbytes = math.prod(shape) * dtype.itemsize
        stored = info.file_size - member.tell()
        if nbytes != stored:
            raise NpzError(f"member {name}: its header says {shape} {dtype} ({nbytes} bytes) but it holds "
                           f"{stored} bytes")
        data = member.read(nbytes)
    if len(data) != nbytes:
        raise NpzError(f"member {name} is truncated ({len(data)} of {nbytes} bytes)")
    return data, shape, fortran, dtype


def read_npz(path: str | Path, limit: int | None = None) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, sizes checked before reading (see the module docstring).

    Args:
        limit: bound on the total array bytes; default :func:`max_array_bytes`.

    Raises:
        NpzError: the file is not such an .npz (the message names the member and the reason).
    """
    limit = max_array_bytes() if limit is None else limit
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise NpzError(f"not an .npz file (not a zip archive, or truncated: {str(exc)[:80]})") from None
    with archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        if len(infos) > _MAX_MEMBERS:
            raise NpzError(f"holds {len(infos)} members; at most {_MAX_MEMBERS} are read")
        if len(set(names)) != len(names):
            raise NpzError("lists a member twice")
        declared = sum(i.file_size for i in infos)
        if declared > limit:
            raise NpzError(f"its members unpack to {declared} bytes, above the limit of {limit} "
                           f"(ZSPACE_MAX_ARRAY_BYTES)")
        arrays = {}
        for info in infos:
            name = info.filename
            if not name.endswith(".npy") or "/" in name or name.startswith("."):
                raise NpzError(f"member {name[:80]!r} is not an array (.npy) of a flat .npz")
            if info.compress_type != zipfile.ZIP_STORED and info.file_size > _MAX_DEFLATE_RATIO * max(info.compress_size, 1):
                raise NpzError(f"member {name} claims {info.file_size} bytes from {info.compress_size} (a zip bomb?)")
            try:
                data, shape, fortran, dtype = _read_member(archive, info)
            except NpzError:
                raise
            except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as exc:
                raise NpzError(f"member {name} cannot be read ({str(exc)[:80]})") from None
            array = np.frombuffer(bytearray(data), dtype=dtype)
            arrays[name[:-4]] = array.reshape(shape, order="F" if fortran else "C")
    return arrays
