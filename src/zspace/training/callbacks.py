"""Run-directory callbacks: the history CSV and the per-epoch checkpoints, both committed atomically."""

from __future__ import annotations

import csv
import io
import math
import re
import time
from pathlib import Path

import keras

from zspace.storage import atomic_save, atomic_write_text

__all__ = ["HistoryCSV", "EpochCheckpoint", "read_history", "checkpoint_path", "list_checkpoints"]

METRICS = ("total_loss", "reco_loss", "kl_loss", "kl_divergence")
COLUMNS = (
    ("epoch",) + METRICS + tuple(f"val_{m}" for m in METRICS) + ("learning_rate", "seconds")
)
_CHECKPOINT = re.compile(r"^epoch-(\d{4,})\.keras$")


def read_history(path: str | Path) -> list[dict[str, float]]:
    """Rows of a history.csv as dicts of floats (``epoch`` as int); [] if the file is absent."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.append({k: (int(v) if k == "epoch" else float(v) if v != "" else math.nan)
                         for k, v in row.items()})
    return rows


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in COLUMNS})
    atomic_write_text(path, buffer.getvalue())


class HistoryCSV(keras.callbacks.Callback):
    """Writes history.csv after every epoch (1-based ``epoch`` column), rewriting it atomically.

    Args:
        path: the CSV file.
        rows: rows kept from earlier epochs of a resumed run.
    """

    def __init__(self, path: str | Path, rows: list[dict[str, float]] | None = None):
        super().__init__()
        self.path = Path(path)
        self.rows = list(rows or [])
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        row = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - self._start, 3)}
        for key in COLUMNS[1:-1]:
            if key in logs:
                row[key] = float(logs[key])
        self.rows = [r for r in self.rows if r["epoch"] < epoch + 1] + [row]
        _write_history(self.path, self.rows)


def checkpoint_path(folder: str | Path, epoch: int) -> Path:
    """Checkpoint file of 1-based ``epoch``."""
    return Path(folder) / f"epoch-{epoch:04d}.keras"


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """(epoch, path) of the checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        match = _CHECKPOINT.match(p.name)
        if match:
            found.append((int(match.group(1)), p))
    return sorted(found)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the whole model (weights, optimizer state, noise seed) after every epoch.

    Args:
        folder: checkpoint folder.
        keep: keep only the newest ``keep`` checkpoints; 0 keeps all.
    """

    def __init__(self, folder: str | Path, keep: int = 0):
        super().__init__()
        self.folder = Path(folder)
        self.keep = keep

    def on_epoch_end(self, epoch, logs=None):
        atomic_save(checkpoint_path(self.folder, epoch + 1), lambda tmp: self.model.save(tmp))
        if self.keep:
            for _, old in list_checkpoints(self.folder)[:-self.keep]:
                old.unlink(missing_ok=True)
