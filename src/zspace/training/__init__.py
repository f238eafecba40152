"""Training runs: run directories, resumable training, history and checkpoints."""

from zspace.training.batches import EpochBatches
from zspace.training.callbacks import read_history
from zspace.training.run import RunFiles, RunResult, load_run, run_data, train

__all__ = ["train", "run_data", "load_run", "RunResult", "RunFiles", "EpochBatches", "read_history"]
