"""In-memory batch feeder whose order is a pure function of (seed, epoch, batch index)."""

from __future__ import annotations

import math

import keras
import numpy as np

__all__ = ["EpochBatches"]


class EpochBatches(keras.utils.PyDataset):
    """All batches of epochs ``start_epoch .. end_epoch - 1`` as one indexable sequence.

    Batch ``i`` belongs to epoch ``start_epoch + i // steps_per_epoch`` and is drawn from
    that epoch's seeded permutation. Keras' ``on_epoch_end`` hook is not used: fit calls it
    once before training and prefetches across epoch boundaries, so a reshuffle there would
    be racy. Here a resumed run sees exactly the batches of an uninterrupted one; pass
    ``steps_per_epoch`` to ``fit``.

    Args:
        inputs: (N, H, W, C) float32 model inputs.
        targets: (N, H, W, C) training targets (the inputs themselves for reconstruction).
        batch_size: images per batch; the last batch of an epoch may be smaller.
        seed: shuffle seed; None keeps the stored order (validation).
        start_epoch, end_epoch: 0-based epoch range covered.
    """

    def __init__(self, inputs, targets, batch_size: int, seed: int | None = None,
                 start_epoch: int = 0, end_epoch: int = 1):
        super().__init__(workers=1, use_multiprocessing=False)
        if len(inputs) != len(targets):
            raise ValueError(f"inputs ({len(inputs)}) and targets ({len(targets)}) differ in length.")
        if end_epoch <= start_epoch:
            raise ValueError(f"end_epoch ({end_epoch}) must exceed start_epoch ({start_epoch}).")
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.seed = batch_size, seed
        self.start_epoch, self.end_epoch = start_epoch, end_epoch
        self.steps_per_epoch = math.ceil(len(inputs) / batch_size)
        self._cached: tuple[int, np.ndarray] | None = None

    def order(self, epoch: int) -> np.ndarray:
        """Permutation of the sample indices for 0-based ``epoch``."""
        if self.seed is None:
            return np.arange(len(self.inputs))
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.inputs)))
        return self._cached[1]

    def __len__(self) -> int:
        return self.steps_per_epoch * (self.end_epoch - self.start_epoch)

    def __getitem__(self, index: int):
        epoch = self.start_epoch + index // self.steps_per_epoch
        step = index % self.steps_per_epoch
        batch = self.order(epoch)[step * self.batch_size:(step + 1) * self.batch_size]
        # Sorted indices read memory in order; the order inside a batch does not change its mean loss.
        idx = np.sort(batch)
        return self.inputs[idx], self.targets[idx]
