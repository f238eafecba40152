"""Encoding a dataset into z-points."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zspace.storage import atomic_path

__all__ = ["encode_images", "encode_run_images", "save_encoding"]


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


def encode_run_images(run_config, model, split: str = "all", dataset=None, batch_size: int = 256):
    """Encodes the images of a run's dataset.

    Args:
        run_config: the run's :class:`zspace.config.RunConfig` (gives dataset and split).
        model: the run's trained model.
        split: "train", "validation" or "all" (train then validation).
        dataset: a :class:`zspace.data.Dataset` to use instead of the run's own.

    Returns:
        (codes, labels, split_ids): codes as :func:`encode_images`; labels (N,) or None;
        split_ids (N,) int8, 0 = train, 1 = validation.
    """
    from zspace.training import run_data

    if split not in ("train", "validation", "all"):
        raise ValueError(f'`split` must be "train", "validation" or "all". Received: split={split!r}')
    _, (x_train, y_train, x_val, y_val) = run_data(run_config, dataset)
    parts = {"train": [(x_train, y_train, 0)], "validation": [(x_val, y_val, 1)]}
    chosen = parts["train"] + parts["validation"] if split == "all" else parts[split]
    codes = encode_images(model, np.concatenate([p[0] for p in chosen]), batch_size)
    labels = np.concatenate([p[1] for p in chosen]) if all(p[1] is not None for p in chosen) else None
    split_ids = np.concatenate([np.full(len(p[0]), p[2], np.int8) for p in chosen])
    return codes, labels, split_ids
