"""Reading a prepared image cache: uint8 shards on disk, seen as one float32 array.

A cache folder holds ``manifest.json`` and, per shard, ``<name>.images.npy`` (uint8
(n, H, W, C), memory-mapped) and ``<name>.meta.npz`` (file names, split, labels,
attributes). Nothing is unpickled: ``np.load(..., allow_pickle=False)`` throughout.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from zspace.errors import DataError

__all__ = ["ShardedImages", "CacheContents", "read_cache", "MANIFEST", "CACHE_FORMAT", "SPLITS"]

MANIFEST = "manifest.json"
CACHE_FORMAT = "zspace-image-cache"
SPLITS = ("train", "valid", "test")


class ShardedImages:
    """Images of several memory-mapped uint8 shards, indexed like one float32 array in [0, 1].

    Indexing with an int, slice or index array reads only those images from disk and returns
    float32 (k, H, W, C); :meth:`select` makes a lighter view without reading anything.

    Args:
        shards: uint8 arrays (n_i, H, W, C), typically ``np.load(..., mmap_mode="r")``.
        positions: global positions (into the concatenated shards) of this view's images.
    """

    def __init__(self, shards: list[np.ndarray], positions: np.ndarray | None = None):
        if not shards:
            raise DataError("a sharded image set needs at least one shard.")
        self.shards = shards
        self._starts = np.cumsum([0] + [len(s) for s in shards])
        total = int(self._starts[-1])
        self.positions = np.arange(total) if positions is None else np.asarray(positions, dtype=np.int64)
        self.dtype = np.dtype(np.float32)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.positions), *self.shards[0].shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.positions)

    def select(self, indices) -> ShardedImages:
        """A view of the images at ``indices`` (of this view); reads nothing."""
        return ShardedImages(self.shards, self.positions[np.asarray(indices)])

    def uint8(self, indices) -> np.ndarray:
        """The raw uint8 images at ``indices`` (an index array of this view)."""
        wanted = self.positions[np.asarray(indices, dtype=np.int64)]
        out = np.empty((len(wanted), *self.shards[0].shape[1:]), dtype=np.uint8)
        shard_of = np.searchsorted(self._starts, wanted, side="right") - 1
        for shard in np.unique(shard_of):  # a few shards per batch, not one call per image
            mask = shard_of == shard
            out[mask] = self.shards[shard][wanted[mask] - self._starts[shard]]
        return out

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
        return list(self.manifest.get("label_names", []))


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
            array = np.load(images_path, mmap_mode="r", allow_pickle=False)
            with np.load(meta_path, allow_pickle=False) as meta:
                parts = (meta["files"], meta["split"], meta["labels"], meta["attributes"])
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{folder}: shard {entry['name']} cannot be read ({exc}).") from None
        expected = (entry["count"], manifest["size"], manifest["size"], manifest["channels"])
        if array.shape != expected or array.dtype != np.uint8 or len(parts[0]) != entry["count"]:
            raise DataError(f"{images_path}: shape {array.shape} {array.dtype}, manifest says {expected} uint8.")
        shards.append(array)
        for store, part in zip((files, split, labels, attributes), parts):
            store.append(part)
    return CacheContents(
        manifest, ShardedImages(shards), np.concatenate(files), np.concatenate(split).astype(np.int8),
        np.concatenate(labels).astype(np.int64), np.concatenate(attributes).astype(np.int8),
    )
