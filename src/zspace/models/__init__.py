"""Keras models: encoder, decoder, the Autoencoder/VAE and their losses."""

from zspace.models.autoencoder import Autoencoder, build_model
from zspace.models.layers import KLDivergenceLoss, Sampling
from zspace.models.losses import kl_per_image, reconstruction_per_image
from zspace.models.saving import load_autoencoder, load_model

__all__ = [
    "Autoencoder",
    "build_model",
    "load_model",
    "load_autoencoder",
    "Sampling",
    "KLDivergenceLoss",
    "kl_per_image",
    "reconstruction_per_image",
]
