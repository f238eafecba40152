"""Images produced by a trained model: random decodes and reconstructions."""

from __future__ import annotations

from typing import Literal

import numpy as np

from zspace.generation.latent import sample_latent

__all__ = ["generate_images", "reconstruction_pairs"]


def generate_images(
    model, n: int, dist: Literal["normal", "uniform"] = "normal", limit: float = 1.0,
    seed: int | None = 0,
) -> np.ndarray:
    """Decodes n random z-points (see :func:`sample_latent`): float32 (n, H, W, C) in [0, 1]."""
    z = sample_latent(n, model.model_config.z_dim, dist, limit, seed)
    return model.decode(z)


def reconstruction_pairs(model, images: np.ndarray, cols: int = 10) -> np.ndarray:
    """Originals and their reconstructions in alternating rows of ``cols`` (for a grid).

    Args:
        images: (N, H, W, C), N a multiple of ``cols``.

    Returns:
        (2N, H, W, C): row of originals, row of their reconstructions, ...
    """
    if len(images) % cols:
        raise ValueError(f"number of images ({len(images)}) must be a multiple of cols={cols}")
    decoded = model.reconstruct(images)
    shape = images.shape[1:]
    rows = np.stack([images.reshape(-1, cols, *shape), decoded.reshape(-1, cols, *shape)], axis=1)
    return rows.reshape(-1, *shape)
