"""Latent-space analysis: encoding, radius / axis / VAE statistics, clustering, projections."""

from zspace.analysis.analyze import analyze_codes, analyze_run, load_analysis
from zspace.analysis.clustering import InertiaCurve, elbow, inertia_sweep
from zspace.analysis.encoding import encode_images, encode_run_images, save_encoding
from zspace.analysis.projection import pca_projection, tsne_projection
from zspace.analysis.records import Analysis
from zspace.analysis.tables import format_radius_table, interval_labels, radius_extents
from zspace.analysis.statistics import axis_stats, expected_normal_radius, radius_stats, vae_internals

__all__ = [
    "Analysis",
    "analyze_codes",
    "analyze_run",
    "load_analysis",
    "encode_images",
    "encode_run_images",
    "save_encoding",
    "radius_stats",
    "axis_stats",
    "vae_internals",
    "expected_normal_radius",
    "inertia_sweep",
    "elbow",
    "InertiaCurve",
    "pca_projection",
    "tsne_projection",
    "radius_extents",
    "interval_labels",
    "format_radius_table",
]
