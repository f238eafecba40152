"""``zspace analyze``: encode a run's dataset and compute every z-space statistic.

Results go to the run directory: ``analysis.json`` (config, scalars, tables, small
histograms, timings) and ``analysis.npz`` (z, mu, logvar, labels, embeddings).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zspace.analysis.clustering import inertia_sweep
from zspace.analysis.encoding import encode_run_images, save_encoding
from zspace.analysis.projection import pca_projection, tsne_projection
from zspace.analysis.statistics import axis_stats, radius_stats, vae_internals
from zspace.config import AnalysisConfig
from zspace.errors import ConfigError
from zspace.storage import atomic_write_text

__all__ = ["Analysis", "analyze_codes", "analyze_run", "load_analysis", "attribute_vectors", "ANALYSIS_JSON",
           "ANALYSIS_NPZ"]

ANALYSIS_JSON = "analysis.json"
ANALYSIS_NPZ = "analysis.npz"


@dataclass
class Analysis:
    """Everything ``zspace analyze`` computes.

    Attributes:
        summary: JSON-ready dict: ``config``, ``kind``, ``z_dim``, ``n_points``, ``radius``,
            ``radius_mu`` (VAE), ``axes``, ``internals`` (VAE), ``inertia``, ``pca``, ``tsne``,
            ``seconds`` (time per part).
        arrays: ``z`` (+ ``mu``, ``logvar``), ``labels`` (if any), ``split``,
            ``pca_indices``/``pca_embedding``, ``tsne_<n>_indices``/``tsne_<n>_embedding``.
    """

    summary: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


class _Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - start, 3)
        return out


def attribute_vectors(codes: np.ndarray, attributes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean code of the images with each attribute minus the mean of those without.

    Args:
        codes: (N, z_dim) encoder means (or z for an AE).
        attributes: (N, A) int8, +1 present / -1 absent / 0 unknown.

    Returns:
        vectors (A, z_dim), and counts (A, 2) of images with and without each attribute;
        an attribute seen on one side only gets a zero vector.
    """
    codes = codes.astype(np.float64)
    with_attr, without = (attributes > 0).astype(np.float64), (attributes < 0).astype(np.float64)
    n_with, n_without = with_attr.sum(axis=0), without.sum(axis=0)
    mean_with = (with_attr.T @ codes) / np.maximum(n_with, 1)[:, None]
    mean_without = (without.T @ codes) / np.maximum(n_without, 1)[:, None]
    usable = (n_with > 0) & (n_without > 0)
    vectors = np.where(usable[:, None], mean_with - mean_without, 0.0).astype(np.float32)
    return vectors, np.stack([n_with, n_without], axis=1).astype(np.int64)


def analyze_codes(codes: dict[str, np.ndarray], config: AnalysisConfig = AnalysisConfig(),
                  labels: np.ndarray | None = None, attributes: np.ndarray | None = None,
                  attribute_names: tuple[str, ...] = ()) -> Analysis:
    """All statistics of encoded points.

    Args:
        codes: {"z"} for an AE, {"z", "mu", "logvar"} for a VAE; each (N, z_dim).
        labels: (N,) integer labels or None.
        attributes: (N, A) int8 attributes (+1 / -1) or None, named by ``attribute_names``.
    """
    colors = labels
    if config.color_by != "label":
        if config.color_by not in attribute_names:
            raise ConfigError(f"`color_by` must be \"label\" or one of the dataset's attributes "
                             f"{list(attribute_names) or '(none)'}. Received: color_by={config.color_by!r}")
        colors = (attributes[:, attribute_names.index(config.color_by)] > 0).astype(np.int64)
    z = codes["z"]
    is_vae = "mu" in codes
    mu = codes.get("mu", z)
    c = config
    timer = _Timer()
    radius_range = tuple(c.radius_range) if c.radius_range is not None else None
    summary: dict[str, Any] = {
        "config": c.to_dict(), "kind": "vae" if is_vae else "ae", "z_dim": int(z.shape[1]), "n_points": len(z),
    }
    summary["radius"] = timer("radius", radius_stats, z, c.radius_bin_width, radius_range).to_dict()
    axes = tuple(a for a in c.axes if a < z.shape[1])
    summary["axes"] = timer("axes", axis_stats, z, mu, axes, c.axis_bins, c.active_threshold).to_dict()
    if is_vae:
        summary["radius_mu"] = radius_stats(mu, c.radius_bin_width, radius_range).to_dict()
        summary["internals"] = timer(
            "internals", vae_internals, z, mu, codes["logvar"], z_minus_mu_threshold=c.z_minus_mu_threshold
        ).to_dict()
    ks = [k for k in c.ks if k <= len(z)]
    summary["inertia"] = timer(
        "inertia", inertia_sweep, z, ks, c.kmeans_seeds, c.kmeans_batch_size
    ).to_dict() if ks else None
    pca = timer("pca", pca_projection, z, c.pca_subset, c.seed)
    summary["pca"] = {"explained_variance_ratio": pca.explained_variance_ratio.tolist()}
    arrays = {**codes, "pca_indices": pca.indices, "pca_embedding": pca.embedding}
    summary["tsne"] = []
    for size in c.tsne_sizes:
        n = min(size, len(z))
        perplexity = min(c.perplexity, (n - 1) / 3)  # openTSNE needs 3 * perplexity < n
        tsne = timer(f"tsne_{size}", tsne_projection, z, n, perplexity, c.early_exaggeration, c.seed)
        summary["tsne"].append({"size": n, "perplexity": tsne.perplexity,
                                "early_exaggeration": tsne.early_exaggeration, "kl_divergence": tsne.kl_divergence})
        arrays[f"tsne_{n}_indices"], arrays[f"tsne_{n}_embedding"] = tsne.indices, tsne.embedding
    if labels is not None:
        arrays["labels"] = labels
    if colors is not None:
        arrays["colors"] = colors
    summary["color_by"] = c.color_by if colors is not None else None
    if attributes is not None and len(attribute_names):
        vectors, counts = timer("attributes", attribute_vectors, mu, attributes)
        arrays["attributes"], arrays["attribute_vectors"] = attributes, vectors
        summary["attributes"] = {"names": list(attribute_names), "with": counts[:, 0].tolist(),
                                 "without": counts[:, 1].tolist(),
                                 "vector_norms": np.linalg.norm(vectors, axis=1).tolist()}
    summary["seconds"] = timer.seconds
    return Analysis(summary, arrays)


def analyze_run(run_dir: str | Path, config: AnalysisConfig = AnalysisConfig(), dataset=None) -> Analysis:
    """Encodes the run's dataset (``config.split``), analyses it and writes the results.

    Args:
        run_dir: a finished run directory.
        dataset: a :class:`zspace.data.Dataset` to use instead of the run's own.
    """
    from zspace.training import load_run, run_data

    run_config, model = load_run(run_dir)
    full = run_data(run_config, dataset)[0]
    if config.color_by != "label" and config.color_by not in full.attribute_names:
        raise ConfigError(f"`color_by` must be \"label\" or one of the dataset's attributes "
                          f"{list(full.attribute_names) or '(none)'}. Received: color_by={config.color_by!r}")
    start = time.perf_counter()
    encoded = encode_run_images(run_config, model, config.split, full, config.batch_size)
    encode_seconds = round(time.perf_counter() - start, 3)
    analysis = analyze_codes(encoded.codes, config, encoded.labels, encoded.attributes, encoded.attribute_names)
    analysis.arrays["split"] = encoded.split
    analysis.summary["seconds"]["encode"] = encode_seconds
    analysis.summary["run"] = {"dir": str(run_dir), "dataset": run_config.train.dataset,
                               "kl_factor": run_config.model.kl_factor if run_config.model.kind == "vae" else 0.0}
    root = Path(run_dir)
    save_encoding(root / ANALYSIS_NPZ, analysis.arrays)
    atomic_write_text(root / ANALYSIS_JSON, json.dumps(analysis.summary, indent=1, allow_nan=False))
    return analysis


def load_analysis(run_dir: str | Path) -> Analysis:
    """Reads ``analysis.json`` and ``analysis.npz`` of a run (no pickle)."""
    root = Path(run_dir)
    json_path, npz_path = root / ANALYSIS_JSON, root / ANALYSIS_NPZ
    for path in (json_path, npz_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run `zspace analyze {root}` first")
    summary = json.loads(json_path.read_text(encoding="utf-8"))
    with np.load(npz_path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return Analysis(summary, arrays)
