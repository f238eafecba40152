"""Training runs: run directories, resumable training, history and checkpoints."""

from zspace.training.batches import EpochBatches
from zspace.training.callbacks import read_history
from zspace.training.run import RunFiles, RunResult, load_run, train

__all__ = ["train", "load_run", "RunResult", "RunFiles", "EpochBatches", "read_history"]
