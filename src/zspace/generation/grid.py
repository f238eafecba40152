"""Image grids: arrays of images -> one PNG, cells enlarged to a readable size, rows and columns labelled."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from zspace.errors import ConfigError
from zspace.storage import atomic_write_bytes

__all__ = ["image_grid", "labelled_grid", "grid_png", "save_grid", "check_cell", "check_grid_pixels", "label_font",
           "DEFAULT_CELL", "MAX_CELL", "MAX_GRID_PIXELS"]

DEFAULT_CELL = 64
"""Smallest cell height in pixels: an 8x8 digit is drawn 64x64, a 28x28 image 84x84 (nearest neighbour,
integer factor, so pixels stay square and sharp)."""

MAX_CELL = 1024
"""Largest ``cell`` (``zspace generate --cell``): beyond it one cell is larger than a screen."""

MAX_GRID_PIXELS = 100_000_000
"""Most pixels of one grid picture (about 300 MB as RGB bytes while it is drawn)."""

PAD = 2
"""White pixels between cells."""


def _scale(height: int, min_tile: int) -> int:
    return max(1, math.ceil(min_tile / height))


def check_cell(cell: int) -> int:
    """``cell`` as an int; ConfigError unless in [1, MAX_CELL]."""
    if not 1 <= cell <= MAX_CELL:
        raise ConfigError(f"--cell must be in [1, {MAX_CELL}] pixels. Received: {cell}")
    return int(cell)


def check_grid_pixels(n_images: int, image_shape, cell: int = DEFAULT_CELL) -> None:
    """ConfigError when ``n_images`` of ``image_shape`` (H, W, ...) drawn at ``cell`` exceed MAX_GRID_PIXELS
    (checked before decoding, from the run's input shape)."""
    h, w = int(image_shape[0]), int(image_shape[1])
    s = _scale(h, cell)
    pixels = n_images * (h * s + PAD) * (w * s + PAD)
    if pixels > MAX_GRID_PIXELS:
        raise ConfigError(f"the grid of {n_images:,} images of {h}x{w} drawn {h * s}x{w * s} has {pixels:,} pixels, "
                          f"more than {MAX_GRID_PIXELS:,}: give a smaller --n or --cell.")


def image_grid(images: np.ndarray, cols: int | None = None, pad: int = PAD, min_tile: int = DEFAULT_CELL
               ) -> np.ndarray:
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
    scale = _scale(h, min_tile)
    tiles = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    th, tw = h * scale, w * scale
    padded = np.full((rows * cols, th + pad, tw + pad, c), 255, np.uint8)
    padded[:n, pad:, pad:] = tiles
    grid = padded.reshape(rows, cols, th + pad, tw + pad, c).transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(rows * (th + pad), cols * (tw + pad), c)
    return np.pad(grid, ((0, pad), (0, pad), (0, 0)), constant_values=255)


def label_font(size: int):
    """PIL's bundled scalable font at ``size`` px (its small bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _draw_at(draw: ImageDraw.ImageDraw, text: str, font, ink, point: tuple[int, int], anchor: tuple[float, float]
             ) -> None:
    """Draws ``text`` with the point ``anchor`` (fractions of its box: (1, 0.5) = right middle) at ``point``
    (by its bounding box: PIL's own anchors need a FreeType font)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = point[0] - left - anchor[0] * (right - left)
    y = point[1] - top - anchor[1] * (bottom - top)
    draw.text((round(x), round(y)), text, fill=ink, font=font)


def labelled_grid(images: np.ndarray, cols: int | None = None, row_labels=(), col_labels=(), title: str = "",
                  min_tile: int = DEFAULT_CELL) -> np.ndarray:
    """:func:`image_grid` with a label left of each row, under each column and a title above (each optional).

    Args:
        row_labels: one string per row (or none); col_labels: one per column (or none).

    Returns:
        uint8 (H, W, C): the grid on a white canvas with margins for the text (black).
    """
    grid = image_grid(images, cols, min_tile=min_tile)
    row_labels, col_labels = [str(t) for t in row_labels], [str(t) for t in col_labels]
    if not (row_labels or col_labels or title):
        return grid
    n, h, w, c = np.shape(images)
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    for name, labels, count in (("row_labels", row_labels, rows), ("col_labels", col_labels, cols)):
        if labels and len(labels) != count:
            raise ValueError(f"`{name}` must have one label per {name[:3]} ({count}). Received {len(labels)}")
    scale = _scale(h, min_tile)
    th, tw = h * scale + PAD, w * scale + PAD
    font = label_font(max(11, min(20, th // 4)))
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    gap = 6
    left = max((_text_size(measure, t, font)[0] for t in row_labels), default=-gap) + gap + (gap if row_labels else 0)
    line = _text_size(measure, "Ag0", font)[1] + gap
    top = line if title else 0
    bottom = line if col_labels else 0
    width = max(left + grid.shape[1], _text_size(measure, title, font)[0] + 2 * gap if title else 0)
    canvas = Image.new("L" if c == 1 else "RGB", (width, top + grid.shape[0] + bottom), "white")
    canvas.paste(Image.fromarray(grid[..., 0] if c == 1 else grid), (left, top))
    draw = ImageDraw.Draw(canvas)
    ink = 0 if c == 1 else (0, 0, 0)
    if title:
        draw.text((gap, gap // 2), title, fill=ink, font=font)
    for i, text in enumerate(row_labels):  # right-aligned beside the row's middle
        _draw_at(draw, text, font, ink, (left - gap, top + PAD + i * th + th // 2), (1.0, 0.5))
    for j, text in enumerate(col_labels):  # centred under the column
        _draw_at(draw, text, font, ink, (left + PAD + j * tw + tw // 2, top + grid.shape[0] + gap // 2), (0.5, 0.0))
    array = np.asarray(canvas)
    return array[..., None] if c == 1 else array


def grid_png(images: np.ndarray, cols: int | None = None, row_labels=(), col_labels=(), title: str = "",
             min_tile: int = DEFAULT_CELL) -> bytes:
    """PNG bytes of :func:`labelled_grid` of ``images``."""
    grid = labelled_grid(images, cols, row_labels, col_labels, title, min_tile)
    buffer = io.BytesIO()
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(buffer, format="PNG")
    return buffer.getvalue()


def save_grid(path: str | Path, images: np.ndarray, cols: int | None = None, row_labels=(), col_labels=(),
              title: str = "", min_tile: int = DEFAULT_CELL) -> Path:
    """Writes :func:`labelled_grid` of ``images`` to a PNG (atomically); returns the path."""
    path = Path(path)
    atomic_write_bytes(path, grid_png(images, cols, row_labels, col_labels, title, min_tile))
    return path
