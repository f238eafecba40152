"""How clustered the z-points are: MiniBatchKMeans inertia versus the number of clusters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import MiniBatchKMeans

from zspace.analysis.statistics import _as_points
from zspace.records import Record

__all__ = ["InertiaCurve", "inertia_sweep", "elbow"]


@dataclass(frozen=True)
class InertiaCurve(Record):
    """Inertia (sum of squared distances to the nearest centre) per k and seed.

    Attributes:
        ks: (n_k,) numbers of clusters.
        inertia: (n_seeds, n_k); ``mean`` / ``std`` over seeds, (n_k,).
        elbow_k: :func:`elbow` of the mean curve.
    """

    ks: np.ndarray
    seeds: tuple[int, ...]
    inertia: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    elbow_k: int


def elbow(ks, values) -> int:
    """The k of the point farthest below the chord from the first to the last point.

    The "kneedle" idea (Satopaa et al. 2011) on the curve scaled to the unit square: for a
    decreasing convex curve, the elbow is where the curve bends most away from the straight
    line joining its ends. Returns ``ks[0]`` for a straight or too-short curve.
    """
    ks, values = np.asarray(ks, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if len(ks) < 3 or values[0] == values[-1]:
        return int(ks[0])
    x = (ks - ks[0]) / (ks[-1] - ks[0])
    y = (values - values[-1]) / (values[0] - values[-1])
    distance = (1.0 - x) - y  # height of the chord y = 1 - x above the curve
    best = int(np.argmax(distance))
    return int(ks[best]) if distance[best] > 1e-9 else int(ks[0])


def inertia_sweep(z, ks=range(2, 81, 2), seeds=(0, 1, 2), batch_size: int = 4096, n_init: int = 1) -> InertiaCurve:
    """MiniBatchKMeans inertia for every k in ``ks`` and every seed.

    The inertia is the final model's ``inertia_`` over all points, so curves of different k
    are comparable. The curve is noisy (mini-batches, initialisation): the spread over
    ``seeds`` shows by how much.

    Args:
        z: (N, z_dim) points; N must be at least max(ks).
    """
    z = _as_points(z).astype(np.float32)
    ks = np.asarray(list(ks), dtype=np.int64)
    if len(ks) == 0 or ks.min() < 1:
        raise ValueError(f"`ks` must be positive cluster counts. Received: {ks.tolist()}")
    if len(z) < ks.max():
        raise ValueError(f"n_samples={len(z)} should be >= n_clusters={int(ks.max())}.")
    inertia = np.empty((len(seeds), len(ks)))
    for i, seed in enumerate(seeds):
        for j, k in enumerate(ks):
            model = MiniBatchKMeans(n_clusters=int(k), batch_size=batch_size, n_init=n_init, random_state=seed)
            inertia[i, j] = model.fit(z).inertia_
    mean = inertia.mean(axis=0)
    return InertiaCurve(ks=ks, seeds=tuple(int(s) for s in seeds), inertia=inertia, mean=mean,
                        std=inertia.std(axis=0), elbow_k=elbow(ks, mean))
