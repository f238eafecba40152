"""Moving through z-space: small pure numpy functions behind ``zspace explore``.

Shapes: ``n`` encoded points, ``d`` = z_dim; map coordinates are those of the 2-D projection (t-SNE or PCA)
the explorer draws, in that projection's own units.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["blend_nearest", "pca_directions", "attribute_directions", "interpolate", "slerp", "prior_samples",
           "nearest_neighbours", "max_norm", "prior_radius", "check_z", "typical_spacing", "BLEND_EPS",
           "NEIGHBOUR_BLOCK_FLOATS", "MAX_NORM_FACTOR", "MAX_NORM_MARGIN", "PRIOR_RADIUS_FLOOR", "PCA_BLOCK_ROWS",
           "SPACING_QUERIES"]

BLEND_EPS = 1e-6
"""Added to map distances before inverting them (weights 1 / (distance + BLEND_EPS)); a click closer to a point
than this is ON that point and returns its z alone."""
NEIGHBOUR_BLOCK_FLOATS = 4 * 2**20
"""Distances per block of the exact nearest-neighbour search (16 MiB of float32): queries go in blocks of
NEIGHBOUR_BLOCK_FLOATS // n, whatever their number."""
SPACING_QUERIES = 1000
"""Points whose nearest neighbour :func:`typical_spacing` looks up (1,000 x 200,000 CelebA points of z_dim
256: about 50 GFLOP, a few seconds at start-up)."""
PCA_BLOCK_ROWS = 16_384
"""Points per block of the covariance of :func:`pca_directions` (a block of z_dim 256 in float64: 32 MiB)."""
MAX_NORM_FACTOR = 4.0
"""The largest |z| the explorer accepts is at least this multiple of the largest encoded radius."""
MAX_NORM_MARGIN = 8.0
"""... and at least 2 sqrt(d) + MAX_NORM_MARGIN, beyond any N(0, I) sample (radius sqrt(d), spread about 0.7)."""
PRIOR_RADIUS_FLOOR = 3.0
"""The uniform series' slider reaches at least r = 3 (where N(0, I) has almost all its mass per coordinate)."""


def blend_nearest(map_xy: np.ndarray, codes: np.ndarray, at: tuple[float, float], k: int = 8
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The z under a map position: inverse-distance blend of the ``k`` nearest map points' z.

    Weights are 1 / (distance + :data:`BLEND_EPS`), normalised to sum 1, distance measured on the map (the
    2-D projection, not z-space). A position within BLEND_EPS of a point returns that point's z exactly
    (weight 1, the others 0), so clicking a point decodes that point.

    Args:
        map_xy: (n, 2) map coordinates of the points. codes: (n, d) their z. at: (x, y) on the map.
        k: neighbours blended (fewer when there are fewer points).

    Returns:
        z (d,) float32, neighbour rows (k,) into ``map_xy`` nearest first, weights (k,) summing to 1.
    """
    k = max(1, min(int(k), len(map_xy)))
    # Distances in units of the largest coordinate in play: differences of numbers near the float limit
    # (a click at x = 1e308, a crafted map) would overflow to infinity and the weights to NaN. The weights
    # 1 / (d + eps) are the same after normalisation whatever the unit, so eps is scaled with them.
    points = np.asarray(map_xy, np.float64)
    scale = max(1.0, float(np.abs(points).max(initial=0.0)), abs(float(at[0])), abs(float(at[1])))
    distances = np.hypot(points[:, 0] / scale - at[0] / scale, points[:, 1] / scale - at[1] / scale)
    eps = BLEND_EPS / scale
    nearest = np.argpartition(distances, k - 1)[:k] if k < len(distances) else np.arange(len(distances))
    nearest = nearest[np.argsort(distances[nearest], kind="stable")]
    d = distances[nearest]
    if d[0] < eps:
        weights = np.zeros(k)
        weights[0] = 1.0
    else:
        weights = (d[0] + eps) / (d + eps)  # 1 / (d + eps) scaled to at most 1: no overflow for tiny d
        weights /= weights.sum()
    z = (weights[:, None] * codes[nearest].astype(np.float64)).sum(axis=0)
    return z.astype(np.float32), nearest, weights


def pca_directions(z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` principal directions of the points and the standard deviation along each.

    From the (d, d) covariance, accumulated over blocks of :data:`PCA_BLOCK_ROWS` points, so memory stays
    a block however many points there are.

    Args:
        z: (n, d) points (n >= 2). k: directions wanted (at most min(n - 1, d): the directions the
            points span).

    Returns:
        directions (k, d) unit vectors, largest variance first, each signed so that its largest
        component is positive (the same directions whatever the eigensolver returns); std (k,) in z units.
    """
    z = np.asarray(z)
    n, d = z.shape
    mean = z.mean(axis=0, dtype=np.float64)
    scatter = np.zeros((d, d))
    for start in range(0, n, PCA_BLOCK_ROWS):
        block = z[start:start + PCA_BLOCK_ROWS].astype(np.float64) - mean
        scatter += block.T @ block
    variances, vectors = np.linalg.eigh(scatter / max(n - 1, 1))
    k = max(0, min(int(k), d, n - 1))
    order = np.argsort(variances)[::-1][:k]
    vt = vectors[:, order].T
    signs = np.sign(vt[np.arange(k), np.abs(vt).argmax(axis=1)])
    vt = vt * np.where(signs == 0, 1.0, signs)[:, None]
    return vt.astype(np.float32), np.sqrt(np.maximum(variances[order], 0.0)).astype(np.float32)


def attribute_directions(names, vectors: np.ndarray | None) -> dict[str, np.ndarray]:
    """{attribute name: (d,) vector}: mean mu of the images with it minus of those without (``zspace analyze``'s
    ``attribute_vectors``, (A, d)); {} when the dataset has no attributes."""
    if vectors is None or not len(names):
        return {}
    return {str(name): np.asarray(vectors[i], np.float32) for i, name in enumerate(names)}


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation (Shoemake): along the great circle from a to b, radius blended linearly.

    Args:
        a, b: (d,) end points. t: (s,) fractions in [0, 1].

    Returns:
        (s, d): at t the direction rotated by t * angle(a, b) from a's towards b's, with length
        (1 - t)|a| + t|b|. Parallel or antiparallel ends (no unique great circle), or a zero end,
        fall back to linear interpolation.
    """
    a, b, t = (np.asarray(v, np.float64) for v in (a, b, t))
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return _lerp(a, b, t)
    ua, ub = a / na, b / nb
    cos = float(np.clip(ua @ ub, -1.0, 1.0))
    omega = math.acos(cos)
    if math.sin(omega) < 1e-6:  # (anti)parallel
        return _lerp(a, b, t)
    direction = (np.sin((1 - t) * omega)[:, None] * ua + np.sin(t * omega)[:, None] * ub) / math.sin(omega)
    return direction * ((1 - t) * na + t * nb)[:, None]


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return (1 - t)[:, None] * a + t[:, None] * b


def interpolate(a: np.ndarray, b: np.ndarray, steps: int, mode: str = "linear") -> np.ndarray:
    """``steps`` (>= 2) points from a to b, both ends included: (steps, d) float32.

    ``mode``: "linear" (straight line) or "spherical" (:func:`slerp`).
    """
    if mode not in ("linear", "spherical"):
        raise ValueError(f'`mode` must be "linear" or "spherical". Received: {mode!r}')
    t = np.linspace(0.0, 1.0, int(steps))
    points = slerp(a, b, t) if mode == "spherical" else _lerp(np.asarray(a, np.float64), np.asarray(b, np.float64), t)
    return points.astype(np.float32)


def prior_samples(dist: str, n: int, z_dim: int, r: float = 1.0, seed: int = 0) -> np.ndarray:
    """``n`` seeded samples (n, z_dim) float32: "normal" N(0, I), or "uniform" in [-r, r] per coordinate."""
    rng = np.random.default_rng(seed)
    if dist == "normal":
        return rng.standard_normal((n, z_dim)).astype(np.float32)
    if dist == "uniform":
        return rng.uniform(-r, r, (n, z_dim)).astype(np.float32)
    raise ValueError(f'`dist` must be "normal" or "uniform". Received: {dist!r}')


def nearest_neighbours(points: np.ndarray, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest ``points`` (n, d) of each of ``queries`` (m, d), by L2 distance in z-space.

    Computed in float32, a block of queries at a time: each distance block holds at most
    :data:`NEIGHBOUR_BLOCK_FLOATS` values (at least one query per block), so memory stays bounded however
    many points and queries there are (the points are not copied when they are float32 already).

    Returns:
        indices (m, k) into ``points``, nearest first, and their distances (m, k) float64; k is at most n.
    """
    points = np.asarray(points, np.float32)
    queries = np.asarray(queries, np.float32)
    n = len(points)
    k = max(1, min(int(k), n))
    squared = np.einsum("ij,ij->i", points, points)
    rows = max(1, NEIGHBOUR_BLOCK_FLOATS // max(n, 1))
    indices = np.empty((len(queries), k), np.int64)
    distances = np.empty((len(queries), k))
    for start in range(0, len(queries), rows):
        q = queries[start:start + rows]
        d2 = squared[None, :] - 2.0 * (q @ points.T)
        d2 += np.einsum("ij,ij->i", q, q)[:, None]
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(q), 1))
        order = np.argsort(np.take_along_axis(d2, part, axis=1), axis=1, kind="stable")
        chosen = np.take_along_axis(part, order, axis=1)
        indices[start:start + len(q)] = chosen
        distances[start:start + len(q)] = np.sqrt(np.maximum(np.take_along_axis(d2, chosen, axis=1), 0.0))
    return indices, distances


def typical_spacing(codes: np.ndarray, queries: int = SPACING_QUERIES, seed: int = 0) -> float:
    """The median distance (L2, z units) from an encoded point to its nearest OTHER encoded point.

    Measured from a seeded subset of ``queries`` points (all of them when there are fewer) against all
    points, so its cost is bounded: the unit in which a prior sample's distance to the data reads as "inside"
    (about 1) or "in a hole" (many times it). 0 for fewer than two points.
    """
    n = len(codes)
    if n < 2:
        return 0.0
    rows = np.random.default_rng(seed).choice(n, size=min(queries, n), replace=False)
    indices, distances = nearest_neighbours(codes, codes[rows], 2)
    other = np.where(indices[:, 0] == rows, distances[:, 1], distances[:, 0])  # skip the point itself
    return float(np.median(other))


def prior_radius(codes: np.ndarray) -> float:
    """The largest r the uniform series offers: the largest |coordinate| of the encoded points, at least
    :data:`PRIOR_RADIUS_FLOOR`, rounded up to a whole number (an AE's z may spread far beyond N(0, I)'s)."""
    largest = float(np.abs(codes).max()) if codes.size else 0.0
    return float(max(PRIOR_RADIUS_FLOOR, math.ceil(largest)))


def max_norm(codes: np.ndarray, radius: float) -> float:
    """The largest |z| (L2) the explorer decodes: the largest of

    * :data:`MAX_NORM_FACTOR` x the largest encoded radius (sliders and blends stay near the data),
    * 2 sqrt(d) + :data:`MAX_NORM_MARGIN` (every N(0, I) sample),
    * ``radius`` x sqrt(d) (every uniform sample in [-radius, radius]^d, ``radius`` = :func:`prior_radius`).

    Anything beyond is no point of this model's latent space but a request to make the decoder
    compute on arbitrary magnitudes.
    """
    d = codes.shape[1]
    largest = float(np.sqrt(np.einsum("ij,ij->i", codes, codes).max())) if len(codes) else 0.0
    return float(max(MAX_NORM_FACTOR * largest, 2 * math.sqrt(d) + MAX_NORM_MARGIN, radius * math.sqrt(d)))


def check_z(value, z_dim: int, limit: float) -> np.ndarray:
    """A z from a request as (z_dim,) float32, or ValueError with a one-line reason.

    ``value`` must be a list of ``z_dim`` numbers (not booleans), all finite, with L2 norm <= ``limit``.
    """
    if not isinstance(value, list):
        raise ValueError(f"z must be a list of {z_dim} numbers; received {type(value).__name__}")
    if len(value) != z_dim:
        raise ValueError(f"z must have {z_dim} numbers (the run's z_dim); received {len(value)}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"z must be a list of {z_dim} numbers; it holds something else")
    try:
        z = np.array([float(v) for v in value], np.float64)
    except OverflowError:  # an integer beyond float range (JSON integers have no size limit)
        z = np.full(1, np.inf)
    if not np.isfinite(z).all():
        raise ValueError("z must be finite (no NaN or infinity)")
    largest = float(np.abs(z).max()) if len(z) else 0.0
    norm = largest if largest > limit else float(np.linalg.norm(z))  # a huge component would overflow the norm
    if norm > limit:
        raise ValueError(f"|z| = {norm:.4g} is above the largest accepted norm {limit:.4g} (see /api/runs max_norm)")
    return z.astype(np.float32)
