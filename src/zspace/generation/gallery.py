"""The standard set of generated grids of a run, written as PNGs (used by the report)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from zspace.config_fields import Config, at_least, config_field, each, non_empty, positive
from zspace.generation.modes import (
    gmm_grid,
    interpolation_grid,
    reconstruction_grid,
    sample_grid,
    uniform_sweep_grid,
    write_grid,
)

__all__ = ["GalleryConfig", "write_gallery", "DEFAULT_LIMITS"]

DEFAULT_LIMITS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 5.0, 8.0)


@dataclass(frozen=True)
class GalleryConfig(Config):
    """Which grids :func:`write_gallery` draws; a bad value raises ConfigError naming it."""

    n: int = config_field("Images per random grid (and per uniform-sweep row).", 10, positive())
    limits: tuple[float, ...] = config_field(
        "Half-widths r of the uniform sweep, one row each.", DEFAULT_LIMITS,
        non_empty("at least one limit"), each(lambda r: r > 0, "positive half-widths"),
    )
    sharpen_factor: float | None = config_field(
        "PIL sharpness factor; sharpened copies are written beside the originals (``*_sharp.png``); "
        "None = no sharpening.", None, at_least(0, "a non-negative number, or none for no sharpening"),
    )
    gmm_components: int = config_field("Components of the post-hoc Gaussian mixture sampler.", 10, positive())
    gmm_points: int = config_field("At most this many training z-points fit the mixture.", 20_000, positive())
    seed: int = config_field("Seed of every draw.", 0, at_least(0, "a non-negative integer"))


def write_gallery(run, config: GalleryConfig = GalleryConfig(), z_train: np.ndarray | None = None
                  ) -> dict[str, Path]:
    """Writes the standard grids of a run into its gallery folder; returns {grid name: PNG path}.

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
        "interpolation": replace(interpolation_grid(run, 0, 1, steps=c.n, seed=c.seed), cols=c.n),
    }
    paths = {}
    for name, grid in grids.items():
        sharpen_factor = c.sharpen_factor if name != "reconstructions" else None
        written = write_grid(run.gallery_path(name), grid, sharpen_factor, run.gallery_path(f"{name}_sharp"))
        paths[name] = written[0]
        if len(written) > 1:
            paths[f"{name}_sharp"] = written[1]
    return paths
