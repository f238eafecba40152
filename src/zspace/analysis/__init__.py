"""Latent-space analysis: encoding datasets into z-points."""

from zspace.analysis.encoding import encode_images, save_encoding

__all__ = ["encode_images", "save_encoding"]
