"""Sharpening of generated images with PIL's ImageEnhance.Sharpness."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance

__all__ = ["sharpen"]


def sharpen(images: np.ndarray, factor: float) -> np.ndarray:
    """PIL sharpness enhancement of each image (factor 1 = unchanged, > 1 sharper).

    Args:
        images: (N, H, W, C) in [0, 1], C = 1 or 3.

    Returns:
        float32 (N, H, W, C) in [0, 1] (quantised to 8 bits, as PIL works).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"`images` must be (N, H, W, 1 or 3). Received shape {images.shape}")
    if factor < 0:
        raise ValueError(f"`factor` must be non-negative. Received: factor={factor}")
    as_bytes = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
    grey = images.shape[-1] == 1
    # PIL has no batch API; the loop is over a grid's worth of images.
    out = np.stack([
        np.asarray(ImageEnhance.Sharpness(Image.fromarray(img[..., 0] if grey else img)).enhance(factor))
        for img in as_bytes
    ])
    return (out[..., None] if grey else out).astype(np.float32) / 255.0
