"""Training tasks besides reconstruction: what the model sees as input for a clean target image.

- ``reconstruct``: input = target.
- ``denoise``: Gaussian noise (``noise_sigma``, in [0, 1] pixel units) plus a fraction
  ``drop_fraction`` of pixels set to 0; the target is the clean image.
- ``recolor``: the input is the grayscale image (ITU-R 601 luma, repeated on 3 channels),
  the target the colour image.
- ``pairs``: input and target are two stored images (``zspace prepare pairs``): the dataset's
  images (``x``) are the inputs, its ``t`` images the targets; nothing is derived here.

All functions are vectorised over the batch and take (N, H, W, C) float32 in [0, 1].
"""

from __future__ import annotations

import typing
from collections.abc import Callable

import numpy as np

from zspace.config import Task

__all__ = ["to_grayscale", "corrupt", "task_transform", "inference_inputs", "example_inputs", "TASKS"]

TASKS = typing.get_args(Task)  # one list: the config field `task` declares it
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_grayscale(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) colour -> (N, H, W, 3) grey (luma repeated on the three channels)."""
    if images.shape[-1] != 3:
        raise ValueError(f"recolor needs colour images (N, H, W, 3). Received shape {images.shape}")
    grey = images @ _LUMA
    return np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)


def corrupt(images: np.ndarray, rng: np.random.Generator, noise_sigma: float, drop_fraction: float) -> np.ndarray:
    """Adds N(0, noise_sigma^2) noise, zeroes a ``drop_fraction`` of pixels (all channels), clips to [0, 1]."""
    noisy = images + rng.normal(0.0, noise_sigma, images.shape).astype(np.float32) if noise_sigma else images.copy()
    if drop_fraction:
        keep = rng.random(images.shape[:-1]) >= drop_fraction
        noisy = noisy * keep[..., None]
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def task_transform(task: str, noise_sigma: float = 0.1, drop_fraction: float = 0.1
                   ) -> Callable[[np.ndarray, np.random.Generator], np.ndarray] | None:
    """The training-time input function of ``task`` (None: the inputs are the dataset's images)."""
    if task in ("reconstruct", "pairs"):
        return None
    if task == "denoise":
        return lambda x, rng: corrupt(x, rng, noise_sigma, drop_fraction)
    if task == "recolor":
        return lambda x, rng: to_grayscale(x)
    raise ValueError(f"`task` must be one of {TASKS}. Received: task={task!r}")


def inference_inputs(images: np.ndarray, task: str) -> np.ndarray:
    """Inputs for encoding / reconstructing at inference: grey for recolor, the images otherwise
    (for pairs the dataset's images are the inputs already)."""
    return to_grayscale(images) if task == "recolor" else images


def example_inputs(images: np.ndarray, task: str, noise_sigma: float = 0.1, drop_fraction: float = 0.1,
                   seed: int = 0) -> np.ndarray | None:
    """Model inputs for showing a task's examples (seeded noise for denoise); None for reconstruct and pairs
    (whose inputs are the stored images)."""
    transform = task_transform(task, noise_sigma, drop_fraction)
    return None if transform is None else transform(images, np.random.default_rng(seed))
