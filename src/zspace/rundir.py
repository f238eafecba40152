"""A run directory: the one module that knows its files, and loads its config, model and data once.

Layout of ``RUN/``::

    config.toml        the full run config (written before training starts)
    history.csv        one row per finished epoch
    run_state.json     learning-rate scale, noise seeds, non-finite and jump events that outlive a process
    origin.json        a branched run's source: run, epoch, noise seeds (``zspace train --from-epoch``)
    checkpoints/       epoch-NNNN.keras, one per epoch (model, optimizer, noise state)
    model.keras        the trained model; encoder.keras / decoder.keras its halves
    summary.json       epochs done, dataset, final metrics, backend
    analysis.json      ``zspace analyze``: typed records (zspace.analysis.Analysis)
    analysis.npz       ``zspace analyze``: z, mu, logvar, labels, embeddings
    evaluation.json    ``zspace evaluate``
    .zspace.lock       held by the one command writing into the run (train, analyze, evaluate)
    gallery/           grids `zspace demo` writes (reports keep theirs beside the report)

Nothing here imports Keras until a model is loaded, so the CLI stays fast.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zspace.config import RunConfig, load_config
from zspace.data import Dataset, SplitData, check_input_shape, load_dataset, train_validation_split
from zspace.errors import RunError
from zspace.storage import atomic_write_text, remove_stale_temporaries

if TYPE_CHECKING:
    from zspace.analysis import Analysis
    from zspace.models import Autoencoder

__all__ = ["Run", "run_data", "read_history", "list_checkpoints", "training_config", "tensorboard_dir"]

# analysis.json / evaluation.json hold summaries only (a CelebA analysis: well under 1 MiB); refuse anything far larger.
MAX_ANALYSIS_JSON_BYTES = 64 * 2**20
# A run's config.toml is ~1 KiB.
MAX_CONFIG_BYTES = 1 * 2**20
# A history row is ~200 bytes: 64 MiB is hundreds of thousands of epochs.
MAX_HISTORY_BYTES = 64 * 2**20
# origin.json is a few hundred bytes.
MAX_ORIGIN_BYTES = 64 * 2**10
LOCK_FILE = ".zspace.lock"
_MAX_LOCK_BYTES = 4096
# Marks analysis.json and analysis.npz of one `analyze` (a key in the JSON, a 0-d text array in the npz).
_ANALYSIS_ID = "analysis_id"
_CHECKPOINT = re.compile(r"^epoch-(\d{4,})\.keras$")


class _Mismatch(Exception):
    """analysis.json and analysis.npz carry different ids."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)[:200] or type(exc).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def run_data(config: RunConfig, dataset: Dataset | None = None) -> tuple[Dataset, SplitData]:
    """The run's dataset and its train / validation split, shape-checked against the model."""
    t = config.train
    data = dataset if dataset is not None else load_dataset(t.dataset, t.data_dir)
    check_input_shape(data, config.model.input_shape)
    return data, train_validation_split(data, t.validation_split, t.subset, t.seed)


def read_history(path: str | Path) -> list[dict[str, float]]:
    """Rows of a history.csv as dicts of floats (``epoch`` as int); [] if the file is absent.

    Raises:
        RunError: the file is larger than a history can be, not UTF-8 text, or holds a cell that
            is not a number (binary, a missing ``epoch`` column, a row longer than the header).
    """
    path = Path(path)
    if not path.is_file():
        return []
    if path.stat().st_size > MAX_HISTORY_BYTES:
        raise RunError(f"{path}: larger than {MAX_HISTORY_BYTES // 2**20} MiB; not a history written by zspace.")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [{k: (int(v) if k == "epoch" else float(v) if v != "" else math.nan) for k, v in row.items()}
                    for row in csv.DictReader(f)]
        if rows and "epoch" not in rows[0]:
            raise ValueError("no epoch column")
        return rows
    except (ValueError, TypeError, csv.Error) as exc:  # TypeError: a row with more cells than the header
        raise RunError(f"{path}: not a history written by zspace ({_reason(exc)}).") from None


def run_config_path(folder: str | Path) -> Path:
    """Where a run directory keeps its config (``folder/config.toml``)."""
    return Path(folder) / "config.toml"


def tensorboard_dir(folder: str | Path) -> Path:
    """Where a run directory keeps its TensorBoard logs and projector data (``folder/tensorboard``)."""
    return Path(folder) / "tensorboard"


def training_config(path: str | Path) -> RunConfig:
    """The run config of a TOML file; a run directory's own config.toml names that directory as ``run_dir``.

    config.toml records the ``run_dir`` it was trained in; a copy of the directory must resume
    the copy, not the original.
    """
    path = Path(path)
    if path.name == "config.toml" and _is_run_directory(path.parent):
        return _run_config(path).with_overrides({"run_dir": str(path.parent)})
    return load_config(path)


def _run_config(path: Path) -> RunConfig:
    """A run directory's config.toml: size-bounded, both sections present, every field checked."""
    from zspace.config_fields import read_toml

    if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
        raise RunError(f"{path}: larger than {MAX_CONFIG_BYTES // 2**10} KiB; not a run config written by zspace.")
    data, source = read_toml(path, "config")
    missing = [f"[{name}]" for name in ("model", "train") if not isinstance(data.get(name), dict)]
    if missing:
        raise RunError(f"{path}: not a run config written by zspace (no {' or '.join(missing)} section); "
                       f"it must hold the run's [model] and [train].")
    return RunConfig.from_dict(data, source=source)


def _is_run_directory(folder: Path) -> bool:
    return any((folder / name).exists() for name in ("history.csv", "checkpoints", "summary.json", "model.keras"))


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """(epoch, path) of the checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name))]
    return sorted(found)


class Run:
    """A run directory.

    Paths are plain attributes; ``config``, ``model``, ``data`` and ``split`` load on first use
    and are kept, so one command reads the model and the dataset once however many parts use them.

    Args:
        root: the run directory.
        dataset: the run's dataset when the caller has it loaded already (or another dataset
            of the same image shape to look at through this run's model).
        config: the run's config when known (training, before ``config.toml`` exists).
    """

    def __init__(self, root: str | Path, dataset: Dataset | None = None, config: RunConfig | None = None):
        self.root = Path(root)
        self.config_path = run_config_path(self.root)
        self.history_path = self.root / "history.csv"
        self.state_path = self.root / "run_state.json"
        self.origin_path = self.root / "origin.json"
        self.checkpoints_dir = self.root / "checkpoints"
        self.model_path = self.root / "model.keras"
        self.encoder_path = self.root / "encoder.keras"
        self.decoder_path = self.root / "decoder.keras"
        self.summary_path = self.root / "summary.json"
        self.analysis_json = self.root / "analysis.json"
        self.analysis_npz = self.root / "analysis.npz"
        self.evaluation_json = self.root / "evaluation.json"
        self.gallery_dir = self.root / "gallery"
        self.lock_path = self.root / LOCK_FILE
        self._dataset = dataset
        self._model = self._noise_state = None
        if config is not None:
            self.config = config  # fills the cached property

    @classmethod
    def open(cls, root: str | Path, dataset: Dataset | None = None) -> Run:
        """An existing run directory (raises FileNotFoundError naming it otherwise)."""
        run = cls(root, dataset)
        if not run.root.is_dir():
            raise FileNotFoundError(f"run directory not found: {run.root}")
        return run

    @classmethod
    def of(cls, run: Run | str | Path) -> Run:
        """``run`` itself, or the existing run directory at that path."""
        return run if isinstance(run, Run) else cls.open(run)

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"

    @property
    def name(self) -> str:
        return self.root.name

    # --- lazily loaded contents ----------------------------------------------------
    @cached_property
    def config(self) -> RunConfig:
        """config.toml, with ``run_dir`` this folder: a run is where it is, wherever it was copied from.

        Raises:
            RunError: the file is far larger than a config, or lacks the [model] / [train] sections
                that zspace always writes (an empty file would otherwise read as the defaults).
        """
        return _run_config(self.config_path).with_overrides({"run_dir": str(self.root)})

    @property
    def model(self) -> Autoencoder:
        """The trained model (model.keras), checked and loaded with ``safe_mode=True`` on first use.

        One model serves every part of a command; call :meth:`reset_noise` before an operation
        whose sampled z must not depend on what ran before.
        """
        if self._model is None:
            from zspace.models import load_autoencoder

            self.config  # noqa: B018  (the run's config.toml is read and checked first)
            if not self.model_path.is_file():
                raise RunError(f"{self.root} has no model.keras yet (is training finished?).")
            self._model = load_autoencoder(self.model_path)
            self._noise_state = self._model.noise_state()
        return self._model

    def saved_config(self) -> RunConfig:
        """config.toml as written (its recorded ``run_dir`` included), checked like :attr:`config`."""
        return _run_config(self.config_path)

    def reset_noise(self) -> Autoencoder:
        """The model, with its sampling noise put back to the saved model's state; returns it.

        A VAE's z = mu + sigma * eps draws eps from a seeded generator that every encode
        advances; resetting makes each operation (an analysis, a grid, an encoding) a function of
        the run and its arguments alone, as when each loaded the model afresh.
        """
        model = self.model
        model.set_noise_state(self._noise_state)
        return model

    @cached_property
    def data(self) -> Dataset:
        """The whole dataset (the run's own unless another was given)."""
        return self._split[0]

    @cached_property
    def split(self) -> SplitData:
        """The run's training and validation images, labels and attributes."""
        return self._split[1]

    @cached_property
    def _split(self) -> tuple[Dataset, SplitData]:
        return run_data(self.config, self._dataset)

    def validation_images(self, n: int) -> np.ndarray:
        """The first ``n`` validation images (fewer if there are fewer): float32 (n, H, W, C)."""
        x_val = self.split.x_val
        return np.asarray(x_val[: min(n, len(x_val))], dtype=np.float32)

    def close(self) -> None:
        """Closes the shard files of a cache dataset this run loaded itself (reads reopen them)."""
        if self._dataset is None and "_split" in self.__dict__:
            self.data.close()

    # --- the writer's lock ---------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, command: str) -> Iterator[None]:
        """Holds the run's exclusive lock for the block: one command writes into a run at a time.

        The lock is an flock on ``.zspace.lock`` (the filelock library): the kernel releases it when
        the holder exits or is killed, so a stale lock file is harmless. The holder writes its PID,
        host and command into the file for the message the next contender gets, and removes the
        temporaries a killed writer left in the run's folder.

        Raises:
            RunError: another process holds the lock; the message names its PID and command.
        """
        from filelock import FileLock, Timeout

        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock_path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise RunError(f"{self.root} is in use by {self._lock_holder()}; wait for it to finish (or stop it) "
                           f"and run `zspace {command}` again.") from None
        except OSError as exc:  # a symlink (filelock opens with O_NOFOLLOW: ELOOP), a folder, a read-only run
            raise RunError(f"{self.lock_path}: cannot be opened as the run's lock file ({exc.strerror or exc}); "
                           f"it must be a plain file (or absent) in a writable run directory.") from None
        try:
            self._write_lock_holder(command)
            remove_stale_temporaries(self.root)  # a killed writer's; only the lock's holder may write here
            yield
        finally:
            lock.release()

    def _write_lock_holder(self, command: str) -> None:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        fd = os.open(self.lock_path, os.O_WRONLY)
        try:  # in place, not a rename: the flock belongs to this inode
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(holder).encode())
        finally:
            os.close(fd)

    def _lock_holder(self) -> str:
        """"PID 123 (train on host, since ...)" from the lock file, or "another process"."""
        try:
            with open(self.lock_path, "rb") as f:
                holder = json.loads(f.read(_MAX_LOCK_BYTES))
            return (f"PID {int(holder['pid'])} (`zspace {str(holder['command'])[:40]}` on "
                    f"{str(holder['host'])[:80]} since {str(holder['since'])[:40]})")
        except (OSError, ValueError, TypeError, KeyError, RecursionError):
            return "another process"

    # --- files --------------------------------------------------------------------
    @property
    def history(self) -> list[dict[str, float]]:
        """history.csv rows (re-read on every access: training appends to it)."""
        return read_history(self.history_path)

    def checkpoint_path(self, epoch: int) -> Path:
        """Checkpoint file of 1-based ``epoch``."""
        return self.checkpoints_dir / f"epoch-{epoch:04d}.keras"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(epoch, path) of the run's checkpoints, oldest first."""
        return list_checkpoints(self.checkpoints_dir)

    def read_state(self) -> dict[str, Any]:
        """run_state.json: learning-rate scale, non-finite events, jump events and noise seeds.

        ``noise_seeds`` lists ``{"after_epoch": E, "seed": S}``: training after epoch E drew its noise
        from seed S (a jump's reseed, a branch); ``jump_reseeds`` counts the rollbacks of jumps. Files
        older than these keys read as empty lists and 0.
        """
        state: dict[str, Any] = {"lr_scale": 1.0, "nonfinite_events": [], "jump_events": [], "noise_seeds": [],
                                 "jump_reseeds": 0}
        if self.state_path.is_file():
            try:
                if self.state_path.stat().st_size > MAX_HISTORY_BYTES:
                    raise ValueError(f"larger than {MAX_HISTORY_BYTES // 2**20} MiB")
                saved = json.loads(self.state_path.read_text(encoding="utf-8"))
                if not (isinstance(saved.get("lr_scale"), (int, float)) and isinstance(saved["nonfinite_events"], list)):
                    raise ValueError("lr_scale must be a number and nonfinite_events a list")
                state.update(saved)
                if not all(isinstance(state[k], list) for k in ("jump_events", "noise_seeds")):
                    raise ValueError("jump_events and noise_seeds must be lists")
                if not _is_int(state["jump_reseeds"]):
                    raise ValueError("jump_reseeds must be an integer")
                if not all(isinstance(e, dict) and _is_int(e.get("after_epoch")) and _is_int(e.get("seed"))
                           for e in state["noise_seeds"]):
                    raise ValueError('each of noise_seeds must be {"after_epoch": int, "seed": int}')
            except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
                raise RunError(f"{self.state_path}: not a run state written by zspace ({_reason(exc)}).") from None
        return state

    @property
    def jump_events(self) -> list[dict[str, Any]]:
        """The jumps training saw (run_state.json), oldest first: ``epoch``, ``quantity`` (e.g.
        "val_kl_divergence", "z_radius_mean"), ``from``, ``to``, ``factor``, ``action`` ("warn" or
        "reseed") and, for a reseed, the ``noise_seed`` training went on with."""
        return list(self.read_state()["jump_events"])

    @property
    def origin(self) -> dict[str, Any] | None:
        """Where a branched run came from (origin.json), or None for a run trained from scratch.

        Keys: ``source_run`` (its path), ``epoch`` (the source's checkpoint it starts from),
        ``noise_seed_before`` (the source's noise seed at that epoch), ``noise_seed`` (this run's,
        None = the checkpoint's own noise state), ``created``.

        Raises:
            RunError: the file is larger than an origin record can be, or not one.
        """
        if not self.origin_path.is_file():
            return None
        try:
            if self.origin_path.stat().st_size > MAX_ORIGIN_BYTES:
                raise ValueError(f"larger than {MAX_ORIGIN_BYTES // 2**10} KiB")
            origin = json.loads(self.origin_path.read_text(encoding="utf-8"))
            if not (isinstance(origin, dict) and isinstance(origin["source_run"], str) and _is_int(origin["epoch"])):
                raise ValueError("source_run must be a path and epoch an integer")
            return origin
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise RunError(f"{self.origin_path}: not a run origin written by zspace ({_reason(exc)}).") from None

    def write_state(self, state: dict[str, Any]) -> None:
        atomic_write_text(self.state_path, json.dumps(state, indent=1))

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.summary_path, json.dumps(summary, indent=2, allow_nan=False))

    def gallery_path(self, grid: str) -> Path:
        """PNG of the gallery grid ``grid`` (e.g. "normal", "uniform_sweep_sharp")."""
        return self.gallery_dir / f"{grid}.png"

    # --- analysis -----------------------------------------------------------------
    def has_analysis(self) -> bool:
        return self.analysis_json.is_file() and self.analysis_npz.is_file()

    def load_analysis(self) -> Analysis:
        """The records of ``zspace analyze`` (analysis.json) with their arrays (analysis.npz, no pickle).

        Raises:
            RunError: either file is damaged, or the two are not from the same ``analyze`` (a kill
                between their commits): the message says to run ``zspace analyze`` again.
        """
        from zspace.analysis.records import Analysis
        from zspace.npz import NpzError, read_npz

        for path in (self.analysis_json, self.analysis_npz):
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: run `zspace analyze {self.root}` first")
        again = f"run `zspace analyze {self.root}` again"
        try:
            arrays = read_npz(self.analysis_npz)
        except (NpzError, OSError) as exc:
            raise RunError(f"{self.analysis_npz}: not analysis arrays written by zspace ({_reason(exc)}); "
                           f"{again}.") from None
        arrays_id = arrays.pop(_ANALYSIS_ID, None)
        if arrays_id is not None:  # files of older versions have no id in either file
            arrays_id = str(arrays_id) if arrays_id.dtype.kind == "U" and arrays_id.ndim == 0 else "(not an id)"

        def parse(data):
            if isinstance(data, dict) and data.get(_ANALYSIS_ID) != arrays_id:
                raise _Mismatch()
            record = dict(data)
            record.pop(_ANALYSIS_ID, None)
            return Analysis.from_json(record, arrays)

        try:
            return self._read_record(self.analysis_json, "an analysis", "analyze", parse)
        except _Mismatch:
            raise RunError(f"{self.analysis_json} and {self.analysis_npz.name} are from different analyses (was "
                           f"`zspace analyze` stopped while saving?); {again}.") from None

    def save_evaluation(self, evaluation) -> None:
        """Writes evaluation.json (strict JSON, atomically)."""
        atomic_write_text(self.evaluation_json, json.dumps(evaluation.to_json(), indent=1, allow_nan=False))

    def load_evaluation(self):
        """The records of ``zspace evaluate`` (evaluation.json)."""
        from zspace.evaluation.evaluate import Evaluation

        if not self.evaluation_json.is_file():
            raise FileNotFoundError(f"{self.evaluation_json} not found: run `zspace evaluate {self.root}` first")
        return self._read_record(self.evaluation_json, "an evaluation", "evaluate", Evaluation.from_json)

    def _read_record(self, path: Path, what: str, command: str, parse):
        """``parse(json of path)``, size-bounded; any malformed content becomes one RunError naming the file."""
        if path.stat().st_size > MAX_ANALYSIS_JSON_BYTES:
            raise RunError(f"{path}: larger than {MAX_ANALYSIS_JSON_BYTES // 2**20} MiB; not {what} written by zspace.")
        try:
            return parse(json.loads(path.read_text(encoding="utf-8")))
        except (KeyError, TypeError, ValueError, RecursionError, ArithmeticError) as exc:
            raise RunError(f"{path}: not {what} written by zspace ({_reason(exc)}); "
                           f"run `zspace {command} {self.root}` again.") from None

    def save_analysis(self, analysis: Analysis) -> None:
        """Writes analysis.npz, then analysis.json, each atomically and both marked with one new id.

        A kill between the two commits leaves a pair whose ids differ, which :meth:`load_analysis`
        refuses with one line instead of joining records to the wrong arrays.
        """
        from zspace.analysis.encoding import save_encoding

        analysis_id = uuid.uuid4().hex
        save_encoding(self.analysis_npz, {**analysis.arrays, _ANALYSIS_ID: np.asarray(analysis_id)})
        atomic_write_text(self.analysis_json, json.dumps({_ANALYSIS_ID: analysis_id, **analysis.to_json()},
                                                         indent=1, allow_nan=False))
