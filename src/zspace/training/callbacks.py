"""Run-directory callbacks: the history CSV and the per-epoch checkpoints, both committed atomically."""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from pathlib import Path

import keras
import numpy as np

from zspace.errors import DiskFullError, RunError
from zspace.storage import atomic_save, atomic_write_text

__all__ = [
    "HistoryCSV",
    "EpochCheckpoint",
    "NonFiniteGuard",
    "KLWarmup",
    "ActiveUnitsMonitor",
]

METRICS = ("total_loss", "reco_loss", "kl_loss", "kl_divergence")
COLUMNS = (
    ("epoch",) + METRICS + tuple(f"val_{m}" for m in METRICS)
    + ("learning_rate", "kl_scale", "active_units", "seconds")
    # reco_loss is in reconstruction_reduction's unit; these two are the same in every run
    + ("reco_loss_per_pixel", "val_reco_loss_per_pixel", "reco_loss_per_image", "val_reco_loss_per_image")
)


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

    def __init__(self, path: str | Path, rows: list[dict[str, float]] | None = None, guard=None):
        super().__init__()
        self.path = Path(path)
        self.rows = list(rows or [])
        self.guard = guard
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self.guard is not None and self.guard.tripped:
            return  # an epoch that hit a non-finite loss is not recorded
        logs = dict(logs or {})
        row = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - self._start, 3)}
        for key in COLUMNS:
            if key in logs and key not in row:  # epoch and seconds are the callback's own
                row[key] = float(logs[key])
        self.rows = [r for r in self.rows if r["epoch"] < epoch + 1] + [row]
        _write_history(self.path, self.rows)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the whole model (weights, optimizer state, noise seed) after every epoch.

    Args:
        run: the :class:`zspace.Run` whose checkpoints these are.
        keep: keep only the newest ``keep`` checkpoints; 0 keeps all.
    """

    def __init__(self, run, keep: int = 0, guard=None):
        super().__init__()
        self.run = run
        self.keep = keep
        self.guard = guard

    def on_epoch_end(self, epoch, logs=None):
        if self.guard is not None and self.guard.tripped:
            return
        if not all(np.isfinite(w).all() for w in self.model.get_weights()):
            # A last line of defence: never commit non-finite weights as a checkpoint.
            if self.guard is not None:
                self.guard.trip(epoch, None, "non-finite weights at the end of the epoch")
            self.model.stop_training = True
            return
        path = self.run.checkpoint_path(epoch + 1)
        try:
            atomic_save(path, lambda tmp: self.model.save(tmp))
        except OSError as exc:
            previous = self.run.checkpoints()
            kept = f"the previous checkpoint {previous[-1][1].name} is intact" if previous else "no earlier checkpoint exists"
            if isinstance(exc, DiskFullError):
                raise DiskFullError(f"disk full while saving checkpoint {path}; {kept}. Free some space (or set "
                                    f"keep_checkpoints) and run `zspace train` again to resume.") from None
            raise RunError(f"saving checkpoint {path} failed ({exc.strerror or exc}); {kept}.") from None
        if self.keep:
            for _, old in self.run.checkpoints()[:-self.keep]:
                old.unlink(missing_ok=True)


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is not finite and remembers where.

    Attributes:
        tripped: whether it fired; ``epoch`` and ``step`` are 1-based, ``loss`` the value seen.
    """

    def __init__(self):
        super().__init__()
        self.tripped = False
        self.epoch = self.step = None
        self.reason = ""
        self._epoch = 0

    def trip(self, epoch: int, step: int | None, reason: str) -> None:
        self.tripped, self.epoch, self.step, self.reason = True, epoch + 1, step, reason

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution = k this runs every k steps; the model's in-graph
        # `nonfinite_step` metric still names the exact step.
        logs = logs or {}
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(loss)) and not self.tripped:
            step = int(float(logs.get("nonfinite_step", 0))) or batch + 1
            self.trip(self._epoch, step, f"loss={float(loss)}")
            self.model.stop_training = True

    @property
    def where(self) -> str:
        return f"epoch {self.epoch}" + (f", step {self.step}" if self.step else "") + f" ({self.reason})"


class KLWarmup(keras.callbacks.Callback):
    """Sets the model's ``kl_scale`` from ``schedule(epoch)`` at the start of every epoch."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        self.model.kl_scale.assign(float(self.schedule(epoch)))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["kl_scale"] = float(self.schedule(epoch))


class ActiveUnitsMonitor(keras.callbacks.Callback):
    """Logs the active units of a VAE (variance of mu over ``images`` > threshold) each epoch.

    Warns on stderr when none is left: the posterior has collapsed onto the prior and the
    decoder ignores z.
    """

    def __init__(self, images, threshold: float = 0.01):
        super().__init__()
        self.images = images
        self.threshold = threshold

    def on_epoch_end(self, epoch, logs=None):
        mu = self.model.encode(self.images)["mu"]
        active = int((mu.astype(np.float64).var(axis=0) > self.threshold).sum())
        if logs is not None:
            logs["active_units"] = active
        if active == 0:
            print(f"[zspace] warning: epoch {epoch + 1}: no active latent unit (variance of mu <= "
                  f"{self.threshold} on every axis): posterior collapse; consider a lower kl_factor "
                  f"or kl_warmup_epochs", file=sys.stderr, flush=True)
