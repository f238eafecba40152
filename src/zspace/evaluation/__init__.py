"""Evaluation: numbers for generative quality (so far: likelihood, holes in the prior, sample-quality distances)."""

from zspace.evaluation.likelihood import Likelihood, importance_log_likelihood, run_likelihood
from zspace.evaluation.prior import PriorSurgery, aggregate_log_density, elbo_surgery, hole_fraction, hole_fractions

from zspace.evaluation.sample_quality import (
    SampleQuality,
    density_coverage,
    frechet_distance,
    frechet_distance_from_stats,
    kernel_distance,
    kth_neighbour_radii,
    precision_recall,
    sample_quality,
)

__all__ = [
    "PriorSurgery",
    "aggregate_log_density",
    "elbo_surgery",
    "hole_fraction",
    "hole_fractions",
    "Likelihood",
    "importance_log_likelihood",
    "run_likelihood",
    "SampleQuality",
    "sample_quality",
    "frechet_distance",
    "frechet_distance_from_stats",
    "kernel_distance",
    "precision_recall",
    "density_coverage",
    "kth_neighbour_radii",
]
