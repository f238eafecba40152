"""Distances between a set of real and a set of generated images in a feature space (pure numpy).

Every function takes feature arrays ``real`` (N, D) and ``fake`` (M, D) (float; any feature
network's output) and returns plain numbers:

- :func:`frechet_distance`: the Frechet distance of the two Gaussians fitted to the features
  (Heusel et al. 2017; "FID" when the features are Inception-v3 pool features).
- :func:`kernel_distance`: KID, the unbiased MMD^2 with the polynomial kernel
  ``(x.y / D + 1)^3``, averaged over random subsets, with its std (Binkowski et al. 2018).
- :func:`precision_recall`: k-NN manifold precision and recall (Kynkaanniemi et al. 2019).
- :func:`density_coverage`: density and coverage (Naeem et al. 2020).

Nearest-neighbour radii and ball tests run on blocks of rows of the distance matrix (no Python
loop over points; 2,048 x 10,000 float32 = 80 MiB a block), three passes over the point pairs for
all four manifold numbers together (:func:`sample_quality`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zspace.records import Record

__all__ = ["is_sampler_name", "frechet_distance", "frechet_distance_from_stats", "kernel_distance", "precision_recall",
           "density_coverage", "kth_neighbour_radii", "SampleQuality", "sample_quality"]

_BLOCK = 2048  # rows of a distance block: 2048 x 10,000 float64 = 160 MiB


def _features(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2 or not np.isfinite(x).all():
        raise ValueError(f"`{name}` must be a finite (N, D) array with N >= 2. Received shape {x.shape}")
    return x


def _pair(real, fake) -> tuple[np.ndarray, np.ndarray]:
    real, fake = _features(real, "real"), _features(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"`real` and `fake` must have one feature dimension. Received {real.shape[1]} and "
                         f"{fake.shape[1]}")
    return real, fake


def frechet_distance_from_stats(mu1, cov1, mu2, cov2) -> float:
    """||mu1 - mu2||^2 + tr(C1) + tr(C2) - 2 tr((C1 C2)^(1/2)) for (D,) means and (D, D) covariances.

    tr((C1 C2)^(1/2)) is the sum of the square roots of the eigenvalues of C1^(1/2) C2 C1^(1/2),
    a symmetric PSD matrix: two symmetric eigendecompositions, no complex round-off to discard
    (as scipy.linalg.sqrtm of the non-symmetric C1 C2 leaves).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    w, v = np.linalg.eigh(cov1)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    middle = np.linalg.eigvalsh(root1 @ cov2 @ root1)
    trace_root = np.sqrt(np.clip(middle, 0.0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_root)


def frechet_distance(real, fake) -> float:
    """Frechet distance between Gaussians fitted to (N, D) and (M, D) features (unbiased covariances)."""
    real, fake = _pair(real, fake)
    return frechet_distance_from_stats(real.mean(0), np.cov(real, rowvar=False),
                                       fake.mean(0), np.cov(fake, rowvar=False))


def kernel_distance(real, fake, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: mean and std over ``subsets`` random subsets of the unbiased MMD^2, kernel (x.y / D + 1)^3.

    ``subset_size`` is capped at the smaller set's size; each subset draws without replacement.
    """
    real, fake = _pair(real, fake)
    m = min(subset_size, len(real), len(fake))
    dim = real.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for s in range(subsets):  # a loop over subsets, each one vectorised
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        k_xx, k_yy, k_xy = ((a @ b.T / dim + 1.0) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        off_diagonal = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values[s] = off_diagonal - 2.0 * k_xy.mean()
    return float(values.mean()), float(values.std())


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def _blocks(n: int):
    return (slice(start, start + _BLOCK) for start in range(0, n, _BLOCK))


def _radii(x: np.ndarray, ks: tuple[int, ...]) -> dict[int, np.ndarray]:
    """{k: (N,) distance of each point to its k-th nearest other point}, one pass over the pairs."""
    if not all(1 <= k < len(x) for k in ks):
        raise ValueError(f"`k` must be in [1, {len(x)}) for {len(x)} points. Received: k={list(ks)}")
    radii = {k: np.empty(len(x)) for k in ks}
    for rows in _blocks(len(x)):
        part = np.partition(_squared_distances(x[rows], x), ks, axis=1)  # column 0: the point itself
        for k in ks:
            radii[k][rows] = part[:, k]
    return {k: np.sqrt(r) for k, r in radii.items()}


def kth_neighbour_radii(x, k: int) -> np.ndarray:
    """(N,) distance of each point to its k-th nearest other point of ``x``."""
    return _radii(_features(x, "x").astype(np.float32), (k,))[k]


def _manifold(real: np.ndarray, fake: np.ndarray, pr_k: int, dc_k: int) -> dict[str, float]:
    """Precision, recall (k = pr_k), density and coverage (k = dc_k) from three passes over point pairs.

    Distances are computed in float32 (the GEMM at twice the float64 rate); k-NN radii and ball
    tests compare squared distances computed the same way.
    """
    real, fake = real.astype(np.float32), fake.astype(np.float32)
    real_radii = _radii(real, tuple(sorted({pr_k, dc_k})))
    fake_radii = _radii(fake, (pr_k,))[pr_k] ** 2
    r_pr, r_dc = real_radii[pr_k] ** 2, real_radii[dc_k] ** 2
    in_real_pr = np.zeros(len(fake), dtype=bool)  # fake point inside some real pr_k ball
    in_real_dc = np.zeros(len(fake), dtype=np.int64)  # number of real dc_k balls holding the fake point
    real_in_fake = np.zeros(len(real), dtype=bool)  # real point inside some fake pr_k ball
    covered = np.zeros(len(real), dtype=bool)  # real point's dc_k ball holds some fake point
    for rows in _blocks(len(real)):
        d = _squared_distances(real[rows], fake)  # (block of real, fake)
        in_real_pr |= (d <= r_pr[rows, None]).any(0)
        in_real_dc += (d <= r_dc[rows, None]).sum(0)
        real_in_fake[rows] = (d <= fake_radii[None, :]).any(1)
        covered[rows] = d.min(1) <= r_dc[rows]
    return {"precision": float(in_real_pr.mean()), "recall": float(real_in_fake.mean()),
            "density": float(in_real_dc.sum() / (dc_k * len(fake))), "coverage": float(covered.mean())}


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """Precision: share of fake points inside some real point's k-NN ball; recall: the same, roles swapped."""
    m = _manifold(*_pair(real, fake), k, k)
    return m["precision"], m["recall"]


def density_coverage(real, fake, k: int = 5) -> tuple[float, float]:
    """Density: mean number of real k-NN balls holding a fake point, over k (about 1 when fake ~ real);
    coverage: share of real points whose k-NN ball holds some fake point."""
    m = _manifold(*_pair(real, fake), k, k)
    return m["density"], m["coverage"]


def is_sampler_name(name: str) -> bool:
    """"normal", "gmm", "second_stage" or "uniform_<r>" with r a positive finite number."""
    if name in ("normal", "gmm", "second_stage"):
        return True
    head, _, r = name.partition("_")
    try:
        return head == "uniform" and 0 < float(r) < float("inf")
    except ValueError:
        return False


def _check_share(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be a share in [0, 1]. Received: {value}")


@dataclass(frozen=True)
class SampleQuality(Record):
    """How close one sampler's images are to the held-out real images, in one feature space.

    Attributes:
        sampler: "normal", "uniform_<r>", "gmm", ...; features: the feature space ("FD-domain", "FID").
        n_real, n_fake: images compared. fd: Frechet distance. kid, kid_std: KID and its std over subsets.
        precision, recall: k = 3. density, coverage: k = 5.
    """

    sampler: str
    features: str
    n_real: int
    n_fake: int
    fd: float
    kid: float
    kid_std: float
    precision: float
    recall: float
    density: float
    coverage: float

    def __post_init__(self):  # a hand-edited evaluation.json is refused with the field's name
        if not is_sampler_name(self.sampler):
            raise ValueError(f"`sampler` must be normal, gmm, second_stage or uniform_<r>. Received: {self.sampler!r}")
        for name in ("precision", "recall", "coverage"):
            _check_share(getattr(self, name), name)
        if not (self.n_real >= 2 and self.n_fake >= 2 and self.density >= 0 and self.fd >= -1e-6):
            raise ValueError(f"sizes, density or FD out of range: n_real={self.n_real}, n_fake={self.n_fake}, "
                             f"density={self.density}, fd={self.fd}")


def sample_quality(real, fake, sampler: str, features: str, seed: int = 0, pr_k: int = 3,
                   dc_k: int = 5) -> SampleQuality:
    """Every distance above between (N, D) real and (M, D) generated features.

    KID subsets hold 1,000 points, or half the smaller set when it has fewer than 2,000: subsets as
    large as the set would all be the whole set, and their std 0.
    """
    real, fake = _pair(real, fake)
    kid, kid_std = kernel_distance(real, fake, subset_size=min(1000, max(2, min(len(real), len(fake)) // 2)),
                                   seed=seed)
    return SampleQuality(sampler, features, len(real), len(fake), frechet_distance(real, fake), kid, kid_std,
                         **_manifold(real, fake, pr_k, dc_k))
