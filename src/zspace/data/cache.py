"""Reading a prepared image cache: uint8 shards on disk, seen as one float32 array.

A cache folder holds ``manifest.json`` and, per shard, ``<name>.images.npy`` (uint8
(n, H, W, C), read with ``os.pread``) and ``<name>.meta.npz`` (file names, split, labels,
attributes). Nothing is unpickled: ``np.load(..., allow_pickle=False)`` throughout.

A cache of input/target pairs (``zspace prepare pairs``; manifest ``"pairs": true``) stores each
pair as one image of twice the channels: the input's channels first, then the target's.

Every file is treated as possibly hostile: the manifest is read only up to
:data:`MAX_MANIFEST_BYTES` and checked field by field (:func:`read_manifest`), a shard is
only ever a plain file of the cache folder itself, listed once, and the arrays of a
``.meta.npz`` are checked from their headers before they are read.
"""

from __future__ import annotations

import json
import os
import re
import threading
import weakref
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zspace.data.idx import env_bytes
from zspace.errors import DataError

__all__ = ["Shard", "ShardedImages", "CacheContents", "read_cache", "read_manifest", "check_manifest",
           "max_manifest_bytes", "MANIFEST", "CACHE_FORMAT", "SPLITS", "MAX_MANIFEST_BYTES", "SHARD_NAME"]

MANIFEST = "manifest.json"
CACHE_FORMAT = "zspace-image-cache"
CACHE_VERSION = 1  # manifest "version": a cache laid out by another version is refused, not misread
SPLITS = ("train", "valid", "test")
# A manifest of a million-image cache with 1 % bad files is about 2 MiB; larger ones are refused
# unread. Environment variable ZSPACE_MAX_MANIFEST_BYTES, read at each call, overrides it.
MAX_MANIFEST_BYTES = 64 * 2**20
# The only shard names `zspace prepare` writes: "shard-" and an index; never a path.
SHARD_NAME = re.compile(r"shard-[0-9]{5,9}")
_MAX_SIZE = 2**16         # side of a cached image, pixels: bounds what a manifest can make us allocate
_MAX_NAME_CHARS = 4096    # characters of one file name in a .meta.npz
# What numpy and zipfile raise on a damaged .npy / .npz (corrupt archive, bad header, missing member).
_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError)


def max_manifest_bytes() -> int:
    """:data:`MAX_MANIFEST_BYTES`, or the environment variable ``ZSPACE_MAX_MANIFEST_BYTES`` when set."""
    return env_bytes("ZSPACE_MAX_MANIFEST_BYTES", MAX_MANIFEST_BYTES)


def _show(value) -> str:
    """repr of a manifest value, cut to 80 characters (a hostile one may be long)."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_shard_entry(entry, number: int, path: Path) -> str | None:
    """What is wrong with the shard entry ``number`` of a manifest, or None."""
    if not isinstance(entry, dict):
        return f"shard entry {number} is a {type(entry).__name__}, not an object"
    name = entry.get("name")
    if not isinstance(name, str) or not SHARD_NAME.fullmatch(name):
        return f"shard entry {number} has name {_show(name)}; expected 'shard-' and a number (a file of the cache folder)"
    count, split_counts, bad = entry.get("count"), entry.get("split_counts"), entry.get("bad")
    if not isinstance(entry.get("plan"), str):
        return f"shard entry {number} ({name}) has no 'plan' string"
    if not _is_int(count) or count < 0:
        return f"shard entry {number} ({name}) has count {_show(count)}; expected an integer >= 0"
    if not (isinstance(split_counts, list) and len(split_counts) == len(SPLITS)
            and all(_is_int(c) and c >= 0 for c in split_counts) and sum(split_counts) == count):
        return (f"shard entry {number} ({name}) has split_counts {_show(split_counts)}; expected {len(SPLITS)} "
                f"counts >= 0 summing to count={count}")
    if not (isinstance(bad, list) and all(isinstance(b, list) and len(b) == 2 and _is_str_list(b) for b in bad)):
        return f"shard entry {number} ({name}) has a 'bad' field that is not a list of [path, reason] pairs"
    return None


def check_manifest(manifest, path: Path) -> dict:
    """Returns ``manifest`` (parsed JSON) if it has the fields and types zspace writes; else DataError.

    Each shard entry must name a shard file (``shard-NNNNN``), once.
    """
    def refuse(what: str) -> DataError:
        return DataError(f"{path}: {what}; not a manifest written by `zspace prepare`.")

    if not isinstance(manifest, dict):
        raise refuse(f"holds a JSON {type(manifest).__name__}, not an object")
    if manifest.get("format") != CACHE_FORMAT:
        raise refuse(f"format is {_show(manifest.get('format'))}, not {CACHE_FORMAT!r}")
    if manifest.get("version") != CACHE_VERSION or not _is_int(manifest.get("version")):
        raise refuse(f"version is {_show(manifest.get('version'))}; this zspace reads version {CACHE_VERSION}")
    size, channels, shards = manifest.get("size"), manifest.get("channels"), manifest.get("shards")
    if not isinstance(manifest.get("complete"), bool):
        raise refuse("'complete' is not true or false")
    if not _is_int(size) or not 1 <= size <= _MAX_SIZE:
        raise refuse(f"size is {_show(size)}; expected an integer in [1, {_MAX_SIZE}]")
    if not _is_int(channels) or not 1 <= channels <= 4:
        raise refuse(f"channels is {_show(channels)}; expected 1 to 4")
    if not isinstance(manifest.get("pairs", False), bool):
        raise refuse("'pairs' is not true or false")
    for key in ("attribute_names", "label_names"):
        if not _is_str_list(manifest.get(key, [])):
            raise refuse(f"{key!r} is not a list of strings")
    if not isinstance(shards, list):
        raise refuse("'shards' is not a list")
    seen = set()
    for number, entry in enumerate(shards):
        problem = _check_shard_entry(entry, number, path)
        if problem:
            raise refuse(problem)
        if entry["name"] in seen:
            raise refuse(f"shard entry {number} ({entry['name']}) is listed twice")
        seen.add(entry["name"])
    return manifest


def read_manifest(path: Path) -> dict:
    """Reads and checks a cache manifest (at most :func:`max_manifest_bytes` bytes).

    Raises:
        DataError: too large, not UTF-8 JSON, or not the fields zspace writes; names ``path``.
    """
    limit = max_manifest_bytes()
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a manifest file.") from None
    if len(data) > limit:
        raise DataError(f"{path}: larger than {limit} bytes (ZSPACE_MAX_MANIFEST_BYTES); "
                        f"not a manifest written by `zspace prepare`.")
    try:
        manifest = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); not a manifest written by "
                        f"`zspace prepare`.") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, a 5000-digit number, [[[[...]]]]
        reason = str(exc)[:200] if isinstance(exc, ValueError) else "nested too deeply"
        raise DataError(f"{path}: not valid JSON ({reason}).") from None
    return check_manifest(manifest, path)


@dataclass(frozen=True)
class Shard:
    """One ``.images.npy`` file: where its uint8 (count, H, W, C) data starts."""

    path: Path
    offset: int
    count: int
    image_shape: tuple[int, ...]

    @classmethod
    def open(cls, path: Path) -> Shard:
        """Reads the .npy header (no pickle); raises DataError unless it holds C-ordered uint8 (n, H, W, C)."""
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
        if dtype != np.uint8 or fortran or len(shape) != 4:
            raise DataError(f"{path}: expected C-ordered uint8 (n, H, W, C); found {dtype} {shape}.")
        return cls(path, offset, shape[0], tuple(shape[1:]))


def _close_all(fds: dict[int, int]) -> None:
    """Closes every descriptor in ``fds`` (shard index -> fd) and empties it."""
    while fds:
        _, fd = fds.popitem()
        try:
            os.close(fd)
        except OSError:  # already closed behind our back: nothing left to release
            pass


class _ShardFiles:
    """The read-only descriptors of a set of shard files, opened on first use.

    Shared by a :class:`ShardedImages` and every view :meth:`~ShardedImages.select` makes
    from it; closed by :meth:`close` or, at the latest, when the last of them is garbage
    collected (``weakref.finalize`` holds the dict, not this object, so it does not keep it alive).
    """

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self.fds: dict[int, int] = {}
        self._lock = threading.Lock()  # Keras' PyDataset may read batches from worker threads
        self._finalizer = weakref.finalize(self, _close_all, self.fds)

    def fd(self, shard: int) -> int:
        fd = self.fds.get(shard)
        if fd is None:
            with self._lock:
                fd = self.fds.get(shard)
                if fd is None:
                    fd = self.fds[shard] = os.open(self.paths[shard], os.O_RDONLY)
        return fd

    def close(self) -> None:
        with self._lock:
            _close_all(self.fds)

    def __reduce__(self):
        # Descriptors mean nothing in another process: a copy there opens its own.
        return _ShardFiles, (self.paths,)


class ShardedImages:
    """Images of several uint8 shard files, indexed like one float32 array in [0, 1].

    Indexing with an int, slice or index array reads only those images from disk (one
    ``os.pread`` per run of consecutive images) and returns float32 (k, H, W, C);
    :meth:`select` makes a lighter view without reading anything. The files are read, not
    memory-mapped, so the process's resident memory does not grow with the cache: the data
    passes through the page cache only.

    A view holds one descriptor per shard it has read, shared with the views it was made
    from or made by :meth:`select`. :meth:`close` (or leaving a ``with`` block) releases
    them for all of these views; a later read opens them again. They are also closed when
    the last of the views is garbage collected.

    Args:
        shards: the shard files.
        positions: global positions (into the concatenated shards) of this view's images.
    """

    def __init__(self, shards: list[Shard], positions: np.ndarray | None = None, _files: _ShardFiles | None = None,
                 channels: tuple[int, int] | None = None):
        if not shards:
            raise DataError("a sharded image set needs at least one shard.")
        self.shards = shards
        self._starts = np.cumsum([0] + [s.count for s in shards])
        self.positions = np.arange(self._starts[-1]) if positions is None else np.asarray(positions, dtype=np.int64)
        self.dtype = np.dtype(np.float32)
        self._image_bytes = int(np.prod(shards[0].image_shape))
        self._files = _files if _files is not None else _ShardFiles([s.path for s in shards])
        self._channels = channels  # (start, stop) of the stored channels this view shows; None: all

    def close(self) -> None:
        """Closes the shard files of this view and the views sharing them (reads reopen them)."""
        self._files.close()

    def __enter__(self) -> ShardedImages:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def shape(self) -> tuple[int, ...]:
        height, width, channels = self.shards[0].image_shape
        if self._channels is not None:
            channels = self._channels[1] - self._channels[0]
        return (len(self.positions), height, width, channels)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.positions)

    def select(self, indices) -> ShardedImages:
        """A view of the images at ``indices`` (of this view); reads nothing."""
        return ShardedImages(self.shards, self.positions[np.asarray(indices)], _files=self._files,
                             channels=self._channels)

    def channel_view(self, start: int, stop: int) -> ShardedImages:
        """A view of channels ``start:stop`` of each stored image (the input or the target of a
        pairs cache); reads nothing. Relative to the stored channels, not to this view's."""
        if not 0 <= start < stop <= self.shards[0].image_shape[-1]:
            raise ValueError(f"channels {start}:{stop} outside the stored {self.shards[0].image_shape[-1]}")
        return ShardedImages(self.shards, self.positions, _files=self._files, channels=(start, stop))

    def uint8(self, indices) -> np.ndarray:
        """The raw uint8 images at ``indices`` (an index array of this view), in that order."""
        wanted = self.positions[np.asarray(indices, dtype=np.int64)]
        order = np.argsort(wanted, kind="stable")
        ordered = wanted[order]
        out = np.empty((len(wanted), self._image_bytes), dtype=np.uint8)
        shard_of = np.searchsorted(self._starts, ordered, side="right") - 1
        # runs of consecutive images in one shard: one read each
        breaks = np.flatnonzero((np.diff(ordered) != 1) | (np.diff(shard_of) != 0)) + 1
        starts = np.concatenate([[0], breaks]).astype(np.int64)
        ends = np.concatenate([breaks, [len(ordered)]]).astype(np.int64)
        for start, end in zip(starts.tolist(), ends.tolist()):
            shard = int(shard_of[start])
            local = int(ordered[start] - self._starts[shard])
            size = (end - start) * self._image_bytes
            data = os.pread(self._files.fd(shard), size, self.shards[shard].offset + local * self._image_bytes)
            if len(data) != size:
                raise DataError(f"{self.shards[shard].path}: short read (the file is truncated).")
            out[order[start:end]] = np.frombuffer(data, dtype=np.uint8).reshape(end - start, -1)
        images = out.reshape(len(wanted), *self.shards[0].image_shape)
        if self._channels is not None:  # a copy: the other channels' bytes are not kept alive
            images = np.ascontiguousarray(images[..., self._channels[0]:self._channels[1]])
        return images

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.uint8([key])[0].astype(np.float32) / 255.0
        indices = np.arange(len(self))[key] if isinstance(key, slice) else np.asarray(key)
        return self.uint8(indices).astype(np.float32) / 255.0

    def __array__(self, dtype=None, copy=None):
        # Materialising a whole cache as float32 is what streaming avoids; allow it for small sets.
        if len(self) * int(np.prod(self.shape[1:])) > 2**28:
            raise DataError(f"refusing to load {len(self)} cached images into memory as float32; "
                            f"use them batch by batch.")
        array = self[:]
        return array if dtype is None else array.astype(dtype)


class CacheContents:
    """A read cache: the manifest, every image, and per-image metadata.

    Attributes:
        manifest: the parsed manifest.json.
        images: :class:`ShardedImages` over all shards.
        files: (N,) source file names; split: (N,) int8 index into SPLITS;
        labels: (N,) int64 (-1 = none); attributes: (N, A) int8 (+1 / -1, 0 = unknown).
    """

    def __init__(self, manifest, images, files, split, labels, attributes):
        self.manifest, self.images = manifest, images
        self.files, self.split, self.labels, self.attributes = files, split, labels, attributes

    @property
    def attribute_names(self) -> list[str]:
        return list(self.manifest.get("attribute_names", []))

    @property
    def label_names(self) -> list[str]:
        """Name of each label value (``prepare images``: the sub-folder names), or []."""
        return list(self.manifest.get("label_names", []))

    @property
    def is_pairs(self) -> bool:
        """Whether each stored image is an input/target pair (``zspace prepare pairs``)."""
        return bool(self.manifest.get("pairs", False))

    @property
    def channels(self) -> int:
        """Channels of one image (of the input or the target of a pair)."""
        return int(self.manifest["channels"])

    def close(self) -> None:
        """Closes the shard files (see :meth:`ShardedImages.close`)."""
        self.images.close()

    def __enter__(self) -> CacheContents:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _shard_file(folder: Path, real_folder: Path, manifest_path: Path, name: str, suffix: str,
                seen: dict[tuple[int, int], str]) -> Path:
    """The file ``name + suffix`` of the cache folder; DataError if it lies elsewhere or is used twice.

    ``real_folder`` is ``folder`` with its links resolved; ``seen`` maps the (device, inode) of the
    files already taken to their names, so no file serves twice (hard or symbolic links).
    """
    path = folder / f"{name}{suffix}"
    try:
        real = path.resolve(strict=True)
        stat = real.stat()
    except (OSError, RuntimeError):  # missing, or a loop of links
        raise DataError(f"{manifest_path}: shard {name}: {path.name} is missing or unreadable.") from None
    if real.parent != real_folder:
        raise DataError(f"{manifest_path}: shard {name}: {path.name} is a link to {real}, outside the cache folder.")
    identity = (stat.st_dev, stat.st_ino)
    if identity in seen:
        raise DataError(f"{manifest_path}: shard {name}: {path.name} is the same file as {seen[identity]}.")
    seen[identity] = path.name
    return path


def _peek_npz_member(meta, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of array ``key`` of an open .npz, from its header only (nothing allocated)."""
    with meta.zip.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
    return shape, dtype


def _read_meta(meta_path: Path, count: int, n_attributes: int, n_splits: int):
    """(files, split, labels, attributes) of a shard of ``count`` images, checked; DataError otherwise."""
    expected = {"files": ((count,), "U"), "split": ((count,), "iu"), "labels": ((count,), "iu"),
                "attributes": ((count, n_attributes), "iu")}
    with open(meta_path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # else np.load would read a whole .npy, of any size
            raise DataError(f"{meta_path}: not the .npz (zip) archive `zspace prepare` writes.")
    with np.load(meta_path, allow_pickle=False) as meta:
        for key, (shape, kinds) in expected.items():
            found_shape, dtype = _peek_npz_member(meta, key)
            too_wide = dtype.itemsize > (4 * _MAX_NAME_CHARS if key == "files" else 8)
            if tuple(found_shape) != shape or dtype.kind not in kinds or too_wide:
                raise DataError(f"{meta_path}: {key} is {dtype} {tuple(found_shape)}; expected {shape} "
                                f"({'text' if key == 'files' else 'integers'}) for the manifest's {count} images.")
        files, split, labels, attributes = (meta[k] for k in expected)
    if count and (split.min() < 0 or split.max() >= n_splits):
        raise DataError(f"{meta_path}: split values span [{split.min()}, {split.max()}]; expected 0 to {n_splits - 1}.")
    if count and labels.min() < -1:
        raise DataError(f"{meta_path}: label {labels.min()}; expected -1 (none) or a label index >= 0.")
    if attributes.size and (attributes.min() < -1 or attributes.max() > 1):
        raise DataError(f"{meta_path}: attribute values span [{attributes.min()}, {attributes.max()}]; "
                        f"expected 1, -1 or 0 (unknown).")
    return files, split, labels, attributes


def read_cache(folder: str | Path) -> CacheContents:
    """Opens a complete cache written by ``zspace prepare``.

    Raises:
        FileNotFoundError: no such folder or no manifest.
        DataError: not a zspace cache, unfinished, a damaged or hostile manifest (a shard outside
            the folder or listed twice), or a shard that does not match the manifest.
    """
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not folder.is_dir():
        raise FileNotFoundError(f"cache folder not found: {folder}")
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{folder} has no {MANIFEST}: not a prepared cache (run `zspace prepare`).")
    manifest = read_manifest(manifest_path)
    if not manifest["complete"]:
        raise DataError(f"{folder}: preparation has not finished; rerun the same `zspace prepare` command.")
    if not manifest["shards"]:
        raise DataError(f"{folder}: the cache holds no images.")
    real_folder, seen = folder.resolve(), {}
    n_attributes = len(manifest.get("attribute_names", []))
    shards, files, split, labels, attributes = [], [], [], [], []
    for entry in manifest["shards"]:
        name = entry["name"]
        images_path = _shard_file(folder, real_folder, manifest_path, name, ".images.npy", seen)
        meta_path = _shard_file(folder, real_folder, manifest_path, name, ".meta.npz", seen)
        try:
            shard = Shard.open(images_path)
            parts = _read_meta(meta_path, entry["count"], n_attributes, len(SPLITS))
        except _UNREADABLE as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"{folder}: shard {name} cannot be read ({exc}).") from None
        stored_channels = manifest["channels"] * (2 if manifest.get("pairs", False) else 1)
        expected = (entry["count"], manifest["size"], manifest["size"], stored_channels)
        size = images_path.stat().st_size - shard.offset
        if (shard.count, *shard.image_shape) != expected or size != shard.count * int(np.prod(shard.image_shape)):
            raise DataError(f"{images_path}: holds {(shard.count, *shard.image_shape)} ({size} bytes), "
                            f"the manifest says {expected} uint8.")
        shards.append(shard)
        for store, part in zip((files, split, labels, attributes), parts):
            store.append(part)
    labels = np.concatenate(labels).astype(np.int64)
    n_names = len(manifest.get("label_names", []))
    if n_names and labels.size and labels.max() >= n_names:
        raise DataError(f"{manifest_path}: names {n_names} labels but the shards hold label {labels.max()}.")
    return CacheContents(
        manifest, ShardedImages(shards), np.concatenate(files), np.concatenate(split).astype(np.int8),
        labels, np.concatenate(attributes).astype(np.int8),
    )
