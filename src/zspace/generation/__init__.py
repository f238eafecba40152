"""Generation: random z-points, decoding, image grids."""

from zspace.generation.grid import image_grid, save_grid
from zspace.generation.images import generate_images, reconstruction_pairs
from zspace.generation.latent import sample_latent

__all__ = ["sample_latent", "generate_images", "reconstruction_pairs", "image_grid", "save_grid"]
