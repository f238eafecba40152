"""TensorBoard logs of a training run (``[train] tensorboard = true``): ``RUN/tensorboard/train`` and
``RUN/tensorboard/validation``, Keras' layout. Open them with ``tensorboard --logdir RUN/tensorboard``.

- Scalars: every history.csv column, through Keras' TensorBoard callback (its tags: ``epoch_<column>``,
  the ``val_`` columns under validation/ without the prefix, all others under train/).
- Images (written here with tf.summary, which Keras' callback does not do): per epoch, a grid of fixed
  validation images above their reconstructions ("reconstructions", validation/; a task's grid is inputs,
  outputs, targets) and a grid of decodes of fixed prior samples z ~ N(0, I) ("prior_samples", train/).
- Histograms: mu and logvar (a VAE's) or z (an AE's) of fixed validation images (validation/): those the
  z-space monitor encodes each epoch (``monitor_images``), or the grid's when the monitor is off.

Steps are 1-based epochs, as history.csv's ``epoch`` column and the checkpoint names.

No step twice after a resume or a rollback: an epoch's events are written and flushed before its
checkpoint is committed (a kill cannot lose them), so what a kill can leave is events of epochs whose
checkpoint is missing, which are trained again. Every fit therefore starts its event files with a
``SessionLog.START`` event at its first step: TensorBoard's Python reader (EventAccumulator, whose
``purge_orphaned_data`` is on by default) drops every event it read before at that step or later, and its
Rust data server drops a series' values from a step on when that step is written again (its reservoirs'
preemption). Readers read a folder's event files in name order and the name begins with the second the
file was made, so a new file is made only in a later second than the files already there.
"""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import keras
import numpy as np

from zspace.config import RunConfig
from zspace.data.tasks import example_inputs
from zspace.errors import RunError
from zspace.generation.grid import image_grid
from zspace.rundir import tensorboard_dir
from zspace.training.distribute import outside_distribution

__all__ = ["TrainingLogs", "PeerLogs", "model_outputs", "tensorboard_dir", "require_tensorflow", "fixed_images", "prior_samples",
           "reconstruction_rows", "TENSORBOARD_IMAGES", "TENSORBOARD_PRIOR_SAMPLES", "TENSORBOARD_CELL"]

TENSORBOARD_IMAGES = 8
"""Validation images (the run's first) whose reconstructions are logged each epoch: one row of the grid."""

TENSORBOARD_PRIOR_SAMPLES = 16
"""Prior samples z ~ N(0, I) (seeded by the run's seed, the same every epoch) decoded each epoch."""

TENSORBOARD_CELL = 32
"""Smallest cell of the logged grids, in pixels: an 8x8 digit is drawn 32x32, a 28x28 image 56x56 (nearest
neighbour, integer factor); small enough that a long run's event files stay small (PNG, a few KB per grid)."""

MAX_ORDER_WAIT = 2.0
"""Longest wait, in seconds, for the clock to pass the second of the newest event file in a folder (see the
module doc). A file dated further ahead (the clock was set back) is not waited for."""

_PRIOR_STREAM = 15  # tags the prior samples' draw: a random stream of the run's seed of its own
_EVENT_FILE = re.compile(r"events\.out\.tfevents\.(\d+)\.")


def require_tensorflow() -> None:
    """RunError unless TensorFlow can be imported: tf.summary writes the event files on every backend."""
    if importlib.util.find_spec("tensorflow") is None:
        raise RunError("tensorboard = true needs TensorFlow (tf.summary writes the event files, whatever the "
                       "Keras backend); install tensorflow or set tensorboard = false.")


def fixed_images(split, train) -> tuple[np.ndarray, np.ndarray | None]:
    """The logged validation images: (inputs, targets or None), each float32 (n, H, W, C), n <= TENSORBOARD_IMAGES.

    The run's first validation images (those ``zspace generate --reconstruct`` shows): the model's inputs
    (noisy ones for denoise, drawn with the run's seed; grey for recolor; the stored inputs of pairs) and,
    for a task, the targets; for plain reconstruction the images themselves and None.
    """
    n = min(TENSORBOARD_IMAGES, len(split.x_val))
    images = np.asarray(split.x_val[:n], dtype=np.float32)
    if split.t_val is not None:  # input/target pairs: the stored images are the inputs
        return images, np.asarray(split.t_val[:n], dtype=np.float32)
    inputs = example_inputs(images, train.task, train.noise_sigma, train.drop_fraction, train.seed)
    return (images, None) if inputs is None else (inputs, images)


def prior_samples(z_dim: int, seed: int, n: int = TENSORBOARD_PRIOR_SAMPLES) -> np.ndarray:
    """n points z ~ N(0, I), float32 (n, z_dim): the same for a run's seed, every epoch and on resume."""
    return np.random.default_rng([seed, _PRIOR_STREAM]).standard_normal((n, z_dim)).astype(np.float32)


def _as_channels(images: np.ndarray, channels: int) -> np.ndarray:
    return np.repeat(images, channels, axis=-1) if images.shape[-1] == 1 and channels == 3 else images


def reconstruction_rows(inputs: np.ndarray, outputs: np.ndarray, targets: np.ndarray | None) -> np.ndarray:
    """The grid's images, row by row: inputs, outputs (, targets); grey rows repeated to colour when another
    row has three channels; an inputs row of another size than the outputs is left out. (rows * n, H, W, C)."""
    rows = [r for r in (inputs, outputs, targets) if r is not None and r.shape[1:3] == outputs.shape[1:3]]
    channels = max(r.shape[-1] for r in rows)
    return np.concatenate([_as_channels(r, channels) for r in rows])


class TrainingLogs(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, writing one step per epoch that the run keeps (see the module doc).

    Put it after the :class:`HistoryCSV` whose rows it logs and before the checkpoint callback.

    Args:
        log_dir: :func:`tensorboard_dir` of the run.
        history: the fit's :class:`HistoryCSV`: each epoch's scalars are its new row, so the logs hold
            exactly what history.csv holds.
        start_epoch: epochs done before this fit (its first step is ``start_epoch + 1``).
        inputs, targets: :func:`fixed_images`.
        prior_z: :func:`prior_samples`.
        monitor: the fit's :class:`LatentMonitor` (before this callback), whose encoding of its images
            is histogrammed; None (the monitor is off): the codes of ``inputs`` are.
    """

    def __init__(self, log_dir: str | Path, history, start_epoch: int, inputs: np.ndarray,
                 targets: np.ndarray | None, prior_z: np.ndarray, monitor=None):
        # No graph (a subclassed model has none to show; the TF train graph is large), no weight histograms.
        super().__init__(log_dir=str(log_dir), write_graph=False)
        self.history = history
        self.start_epoch = start_epoch
        self.inputs, self.targets = inputs, targets
        self.prior_z = prior_z
        self.monitor = monitor

    @classmethod
    def for_run(cls, run, config: RunConfig, start_epoch: int, history, monitor=None) -> TrainingLogs:
        """The callback of one fit of ``run`` (``monitor``: the fit's LatentMonitor, or None)."""
        inputs, targets = fixed_images(run.split, config.train)
        return cls(tensorboard_dir(run.root), history, start_epoch, inputs, targets,
                   prior_samples(config.model.z_dim, config.train.seed), monitor)

    def on_train_begin(self, logs=None):
        for folder in (self._train_dir, self._val_dir):
            _wait_for_a_later_second(Path(folder))
        super().on_train_begin(logs)
        for writer in (self._train_writer, self._val_writer):
            _write_restart(writer, self.start_epoch + 1)

    def on_train_batch_end(self, batch, logs=None):
        # Logs are per epoch: Keras' callback would still call tf.summary.scalar for every batch's metrics,
        # into no writer (update_freq="epoch" sets none): about 2 ms a batch for nothing.
        pass

    def on_test_end(self, logs=None):
        # Keras also logs each validation pass against the optimizer's iterations: steps that a resumed
        # epoch repeats, and values that are history.csv's val_ columns, logged per epoch already.
        self._pop_writer()

    def on_epoch_end(self, epoch, logs=None):
        row = self.history.rows[-1] if self.history.rows else {}
        if row.get("epoch") != epoch + 1:
            return  # HistoryCSV recorded no row: a guard rejected the epoch (it is rolled back), so no events
        step = epoch + 1
        codes, outputs, decoded = self._model_outputs()
        import tensorflow as tf

        try:
            super().on_epoch_end(step, {k: v for k, v in row.items() if k != "epoch"})
            summary = self.summary
            with self._val_writer.as_default():
                rows = reconstruction_rows(self.inputs, outputs, self.targets)
                summary.image("reconstructions", _grid(rows, len(self.inputs)), step=step)
                for name in ("mu", "logvar") if "mu" in codes else ("z",):
                    summary.histogram(name, codes[name], step=step)
            with self._train_writer.as_default():
                summary.image("prior_samples", _grid(decoded, TENSORBOARD_PRIOR_SAMPLES // 2), step=step)
            for writer in (self._train_writer, self._val_writer):
                writer.flush()  # on disk before the checkpoint is committed: a kill cannot lose a kept epoch
        except tf.errors.OpError as exc:
            raise RunError(f"writing the TensorBoard logs of epoch {step} into {self.log_dir} failed "
                           f"({exc.message}); its checkpoint was not written. Free some space (or set "
                           f"tensorboard = false) and run `zspace train` again to resume.") from None

    def _model_outputs(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        return model_outputs(self.model, self.inputs, self.prior_z, self.monitor)


class PeerLogs(keras.callbacks.Callback):
    """On a process other than the chief of a multi-process run: the model calls of the chief's
    :class:`TrainingLogs`, at the same points (each is one program over every process), writing nothing."""

    def __init__(self, history, inputs: np.ndarray, prior_z: np.ndarray, monitor=None):
        super().__init__()
        self.history, self.inputs, self.prior_z, self.monitor = history, inputs, prior_z, monitor

    @classmethod
    def for_run(cls, run, config: RunConfig, start_epoch: int, history, monitor=None) -> PeerLogs:
        inputs, _ = fixed_images(run.split, config.train)
        return cls(history, inputs, prior_samples(config.model.z_dim, config.train.seed), monitor)

    def on_epoch_end(self, epoch, logs=None):
        row = self.history.rows[-1] if self.history.rows else {}
        if row.get("epoch") == epoch + 1:  # as TrainingLogs: a rejected epoch is not logged
            model_outputs(self.model, self.inputs, self.prior_z, self.monitor)


def model_outputs(model, inputs: np.ndarray, prior_z: np.ndarray, monitor=None):
    """The codes to histogram (the monitor's, else the grid images'), the reconstructions of ``inputs``
    and the decodes of ``prior_z``. One batch each way through predict_on_batch: Keras' predict sets up a
    data pipeline per call (50-120 ms on TensorFlow, measured) for these few images."""
    n = len(inputs)
    noise = model.noise_state()
    try:  # the sampling noise is put back: logging never changes what training draws
        with outside_distribution():  # every process computes all the images
            codes = model.encoder.predict_on_batch(inputs)
            decoded = model.decoder.predict_on_batch(np.concatenate([codes["z"], prior_z]))
    finally:
        model.set_noise_state(noise)
    if monitor is not None and monitor.encoded is not None:
        codes = monitor.encoded
    return codes, decoded[:n], decoded[n:]


def _grid(images: np.ndarray, cols: int) -> np.ndarray:
    """One uint8 picture of ``images`` in rows of ``cols``, batched for tf.summary.image: (1, H', W', C)."""
    images = np.clip(np.nan_to_num(images, nan=0.0), 0.0, 1.0)  # weights gone non-finite are caught later
    return image_grid(images, cols=cols, min_tile=TENSORBOARD_CELL)[None]


def _wait_for_a_later_second(folder: Path) -> None:
    """Sleeps until the clock's second is past every event file's in ``folder`` (at most MAX_ORDER_WAIT)."""
    seconds = [int(m.group(1)) for p in folder.glob("events.out.tfevents.*") if (m := _EVENT_FILE.match(p.name))]
    if seconds:
        delay = max(seconds) + 1 - time.time()
        if 0 < delay <= MAX_ORDER_WAIT:
            time.sleep(delay)


def _write_restart(writer, step: int) -> None:
    """Writes a SessionLog.START event at ``step`` with ``writer``: readers drop what they read before
    at ``step`` or later (the first START of a folder only marks the beginning)."""
    import tensorflow as tf
    # tf.summary writes Summary protos only; import_event writes any Event into the writer's file.
    from tensorflow.python.ops.summary_ops_v2 import import_event

    event = tf.compat.v1.Event(step=step, wall_time=time.time(),
                               session_log=tf.compat.v1.SessionLog(status=tf.compat.v1.SessionLog.START))
    with writer.as_default():
        import_event(tf.constant(event.SerializeToString()))
