"""The radius table of blog part XIII: min / max / mean radius of z and mu, logvar components per interval.

Plain functions of an :class:`Analysis`; ``zspace analyze`` prints :func:`format_radius_table`, the
report and ``zspace compare`` lay the same numbers out as tables.
"""

from __future__ import annotations

import math

import numpy as np

from zspace.analysis.records import Analysis
from zspace.analysis.statistics import RadiusStats

__all__ = ["radius_extents", "interval_labels", "format_radius_table"]


def _extent(stats: RadiusStats, points: np.ndarray | None) -> tuple[float, float, float]:
    if stats.min is not None and stats.max is not None:
        return stats.min, stats.max, stats.mean
    if points is None:  # an old record without its arrays
        return math.nan, math.nan, stats.mean
    radii = np.linalg.norm(points.astype(np.float64), axis=1)
    return float(radii.min()), float(radii.max()), stats.mean


def radius_extents(analysis: Analysis) -> dict[str, tuple[float, float, float]]:
    """{"z": (min, max, mean) radius, "mu": the same for a VAE}.

    Analyses written before min and max were recorded get them from their arrays (NaN without).
    """
    extents = {"z": _extent(analysis.radius, analysis.arrays.get("z"))}
    if analysis.radius_mu is not None:
        extents["mu"] = _extent(analysis.radius_mu, analysis.arrays.get("mu"))
    return extents


def interval_labels(edges) -> list[str]:
    """"(-inf, -3)", "[-3, 5)", "[5, inf)" for edges (-inf, -3, 5, inf): half-open, as they are counted."""
    edges = [float(e) for e in edges]
    return [f"{'(' if math.isinf(a) else '['}{a:g}, {b:g})" for a, b in zip(edges[:-1], edges[1:])]


def format_radius_table(analysis: Analysis) -> str:
    """A few lines of text: min / max / mean radius of z (and mu), then logvar components per interval (VAE)."""
    lines = [f"{'radius':<8}{'min':>10}{'max':>10}{'mean':>10}"]
    for name, (low, high, mean) in radius_extents(analysis).items():
        lines.append(f"{name:<8}{low:>10.4g}{high:>10.4g}{mean:>10.4g}")
    internals = analysis.internals
    if internals is not None:
        labels = interval_labels(internals.logvar_edges)
        counts = [str(int(c)) for c in internals.logvar_counts]
        widths = [max(len(a), len(b)) for a, b in zip(labels, counts)]
        lines.append("logvar in    " + "  ".join(a.rjust(w) for a, w in zip(labels, widths)))
        lines.append("components   " + "  ".join(b.rjust(w) for b, w in zip(counts, widths)))
    return "\n".join(lines)
