"""Image grids: arrays of images -> one PNG."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from zspace.storage import atomic_write_bytes

__all__ = ["image_grid", "grid_png", "save_grid"]


def image_grid(images: np.ndarray, cols: int | None = None, pad: int = 2, min_tile: int = 64) -> np.ndarray:
    """Tiles images into one uint8 picture.

    Args:
        images: (N, H, W, C) in [0, 1], C = 1 or 3.
        cols: tiles per row (default: ceil(sqrt(N))).
        pad: pixels of white between tiles (after upscaling).
        min_tile: small images are upscaled (nearest neighbour, integer factor) to at
            least this many pixels in height.

    Returns:
        uint8 (rows * tile_h + pad, cols * tile_w + pad, C).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"`images` must be (N, H, W, 1 or 3) with N > 0. Received shape {images.shape}")
    n, h, w, c = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    scale = max(1, math.ceil(min_tile / h))
    tiles = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    th, tw = h * scale, w * scale
    padded = np.full((rows * cols, th + pad, tw + pad, c), 255, np.uint8)
    padded[:n, pad:, pad:] = tiles
    grid = padded.reshape(rows, cols, th + pad, tw + pad, c).transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(rows * (th + pad), cols * (tw + pad), c)
    return np.pad(grid, ((0, pad), (0, pad), (0, 0)), constant_values=255)


def grid_png(images: np.ndarray, cols: int | None = None) -> bytes:
    """PNG bytes of :func:`image_grid` of ``images``."""
    grid = image_grid(images, cols)
    buffer = io.BytesIO()
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(buffer, format="PNG")
    return buffer.getvalue()


def save_grid(path: str | Path, images: np.ndarray, cols: int | None = None) -> Path:
    """Writes :func:`image_grid` of ``images`` to a PNG (atomically); returns the path."""
    path = Path(path)
    atomic_write_bytes(path, grid_png(images, cols))
    return path
