"""Images produced by a trained model: random decodes, uniform sweeps, reconstructions, interpolations."""

from __future__ import annotations

from typing import Literal

import numpy as np

from zspace.generation.latent import sample_latent

__all__ = ["generate_images", "uniform_sweep", "reconstruction_pairs", "interpolate", "attribute_shift"]


def generate_images(
    model, n: int, dist: Literal["normal", "uniform"] = "normal", limit: float = 1.0,
    seed: int | None = 0,
) -> np.ndarray:
    """Decodes n random z-points (see :func:`sample_latent`): float32 (n, H, W, C) in [0, 1]."""
    z = sample_latent(n, model.model_config.z_dim, dist, limit, seed)
    return model.decode(z)


def uniform_sweep(model, limits, n: int, seed: int | None = 0) -> np.ndarray:
    """Rows of decodes of z uniform in [-r, r]^z_dim, one row of ``n`` per r in ``limits``.

    The same uniform draw in [-1, 1] is scaled by each r, so a column follows one direction
    as the box grows. Returns (len(limits) * n, H, W, C).
    """
    limits = [float(r) for r in limits]
    if not limits or min(limits) <= 0:
        raise ValueError(f"`limits` must be positive half-widths. Received: {limits}")
    unit = sample_latent(n, model.model_config.z_dim, "uniform", 1.0, seed)
    z = (np.asarray(limits, np.float32)[:, None, None] * unit[None]).reshape(-1, unit.shape[1])
    return model.decode(z)


def reconstruction_pairs(model, images: np.ndarray, cols: int = 10, inputs: np.ndarray | None = None) -> np.ndarray:
    """Originals and their reconstructions in alternating rows of ``cols`` (for a grid).

    Args:
        images: (N, H, W, C) targets, N a multiple of ``cols``.
        inputs: what the model gets instead (noisy or grey images for denoise / recolor);
            then each group is three rows: inputs, outputs, targets.

    Returns:
        (2N or 3N, H, W, C): rows of originals (or inputs), outputs (, targets), ...
    """
    if len(images) % cols:
        raise ValueError(f"number of images ({len(images)}) must be a multiple of cols={cols}")
    shape = images.shape[1:]
    decoded = model.reconstruct(images if inputs is None else inputs)
    groups = [images, decoded] if inputs is None else [inputs, decoded, images]
    rows = np.stack([g.reshape(-1, cols, *shape) for g in groups], axis=1)
    return rows.reshape(-1, *shape)


def interpolate(model, image_a: np.ndarray, image_b: np.ndarray, steps: int = 10) -> np.ndarray:
    """Decodes the straight line between the codes of two images (mu for a VAE, z for an AE).

    Args:
        image_a, image_b: (H, W, C) images.
        steps: points on the line, ends included.

    Returns:
        (steps, H, W, C), from a's decode to b's.
    """
    if steps < 2:
        raise ValueError(f"`steps` must be at least 2. Received: steps={steps}")
    codes = model.encode(np.stack([image_a, image_b]).astype(np.float32))
    ends = codes["mu"] if "mu" in codes else codes["z"]
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    return model.decode((1 - t) * ends[0] + t * ends[1])


def attribute_shift(model, inputs: np.ndarray, vector: np.ndarray, strengths) -> np.ndarray:
    """Decodes each image's code plus ``strength * vector``, one row per strength.

    With the attribute vector of "Smiling" (mean code with minus without the attribute), a
    positive strength adds a smile, a negative one removes it; strength 0 is the plain decode.

    Args:
        inputs: (n, H, W, C) model inputs.
        vector: (z_dim,) direction in z-space.
        strengths: multipliers of ``vector``.

    Returns:
        (len(strengths) * n, H, W, C).
    """
    codes = model.encode(np.asarray(inputs, dtype=np.float32))
    base = codes["mu"] if "mu" in codes else codes["z"]
    strengths = np.asarray(list(strengths), dtype=np.float32)
    shifted = base[None] + strengths[:, None, None] * np.asarray(vector, np.float32)[None, None]
    return model.decode(shifted.reshape(-1, base.shape[1]))
