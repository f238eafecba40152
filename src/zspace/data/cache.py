"""Reading a prepared image cache: uint8 shards on disk, seen as one float32 array.

A cache folder holds ``manifest.json`` and, per shard, ``<name>.images.npy`` (uint8
(n, H, W, C), read with ``os.pread``) and ``<name>.meta.npz`` (file names, split, labels,
attributes). Nothing is unpickled: ``np.load(..., allow_pickle=False)`` throughout.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zspace.errors import DataError

__all__ = ["Shard", "ShardedImages", "CacheContents", "read_cache", "MANIFEST", "CACHE_FORMAT", "SPLITS"]

MANIFEST = "manifest.json"
CACHE_FORMAT = "zspace-image-cache"
SPLITS = ("train", "valid", "test")


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

    def __init__(self, shards: list[Shard], positions: np.ndarray | None = None, _files: _ShardFiles | None = None):
        if not shards:
            raise DataError("a sharded image set needs at least one shard.")
        self.shards = shards
        self._starts = np.cumsum([0] + [s.count for s in shards])
        self.positions = np.arange(self._starts[-1]) if positions is None else np.asarray(positions, dtype=np.int64)
        self.dtype = np.dtype(np.float32)
        self._image_bytes = int(np.prod(shards[0].image_shape))
        self._files = _files if _files is not None else _ShardFiles([s.path for s in shards])

    def close(self) -> None:
        """Closes the shard files of this view and the views sharing them (reads reopen them)."""
        self._files.close()

    def __enter__(self) -> ShardedImages:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.positions), *self.shards[0].image_shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.positions)

    def select(self, indices) -> ShardedImages:
        """A view of the images at ``indices`` (of this view); reads nothing."""
        return ShardedImages(self.shards, self.positions[np.asarray(indices)], _files=self._files)

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
        return out.reshape(len(wanted), *self.shards[0].image_shape)

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

    def close(self) -> None:
        """Closes the shard files (see :meth:`ShardedImages.close`)."""
        self.images.close()

    def __enter__(self) -> CacheContents:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_cache(folder: str | Path) -> CacheContents:
    """Opens a complete cache written by ``zspace prepare``.

    Raises:
        FileNotFoundError: no such folder or no manifest.
        DataError: not a zspace cache, unfinished, or a shard that does not match the manifest.
    """
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not folder.is_dir():
        raise FileNotFoundError(f"cache folder not found: {folder}")
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{folder} has no {MANIFEST}: not a prepared cache (run `zspace prepare`).")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{manifest_path}: not valid JSON ({exc}).") from None
    if manifest.get("format") != CACHE_FORMAT:
        raise DataError(f"{manifest_path}: not a zspace image cache (format={manifest.get('format')!r}).")
    if not manifest.get("complete"):
        raise DataError(f"{folder}: preparation has not finished; rerun the same `zspace prepare` command.")
    if not manifest["shards"]:
        raise DataError(f"{folder}: the cache holds no images.")
    shards, files, split, labels, attributes = [], [], [], [], []
    for entry in manifest["shards"]:
        images_path, meta_path = folder / f"{entry['name']}.images.npy", folder / f"{entry['name']}.meta.npz"
        try:
            shard = Shard.open(images_path)
            with np.load(meta_path, allow_pickle=False) as meta:
                parts = (meta["files"], meta["split"], meta["labels"], meta["attributes"])
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{folder}: shard {entry['name']} cannot be read ({exc}).") from None
        expected = (entry["count"], manifest["size"], manifest["size"], manifest["channels"])
        size = images_path.stat().st_size - shard.offset
        if (shard.count, *shard.image_shape) != expected or len(parts[0]) != entry["count"] or \
                size != shard.count * int(np.prod(shard.image_shape)):
            raise DataError(f"{images_path}: holds {(shard.count, *shard.image_shape)} ({size} bytes), "
                            f"the manifest says {expected} uint8.")
        shards.append(shard)
        for store, part in zip((files, split, labels, attributes), parts):
            store.append(part)
    labels = np.concatenate(labels).astype(np.int64)
    n_names = len(manifest.get("label_names", []))
    if n_names and labels.max() >= n_names:
        raise DataError(f"{manifest_path}: names {n_names} labels but the shards hold label {labels.max()}.")
    return CacheContents(
        manifest, ShardedImages(shards), np.concatenate(files), np.concatenate(split).astype(np.int8),
        labels, np.concatenate(attributes).astype(np.int8),
    )
