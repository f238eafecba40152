"""Generation: random and post-hoc latent samples, decoding, sharpening, image grids."""

from zspace.generation.gallery import (
    DEFAULT_LIMITS,
    GalleryConfig,
    gallery_grids,
    gallery_pngs,
    save_gallery,
    write_gallery,
)
from zspace.generation.grid import grid_png, image_grid, save_grid
from zspace.generation.images import (
    attribute_shift,
    generate_images,
    interpolate,
    reconstruction_pairs,
    uniform_sweep,
)
from zspace.generation.latent import sample_latent
from zspace.generation.modes import (
    DEFAULT_STRENGTHS,
    MAX_GMM_COMPONENTS,
    MAX_GRID_IMAGES,
    Grid,
    attribute_grid,
    check_grid_path,
    check_grid_size,
    check_limits,
    check_sharpen,
    check_strengths,
    gmm_grid,
    interpolation_grid,
    reconstruction_grid,
    sample_grid,
    uniform_sweep_grid,
    write_grid,
)
from zspace.generation.reconstruct import Reconstructions, reconstruct_arrays, reconstruct_images, write_reconstructions
from zspace.generation.samplers import GaussianMixtureSampler, SecondStageConfig, SecondStageVAESampler
from zspace.generation.sharpen import sharpen

__all__ = [
    "sample_latent",
    "generate_images",
    "uniform_sweep",
    "reconstruction_pairs",
    "interpolate",
    "attribute_shift",
    "GaussianMixtureSampler",
    "SecondStageVAESampler",
    "SecondStageConfig",
    "sharpen",
    "GalleryConfig",
    "write_gallery",
    "gallery_grids",
    "gallery_pngs",
    "save_gallery",
    "DEFAULT_LIMITS",
    "image_grid",
    "grid_png",
    "save_grid",
    "Grid",
    "check_limits",
    "check_sharpen",
    "check_strengths",
    "check_grid_size",
    "check_grid_path",
    "MAX_GRID_IMAGES",
    "MAX_GMM_COMPONENTS",
    "DEFAULT_STRENGTHS",
    "sample_grid",
    "uniform_sweep_grid",
    "gmm_grid",
    "reconstruction_grid",
    "interpolation_grid",
    "attribute_grid",
    "write_grid",
    "Reconstructions",
    "reconstruct_images",
    "reconstruct_arrays",
    "write_reconstructions",
]
