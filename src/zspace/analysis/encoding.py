"""Encoding a dataset into z-points."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zspace.storage import atomic_path

__all__ = ["encode_images", "save_encoding"]


def encode_images(model, images: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Batched encoding: {"z"} (+ "mu", "logvar" for a VAE), each float32 (N, z_dim)."""
    return {k: np.asarray(v, dtype=np.float32) for k, v in model.encode(images, batch_size).items()}


def save_encoding(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Writes arrays to an ``.npz`` file atomically (no pickled objects: load with allow_pickle=False)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"encoding output must end in .npz. Received: {path}")
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
    return path
