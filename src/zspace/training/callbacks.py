"""Run-directory callbacks: the history CSV and the per-epoch checkpoints, both committed atomically;
the per-epoch z-space monitor and the jump detector that read the epoch's numbers before they are committed."""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from zspace.errors import DiskFullError, RunError
from zspace.storage import atomic_save, atomic_write_text
from zspace.training.distribute import outside_distribution

__all__ = [
    "HistoryCSV",
    "EpochCheckpoint",
    "NonFiniteGuard",
    "KLWarmup",
    "ActiveUnitsMonitor",
    "LatentMonitor",
    "JumpDetector",
    "MONITOR_COLUMNS",
    "JUMP_QUANTITIES",
    "find_jumps",
    "latent_statistics",
    "write_history",
]

METRICS = ("total_loss", "reco_loss", "kl_loss", "kl_divergence")
# The z-space monitor's columns (LatentMonitor): radius = L2 norm of a code; an AE has z only.
MONITOR_COLUMNS = ("z_radius_mean", "z_radius_max", "mu_radius_mean", "mu_radius_max", "logvar_mean", "logvar_min")
COLUMNS = (
    ("epoch",) + METRICS + tuple(f"val_{m}" for m in METRICS)
    + ("learning_rate", "kl_scale", "active_units", "seconds")
    # reco_loss is in reconstruction_reduction's unit; these two are the same in every run
    + ("reco_loss_per_pixel", "val_reco_loss_per_pixel", "reco_loss_per_image", "val_reco_loss_per_image")
    + MONITOR_COLUMNS
)
# Columns HistoryCSV copies from Keras' logs (epoch and seconds are its own).
_LOGGED = tuple(c for c in COLUMNS if c not in ("epoch", "seconds"))
# What the jump detector watches: a VAE's validation KL (nats per image) and the mean radius of z.
JUMP_QUANTITIES = ("val_kl_divergence", "z_radius_mean")
JUMP_FLOOR = 1.0
"""A previous value below this (nats, radius units) is compared as this: a collapsed posterior's KL of
0.01 that triples to 0.03 nats is noise, not a bad minimum; the blog's jump was a radius of 16 to 66."""


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    """Commits ``rows`` as history.csv (the ``COLUMNS`` header; a missing value is an empty cell)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in COLUMNS})
    atomic_write_text(path, buffer.getvalue())


def _tripped(guard) -> bool:
    """Whether ``guard`` (one callback with a ``tripped`` flag, a sequence of them, or None) fired."""
    guards = guard if isinstance(guard, Sequence) else () if guard is None else (guard,)
    return any(g.tripped for g in guards)


class HistoryCSV(keras.callbacks.Callback):
    """Writes history.csv after every epoch (1-based ``epoch`` column), rewriting it atomically.

    Args:
        path: the CSV file.
        rows: rows kept from earlier epochs of a resumed run.
        guard: a guard (``tripped`` flag) or a sequence of them; an epoch one of them rejected is not recorded.
        write: False keeps the rows in memory only (a process other than the chief).
    """

    def __init__(self, path: str | Path, rows: list[dict[str, float]] | None = None, guard=None,
                 write: bool = True):
        super().__init__()
        self.path = Path(path)
        self.write = write
        self.rows = list(rows or [])
        self.guard = guard
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if _tripped(self.guard):
            return  # an epoch that hit a non-finite loss (or a jump it rolls back) is not recorded
        logs = dict(logs or {})
        row = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - self._start, 3)}
        for key in _LOGGED:
            if key in logs:
                row[key] = float(logs[key])
        self.rows = [r for r in self.rows if r["epoch"] < epoch + 1] + [row]
        if self.write:
            write_history(self.path, self.rows)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the whole model (weights, optimizer state, noise seed) after every epoch.

    Args:
        run: the :class:`zspace.Run` whose checkpoints these are.
        keep: keep only the newest ``keep`` checkpoints; 0 keeps all.
        guard: as :class:`HistoryCSV`'s; a rejected epoch gets no checkpoint.
        save: False only checks the weights (a process other than the chief: every process must stop alike).
    """

    def __init__(self, run, keep: int = 0, guard=None, save: bool = True):
        super().__init__()
        self.run = run
        self.keep = keep
        self.guard = guard
        self.save = save

    def on_epoch_end(self, epoch, logs=None):
        if _tripped(self.guard):
            return
        if not all(np.isfinite(w).all() for w in self.model.get_weights()):
            # A last line of defence: never commit non-finite weights as a checkpoint.
            nonfinite = next((g for g in (self.guard if isinstance(self.guard, Sequence) else [self.guard])
                              if isinstance(g, NonFiniteGuard)), None)
            if nonfinite is not None:
                nonfinite.trip(epoch, None, "non-finite weights at the end of the epoch")
            self.model.stop_training = True
            return
        if not self.save:
            return
        path = self.run.checkpoint_path(epoch + 1)
        try:
            with outside_distribution():
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


def latent_statistics(encoded: dict[str, np.ndarray]) -> dict[str, float]:
    """The z-space monitor's numbers of one encoding (``Autoencoder.encode``'s dict, arrays (N, z_dim)).

    Returns:
        ``z_radius_mean`` / ``z_radius_max`` (L2 norms of z), and for a VAE the same of mu plus
        ``logvar_mean`` / ``logvar_min``; float64 sums, so 10,000 codes lose no precision.
    """
    stats: dict[str, float] = {}
    for name in ("z", "mu"):
        if name in encoded:
            radius = np.linalg.norm(np.asarray(encoded[name], dtype=np.float64), axis=1)
            stats[f"{name}_radius_mean"], stats[f"{name}_radius_max"] = float(radius.mean()), float(radius.max())
    if "logvar" in encoded:
        logvar = np.asarray(encoded["logvar"], dtype=np.float64)
        stats["logvar_mean"], stats["logvar_min"] = float(logvar.mean()), float(logvar.min())
    return stats


class LatentMonitor(keras.callbacks.Callback):
    """Encodes a fixed image set after every epoch and logs the z-space columns (``MONITOR_COLUMNS``)
    and, for a VAE, the active units (variance of mu over ``images`` > threshold).

    One encode feeds both. It goes through ``Autoencoder.encode``, whose batches all have one shape,
    so the predict function is traced once for the whole run. The sampling noise it draws is put
    back afterwards: monitoring (or its size) never changes the noise training sees.

    Warns on stderr when no active unit is left: the posterior has collapsed onto the prior and
    the decoder ignores z.

    Args:
        images: (N, H, W, C) model inputs, N >= 1.
        threshold: activity above which a VAE's unit counts as active.

    Attributes:
        encoded: the last epoch's encoding of ``images`` (``Autoencoder.encode``'s dict; None before).
    """

    def __init__(self, images, threshold: float = 0.01):
        super().__init__()
        self.images = images
        self.threshold = threshold
        self.encoded: dict[str, np.ndarray] | None = None

    def on_epoch_end(self, epoch, logs=None):
        noise = self.model.noise_state()
        try:
            with outside_distribution():  # every process encodes all the images
                encoded = self.model.encode(self.images)
        finally:
            self.model.set_noise_state(noise)
        self.encoded = encoded  # the TensorBoard logs histogram these codes (zspace.training.tensorboard)
        stats = latent_statistics(encoded)
        if "mu" in encoded:
            stats["active_units"] = int((encoded["mu"].astype(np.float64).var(axis=0) > self.threshold).sum())
        if logs is not None:
            logs.update(stats)
        if stats.get("active_units") == 0:
            print(f"[zspace] warning: epoch {epoch + 1}: no active latent unit (variance of mu <= "
                  f"{self.threshold} on every axis): posterior collapse; consider a lower kl_factor "
                  f"or kl_warmup_epochs", file=sys.stderr, flush=True)


# The name of this callback before it logged more than the active units.
ActiveUnitsMonitor = LatentMonitor


def find_jumps(previous: dict[str, float], current: dict[str, float], factor: float) -> list[dict[str, float]]:
    """The watched quantities (``JUMP_QUANTITIES``) that rose above ``factor`` times their previous value
    (or ``factor`` times ``JUMP_FLOOR``, whichever is larger).

    A quantity missing or non-finite in either epoch is not compared (an AE has no KL; an old
    history row has no radius). Returns ``{"quantity", "from", "to"}`` per jump.
    """
    jumps = []
    for quantity in JUMP_QUANTITIES:
        before, after = (float(row.get(quantity, math.nan)) for row in (previous, current))
        if math.isfinite(before) and math.isfinite(after) and after > factor * max(before, JUMP_FLOOR):
            jumps.append({"quantity": quantity, "from": before, "to": after})
    return jumps


class JumpDetector(keras.callbacks.Callback):
    """Compares each epoch's KL and mean radius with the previous epoch's (:func:`find_jumps`).

    On a jump it warns on stderr and hands the events to ``on_event`` (the run records them); with
    ``reseed_to`` set it also trips: training stops and the epoch is neither recorded nor
    checkpointed, so the caller can roll back to the previous epoch's checkpoint.

    Args:
        previous: the history row of the epoch before the first one this fit trains ({} if none).
        factor: the jump factor (> 1).
        reseed_to: the noise seed the caller will train on with after a rollback; None = only warn.
        on_event: called with the list of event dicts of an epoch with jumps.
        guard: a guard whose rejected epochs are not compared (the non-finite guard).
        note: appended to the warning when only warning (why no rollback happens).
    """

    def __init__(self, previous: dict[str, float], factor: float, reseed_to: int | None = None,
                 on_event: Callable[[list[dict]], None] | None = None, guard=None, note: str = ""):
        super().__init__()
        self.previous = dict(previous)
        self.factor = factor
        self.reseed_to = reseed_to
        self.on_event = on_event
        self.guard = guard
        self.note = note
        self.tripped = False
        self.epoch: int | None = None
        self.events: list[dict] = []

    def on_epoch_end(self, epoch, logs=None):
        if _tripped(self.guard) or self.tripped:
            return
        current = {k: float(v) for k, v in (logs or {}).items() if k in JUMP_QUANTITIES}
        jumps = find_jumps(self.previous, current, self.factor)
        self.previous = current
        if not jumps:
            return
        action = "warn" if self.reseed_to is None else "reseed"
        events = [{"epoch": epoch + 1, **jump, "factor": jump["to"] / jump["from"], "action": action}
                  | ({"noise_seed": self.reseed_to} if self.reseed_to is not None else {}) for jump in jumps]
        what = "; ".join(f"{e['quantity']} {e['from']:.4g} -> {e['to']:.4g} (x{e['factor']:.3g})" for e in events)
        then = (f"rolling back to epoch {epoch} and training on with noise seed {self.reseed_to}"
                if self.reseed_to is not None else "going on" + self.note)
        print(f"[zspace] warning: epoch {epoch + 1}: jump above jump_factor {self.factor:g}: {what}; {then}",
              file=sys.stderr, flush=True)
        self.events = events
        if self.on_event is not None:
            self.on_event(events)
        if self.reseed_to is not None:
            self.tripped, self.epoch = True, epoch + 1
            self.model.stop_training = True
