"""Random z-points to decode."""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["sample_latent"]


def sample_latent(
    n: int, z_dim: int, dist: Literal["normal", "uniform"] = "normal", limit: float = 1.0,
    seed: int | None = 0,
) -> np.ndarray:
    """n z-points from N(0, I) or uniform in [-limit, limit]^z_dim.

    Returns:
        float32 (n, z_dim).
    """
    if n <= 0:
        raise ValueError(f"`n` must be a positive integer. Received: n={n}")
    if z_dim <= 0:
        raise ValueError(f"`z_dim` must be a positive integer. Received: z_dim={z_dim}")
    rng = np.random.default_rng(seed)
    if dist == "normal":
        z = rng.standard_normal((n, z_dim))
    elif dist == "uniform":
        if not limit > 0:
            raise ValueError(f"`limit` must be positive for dist='uniform'. Received: limit={limit}")
        z = rng.uniform(-limit, limit, (n, z_dim))
    else:
        raise ValueError(f'`dist` must be "normal" or "uniform". Received: dist={dist!r}')
    return z.astype(np.float32)
