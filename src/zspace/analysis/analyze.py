"""``zspace analyze``: encode a run's dataset and compute every z-space statistic.

The result is an :class:`Analysis` record; :meth:`zspace.Run.save_analysis` writes it into the
run directory (analysis.json + analysis.npz).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from zspace.analysis.clustering import inertia_sweep
from zspace.analysis.encoding import encode_run_images
from zspace.analysis.projection import DEFAULT_TSNE_ITERATIONS, pca_projection, tsne_projection
from zspace.analysis.projector import (check_projector_target, check_projector_z_dim, point_images, projector_data,
                                      tensorboard_dir, write_projector)
from zspace.analysis.records import Analysis, AttributeSummary, PCASummary, RunInfo, TSNESummary
from zspace.analysis.statistics import axis_stats, radius_stats, vae_internals
from zspace.config import MAX_KEPT_TSNE_FITS, AnalysisConfig
from zspace.errors import ConfigError, ZspaceError
from zspace.rundir import Run

__all__ = ["Analysis", "analyze_codes", "analyze_run", "load_analysis", "attribute_vectors", "tsne_fits",
           "same_points", "with_previous_tsne"]


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


def check_color_by(color_by: str, attribute_names) -> None:
    """Raises ConfigError unless ``color_by`` is "label" or one of ``attribute_names``."""
    if color_by != "label" and color_by not in attribute_names:
        raise ConfigError(f"`color_by` must be \"label\" or one of the dataset's attributes "
                          f"{list(attribute_names) or '(none)'}. Received: color_by={color_by!r}")


def tsne_fits(config: AnalysisConfig, n_points: int) -> list[tuple[int, float, float]]:
    """(points, perplexity, early exaggeration) of each t-SNE fit: every size with every setting.

    Sizes above ``n_points`` use all points, and perplexities above (points - 1) / 3 are lowered to
    it (openTSNE needs 3 x perplexity < points); fits that thereby coincide are made once.
    """
    fits = []
    for size in config.tsne_sizes:
        n = min(size, n_points)
        for perplexity, exaggeration in config.tsne_settings:
            fits.append((n, min(perplexity, (n - 1) / 3), exaggeration))
    return list(dict.fromkeys(fits))


def analyze_codes(codes: dict[str, np.ndarray], config: AnalysisConfig = AnalysisConfig(),
                  labels: np.ndarray | None = None, attributes: np.ndarray | None = None,
                  attribute_names: tuple[str, ...] = (), label_names: tuple[str, ...] = ()) -> Analysis:
    """All statistics of encoded points.

    Args:
        codes: {"z"} for an AE, {"z", "mu", "logvar"} for a VAE; each (N, z_dim).
        labels: (N,) integer labels or None; ``label_names`` names them when known.
        attributes: (N, A) int8 attributes (+1 / -1) or None, named by ``attribute_names``.
    """
    c = config
    check_color_by(c.color_by, attribute_names)
    colors = labels if c.color_by == "label" else (
        attributes[:, attribute_names.index(c.color_by)] > 0).astype(np.int64)
    z = codes["z"]
    is_vae = "mu" in codes
    mu = codes.get("mu", z)
    timer = _Timer()
    radius_range = tuple(c.radius_range) if c.radius_range is not None else None
    radius = timer("radius", radius_stats, z, c.radius_bin_width, radius_range)
    axes = timer("axes", axis_stats, z, mu, tuple(a for a in c.axes if a < z.shape[1]), c.axis_bins,
                 c.active_threshold)
    radius_mu = internals = None
    if is_vae:
        radius_mu = radius_stats(mu, c.radius_bin_width, radius_range)
        internals = timer("internals", vae_internals, z, mu, codes["logvar"], (-np.inf, *c.logvar_edges, np.inf),
                          z_minus_mu_threshold=c.z_minus_mu_threshold)
    ks = [k for k in c.ks if k <= len(z)]
    inertia = timer("inertia", inertia_sweep, z, ks, c.kmeans_seeds, c.kmeans_batch_size) if ks else None
    pca = timer("pca", pca_projection, z, c.pca_subset, c.seed)
    arrays = {**codes, "pca_indices": pca.indices, "pca_embedding": pca.embedding}
    tsne = []
    n_iter = c.tsne_n_iter or DEFAULT_TSNE_ITERATIONS[c.tsne_backend]
    for n, perplexity, exaggeration in tsne_fits(c, len(z)):
        name = TSNESummary(n, perplexity, exaggeration, math.nan, c.tsne_backend, n_iter, c.seed).name
        fit = timer(name, tsne_projection, z, n, perplexity, exaggeration, c.seed, backend=c.tsne_backend,
                    n_iter=n_iter)
        summary = TSNESummary(n, fit.perplexity, fit.early_exaggeration, fit.kl_divergence, fit.backend, fit.n_iter,
                              c.seed)
        tsne.append(summary)
        arrays[f"{summary.name}_indices"], arrays[f"{summary.name}_embedding"] = fit.indices, fit.embedding
    if labels is not None:
        arrays["labels"] = labels
    if colors is not None:
        arrays["colors"] = colors
    attribute_summary = None
    if attributes is not None and len(attribute_names):
        vectors, counts = timer("attributes", attribute_vectors, mu, attributes)
        arrays["attributes"], arrays["attribute_vectors"] = attributes, vectors
        attribute_summary = AttributeSummary(tuple(attribute_names), tuple(counts[:, 0].tolist()),
                                             tuple(counts[:, 1].tolist()),
                                             tuple(np.linalg.norm(vectors, axis=1).tolist()))
    return Analysis(
        config=c, kind="vae" if is_vae else "ae", z_dim=int(z.shape[1]), n_points=len(z), radius=radius,
        axes=axes, pca=PCASummary(pca.explained_variance_ratio), seconds=timer.seconds, radius_mu=radius_mu,
        internals=internals, inertia=inertia, tsne=tuple(tsne), color_by=c.color_by if colors is not None else None,
        attributes=attribute_summary, label_names=tuple(label_names) if labels is not None else (), arrays=arrays,
    )


def analyze_run(run: Run | str | Path, config: AnalysisConfig = AnalysisConfig(), save: bool = True,
                epsilon_scale: float | None = None) -> Analysis:
    """Encodes the run's images (``config.split``), analyses them and saves the result in the run.

    With ``config.tensorboard`` it also writes TensorBoard Embedding Projector data of the analysed points
    into ``RUN/tensorboard`` (:mod:`zspace.analysis.projector`), replacing the previous one.

    Args:
        run: a :class:`zspace.Run` (give it a dataset to analyse other images) or its directory.
        save: False leaves the run directory untouched (a report only reads its runs; no projector data).
        epsilon_scale: VAE: z = mu + sigma * eps * epsilon_scale; None = the run's own. Recorded as
            ``run.epsilon_scale``; a saved analysis at another scale REPLACES the run's analysis.
    """
    run = Run.of(run)
    if not save:  # reads only: no lock, nothing written (a report of a read-only run)
        return _analyze(run, config, save=False, epsilon_scale=epsilon_scale)
    with run.lock("analyze"):
        return _analyze(run, config, save=True, epsilon_scale=epsilon_scale)


def _analyze(run: Run, config: AnalysisConfig, save: bool, epsilon_scale: float | None = None) -> Analysis:
    check_color_by(config.color_by, run.data.attribute_names)  # before the encoding, which takes a while
    if save and config.tensorboard:
        check_projector_z_dim(run.config.model.z_dim)
        check_projector_target(run.root)
    start = time.perf_counter()
    encoded = encode_run_images(run, config.split, config.batch_size, epsilon_scale)
    encode_seconds = round(time.perf_counter() - start, 3)
    analysis = analyze_codes(encoded.codes, config, encoded.labels, encoded.attributes, encoded.attribute_names,
                             run.data.label_names)
    model = run.config.model
    analysis = replace(analysis, arrays={**analysis.arrays, "split": encoded.split},
                       seconds={**analysis.seconds, "encode": encode_seconds},
                       run=RunInfo(str(run.root), run.data.name,
                                   model.kl_factor if model.kind == "vae" else 0.0, encoded.epsilon_scale))
    if save:
        if config.tsne_keep_previous and run.has_analysis():
            analysis = _keep_previous_tsne(analysis, run)
        # Built before anything is saved: a projector that cannot be made (non-finite points) leaves the run as it was.
        projector = projector_data(analysis, lambda ids: point_images(run.split, encoded.split, ids),
                                   config.projector_points, config.seed) if config.tensorboard else None
        run.save_analysis(analysis)
        if projector is not None:
            write_projector(tensorboard_dir(run.root), projector)
    return analysis


def _keep_previous_tsne(analysis: Analysis, run: Run) -> Analysis:
    """:func:`with_previous_tsne` of the run's saved analysis; an unreadable one is noted and left."""
    try:
        previous = run.load_analysis()
    except (ZspaceError, OSError) as exc:
        return replace(analysis, notes=(*analysis.notes, f"the previous analysis could not be read, so none of its "
                                                         f"t-SNE embeddings are kept ({exc})"))
    return with_previous_tsne(analysis, previous)


def _spelled_out(fit: TSNESummary, seed: int) -> TSNESummary:
    """A fit of an analysis written before backend, iterations and seed were recorded, with them."""
    if fit.backend is not None:
        return fit
    return replace(fit, backend="opentsne", n_iter=DEFAULT_TSNE_ITERATIONS["opentsne"], seed=seed)


def same_points(a: Analysis, b: Analysis, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    """Whether two analyses encoded the same z-points (same model state, images and split), to float tolerance.

    The tolerance allows for batch-size dependent rounding of the encoder; other weights or images
    move the points far more.
    """
    if (a.kind, a.n_points, a.z_dim) != (b.kind, b.n_points, b.z_dim):
        return False
    split_a, split_b = a.arrays.get("split"), b.arrays.get("split")
    if (split_a is None) != (split_b is None) or (split_a is not None and not np.array_equal(split_a, split_b)):
        return False
    return all(np.allclose(a.arrays[k], b.arrays[k], rtol=rtol, atol=atol) for k in ("z", "mu") if k in a.arrays)


def with_previous_tsne(analysis: Analysis, previous: Analysis) -> Analysis:
    """``analysis`` plus the t-SNE fits of ``previous`` that it did not recompute, when both encoded the same points.

    Kept fits come first (oldest first) with their arrays; beyond :data:`MAX_KEPT_TSNE_FITS` in all the
    oldest are dropped. Each thing done (or not) is said in ``notes``.
    """
    computed = {t.name for t in analysis.tsne}
    previous_arrays, previous_seconds = {}, {}
    for t in previous.tsne:  # fits of older analyses get the full names of what they were
        full = _spelled_out(t, previous.config.seed)
        for part in ("indices", "embedding"):
            previous_arrays[f"{full.name}_{part}"] = previous.arrays[f"{t.name}_{part}"]
        if t.name in previous.seconds:
            previous_seconds[full.name] = previous.seconds[t.name]
    old = list({f.name: f for f in (_spelled_out(t, previous.config.seed) for t in previous.tsne)
                if f.name not in computed}.values())
    if not old:
        return analysis
    if not same_points(analysis, previous):
        return replace(analysis, notes=(*analysis.notes, f"the previous analysis encoded other z-points (another "
                                                         f"model state, split, dataset or epsilon scale): its {len(old)} t-SNE "
                                                         f"embedding(s) are not kept"))
    room = max(MAX_KEPT_TSNE_FITS - len(analysis.tsne), 0)
    dropped, kept = old[:max(len(old) - room, 0)], old[max(len(old) - room, 0):]
    arrays = dict(analysis.arrays)
    for t in kept:
        for part in ("indices", "embedding"):
            arrays[f"{t.name}_{part}"] = previous_arrays[f"{t.name}_{part}"]
    notes = [f"kept {len(kept)} t-SNE embedding(s) of the previous analysis: "
             + "; ".join(f"{t.size} points, {t.settings}" for t in kept)] if kept else []
    if dropped:
        notes.append(f"dropped the {len(dropped)} oldest t-SNE embedding(s): an analysis holds at most "
                     f"{MAX_KEPT_TSNE_FITS}")
    seconds = {**{t.name: previous_seconds[t.name] for t in kept if t.name in previous_seconds}, **analysis.seconds}
    return replace(analysis, tsne=(*kept, *analysis.tsne), arrays=arrays, seconds=seconds,
                   notes=(*analysis.notes, *notes))


def load_analysis(run: Run | str | Path) -> Analysis:
    """The saved analysis of a run (analysis.json + analysis.npz, no pickle)."""
    return Run.of(run).load_analysis()
