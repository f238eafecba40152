"""A run's noise seed: which seed the training noise after a given epoch is drawn from.

The noise seed drives a VAE's sampling noise (eps of z = mu + sigma * eps), the order of the
training batches and the denoise task's input noise. It starts as the run's ``seed``; a jump's
reseed or a branch (``zspace train --from-epoch N --reseed S``) records ``{"after_epoch": N,
"seed": S}`` in run_state.json's ``noise_seeds``. Restoring the checkpoint of exactly epoch N
then gives the sampling layer a fresh generator state [S, 0]; a later checkpoint carries the
advanced state itself, so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zspace.config_fields import MAX_SEED

__all__ = ["noise_seed_after", "set_noise_seed", "next_noise_seed", "fresh_noise_state", "reseed_if_due"]


def noise_seed_after(state: dict[str, Any], epoch: int, default: int) -> int:
    """The seed of the noise of the epochs after 1-based ``epoch`` (0: from the start); ``default``
    (the run's seed) unless a ``noise_seeds`` entry at or before ``epoch`` says otherwise."""
    earlier = [e for e in state["noise_seeds"] if e["after_epoch"] <= epoch]
    return max(earlier, key=lambda e: e["after_epoch"])["seed"] if earlier else default


def set_noise_seed(state: dict[str, Any], after_epoch: int, seed: int) -> None:
    """Records that training after ``after_epoch`` draws from ``seed``; entries of later epochs,
    which are being trained again, are dropped."""
    kept = [e for e in state["noise_seeds"] if e["after_epoch"] < after_epoch]
    state["noise_seeds"] = kept + [{"after_epoch": after_epoch, "seed": seed}]


def next_noise_seed(seed: int) -> int:
    """The seed a jump's reseed moves to: ``seed + 1``, wrapping inside the valid seeds [0, MAX_SEED]."""
    return (seed + 1) % (MAX_SEED + 1)


def fresh_noise_state(current: np.ndarray, seed: int) -> np.ndarray:
    """A Keras SeedGenerator state [seed, 0] in the dtype of ``current`` (a signed 32-bit state holds
    the seed's bits, as ``keras.random`` does for an int seed)."""
    dtype = np.dtype(current.dtype)
    value = int(seed)
    if np.issubdtype(dtype, np.signedinteger) and value > np.iinfo(dtype).max:
        value = (value & 0xFFFFFFFF ^ 0x80000000) - 0x80000000
    return np.array([value, 0], dtype=dtype)


def reseed_if_due(model, state: dict[str, Any], epoch: int) -> int | None:
    """Gives ``model``'s sampling layer a fresh state when ``noise_seeds`` starts a new seed right
    after ``epoch`` (the checkpoint just restored); returns that seed, or None (nothing to do, or an AE)."""
    entry = next((e for e in state["noise_seeds"] if e["after_epoch"] == epoch), None)
    current = model.noise_state()
    if entry is None or current is None:
        return None
    model.set_noise_state(fresh_noise_state(current, entry["seed"]))
    return entry["seed"]
