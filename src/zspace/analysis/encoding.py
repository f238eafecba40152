"""Encoding a dataset into z-points."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zspace.config import MAX_EPSILON_SCALE
from zspace.errors import ConfigError
from zspace.storage import atomic_path

__all__ = ["encode_images", "encode_run_images", "EncodedRun", "save_encoding", "check_encoding_path",
           "check_epsilon_scale", "resolve_epsilon_scale", "epsilon_scaled"]


def check_epsilon_scale(value: float, name: str = "epsilon_scale") -> float:
    """``value`` as a float; ConfigError unless it is a number in [0, MAX_EPSILON_SCALE] (ModelConfig's range)."""
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= MAX_EPSILON_SCALE):
        raise ConfigError(f"{name} must be a number in [0, {MAX_EPSILON_SCALE:g}] (the scale of eps in "
                          f"z = mu + sigma * eps * scale). Received: {value:g}")
    return value


def resolve_epsilon_scale(run, epsilon_scale: float | None, name: str = "epsilon_scale") -> float | None:
    """The scale of the sampling noise an operation on ``run`` uses: ``epsilon_scale``, or the run's own.

    The run's own is its config's ``epsilon_scale`` (what it was trained with, 1 unless set). Reads only
    config.toml, so bad input fails before a model is loaded.

    Returns:
        the scale for a VAE; None for an AE (its z is the encoder's output: there is no noise to scale).

    Raises:
        ConfigError: ``epsilon_scale`` out of [0, MAX_EPSILON_SCALE], or given for an AE run.
    """
    model_config = run.config.model
    if model_config.kind != "vae":
        if epsilon_scale is not None:
            raise ConfigError(f"{name}: {run.root} is an AE (kind = \"{model_config.kind}\"): its z is the "
                              f"encoder's output, with no sampling noise to scale; use it with VAE runs only.")
        return None
    if epsilon_scale is None:
        return float(model_config.epsilon_scale)
    return check_epsilon_scale(epsilon_scale, name)


@contextlib.contextmanager
def epsilon_scaled(run, epsilon_scale: float | None, name: str = "epsilon_scale") -> Iterator[float | None]:
    """Runs the block with the run's VAE sampling z = mu + exp(logvar / 2) * eps * scale; yields the scale.

    ``epsilon_scale`` None keeps the run's own (see :func:`resolve_epsilon_scale`). The run's one loaded
    model serves every part of a command, so the scale the model was saved with is put back afterwards,
    even when the block fails. For an AE (None) the block runs unchanged.
    """
    scale = resolve_epsilon_scale(run, epsilon_scale, name)
    if scale is None or epsilon_scale is None:
        yield scale
        return
    from keras import ops

    model = run.model
    saved = float(ops.convert_to_numpy(model.sampling_layer.epsilon_scale))
    model.set_epsilon_scale(scale)
    try:
        yield scale
    finally:
        model.set_epsilon_scale(saved)


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
        epsilon_scale: the scale of eps in z = mu + sigma * eps * scale (VAE); None for an AE.
    """

    codes: dict[str, np.ndarray]
    labels: np.ndarray | None
    split: np.ndarray
    attributes: np.ndarray | None = None
    attribute_names: tuple[str, ...] = ()
    epsilon_scale: float | None = None

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for an ``.npz``: the codes, ``split``, and ``labels`` / ``attributes`` / ``attribute_names`` if
        known; ``epsilon_scale`` (a 0-d float64) for a VAE."""
        arrays = {**self.codes, "split": self.split}
        if self.epsilon_scale is not None:
            arrays["epsilon_scale"] = np.asarray(self.epsilon_scale, dtype=np.float64)
        if self.labels is not None:
            arrays["labels"] = self.labels
        if self.attributes is not None:
            arrays["attributes"] = self.attributes
            arrays["attribute_names"] = np.asarray(self.attribute_names, dtype=str)
        return arrays


def encode_run_images(run, split: str = "all", batch_size: int = 256,
                      epsilon_scale: float | None = None) -> EncodedRun:
    """Encodes the images of a run's dataset (streamed when it is a prepared cache).

    Args:
        run: a :class:`zspace.Run` (its model, config and split; its dataset if one was given).
        split: "train", "validation" or "all" (train then validation).
        epsilon_scale: VAE only: z = mu + sigma * eps * epsilon_scale (0: z = mu); None = the run's own
            (its config's, 1 unless set). The same noise eps is drawn whatever the scale.
    """
    if split not in ("train", "validation", "all"):
        raise ValueError(f'`split` must be "train", "validation" or "all". Received: split={split!r}')
    with epsilon_scaled(run, epsilon_scale) as scale:
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
        epsilon_scale=scale,
    )
