"""The standard set of generated grids of a run, written as PNGs (used by the report)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zspace.config_fields import Config, at_least, config_field, each, non_empty, positive
from zspace.generation.grid import save_grid
from zspace.generation.images import generate_images, interpolate, reconstruction_pairs, uniform_sweep
from zspace.generation.samplers import GaussianMixtureSampler
from zspace.generation.sharpen import sharpen

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


def write_gallery(model, images: np.ndarray, z_train: np.ndarray, out_dir: str | Path,
                  config: GalleryConfig = GalleryConfig(), inputs: np.ndarray | None = None) -> dict[str, Path]:
    """Writes the grids of one model into ``out_dir``; returns {name: png path}.

    Args:
        model: a trained :class:`zspace.models.Autoencoder`.
        images: (N, H, W, C) held-out images for reconstructions and interpolation (N >= 2).
        z_train: (M, z_dim) training z-points for the Gaussian mixture sampler.
        inputs: the model inputs for ``images`` when they differ (denoise / recolor tasks).
    """
    out_dir = Path(out_dir)
    c = config
    rng = np.random.default_rng(c.seed)
    fit_points = z_train[rng.choice(len(z_train), min(len(z_train), c.gmm_points), replace=False)]
    components = min(c.gmm_components, len(fit_points))
    gmm = GaussianMixtureSampler(components, random_state=c.seed).fit(fit_points)
    n_pairs = min(c.n, len(images))
    grids = {
        "normal": (generate_images(model, 3 * c.n, "normal", seed=c.seed), c.n),
        "uniform_sweep": (uniform_sweep(model, c.limits, c.n, seed=c.seed), c.n),
        "gmm": (model.decode(gmm.sample(3 * c.n)), c.n),
        "reconstructions": (reconstruction_pairs(
            model, images[:n_pairs], cols=n_pairs, inputs=None if inputs is None else inputs[:n_pairs]), n_pairs),
        "interpolation": (interpolate(model, *(images if inputs is None else inputs)[:2], steps=c.n), c.n),
    }
    paths = {}
    for name, (grid_images, cols) in grids.items():
        paths[name] = save_grid(out_dir / f"{name}.png", grid_images, cols=cols)
        if c.sharpen_factor is not None and name != "reconstructions":
            paths[f"{name}_sharp"] = save_grid(out_dir / f"{name}_sharp.png", sharpen(grid_images, c.sharpen_factor), cols=cols)
    return paths
