"""Where the z-points lie: radius, per-axis and VAE-internals statistics (pure numpy).

Every function takes arrays and returns a small frozen :class:`zspace.records.Record`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from zspace.records import Record

__all__ = [
    "expected_normal_radius",
    "RadiusStats",
    "radius_stats",
    "AxisStats",
    "axis_stats",
    "VAEInternals",
    "vae_internals",
]


def _as_points(z, name: str = "z") -> np.ndarray:
    z = np.asarray(z)
    if z.ndim != 2 or len(z) == 0:
        raise ValueError(f"`{name}` must be a non-empty (N, z_dim) array. Received shape {z.shape}")
    return z


def expected_normal_radius(z_dim: int) -> float:
    """E||z|| for z ~ N(0, I_z_dim): sqrt(2) * Gamma((d + 1) / 2) / Gamma(d / 2) (about sqrt(d - 1/2))."""
    if z_dim <= 0:
        raise ValueError(f"`z_dim` must be a positive integer. Received: z_dim={z_dim}")
    return math.sqrt(2.0) * math.exp(math.lgamma((z_dim + 1) / 2) - math.lgamma(z_dim / 2))


@dataclass(frozen=True)
class RadiusStats(Record):
    """L2 radius of z-points.

    Attributes:
        counts, edges: histogram (len(edges) = len(counts) + 1); points outside the range are
            counted in ``below`` / ``above``.
        mean, median, std: of the radii; min, max: the smallest and largest radius (None in
            analyses written before they were recorded).
        mode: centre of the fullest bin.
        shell_50, shell_95: (low, high) radii of the central 50% and 95% of the points.
        expected_normal: E||z|| of N(0, I) in the same dimension, for comparison.
    """

    z_dim: int
    n_points: int
    counts: np.ndarray
    edges: np.ndarray
    below: int
    above: int
    mean: float
    median: float
    std: float
    mode: float
    shell_50: tuple[float, float]
    shell_95: tuple[float, float]
    expected_normal: float
    min: float | None = None
    max: float | None = None


# Bins of an automatic radius histogram, at most (the config bounds a given range the same way).
MAX_RADIUS_BINS = 10_000


def radius_stats(z, bin_width: float = 0.5, value_range: tuple[float, float] | None = (0.0, 35.0)) -> RadiusStats:
    """Radius histogram and summary of z-points.

    Args:
        z: (N, z_dim) points.
        bin_width: histogram bin width (same units as z).
        value_range: (low, high) of the histogram; None = from 0 to the largest radius, at most
            :data:`MAX_RADIUS_BINS` bins (points beyond count as ``above``: a few far outliers
            cannot make the histogram allocate without bound).
    """
    z = _as_points(z)
    if not bin_width > 0:
        raise ValueError(f"`bin_width` must be positive. Received: bin_width={bin_width}")
    radii = np.linalg.norm(z.astype(np.float64), axis=1)
    if value_range is None:
        finite = radii[np.isfinite(radii)]
        largest = float(finite.max()) if len(finite) else 0.0
        low, high = 0.0, min(largest + bin_width, MAX_RADIUS_BINS * bin_width)
    else:
        low, high = value_range
    if not high > low:
        raise ValueError(f"`value_range` must be (low, high) with high > low. Received: {value_range}")
    n_bins = max(1, int(math.ceil((high - low) / bin_width - 1e-9)))
    edges = low + bin_width * np.arange(n_bins + 1)
    counts, _ = np.histogram(radii, bins=edges)
    q = np.quantile(radii, [0.025, 0.25, 0.5, 0.75, 0.975])
    peak = int(np.argmax(counts))
    return RadiusStats(
        z_dim=z.shape[1], n_points=len(z), counts=counts, edges=edges,
        below=int((radii < edges[0]).sum()), above=int((radii > edges[-1]).sum()),
        mean=float(radii.mean()), median=float(q[2]), std=float(radii.std()),
        mode=float((edges[peak] + edges[peak + 1]) / 2),
        shell_50=(float(q[1]), float(q[3])), shell_95=(float(q[0]), float(q[4])),
        expected_normal=expected_normal_radius(z.shape[1]),
        min=float(radii.min()), max=float(radii.max()),
    )


@dataclass(frozen=True)
class AxisStats(Record):
    """Per latent coordinate statistics.

    Attributes:
        mean, std: (z_dim,) over the points.
        activity: (z_dim,) variance over the data of the encoder mean (Burda et al. 2015).
        active_units: number of coordinates with activity above ``threshold``.
        histograms: {axis: (counts, edges)} for the selected axes.
    """

    mean: np.ndarray
    std: np.ndarray
    activity: np.ndarray
    threshold: float
    active_units: int
    histograms: dict[int, tuple[np.ndarray, np.ndarray]]


def axis_stats(z, mu=None, axes=(0, 1), bins: int = 50, threshold: float = 0.01) -> AxisStats:
    """Mean and std of every coordinate, active units and histograms of ``axes``.

    Args:
        z: (N, z_dim) z-points.
        mu: (N, z_dim) encoder means (VAE); for an AE the z-points are the means.
        axes: coordinates to histogram.
        bins: bins per histogram.
        threshold: activity above which a unit counts as active.
    """
    z = _as_points(z)
    mu = z if mu is None else _as_points(mu, "mu")
    bad = [a for a in axes if not 0 <= a < z.shape[1]]
    if bad:
        raise ValueError(f"`axes` must be in [0, {z.shape[1]}). Received: {bad}")
    activity = mu.astype(np.float64).var(axis=0)
    histograms = {int(a): np.histogram(z[:, a], bins=bins) for a in axes}
    return AxisStats(
        mean=z.mean(axis=0, dtype=np.float64), std=z.std(axis=0, dtype=np.float64),
        activity=activity, threshold=threshold, active_units=int((activity > threshold).sum()),
        histograms=histograms,
    )


@dataclass(frozen=True)
class VAEInternals(Record):
    """How a VAE uses its noise.

    Attributes:
        logvar_min, logvar_max, logvar_mean: over all components.
        logvar_counts, logvar_edges: number of components per logvar interval.
        abs_z_minus_mu_max: max |z - mu| over all components.
        n_z_minus_mu_above: components with |z - mu| above ``z_minus_mu_threshold``.
        radius_abs_diff_max/mean, radius_rel_diff_max/mean: |r(z) - r(mu)| and its ratio to r(mu).
        kl_per_dim: (z_dim,) mean KL of each latent dimension (nats).
        kl_total: mean KL per image (nats).
    """

    logvar_min: float
    logvar_max: float
    logvar_mean: float
    logvar_counts: np.ndarray
    logvar_edges: np.ndarray
    abs_z_minus_mu_max: float
    z_minus_mu_threshold: float
    n_z_minus_mu_above: int
    radius_abs_diff_max: float
    radius_abs_diff_mean: float
    radius_rel_diff_max: float
    radius_rel_diff_mean: float
    kl_per_dim: np.ndarray
    kl_total: float


DEFAULT_LOGVAR_EDGES = (-np.inf, -20.0, -10.0, -5.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, np.inf)


def vae_internals(z, mu, logvar, logvar_edges=DEFAULT_LOGVAR_EDGES, z_minus_mu_threshold: float = 0.05) -> VAEInternals:
    """Statistics of logvar, of z - mu and of the KL per dimension, from (N, z_dim) arrays."""
    z, mu, logvar = _as_points(z), _as_points(mu, "mu"), _as_points(logvar, "logvar")
    if not z.shape == mu.shape == logvar.shape:
        raise ValueError(f"z, mu and logvar must have one shape. Received {z.shape}, {mu.shape}, {logvar.shape}")
    lv = logvar.astype(np.float64)
    m = mu.astype(np.float64)
    diff = np.abs(z.astype(np.float64) - m)
    r_z, r_mu = np.linalg.norm(z.astype(np.float64), axis=1), np.linalg.norm(m, axis=1)
    r_diff = np.abs(r_z - r_mu)
    with np.errstate(divide="ignore", invalid="ignore"):
        r_rel = np.where(r_mu > 0, r_diff / r_mu, np.where(r_diff > 0, np.inf, 0.0))
    counts, edges = np.histogram(lv, bins=np.asarray(logvar_edges, dtype=np.float64))
    kl = -0.5 * (1.0 + lv - m**2 - np.exp(lv))
    return VAEInternals(
        logvar_min=float(lv.min()), logvar_max=float(lv.max()), logvar_mean=float(lv.mean()),
        logvar_counts=counts, logvar_edges=edges,
        abs_z_minus_mu_max=float(diff.max()), z_minus_mu_threshold=z_minus_mu_threshold,
        n_z_minus_mu_above=int((diff > z_minus_mu_threshold).sum()),
        radius_abs_diff_max=float(r_diff.max()), radius_abs_diff_mean=float(r_diff.mean()),
        radius_rel_diff_max=float(r_rel.max()), radius_rel_diff_mean=float(r_rel.mean()),
        kl_per_dim=kl.mean(axis=0), kl_total=float(kl.sum(axis=1).mean()),
    )
