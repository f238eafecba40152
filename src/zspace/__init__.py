"""zspace: train convolutional AEs and VAEs on images and look inside their latent space."""

from zspace.config import ModelConfig, RunConfig, TrainConfig, load_config
from zspace.rundir import Run

__version__ = "0.1.0"
__all__ = ["ModelConfig", "TrainConfig", "RunConfig", "Run", "load_config", "train", "load_run", "evaluate",
           "EvaluationConfig"]


def __getattr__(name):
    # Keras (and its backend) load on first use, so `import zspace` and `zspace --help` stay fast
    # and the CLI can set backend log levels before TensorFlow starts.
    if name in ("train", "load_run"):
        from zspace import training

        return getattr(training, name)
    if name in ("evaluate", "EvaluationConfig"):
        from zspace.evaluation import evaluate

        return getattr(evaluate, name)
    raise AttributeError(f"module 'zspace' has no attribute {name!r}")
