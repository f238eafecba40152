"""Post-hoc latent samplers fitted to the training z-points."""

from __future__ import annotations

import numpy as np
from sklearn.mixture import GaussianMixture

__all__ = ["GaussianMixtureSampler"]


class GaussianMixtureSampler:
    """A Gaussian mixture fitted to encoded training points, to draw new z-points from.

    Drawing z where the encoder actually put its points lets even a plain AE, whose
    z-points lie far from N(0, I), generate meaningful images (Ghosh et al. 2020,
    "From variational to deterministic autoencoders").

    Args:
        n_components: mixture components.
        covariance_type: as scikit-learn's GaussianMixture ("full", "diag", ...).
        random_state: seed of the fit and of the draws.

    Attributes:
        mixture_: the fitted ``sklearn.mixture.GaussianMixture``.
    """

    def __init__(self, n_components: int = 10, covariance_type: str = "full", random_state: int | None = 0):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.random_state = random_state

    def fit(self, z: np.ndarray) -> GaussianMixtureSampler:
        """Fits the mixture to (N, z_dim) points; returns self."""
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or len(z) < self.n_components:
            raise ValueError(
                f"`z` must be (N, z_dim) with N >= n_components={self.n_components}. Received shape {z.shape}"
            )
        self.mixture_ = GaussianMixture(
            self.n_components, covariance_type=self.covariance_type, random_state=self.random_state
        ).fit(z)
        return self

    def sample(self, n: int) -> np.ndarray:
        """n new z-points, float32 (n, z_dim), in random component order."""
        if not hasattr(self, "mixture_"):
            raise RuntimeError("GaussianMixtureSampler.sample called before fit.")
        points, _ = self.mixture_.sample(n)  # grouped by component
        order = np.random.default_rng(self.random_state).permutation(n)
        return points[order].astype(np.float32)
