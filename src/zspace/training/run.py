"""Training runs: a run directory that holds config, history, checkpoints and the model, and resumes."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from zspace.config import RunConfig, TrainConfig
from zspace.data import Dataset, check_task_data, inference_inputs, task_transform
from zspace.errors import RunError, TrainingDiverged, ZspaceError
from zspace.models import Autoencoder, build_model
from zspace.models.saving import inspect_model_file, save_model
from zspace.storage import atomic_write_text, remove_stale_temporaries
from zspace.rundir import Run, run_data
from zspace.training.batches import EpochBatches, pop_read_failure
from zspace.training.distribute import SINGLE_PROCESS, Cluster, Replicas, outside_distribution, replicas_for
from zspace.training.precision import resolve_precision
from zspace.training.tf_pipeline import epoch_dataset, streamed_dataset
from zspace.training.callbacks import (EpochCheckpoint, HistoryCSV, JumpDetector, KLWarmup, LatentMonitor,
                                       NonFiniteGuard)
from zspace.training.noise import next_noise_seed, noise_seed_after, reseed_if_due, set_noise_seed
from zspace.training.tensorboard import PeerLogs, TrainingLogs, require_tensorflow

__all__ = ["train", "run_data", "new_model", "steps_per_execution", "RunResult", "load_run", "RESUMABLE_FIELDS"]

# Fields a resumed run may change: they do not alter what has been trained so far.
RESUMABLE_FIELDS = frozenset({
    "epochs", "run_dir", "keep_checkpoints", "verbose", "on_nonfinite", "nonfinite_retries", "retry_lr_factor",
    "steps_per_execution", "monitor_images", "jump_factor", "on_jump", "jump_reseeds", "tensorboard",
    "distribution", "devices",  # the same global batches on more devices: the same steps, up to rounding
})


@dataclass
class RunResult:
    """What :func:`train` returns.

    Attributes:
        run: the run directory.
        config: the resolved config written to ``config.toml``.
        model: the trained model.
        history: one dict per epoch (history.csv rows).
        dataset: name and source of the training data.
        start_epoch: epochs already done when this call started (0 for a new run).
    """

    run: Run
    config: RunConfig
    model: Autoencoder
    history: list[dict[str, float]] = field(default_factory=list)
    dataset: dict[str, Any] = field(default_factory=dict)
    start_epoch: int = 0


def _say(config: RunConfig, message: str, replicas: Replicas | None = None) -> None:
    if config.train.verbose and (replicas is None or replicas.is_chief):
        print(f"[zspace] {message}", file=sys.stderr, flush=True)


def _config_differences(saved: RunConfig, new: RunConfig) -> list[str]:
    # Resolved: an old config.toml spells the decoder mirror out, a new one leaves it false.
    old_d, new_d = saved.resolved_dict(), new.resolved_dict()
    changes = []
    for section in old_d:
        for key, old_value in old_d[section].items():
            if key not in RESUMABLE_FIELDS and new_d[section][key] != old_value:
                changes.append(f"{key}: {old_value!r} -> {new_d[section][key]!r}")
    return changes


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"run_dir {folder} cannot be created: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise RunError(f"run_dir {folder} is not writable.")


def _save_sizes(model: Autoencoder) -> tuple[int, int]:
    """Bytes of a checkpoint (weights, Adam's two moments, archive) and of the encoder + decoder files.

    Within a few percent of the real files (tested): float32 weights, 4 bytes each, plus 64 KiB of
    archive and HDF5 overhead per file.
    """
    n_weights = sum(int(np.prod(v.shape)) for v in model.weights)
    n_trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    overhead = 2**16
    return 4 * (n_weights + 2 * n_trainable) + overhead, 4 * n_weights + 2 * overhead


def disk_space_needed(model: Autoencoder, train: TrainConfig, done_epochs: int, checkpoints_on_disk: int) -> int:
    """Bytes the rest of a run writes and keeps: its new checkpoints (at the peak, one beyond
    ``keep_checkpoints`` while the newest is saved), the final model.keras and its halves, the small files."""
    checkpoint, halves = _save_sizes(model)
    remaining = max(train.epochs - done_epochs, 0)
    keep = train.keep_checkpoints
    new_checkpoints = remaining if not keep else min(remaining, max(keep + 1 - checkpoints_on_disk, 1))
    return new_checkpoints * checkpoint + checkpoint + halves + 2**18


def _check_disk_space(run: Run, model: Autoencoder, config: RunConfig, done_epochs: int) -> None:
    """Refuses to start when what the run will write (every checkpoint kept, the final models) cannot fit."""
    t = config.train
    on_disk = len(run.checkpoints())
    needed = disk_space_needed(model, t, done_epochs, on_disk)
    free = shutil.disk_usage(run.root).free
    if free >= needed:
        return
    checkpoint, _ = _save_sizes(model)
    advice = "free some space"
    if t.keep_checkpoints != 1:
        fits = next((k for k in (3, 2, 1) if disk_space_needed(model, replace(t, keep_checkpoints=k), done_epochs,
                                                                  on_disk) <= free), None)
        if fits:
            advice = f"set keep_checkpoints = {fits} (it fits) or free some space"
    raise RunError(
        f"not enough free disk space in {run.root}: the remaining {t.epochs - done_epochs} epochs' checkpoints "
        f"(about {checkpoint / 2**20:.1f} MiB each, keep_checkpoints = {t.keep_checkpoints}) and the final models "
        f"need about {needed / 2**20:.1f} MiB; {free / 2**20:.1f} MiB free. {advice.capitalize()}."
    )


def _restore_latest(model: Autoencoder, run: Run, config: RunConfig) -> int:
    """Loads the newest readable checkpoint into ``model``; returns its epoch (0 if there is none).

    Raises:
        RunError: checkpoints exist but none can be read (never a silent fresh start).
    """
    checkpoints = run.checkpoints()
    for epoch, path in reversed(checkpoints):
        try:
            inspect_model_file(path, autoencoder_only=True)  # bounds what load_weights unpacks (zip, HDF5)
            model.load_weights(path)
        except Exception as exc:  # truncated / corrupt file: fall back to the previous one
            _say(config, f"checkpoint {path.name} is unreadable ({type(exc).__name__}); "
                         f"falling back to the previous one")
            continue
        return epoch
    if checkpoints:
        raise RunError(
            f"none of the {len(checkpoints)} checkpoints in {run.checkpoints_dir} can be read; refusing to "
            f"start over silently. Move that folder away to train from scratch."
        )
    return 0


def _history_until(run: Run, epoch: int, config: RunConfig) -> list[dict[str, float]]:
    """The rows of history.csv for epochs 1..``epoch`` (the newest checkpoint), one per epoch, in order.

    Rows of later epochs (trained past the last checkpoint) are dropped; an exact duplicate row
    is dropped; an epoch with no row gets an empty one (its losses are not in the checkpoint),
    with a warning. Two different rows for one epoch cannot be told apart: refused.

    Raises:
        RunError: conflicting rows, or epochs outside 1..``epoch``'s range of integers.
    """
    rows = [row for row in run.history if row["epoch"] <= epoch]
    by_epoch: dict[int, dict[str, float]] = {}
    for line, row in enumerate(rows, start=2):
        e = row["epoch"]
        if e < 1:
            raise RunError(f"{run.history_path}: line {line} has epoch {e}; epochs count from 1.")
        if e in by_epoch and not _same_row(by_epoch[e], row):
            raise RunError(f"{run.history_path}: epoch {e} has two different rows (line {line} and an earlier one); "
                           f"keep the right one (or move the run away) and train again.")
        by_epoch[e] = row
    missing = [e for e in range(1, epoch + 1) if e not in by_epoch]
    if missing or len(rows) != len(by_epoch) or list(by_epoch) != sorted(by_epoch):
        _say(config, f"warning: {run.history_path} did not hold one row per epoch 1..{epoch} (epochs "
                     f"{' '.join(str(r['epoch']) for r in rows)}); repaired"
                     + (f", epochs {' '.join(map(str, missing))} left empty (their losses are lost)" if missing else ""))
    return [by_epoch.get(e, {"epoch": e}) for e in range(1, epoch + 1)]


def _same_row(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def steps_per_execution(steps_per_epoch: int, most: int) -> int:
    """The largest divisor of ``steps_per_epoch`` not above ``most``.

    Keras fetches ``steps_per_execution`` batches per call; our batch sequence runs on across
    epochs, so a call that did not end with its epoch would take the next epoch's batches.
    Keras' PyTorch backend runs one step per call.
    """
    if keras.backend.backend() == "torch":
        return 1
    return max(d for d in range(1, min(most, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


def new_model(config: RunConfig, steps_per_epoch: int, replicas: Replicas | None = None) -> Autoencoder:
    """The run's model, seeded and compiled the way :func:`train` trains it (on ``replicas``' devices)."""
    t = config.train
    with replicas.scope() if replicas is not None else contextlib.nullcontext():
        keras.utils.set_random_seed(t.seed)
        model = build_model(config.model, seed=t.seed, precision=resolve_precision(t.precision))
        clip = {"clipnorm": t.gradient_clip_norm} if t.gradient_clip_norm else {}
        # Keras' multi-step loop fails under MirroredStrategy (an unfed placeholder in its has_next): one step.
        most = 1 if replicas is not None and replicas.strategy is not None else t.steps_per_execution
        model.compile(optimizer=keras.optimizers.Adam(t.learning_rate_at(0), **clip),
                      steps_per_execution=steps_per_execution(steps_per_epoch, most))
        model.optimizer.build(model.trainable_variables)
    return model


def input_batches(images, train: TrainConfig, seed: int | None, start_epoch: int = 0, end_epoch: int = 1,
                  noise_seed: int = 0, targets=None, share=None):
    """The (inputs, targets) batches ``zspace.train`` feeds to ``fit`` (``targets``: those of
    input/target pairs, ``images`` being the inputs).

    On the TensorFlow backend, in-memory arrays of the plain reconstruction task, and cached
    images without a transform, go through tf.data pipelines (the same batches: gathered in-graph,
    or read as uint8 ahead of the step); everything else through :class:`EpochBatches`
    (``share``: one process's rows of each batch, see there).
    """
    transform = task_transform(train.task, train.noise_sigma, train.drop_fraction)
    if (transform is None and targets is None and share is None and isinstance(images, np.ndarray)
            and keras.backend.backend() == "tensorflow"):
        return epoch_dataset(images, train.batch_size, seed, start_epoch, end_epoch)
    batches = EpochBatches(images, train.batch_size, seed=seed, start_epoch=start_epoch, end_epoch=end_epoch,
                           transform=transform, noise_seed=noise_seed, targets=targets, share=share)
    if batches.stored_as_uint8 and keras.backend.backend() == "tensorflow":
        return streamed_dataset(batches)
    return batches


# Tags the monitor's draw of validation images: a random stream of the run's seed of its own.
_MONITOR_STREAM = 13


def monitor_images(x_val, train: TrainConfig) -> np.ndarray | None:
    """The z-space monitor's inputs: ``monitor_images`` validation images drawn with the run's seed
    (the same every epoch and on resume), in their stored order; None when off or there are none."""
    n = min(train.monitor_images, len(x_val))
    if n == 0:
        return None
    chosen = np.sort(np.random.default_rng([train.seed, _MONITOR_STREAM]).choice(len(x_val), n, replace=False))
    return inference_inputs(np.asarray(x_val[chosen], dtype=np.float32), train.task)


def _record_warnings(run: Run, state: dict[str, Any], events: list[dict], write: bool = True) -> None:
    """Writes a warn-only jump's events into run_state.json at once (a rolled-back epoch's are written
    with its new noise seed); an epoch trained again after a kill repeats its events: kept once."""
    new = [e for e in events if e["action"] == "warn" and e not in state["jump_events"]]
    if new:
        state["jump_events"].extend(new)
        if write:
            run.write_state(state)


def _jump_detector(run: Run, t: TrainConfig, state: dict[str, Any], history, noise_seed: int, guard,
                   write: bool = True):
    """The fit's JumpDetector (None when jump_factor is 0): rolls back while reseeds are left."""
    if not t.jump_factor:
        return None
    reseed = t.on_jump == "reseed" and state["jump_reseeds"] < t.jump_reseeds
    note = (f' (on_jump = "reseed" has used all {t.jump_reseeds} of its jump_reseeds)'
            if t.on_jump == "reseed" and not reseed else "")
    return JumpDetector(history[-1] if history else {}, t.jump_factor,
                        reseed_to=next_noise_seed(noise_seed) if reseed else None,
                        on_event=lambda events: _record_warnings(run, state, events, write), guard=guard, note=note)


def _fit(model, config, run, x_train, x_val, start_epoch, history, state, monitored, replicas):
    """One call of Keras' fit from ``start_epoch``; returns (guard, jump detector or None, history rows).
    Only the chief process writes (history.csv, checkpoints, TensorBoard logs, run_state.json)."""
    t = config.train
    chief = replicas.is_chief
    lr_scale = state["lr_scale"]
    noise_seed = noise_seed_after(state, start_epoch, t.seed)
    guard = NonFiniteGuard()
    callbacks = [
        guard,
        keras.callbacks.LearningRateScheduler(lambda epoch, lr: t.learning_rate_at(epoch) * lr_scale),
        KLWarmup(t.kl_scale_at),
    ]
    monitor = None if monitored is None else LatentMonitor(monitored)
    if monitor is not None:
        callbacks.append(monitor)
    jump = _jump_detector(run, t, state, history, noise_seed, guard, write=chief)
    guards = (guard,) if jump is None else (guard, jump)
    writer = HistoryCSV(run.history_path, history, guard=guards, write=chief)
    callbacks += [*guards[1:], writer]
    if t.tensorboard:  # after the history row it logs, before the checkpoint that commits the epoch
        logs = TrainingLogs if chief else PeerLogs  # the others compute what the chief logs, in step
        callbacks.append(logs.for_run(run, config, start_epoch, writer, monitor))
    callbacks.append(EpochCheckpoint(run, keep=t.keep_checkpoints, guard=guards, save=chief))
    share = replicas.share if replicas.distribution is not None else None
    pop_read_failure()
    try:
        model.fit(
            input_batches(x_train, t, seed=noise_seed, start_epoch=start_epoch, end_epoch=t.epochs,
                          noise_seed=noise_seed, targets=run.split.t_train, share=share),
            steps_per_epoch=math.ceil(len(x_train) / t.batch_size),
            shuffle=False,  # the batches are shuffled already; Keras would mix them across epochs
            # validation noise is the same every epoch (its own seed stream, epoch 0)
            validation_data=input_batches(x_val, t, seed=None, noise_seed=t.seed + 1, targets=run.split.t_val,
                                          share=share),
            epochs=t.epochs,
            initial_epoch=start_epoch,
            callbacks=callbacks,
            verbose=t.verbose if chief else 0,
        )
    except Exception:
        failure = pop_read_failure()  # a damaged cache: its own one-line error, not the pipeline's wrapping
        if failure is not None:
            raise failure from None
        raise
    return guard, jump, writer.rows


def train(config: RunConfig, dataset: Dataset | None = None, cluster: Cluster | None = None) -> RunResult:
    """Trains (or resumes) the run described by ``config``.

    Running it again with the same config continues from the newest readable checkpoint; a
    different config (other than the fields in ``RESUMABLE_FIELDS``) is refused with the
    list of changed fields. Nothing is written before the config and the data are checked.

    Args:
        config: the run config.
        dataset: data to use instead of loading ``config.train.dataset`` (tests, notebooks).
        cluster: this process's place among several (JAX); every process calls ``train`` with the same
            config and must see the run directory (a shared file system) and the data. Only process 0
            writes; the others read the checkpoints they resume from.

    Raises:
        TrainingDiverged: the loss became non-finite (and retries, if enabled, ran out).
        RunError, DataError, ConfigError, FileNotFoundError: bad input, named in the message.
    """
    cluster = cluster or SINGLE_PROCESS
    t = config.train
    if t.tensorboard:
        require_tensorflow()
    replicas = replicas_for(t, cluster)
    try:  # every field but run_dir (the folder may be mounted elsewhere on another machine)
        replicas.check_same("configs (every field but run_dir must match: epochs, batch_size, ...)",
                            RunConfig(config.model, replace(t, run_dir="-")).to_toml())
    except BaseException:
        replicas.close()
        raise
    run = Run(t.run_dir, dataset)
    try:
        if not replicas.is_chief:
            with _peers_lost(cluster):
                return _train_locked(run, config, replicas)  # reads the run directory, writes nothing there
        created = not run.root.exists()
        _check_writable(run.root)
        with run.lock("train"), _peers_lost(cluster):
            try:
                return _train_locked(run, config, replicas)
            except BaseException:
                # Under the lock: a process refused the lock may have made the folder the holder is starting in.
                if created:
                    _remove_if_unused(run)
                raise
    finally:
        run.close()  # Keras keeps the batches (so a cache's open shard files) referenced after fit
        replicas.close()


@contextlib.contextmanager
def _peers_lost(cluster: Cluster):
    """Several processes: a collective that fails (a peer died: its connection broke) becomes one line."""
    try:
        yield
    except (ZspaceError, KeyboardInterrupt):
        raise
    except Exception as exc:
        if not cluster.multi_process:
            raise
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise RunError(f"process {cluster.process_id} of {cluster.num_processes} stopped: the processes lost each "
                       f"other ({detail}); another process has probably died. The run stays at its last checkpoint: "
                       f"start all {cluster.num_processes} processes again to resume.") from exc  # zspace --debug shows it


def _remove_if_unused(run: Run) -> None:
    """Removes a run directory this call created when nothing but its lock got into it."""
    if run.root.is_dir() and {p.name for p in run.root.iterdir()} <= {run.lock_path.name}:
        shutil.rmtree(run.root, ignore_errors=True)


def _train_locked(run: Run, config: RunConfig, replicas: Replicas) -> RunResult:
    if run.config_path.exists():
        changes = _config_differences(run.saved_config(), config)
        if changes:
            raise RunError(
                f"{run.root} holds a run with a different config; refusing to resume. "
                f"Changed: {'; '.join(changes)}. Use another run_dir for a new run."
            )
    elif run.checkpoints():
        raise RunError(f"{run.root} has checkpoints but no config.toml; refusing to guess.")
    run.config = config  # checked against the saved one above; run.data and run.split use it
    return _train(run, config, replicas)


def _train(run: Run, config: RunConfig, replicas: Replicas) -> RunResult:
    t = config.train
    chief = replicas.is_chief
    data, split = run.data, run.split
    check_task_data(data, t.task)
    x_train, x_val = split.x_train, split.x_val
    replicas.check_same("data (numbers of training and validation images, image shape)",
                        f"{len(x_train)} {len(x_val)} {data.image_shape}")
    replicas.check_batches(t.batch_size)
    steps_per_epoch = math.ceil(len(x_train) / t.batch_size)
    model = new_model(config, steps_per_epoch, replicas)
    if chief:
        for folder in (run.root, run.checkpoints_dir):
            remove_stale_temporaries(folder)
    state = run.read_state()
    start_epoch = first_epoch = _restore_latest(model, run, config)
    reseed_if_due(model, state, start_epoch)
    monitored = monitor_images(x_val, t)
    if chief:
        _check_disk_space(run, model, config, start_epoch)
    history = _history_until(run, start_epoch, config)

    if chief:  # the decoder spelled out: the file says which network was trained, as config.toml always has
        atomic_write_text(run.config_path, RunConfig(config.model.resolved(), config.train).to_toml())
    _say(config, f"dataset {data.name} ({data.source}): {len(x_train)} training, "
                 f"{len(x_val)} validation images of shape {data.image_shape}", replicas)
    if replicas.count > 1:
        _say(config, f"data parallel on {replicas.count} devices"
                     + (f" of {replicas.cluster.num_processes} processes" if replicas.cluster.multi_process else "")
                     + f": {t.batch_size // replicas.count} images per device and step", replicas)
    if start_epoch >= t.epochs:
        _say(config, f"{run.root} is complete ({start_epoch} of {t.epochs} epochs)", replicas)
    elif start_epoch:
        _say(config, f"resuming {run.root} after epoch {start_epoch}", replicas)

    # Under TensorFlow's strategy a rollback rewinds this model instead of building another: a second model
    # traced under MirroredStrategy issued its replicas' collectives in different orders (a "collective
    # instance" mismatch, even on a new strategy).
    initial = _snapshot(model) if replicas.strategy is not None else None
    retries = 0
    while start_epoch < t.epochs:
        guard, jump, rows = _fit(model, config, run, x_train, x_val, start_epoch, history, state, monitored,
                                 replicas)
        if not guard.tripped and not (jump is not None and jump.tripped):
            history = rows
            break
        last = run.checkpoints()
        last_name = last[-1][1].name if last else "none (the run had not finished an epoch)"
        if guard.tripped:
            message = f"non-finite loss at {guard.where}"
            if t.on_nonfinite == "stop" or retries >= t.nonfinite_retries:
                tried = f" after {retries} retries" if retries else ""
                raise TrainingDiverged(
                    f"{message}{tried}; training stopped. No checkpoint was written for epoch {guard.epoch}; "
                    f"the last good checkpoint is {last_name}. Lower learning_rate, set gradient_clip_norm, or "
                    f'set on_nonfinite = "retry".'
                )
            retries += 1
            state["lr_scale"] *= t.retry_lr_factor
            state["nonfinite_events"].append({"epoch": guard.epoch, "step": guard.step, "reason": guard.reason,
                                              "lr_scale_after": state["lr_scale"]})
            if chief:
                run.write_state(state)
            then = f"retry {retries} of {t.nonfinite_retries} with the learning rate x{state['lr_scale']:g}"
        if initial is None:
            model = new_model(config, steps_per_epoch, replicas)
        else:
            _rewind(model, initial)
        start_epoch = _restore_latest(model, run, config)
        if not guard.tripped:  # a jump: the events, the count and the new noise seed in one write
            state["jump_reseeds"] += 1
            state["jump_events"].extend(jump.events)
            set_noise_seed(state, start_epoch, jump.reseed_to)
            if chief:
                run.write_state(state)
            message = f"jump at epoch {jump.epoch}"
            then = (f"reseed {state['jump_reseeds']} of {t.jump_reseeds}, with noise seed {jump.reseed_to}")
        reseed_if_due(model, state, start_epoch)
        history = _history_until(run, start_epoch, config)
        _say(config, f"{message}; rolled back to epoch {start_epoch} ({last_name}), {then}", replicas)

    dataset_info = {"name": data.name, "source": data.source,
                    "train_images": len(x_train), "validation_images": len(x_val)}
    if not chief:
        return RunResult(run, config, model, history, dataset_info, first_epoch)
    with outside_distribution():
        save_model(model, run.model_path)
        save_model(model.encoder, run.encoder_path)
        save_model(model.decoder, run.decoder_path)
    final = {k: v for k, v in (history[-1] if history else {}).items() if np.isfinite(v)}
    run.write_summary({"epochs_done": len(history), "dataset": dataset_info, "lr_scale": state["lr_scale"],
                       "noise_seed": noise_seed_after(state, len(history), t.seed),
                       "jumps": len(state["jump_events"]), "final": final, "backend": keras.backend.backend(),
                       # the unit of reco_loss / total_loss in "final" and history.csv
                       "reconstruction_reduction": config.model.reconstruction_reduction,
                       "devices": replicas.count, "processes": replicas.cluster.num_processes,
                       "precision": resolve_precision(t.precision)})
    return RunResult(run, config, model, history, dataset_info, first_epoch)


def _snapshot(model: Autoencoder) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The model's variables (weights, noise seed state) and its optimizer's, as numpy arrays."""
    return ([np.array(v) for v in model.variables],
            [np.array(v) for v in model.optimizer.variables])


def _rewind(model: Autoencoder, snapshot) -> None:
    """Puts a :func:`_snapshot` back (then a checkpoint, if any, is loaded over it)."""
    values, optimizer_values = snapshot
    for variable, value in zip(model.variables, values):
        variable.assign(value)
    for variable, value in zip(model.optimizer.variables, optimizer_values):
        variable.assign(value)


def load_run(run_dir: str | Path) -> tuple[RunConfig, Autoencoder]:
    """The config and trained model of a finished run directory (see :class:`zspace.Run`)."""
    run = Run.open(run_dir)
    return run.config, run.model
