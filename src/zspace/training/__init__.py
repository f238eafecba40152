"""Training runs: resumable training into a run directory, history and checkpoints."""

from zspace.rundir import Run, read_history, run_data
from zspace.training.batches import EpochBatches
from zspace.training.branch import branch_run
from zspace.training.run import RunResult, load_run, train

__all__ = ["train", "branch_run", "run_data", "load_run", "Run", "RunResult", "EpochBatches", "read_history"]
