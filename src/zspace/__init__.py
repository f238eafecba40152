"""zspace: train convolutional AEs and VAEs on images and look inside their latent space."""

from zspace.config import ModelConfig, RunConfig, TrainConfig, load_config
from zspace.training import load_run, train

__version__ = "0.1.0"
__all__ = ["ModelConfig", "TrainConfig", "RunConfig", "load_config", "train", "load_run"]
