"""The image grids of a run, one function per mode: what ``zspace generate``, the gallery and the report draw.

Each function takes a :class:`zspace.Run` (model, config and validation images, loaded once) or
its directory, and returns a :class:`Grid`; :func:`write_grid` saves it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from zspace.data.tasks import example_inputs, inference_inputs
from zspace.errors import ConfigError
from zspace.generation.grid import save_grid
from zspace.generation.images import attribute_shift, generate_images, interpolate, reconstruction_pairs, uniform_sweep
from zspace.generation.samplers import GaussianMixtureSampler
from zspace.generation.sharpen import sharpen
from zspace.rundir import Run

__all__ = ["Grid", "check_limits", "check_strengths", "check_sharpen", "check_grid_size", "check_grid_path",
           "sample_grid", "uniform_sweep_grid", "gmm_grid", "reconstruction_grid", "interpolation_grid",
           "attribute_grid", "write_grid", "DEFAULT_STRENGTHS", "MAX_GRID_IMAGES", "MAX_GMM_COMPONENTS", "MAX_LIMIT"]

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


@dataclass(frozen=True)
class Grid:
    """Images to tile: ``images`` float32 (N, H, W, C) in [0, 1], ``cols`` per row (None: about square)."""

    images: np.ndarray
    cols: int | None = None


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


def check_sharpen(factor: float | None) -> None:
    """ConfigError unless the PIL sharpness factor is None or a finite number >= 0."""
    if factor is not None and not (math.isfinite(factor) and factor >= 0):
        raise ConfigError(f"--sharpen must be a finite number >= 0. Received: {factor}")


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
    return Grid(uniform_sweep(run.model, limits, n, seed=seed), cols=n)


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
    return Grid(pairs, cols=len(targets))


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
    return Grid(interpolate(run.reset_noise(), ends[0], ends[1], steps=max(steps, 2)))


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
    return Grid(attribute_shift(run.reset_noise(), inputs, vector, strengths), cols=len(images))


def write_grid(path: str | Path, grid: Grid, sharpen_factor: float | None = None,
               sharp_path: str | Path | None = None) -> list[Path]:
    """Saves ``grid`` as a PNG and, with ``sharpen_factor``, a PIL-sharpened copy.

    The copy goes to ``sharp_path`` (default: ``<stem>_sharp<factor><suffix>`` beside ``path``).
    Returns the written paths.
    """
    check_sharpen(sharpen_factor)
    path = check_grid_path(path)
    written = [save_grid(path, grid.images, cols=grid.cols)]
    if sharpen_factor is not None:
        sharp_path = sharp_path or path.with_name(f"{path.stem}_sharp{sharpen_factor:g}{path.suffix}")
        written.append(save_grid(sharp_path, sharpen(grid.images, sharpen_factor), cols=grid.cols))
    return written
