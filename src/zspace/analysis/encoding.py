"""Encoding a dataset into z-points."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zspace.errors import ConfigError
from zspace.storage import atomic_path

__all__ = ["encode_images", "encode_run_images", "EncodedRun", "save_encoding", "check_encoding_path"]


def encode_images(model, images, batch_size: int = 256, task: str = "reconstruct",
                  chunk: int = 8192) -> dict[str, np.ndarray]:
    """Batched encoding: {"z"} (+ "mu", "logvar" for a VAE), each float32 (N, z_dim).

    Args:
        images: (N, H, W, C) float32 array or :class:`zspace.data.ShardedImages`; read and
            converted ``chunk`` images at a time, so a cache is never loaded whole.
        task: the run's task; a recolor model is given grey inputs.
    """
    from zspace.data.tasks import inference_inputs

    parts = []
    for start in range(0, len(images), chunk):
        x = inference_inputs(np.asarray(images[start:start + chunk], dtype=np.float32), task)
        parts.append(model.encode(x, batch_size))
    return {k: np.concatenate([p[k] for p in parts]).astype(np.float32) for k in parts[0]}


def check_encoding_path(path: str | Path) -> Path:
    """``path`` as a Path; ConfigError unless it names an ``.npz`` file (checked before encoding, which takes a while)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ConfigError(f"encoding output must end in .npz. Received: {path}")
    return path


def save_encoding(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Writes arrays to an ``.npz`` file atomically (no pickled objects: load with allow_pickle=False)."""
    path = check_encoding_path(path)
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
    return path


@dataclass
class EncodedRun:
    """Codes of a run's images with what is known of each image.

    Attributes:
        codes: as :func:`encode_images`; labels: (N,) or None; split: (N,) int8, 0 = train,
        1 = validation; attributes: (N, A) int8 (+1 / -1) or None; attribute_names: A names.
    """

    codes: dict[str, np.ndarray]
    labels: np.ndarray | None
    split: np.ndarray
    attributes: np.ndarray | None = None
    attribute_names: tuple[str, ...] = ()

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for an ``.npz``: the codes, ``split``, and ``labels`` / ``attributes`` / ``attribute_names`` if known."""
        arrays = {**self.codes, "split": self.split}
        if self.labels is not None:
            arrays["labels"] = self.labels
        if self.attributes is not None:
            arrays["attributes"] = self.attributes
            arrays["attribute_names"] = np.asarray(self.attribute_names, dtype=str)
        return arrays


def encode_run_images(run, split: str = "all", batch_size: int = 256) -> EncodedRun:
    """Encodes the images of a run's dataset (streamed when it is a prepared cache).

    Args:
        run: a :class:`zspace.Run` (its model, config and split; its dataset if one was given).
        split: "train", "validation" or "all" (train then validation).
    """
    if split not in ("train", "validation", "all"):
        raise ValueError(f'`split` must be "train", "validation" or "all". Received: split={split!r}')
    data = run.split
    parts = {"train": [(data.x_train, data.y_train, data.a_train, 0)],
             "validation": [(data.x_val, data.y_val, data.a_val, 1)]}
    chosen = parts["train"] + parts["validation"] if split == "all" else parts[split]
    model = run.reset_noise()  # the same z whatever the model encoded before
    encoded = [encode_images(model, p[0], batch_size, run.config.train.task) for p in chosen]

    def joined(i):
        return np.concatenate([p[i] for p in chosen]) if all(p[i] is not None for p in chosen) else None

    return EncodedRun(
        codes={k: np.concatenate([e[k] for e in encoded]) for k in encoded[0]},
        labels=joined(1),
        split=np.concatenate([np.full(len(p[0]), p[3], np.int8) for p in chosen]),
        attributes=joined(2),
        attribute_names=tuple(run.data.attribute_names),
    )
