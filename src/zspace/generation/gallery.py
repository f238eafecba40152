"""The standard set of generated grids of a run, written as PNGs (used by the report)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from zspace.config_fields import Config, at_least, at_most, config_field, each, non_empty, positive
from zspace.generation.grid import DEFAULT_CELL, MAX_CELL
from zspace.generation.modes import (
    MAX_GMM_COMPONENTS,
    Grid,
    gmm_grid,
    interpolation_grid,
    latent_grid,
    reconstruction_grid,
    sample_grid,
    sharpen_series,
    uniform_sweep_grid,
)
from zspace.storage import atomic_write_bytes

__all__ = ["GalleryConfig", "gallery_grids", "gallery_pngs", "save_gallery", "write_gallery", "DEFAULT_LIMITS"]

DEFAULT_LIMITS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 5.0, 8.0)


@dataclass(frozen=True)
class GalleryConfig(Config):
    """Which grids :func:`gallery_grids` draws; a bad value raises ConfigError naming it."""

    n: int = config_field("Images per random grid (and per uniform-sweep row).", 10, positive())
    limits: tuple[float, ...] = config_field(
        "Half-widths r of the uniform sweep, one row each.", DEFAULT_LIMITS,
        non_empty("at least one limit"), each(lambda r: r > 0, "positive half-widths"),
    )
    sharpen_factor: float | None = config_field(
        "PIL sharpness factor; sharpened copies are written beside the originals (``*_sharp.png``); "
        "None = no sharpening.", None, at_least(0, "a non-negative number, or none for no sharpening"),
    )
    gmm_components: int = config_field("Components of the post-hoc Gaussian mixture sampler.", 10,
                                       positive(), at_most(MAX_GMM_COMPONENTS))
    gmm_points: int = config_field("At most this many training z-points fit the mixture.", 20_000, positive())
    seed: int = config_field("Seed of every draw, in [0, 2**32).", 0)
    cell: int = config_field("Smallest cell height in pixels: small images are enlarged by an integer factor "
                             "(nearest neighbour) to at least this.", DEFAULT_CELL, positive(), at_most(MAX_CELL))


def gallery_grids(run, config: GalleryConfig = GalleryConfig(), z_train: np.ndarray | None = None
                  ) -> dict[str, Grid]:
    """The standard grids of a run: {"normal", "uniform_sweep", "gmm", "reconstructions", "interpolation",
    "latent_grid": Grid}; "latent_grid" is an n x n grid on the plane of the first two axes (z_dim 2) or
    principal directions of ``z_train`` (absent for z_dim 1).

    Args:
        run: a :class:`zspace.Run` with a trained model (and at least 2 validation images).
        z_train: (M, z_dim) training z-points for the Gaussian mixture (None: encode them).
    """
    c = config
    # A tiny run may have fewer training points than the default number of components.
    components = c.gmm_components if z_train is None else min(c.gmm_components, len(z_train), c.gmm_points)
    grids = {
        "normal": replace(sample_grid(run, 3 * c.n, "normal", seed=c.seed), cols=c.n),
        "uniform_sweep": uniform_sweep_grid(run, c.limits, c.n, seed=c.seed),
        "gmm": replace(gmm_grid(run, 3 * c.n, components, c.seed, z_train, c.gmm_points), cols=c.n),
        "reconstructions": reconstruction_grid(run, c.n, seed=c.seed),
        "interpolation": interpolation_grid(run, 0, 1, steps=c.n, seed=c.seed),
    }
    z_dim = run.config.model.z_dim
    if z_dim >= 2:
        grids["latent_grid"] = latent_grid(run, c.n, pca=z_dim > 2, codes=z_train, seed=c.seed)
    return grids


def gallery_pngs(run, config: GalleryConfig = GalleryConfig(), z_train: np.ndarray | None = None
                 ) -> dict[str, bytes]:
    """{grid name: PNG bytes} of :func:`gallery_grids`, with a ``<name>_sharp`` copy of each generated grid
    when ``config.sharpen_factor`` is set. Writes nothing (the report puts them beside itself)."""
    pngs = {}
    for name, grid in gallery_grids(run, config, z_train).items():
        pngs[name] = grid.png(config.cell)
        if config.sharpen_factor is not None and name != "reconstructions":
            pngs[f"{name}_sharp"] = sharpen_series(grid, [config.sharpen_factor]).png(config.cell)
    return pngs


def save_gallery(pngs: dict[str, bytes], folder: str | Path) -> dict[str, Path]:
    """Writes {grid name: PNG bytes} as ``folder/<name>.png`` (each atomically); returns {grid name: path}."""
    paths = {name: Path(folder) / f"{name}.png" for name in pngs}
    for name, png in pngs.items():
        atomic_write_bytes(paths[name], png)
    return paths


def write_gallery(run, config: GalleryConfig = GalleryConfig(), z_train: np.ndarray | None = None,
                  folder: str | Path | None = None) -> dict[str, Path]:
    """Writes the standard grids of a run into ``folder`` (None: the run's gallery folder); returns
    {grid name: PNG path}. See :func:`gallery_pngs`."""
    return save_gallery(gallery_pngs(run, config, z_train), run.gallery_dir if folder is None else folder)
