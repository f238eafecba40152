"""The records of ``zspace analyze``: :class:`Analysis` (analysis.json) and its arrays (analysis.npz)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from zspace.analysis.clustering import InertiaCurve
from zspace.analysis.statistics import AxisStats, RadiusStats, VAEInternals
from zspace.config import MAX_KEPT_TSNE_FITS, AnalysisConfig
from zspace.records import Record

__all__ = ["Analysis", "PCASummary", "TSNESummary", "AttributeSummary", "RunInfo"]


@dataclass(frozen=True)
class PCASummary(Record):
    """``explained_variance_ratio``: (z_dim,) of the PCA of all points."""

    explained_variance_ratio: np.ndarray


@dataclass(frozen=True)
class TSNESummary(Record):
    """One t-SNE fit: ``size`` points, its parameters and the final KL divergence of the fit.

    ``backend`` ("opentsne" / "sklearn"), ``n_iter`` (iterations in all, the 250 early-exaggeration
    ones included) and ``seed`` are None in analyses written before they were recorded (openTSNE,
    750 iterations, the config's seed).
    """

    size: int
    perplexity: float
    early_exaggeration: float
    kl_divergence: float
    backend: Literal["opentsne", "sklearn"] | None = None
    n_iter: int | None = None
    seed: int | None = None

    @property
    def name(self) -> str:
        """Its arrays in analysis.npz are ``<name>_indices`` / ``<name>_embedding``.

        Derived from the fields (never read from a file, so no file chooses a name); fits of
        older analyses, one per size, keep their names "tsne_<size>".
        """
        if self.backend is None:
            return f"tsne_{self.size}"
        return (f"tsne_{self.size}_p{self.perplexity:g}_ee{self.early_exaggeration:g}_{self.backend}"
                f"_it{self.n_iter}_seed{self.seed}")

    @property
    def settings(self) -> str:
        """The fit's settings in words: "perplexity 30, exaggeration 12 (openTSNE, 750 iterations)"."""
        backend = {"opentsne": "openTSNE", "sklearn": "scikit-learn", None: "openTSNE"}[self.backend]
        iterations = "" if self.n_iter is None else f", {self.n_iter} iterations"
        return f"perplexity {self.perplexity:g}, exaggeration {self.early_exaggeration:g} ({backend}{iterations})"


@dataclass(frozen=True)
class AttributeSummary(Record):
    """Binary attributes (CelebA's 40): images with / without each, and the norm of its z-space vector."""

    names: tuple[str, ...]
    with_count: tuple[int, ...] = field(metadata={"json": "with"})
    without_count: tuple[int, ...] = field(metadata={"json": "without"})
    vector_norms: tuple[float, ...]


@dataclass(frozen=True)
class RunInfo(Record):
    """The analysed run: its directory, dataset and KL weight (0 for an AE).

    ``epsilon_scale``: the VAE's z = mu + sigma * eps * epsilon_scale of the analysed z-points; None for
    an AE, and in analyses written before zspace recorded it (they used the run's own scale).
    """

    dir: str
    dataset: str
    kl_factor: float
    epsilon_scale: float | None = None


@dataclass(frozen=True)
class Analysis(Record):
    """Everything ``zspace analyze`` computes.

    Attributes:
        config: the analysis settings. kind: "ae" or "vae". z_dim, n_points: of the encoded points.
        radius: radius statistics of z; radius_mu: of mu (VAE). axes: per-axis statistics of z.
        internals: logvar, z - mu and KL statistics (VAE). inertia: the MiniBatchKMeans sweep
            (None when there are fewer points than clusters). pca, tsne: the projections' summaries.
        color_by: what colours the projections ("label", an attribute name, or None: no colours).
        attributes: attribute counts and vector norms (datasets with attributes).
        label_names: the names of the integer labels, when the dataset knows them.
        seconds: wall time per part. run: the analysed run (None for :func:`analyze_codes`).
        arrays: analysis.npz: ``z`` (+ ``mu``, ``logvar``), ``labels``, ``colors``, ``split``
            (0 train, 1 validation), ``pca_indices`` / ``pca_embedding``, ``<name>_indices`` /
            ``<name>_embedding`` of each t-SNE fit (:attr:`TSNESummary.name`), ``attributes`` /
            ``attribute_vectors``. Not part of the JSON.
        notes: what the analysis did beyond its config (t-SNE embeddings kept from the run's previous one).
    """

    config: AnalysisConfig
    kind: Literal["ae", "vae"]
    z_dim: int
    n_points: int
    radius: RadiusStats
    axes: AxisStats
    pca: PCASummary
    seconds: dict[str, float]
    radius_mu: RadiusStats | None = None
    internals: VAEInternals | None = None
    inertia: InertiaCurve | None = None
    tsne: tuple[TSNESummary, ...] = ()
    color_by: str | None = None
    attributes: AttributeSummary | None = None
    label_names: tuple[str, ...] = ()
    run: RunInfo | None = None
    notes: tuple[str, ...] = ()
    arrays: dict[str, np.ndarray] = field(default_factory=dict, metadata={"json": False}, repr=False)

    @classmethod
    def from_json(cls, data: dict, arrays: dict[str, np.ndarray] | None = None) -> Analysis:
        """The record of an analysis.json, joined with (and checked against) the arrays of its analysis.npz.

        Raises:
            KeyError / TypeError / ValueError: a field or an array is missing or of the wrong type or shape.
        """
        record = super().from_json(data)
        if len(record.tsne) > MAX_KEPT_TSNE_FITS:  # each is a figure panel: a file cannot ask for thousands
            raise ValueError(f"`tsne` holds {len(record.tsne)} fits; an analysis holds at most {MAX_KEPT_TSNE_FITS}")
        if arrays is None:
            return record
        record = replace(record, arrays=dict(arrays))
        record.check_arrays()
        return record

    def check_arrays(self) -> None:
        """Raises ValueError unless every array the records refer to is there, numeric, and of its shape."""
        n, d = self.n_points, self.z_dim
        expected = {"z": (n, d)}
        if self.is_vae:
            expected.update(mu=(n, d), logvar=(n, d))
        for name in ("split", "labels", "colors"):
            if name in self.arrays:
                expected[name] = (n,)
        expected.update(pca_indices=(None,), pca_embedding=(None, 2))
        for t in self.tsne:
            expected.update({f"{t.name}_indices": (t.size,), f"{t.name}_embedding": (t.size, 2)})
        if self.attributes is not None:
            expected.update(attributes=(n, len(self.attributes.names)),
                            attribute_vectors=(len(self.attributes.names), d))
        for name, shape in expected.items():
            array = self.arrays.get(name)
            if array is None:
                raise ValueError(f"array `{name}` is missing")
            if array.dtype.kind not in "biuf" or array.ndim != len(shape) or any(
                    want is not None and got != want for got, want in zip(array.shape, shape)):
                raise ValueError(f"array `{name}` must be numeric of shape {shape} (None: any). "
                                 f"Received: {array.dtype} {array.shape}")
            if array.dtype.kind == "f" and not np.isfinite(array).all():  # analyze never writes them
                raise ValueError(f"array `{name}` holds non-finite values (NaN or infinity)")
        if len(self.arrays["pca_indices"]) != len(self.arrays["pca_embedding"]):  # each alone is "any length"
            raise ValueError(f"arrays `pca_indices` and `pca_embedding` must have one row per point; received "
                             f"{len(self.arrays['pca_indices'])} and {len(self.arrays['pca_embedding'])}")
        for name in [k for k in expected if k.endswith("_indices")]:
            if len(self.arrays[name]) and not 0 <= self.arrays[name].min() <= self.arrays[name].max() < n:
                raise ValueError(f"array `{name}` must index the {n} points")

    @property
    def is_vae(self) -> bool:
        return self.kind == "vae"

    @property
    def colors(self) -> np.ndarray | None:
        """(n_points,) integer colour of each point (label or attribute), or None."""
        return self.arrays.get("colors", self.arrays.get("labels"))

    @property
    def z_train(self) -> np.ndarray:
        """(n, z_dim) z-points of the training images (all points when the split is unknown)."""
        z = self.arrays["z"]
        split = self.arrays.get("split")
        return z if split is None else z[split == 0]

    def embedding(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(indices (n,), coordinates (n, 2)) of the projection "pca" or a t-SNE fit's :attr:`TSNESummary.name`."""
        return self.arrays[f"{name}_indices"], self.arrays[f"{name}_embedding"]
