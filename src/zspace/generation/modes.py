"""The image grids of a run, one function per mode: what ``zspace generate``, the gallery and the report draw.

Each function takes a :class:`zspace.Run` (model, config and validation images, loaded once) or
its directory, and returns a :class:`Grid`; :func:`write_grid` saves it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from zspace.data.tasks import example_inputs, inference_inputs
from zspace.errors import ConfigError
from zspace.generation.grid import DEFAULT_CELL, grid_png
from zspace.generation.images import attribute_shift, generate_images, interpolate, reconstruction_pairs, uniform_sweep
from zspace.generation.samplers import GaussianMixtureSampler
from zspace.generation.sharpen import sharpen
from zspace.rundir import Run
from zspace.storage import atomic_write_bytes

__all__ = ["Grid", "check_limits", "check_strengths", "check_sharpen", "check_grid_size", "check_grid_path",
           "check_generate_options", "sample_grid", "uniform_sweep_grid", "gmm_grid", "reconstruction_grid",
           "interpolation_grid", "attribute_grid", "latent_grid", "latent_plane", "training_codes", "sharpen_series",
           "with_cols", "write_grid",
           "DEFAULT_STRENGTHS", "MAX_GRID_IMAGES", "MAX_GMM_COMPONENTS", "MAX_LIMIT", "GRID_QUANTILES",
           "MAX_FIT_POINTS"]

DEFAULT_STRENGTHS = (-1.0, 0.0, 1.0, 2.0)

MAX_GRID_IMAGES = 10_000
"""Most images of one grid (n times its rows), and most columns: tiles are upscaled to at least 64 pixels,
so 10,000 of them are a 40-megapixel picture."""

MAX_GMM_COMPONENTS = 1000
"""Most components of the --dist gmm mixture (as EvaluationConfig.gmm_components): each full-covariance
component costs O(N z_dim^2) per EM step, and more than this fit the noise of any training set."""

MAX_LIMIT = 1e4
"""Largest --limit half-width r of U[-r, r] (as EvaluationConfig.limits): numpy cannot draw from a range
wider than the largest float (r = 1e308 raises OverflowError), and beyond this r only overflows the float32
decoder input."""


GRID_QUANTILES = (0.02, 0.98)
"""Default range of a --dist grid axis without --limit: these quantiles of the training codes along it."""

MAX_FIT_POINTS = 20_000
"""At most this many training codes (a seeded subset) give --dist grid its mean, PCA and quantiles."""


@dataclass(frozen=True)
class Grid:
    """Images to tile: ``images`` float32 (N, H, W, C) in [0, 1], ``cols`` per row (None: about square);
    ``row_labels`` one per row (or none), ``col_labels`` one per column (or none), ``title`` above;
    ``reference_rows``: rows of given images (originals, targets) that a sharpening series leaves as they are."""

    images: np.ndarray
    cols: int | None = None
    row_labels: tuple[str, ...] = ()
    col_labels: tuple[str, ...] = ()
    title: str = ""
    reference_rows: tuple[int, ...] = ()

    @property
    def n_cols(self) -> int:
        return self.cols or math.ceil(math.sqrt(len(self.images)))

    def png(self, cell: int = DEFAULT_CELL) -> bytes:
        """PNG bytes, cells at least ``cell`` pixels high (nearest-neighbour enlarged), labels drawn."""
        return grid_png(self.images, self.cols, self.row_labels, self.col_labels, self.title, cell)


def _num(value: float) -> str:
    """A label's number: 3 significant digits, no trailing zeros."""
    return f"{float(value):.3g}"


def with_cols(grid: Grid, cols: int | None) -> Grid:
    """``grid`` laid out ``cols`` per row; another layout than its own loses the row and column labels
    (its rows are no longer the labelled ones)."""
    if not cols or cols == grid.n_cols:
        return grid
    return replace(grid, cols=cols, row_labels=(), col_labels=())


def sharpen_series(grid: Grid, factors) -> Grid:
    """The grid once per PIL sharpness factor, blocks one under the other, each labelled with its factor
    (a grid without ``cols``: one row of all its images per factor). A single factor is named in the title
    instead: the grid keeps its own row labels, not each prefixed with the same factor.

    Args:
        factors: ImageEnhance.Sharpness factors (0 blurred, 1 unchanged, 2+ sharper).
    """
    factors = check_sharpen(factors)
    if len(factors) == 1:
        title = "; ".join(filter(None, (grid.title, f"sharpness {_num(factors[0])}")))
        return replace(grid, images=_sharpened(grid, factors[0]), title=title)
    cols = grid.cols or len(grid.images)  # a grid without a layout of its own: one row per factor
    rows = math.ceil(len(grid.images) / cols)
    blank = np.ones((rows * cols - len(grid.images), *grid.images.shape[1:]), np.float32)  # a block's last row
    images = np.concatenate([np.concatenate([_sharpened(grid, f), blank]) for f in factors])
    base = grid.row_labels or ("",) * rows
    labels = tuple((f"sharpness {_num(f)}" if i == 0 or grid.row_labels else "") + (" · " if b else "") + b
                   for f in factors for i, b in enumerate(base))
    return replace(grid, images=images, cols=cols, row_labels=labels)


def _sharpened(grid: Grid, factor: float) -> np.ndarray:
    """The grid's images sharpened by ``factor``, except its reference rows (the given images)."""
    images = sharpen(grid.images, factor)
    if grid.reference_rows:
        cols = grid.cols or len(grid.images)
        kept = np.zeros(len(images), bool)
        for row in grid.reference_rows:
            kept[row * cols:(row + 1) * cols] = True
        images[kept] = grid.images[kept]
    return images


def check_limits(limits) -> list[float]:
    """The half-widths as floats; ConfigError unless each is in (0, MAX_LIMIT]."""
    limits = [float(r) for r in limits]
    if not limits or not all(math.isfinite(r) and 0 < r <= MAX_LIMIT for r in limits):
        raise ConfigError(f"--limit must be positive finite numbers, at most {MAX_LIMIT:g}. Received: {limits}")
    return limits


def check_strengths(strengths) -> list[float]:
    """The attribute strengths as floats; ConfigError unless each is finite."""
    strengths = [float(s) for s in strengths]
    if not strengths or not all(math.isfinite(s) for s in strengths):
        raise ConfigError(f"--strength must be finite numbers. Received: {strengths}")
    return strengths


def check_grid_size(n: int, rows: int = 1, cols: int | None = None) -> None:
    """ConfigError unless ``rows`` rows of ``n`` images, ``cols`` per row, stay within MAX_GRID_IMAGES."""
    if n * rows > MAX_GRID_IMAGES:
        raise ConfigError(f"--n must give at most {MAX_GRID_IMAGES:,} images per grid. Received: --n {n} "
                          f"x {rows} row(s) = {n * rows:,} images")
    if cols is not None and cols > MAX_GRID_IMAGES:
        raise ConfigError(f"--cols must be at most {MAX_GRID_IMAGES:,}. Received: {cols}")


def check_grid_path(path: str | Path) -> Path:
    """``path`` as a Path; ConfigError unless it names a .png file (the grid is written as PNG)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--out must name a .png file. Received: {path}")
    return path


def check_sharpen(factors) -> list[float]:
    """The PIL sharpness factors as floats (a single number or None also taken); ConfigError unless each is a
    finite number >= 0."""
    factors = [] if factors is None else [factors] if np.isscalar(factors) else list(factors)
    bad = [f for f in factors if not (math.isfinite(float(f)) and float(f) >= 0)]
    if bad:
        raise ConfigError(f"--sharpen must be a finite number >= 0. Received: {', '.join(map(str, bad))}")
    return [float(f) for f in factors]


def check_generate_options(mode: str, limits, strengths=None, axes=None, pca: bool = False,
                           center: str | None = None) -> None:
    """ConfigError for options ``zspace generate`` would otherwise ignore in ``mode`` (a --dist, or
    "reconstruct", "interpolate", "attribute"): values given are used or refused, never dropped.

    Args:
        limits: the --limit values given (several make one row each, only for --dist uniform).
        strengths: the --strength values given (None: none), only for --attribute.
    """
    limits = list(limits or [])
    named = f"--{mode}" if mode in ("attribute", "reconstruct", "interpolate") else f"--dist {mode}"
    if len(limits) > 1 and mode != "uniform":
        what = "one grid over [-r, r] per axis: give one --limit" if mode == "grid" else "no box to sweep"
        raise ConfigError(f"--limit given {len(limits)} times ({', '.join(map(_num, limits))}): one row per "
                          f"half-width r is a sweep of --dist uniform; {named} has {what}.")
    if strengths and mode != "attribute":
        raise ConfigError(f"--strength applies to --attribute (one row per strength); {named} has no "
                          f"attribute vector. Received: --strength {', '.join(map(_num, strengths))}")
    grid_only = [name for name, given in (("--axes", axes), ("--pca", pca), ("--center", center)) if given]
    if grid_only and mode != "grid":
        raise ConfigError(f"{', '.join(grid_only)}: only for --dist grid; {named} draws no regular grid.")
    if axes and pca:
        raise ConfigError("--axes and --pca exclude each other: the grid spans two axes or the first two "
                          "principal directions.")


def _task_inputs(run, images: np.ndarray, seed: int) -> np.ndarray | None:
    """What the run's model is given for ``images``: seeded noisy / grey inputs, None for reconstruct."""
    t = run.config.train
    return example_inputs(images, t.task, t.noise_sigma, t.drop_fraction, seed)


def sample_grid(run, n: int, dist: Literal["normal", "uniform"] = "normal", limit: float = 1.0,
                seed: int = 0) -> Grid:
    """Decodes n z-points drawn from N(0, I) or uniformly from [-limit, limit]^z_dim."""
    run = Run.of(run)
    limit = check_limits([limit])[0]
    return Grid(generate_images(run.model, n, dist, limit, seed))


def uniform_sweep_grid(run, limits, n: int, seed: int = 0) -> Grid:
    """One row of n decodes per half-width r in ``limits``; column j follows one direction as r grows."""
    run = Run.of(run)
    limits = check_limits(limits)
    return Grid(uniform_sweep(run.model, limits, n, seed=seed), cols=n,
                row_labels=tuple(f"r={_num(r)}" for r in limits))


def gmm_grid(run, n: int, components: int = 10, seed: int = 0, z_train: np.ndarray | None = None,
             max_points: int | None = None) -> Grid:
    """Decodes n z-points drawn from a Gaussian mixture fitted to the training z-points.

    Args:
        z_train: (M, z_dim) training z-points; None encodes the run's training images.
        max_points: fit on a seeded random subset of at most this many points (None: all).
    """
    run = Run.of(run)
    if not 1 <= components <= MAX_GMM_COMPONENTS:  # before the encoding, which takes a while
        raise ConfigError(f"--components must be in [1, {MAX_GMM_COMPONENTS}]. Received: {components}")
    if z_train is None:
        from zspace.analysis.encoding import encode_run_images

        z_train = encode_run_images(run, "train").codes["z"]
    if max_points is not None and len(z_train) > max_points:
        z_train = z_train[np.random.default_rng(seed).choice(len(z_train), max_points, replace=False)]
    if components > len(z_train):
        raise ConfigError(f"--components ({components}) must not exceed the number of training z-points "
                          f"({len(z_train)}).")
    sampler = GaussianMixtureSampler(components, random_state=seed).fit(z_train)
    return Grid(run.model.decode(sampler.sample(n)))


def reconstruction_grid(run, n: int, seed: int = 0) -> Grid:
    """The first n validation images above their reconstructions (inputs, outputs, targets for a task)."""
    run = Run.of(run)
    targets = run.validation_images(n)
    inputs = _task_inputs(run, targets, seed)
    if run.split.t_val is not None:  # input/target pairs: the stored images are the inputs
        inputs, targets = targets, np.asarray(run.split.t_val[:len(targets)], dtype=np.float32)
    pairs = reconstruction_pairs(run.reset_noise(), targets, cols=len(targets), inputs=inputs)
    names = ("original", "reconstruction") if inputs is None else ("input", "output", "target")
    return Grid(pairs, cols=len(targets), row_labels=names, reference_rows=(0,) if inputs is None else (0, 2))


def interpolation_grid(run, first: int, last: int, steps: int, seed: int = 0) -> Grid:
    """Decodes ``steps`` points on the line between the codes of validation images ``first`` and ``last``."""
    run = Run.of(run)
    n_val = len(run.split.x_val)
    bad = [i for i in (first, last) if not 0 <= i < n_val]
    if bad:
        raise ConfigError(f"--interpolate indices must be in [0, {n_val}). Received: {bad}")
    ends = np.asarray(run.split.x_val[[first, last]], dtype=np.float32)
    inputs = _task_inputs(run, ends, seed)
    ends = ends if inputs is None else inputs
    steps = max(steps, 2)
    return Grid(interpolate(run.reset_noise(), ends[0], ends[1], steps=steps), cols=steps,
                row_labels=(f"#{first} to #{last}",))


def attribute_grid(run, attribute: str, n: int, strengths=DEFAULT_STRENGTHS, analysis=None) -> Grid:
    """n validation images with ``strength`` times the attribute's z-space vector added, one row per strength.

    Args:
        analysis: the run's :class:`zspace.analysis.Analysis` (loaded from the run when None).
    """
    run = Run.of(run)
    analysis = analysis if analysis is not None else run.load_analysis()
    names = list(analysis.attributes.names) if analysis.attributes else []
    if attribute not in names:
        listed = names or "(none: the dataset has no attributes)"
        raise ConfigError(f"--attribute must be one of the analysed attributes {listed}. Received: {attribute!r}")
    images = run.validation_images(n)
    vector = analysis.arrays["attribute_vectors"][names.index(attribute)]
    inputs = inference_inputs(images, run.config.train.task)
    return Grid(attribute_shift(run.reset_noise(), inputs, vector, strengths), cols=len(images),
                row_labels=tuple(f"{attribute} {float(s):+.3g}" for s in strengths))


def training_codes(run, max_points: int | None = MAX_FIT_POINTS, seed: int = 0) -> np.ndarray:
    """(M, z_dim) codes of the training images: mu for a VAE (where the encoder puts them), z for an AE;
    a seeded subset of at most ``max_points``."""
    from zspace.analysis.encoding import encode_run_images

    codes = encode_run_images(run, "train").codes
    points = codes.get("mu", codes["z"])
    if max_points is not None and len(points) > max_points:
        points = points[np.random.default_rng(seed).choice(len(points), max_points, replace=False)]
    return points


def latent_plane(codes: np.ndarray | None, z_dim: int, axes: tuple[int, int] | None = None, pca: bool = False,
                 center: str | None = None) -> tuple[np.ndarray, np.ndarray, tuple[str, str]]:
    """The plane of a regular latent grid: (origin (z_dim,), two unit directions (2, z_dim), their names).

    Args:
        codes: (M, z_dim) training codes (needed for ``pca`` or ``center="mean"``).
        axes: the two z axes spanned (default 0 and 1); pca: the first two principal directions of ``codes``.
        center: the other coordinates, "zero" or "mean" (of ``codes``); default zero for axes, mean for PCA.
    """
    if z_dim < 2:
        raise ConfigError(f"--dist grid needs a latent space of at least 2 dimensions. Received: z_dim={z_dim}")
    center = center or ("mean" if pca else "zero")
    if center not in ("zero", "mean"):
        raise ConfigError(f'--center must be "zero" or "mean". Received: {center!r}')
    origin = codes.mean(axis=0) if center == "mean" else np.zeros(z_dim)
    if pca:
        _, _, vt = np.linalg.svd(codes - codes.mean(axis=0), full_matrices=False)
        directions = vt[:2] * np.sign(vt[:2, [0]] + (vt[:2, [0]] == 0))  # a fixed sign: first component >= 0
        return origin.astype(np.float32), directions.astype(np.float32), ("PC1", "PC2")
    i, j = axes or (0, 1)
    bad = [a for a in (i, j) if not 0 <= a < z_dim]
    if bad or i == j:
        raise ConfigError(f"--axes must be two different axes in [0, {z_dim}). Received: {i} {j}")
    return origin.astype(np.float32), np.eye(z_dim, dtype=np.float32)[[i, j]], (f"z{i}", f"z{j}")


def latent_grid(run, n: int, axes: tuple[int, int] | None = None, pca: bool = False, limit: float | None = None,
                center: str | None = None, codes: np.ndarray | None = None, seed: int = 0) -> Grid:
    """Decodes a regular n x n grid on a plane of z-space (keras-io's plot_latent_space): columns step along
    the first direction, rows along the second (top row highest); with z_dim 2 the whole latent space.

    Args:
        axes / pca / center: the plane, see :func:`latent_plane`.
        limit: both coordinates in [-limit, limit] around the origin; None: the GRID_QUANTILES of the
            training codes' coordinates, per direction.
        codes: (M, z_dim) training codes; None encodes the run's training images when needed.
    """
    run = Run.of(run)
    z_dim = run.config.model.z_dim
    if limit is not None:
        limit = check_limits([limit])[0]
    needs_codes = pca or center == "mean" or limit is None
    if codes is None and needs_codes and z_dim >= 2:
        codes = training_codes(run, seed=seed)
    center = center or ("mean" if pca else "zero")
    origin, directions, names = latent_plane(codes, z_dim, axes, pca, center)
    if limit is None:
        coordinates = (codes - origin) @ directions.T
        low, high = np.quantile(coordinates, GRID_QUANTILES, axis=0)
    else:
        low, high = np.full(2, -limit), np.full(2, limit)
    xs = np.linspace(low[0], high[0], n, dtype=np.float32)
    ys = np.linspace(high[1], low[1], n, dtype=np.float32)  # top row: the largest, as on a plot
    z = origin + xs[None, :, None] * directions[0] + ys[:, None, None] * directions[1]
    at = "0" if center == "zero" else "the training mean"
    others = f"; around {at}" if pca else "" if z_dim == 2 else f"; other coordinates {at}"
    return Grid(run.model.decode(z.reshape(-1, z_dim).astype(np.float32)), cols=n,
                row_labels=tuple(f"{y:.2f}" for y in ys), col_labels=tuple(f"{x:.2f}" for x in xs),
                title=f"{names[1]} (rows) against {names[0]} (columns){others}")


def write_grid(path: str | Path, grid: Grid, sharpen_factor: float | None = None,
               sharp_path: str | Path | None = None, cell: int = DEFAULT_CELL) -> list[Path]:
    """Saves ``grid`` as a labelled PNG (cells at least ``cell`` pixels high) and, with ``sharpen_factor``, a
    PIL-sharpened copy (for one grid of several factors see :func:`sharpen_series`).

    The copy goes to ``sharp_path`` (default: ``<stem>_sharp<factor><suffix>`` beside ``path``).
    Returns the written paths.
    """
    check_sharpen(sharpen_factor)
    path = check_grid_path(path)
    written = [path]
    atomic_write_bytes(path, grid.png(cell))
    if sharpen_factor is not None:
        sharp_path = Path(sharp_path or path.with_name(f"{path.stem}_sharp{sharpen_factor:g}{path.suffix}"))
        atomic_write_bytes(sharp_path, sharpen_series(grid, [sharpen_factor]).png(cell))
        written.append(sharp_path)
    return written
