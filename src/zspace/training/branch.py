"""Branching: a new run that starts from an older checkpoint of a run, with fresh noise.

The blog's "escape from a bad minimum": go back to an earlier epoch and train on with other
noise. The source run is only read (under its lock); the new run is built in a hidden
temporary folder beside ``out`` and renamed into place in one step, so a kill leaves either
no new run or a whole one (and at worst a ``.tmp-branch-*`` folder beside it to delete).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from zspace.config import RunConfig
from zspace.errors import RunError
from zspace.rundir import Run
from zspace.storage import TEMP_PREFIX, atomic_write_text, fsync_path
from zspace.training.callbacks import write_history
from zspace.training.noise import noise_seed_after, set_noise_seed

__all__ = ["branch_run"]


def branch_run(config: RunConfig, epoch: int, out: str | Path, noise_seed: int | None = None) -> RunConfig:
    """Makes the run directory ``out`` from the checkpoint of ``epoch`` of the run ``config`` names.

    ``out`` gets: config.toml (``config`` with ``run_dir = out``), that checkpoint (a byte copy),
    history.csv rows 1..``epoch``, run_state.json (the source's learning-rate scale and events up
    to ``epoch``, and ``noise_seed`` from there on) and origin.json (:attr:`zspace.Run.origin`).
    Train it with :func:`zspace.train` on the returned config; it trains on to ``epochs``.

    Args:
        config: the source run's config (``run_dir`` the source run); fields other than
            ``RESUMABLE_FIELDS`` (``epochs``, ...) must equal the saved ones.
        epoch: 1-based epoch whose checkpoint the new run starts from.
        out: the new run directory: absent or an empty folder.
        noise_seed: the new run's noise seed (a VAE's sampling noise, the batch order, the denoise
            noise after ``epoch``); None keeps the checkpoint's own noise state (an exact copy).

    Returns:
        The new run's config.

    Raises:
        RunError: no run at ``run_dir``, another config, no checkpoint of ``epoch`` (the message
            lists those there are), ``out`` not empty or inside the source run, the source in use.
    """
    from zspace.training.run import _config_differences, _history_until

    source = Run(config.train.run_dir)
    out = Path(out)
    if not source.config_path.is_file():
        raise RunError(f"{source.root}: not a run directory (no config.toml); --from-epoch branches a trained run.")
    changes = _config_differences(source.saved_config(), config)
    if changes:
        raise RunError(f"branching {source.root} with a different config: {'; '.join(changes)}. A branch changes "
                       f"only the noise seed (and fields a resume may change, such as epochs).")
    _check_out(out, source.root)
    new_config = RunConfig(config.model.resolved(), replace(config.train, run_dir=str(out)))
    with source.lock("train --from-epoch"):  # no writer deletes the checkpoint or rewrites the history meanwhile
        checkpoint = _checkpoint_of(source, epoch)
        history = _history_until(source, epoch, config)
        state = _state_until(source.read_state(), epoch)
        before = noise_seed_after(source.read_state(), epoch, config.train.seed)
        if noise_seed is not None:
            set_noise_seed(state, epoch, noise_seed)
        origin = {"source_run": str(source.root.resolve()), "epoch": epoch, "noise_seed_before": before,
                  "noise_seed": noise_seed, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        _build(out, new_config, checkpoint, epoch, history, state, origin)
    return new_config


def _check_out(out: Path, source_root: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: exists and is not a folder; give a new run directory.")
    if out.is_dir() and any(out.iterdir()):
        raise RunError(f"--out {out}: exists and is not empty; give a new run directory (the branch never "
                       f"writes into an existing run).")
    resolved, root = out.resolve(), source_root.resolve()
    if resolved == root or root in resolved.parents:
        raise RunError(f"--out {out}: is the source run {source_root} or inside it; give a folder outside it.")


def _checkpoint_of(source: Run, epoch: int) -> Path:
    checkpoints = dict(source.checkpoints())
    if epoch not in checkpoints:
        there = " ".join(str(e) for e in checkpoints) or "none"
        raise RunError(f"{source.root} has no checkpoint of epoch {epoch}; checkpoints of epochs: {there} "
                       f"(keep_checkpoints keeps only the newest ones).")
    return checkpoints[epoch]


def _state_until(state: dict[str, Any], epoch: int) -> dict[str, Any]:
    """The source's run_state as it stood for training epoch ``epoch``: events of epochs 1..epoch,
    the learning-rate scale epoch ``epoch`` trained with, noise seeds up to it, no reseeds used."""
    nonfinite = [e for e in state["nonfinite_events"] if isinstance(e, dict) and _epoch_of(e) <= epoch]
    lr_scale = nonfinite[-1]["lr_scale_after"] if nonfinite and "lr_scale_after" in nonfinite[-1] else 1.0
    return {"lr_scale": lr_scale, "nonfinite_events": nonfinite,
            "jump_events": [e for e in state["jump_events"] if isinstance(e, dict) and _epoch_of(e) <= epoch],
            "noise_seeds": [e for e in state["noise_seeds"] if e["after_epoch"] <= epoch], "jump_reseeds": 0}


def _epoch_of(event: dict[str, Any]) -> float:
    value = event.get("epoch")
    return value if isinstance(value, int) and not isinstance(value, bool) else float("inf")


def _build(out: Path, config: RunConfig, checkpoint: Path, epoch: int, history, state, origin) -> None:
    """Writes the new run into a temporary folder beside ``out``, then renames it to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f"{TEMP_PREFIX}branch-{out.name[:64]}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        draft = Run(staging)
        draft.checkpoints_dir.mkdir()
        # config.toml keeps run_dir = out: it is where the run will be after the rename.
        atomic_write_text(draft.config_path, config.to_toml())
        write_history(draft.history_path, history)
        draft.write_state(state)
        atomic_write_text(draft.origin_path, json.dumps(origin, indent=1))
        target = draft.checkpoint_path(epoch)
        shutil.copyfile(checkpoint, target)
        fsync_path(target)
        fsync_path(draft.checkpoints_dir)
        fsync_path(staging)
        try:
            os.rename(staging, out)  # replaces an empty folder; refuses one that filled up meanwhile
        except OSError as exc:
            raise RunError(f"--out {out}: cannot be made the new run ({exc.strerror or exc}); give a new, "
                           f"empty run directory.") from None
        fsync_path(out.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

