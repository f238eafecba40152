"""In-memory batch feeder whose order is a pure function of (seed, epoch, batch index)."""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING

import keras
import numpy as np

from zspace.errors import ZspaceError

if TYPE_CHECKING:
    from zspace.training.distribute import BatchShare

__all__ = ["EpochBatches", "pop_read_failure"]

# Errors of batch reads (a cache file truncated or removed during training). tf.data and Keras' PyDataset adapter
# re-raise them as their own errors, with the original only as text; kept here, :func:`pop_read_failure` gives
# the original back to the caller of fit.
_read_failures: list[Exception] = []


@contextlib.contextmanager
def _remembering_read_failures():
    """Keeps an error of the reads in the block for :func:`pop_read_failure`, and lets it go on."""
    try:
        yield
    except (ZspaceError, OSError) as exc:
        _read_failures.append(exc)
        raise


def pop_read_failure() -> Exception | None:
    """The first error a batch read raised since the last call (None if none); forgets them all."""
    failure = _read_failures[0] if _read_failures else None
    _read_failures.clear()
    return failure


class EpochBatches(keras.utils.PyDataset):
    """(inputs, targets) batches of epochs ``start_epoch .. end_epoch - 1`` as one indexable sequence.

    Batch ``i`` belongs to epoch ``start_epoch + i // steps_per_epoch`` and is drawn from
    that epoch's seeded permutation. Keras' ``on_epoch_end`` hook is not used: fit calls it
    once before training and prefetches across epoch boundaries, so a reshuffle there would
    be racy. Here a resumed run sees exactly the batches of an uninterrupted one; pass
    ``steps_per_epoch`` to ``fit``.

    Args:
        images: (N, H, W, C) float32 targets: a numpy array, or a
            :class:`zspace.data.ShardedImages` read from disk batch by batch.
        batch_size: images per batch; the last batch of an epoch may be smaller.
        seed: shuffle seed; None keeps the stored order (validation).
        start_epoch, end_epoch: 0-based epoch range covered.
        transform: ``transform(targets, rng) -> inputs`` (denoise / recolor); None: inputs = targets.
        targets: the target of each of ``images`` (input/target pairs; then ``images`` are the
            inputs and ``transform`` must be None); None: the images are the targets.
        noise_seed: seed of the transform's random numbers, drawn per (epoch, batch) so that a
            resumed run sees the same noise.
        share: ``share(rows) -> BatchShare | None`` (:class:`zspace.training.distribute.BatchShare`): this
            process's rows of a batch of ``rows`` images under JAX's DataParallel, padded to a multiple of
            the devices; then every batch is (inputs, targets, sample weights), the weights 0 on padding.
            Only those rows are read, except with a transform, which draws the whole batch's noise (so that
            the noise is that of one process).
    """

    def __init__(self, images, batch_size: int, seed: int | None = None, start_epoch: int = 0,
                 end_epoch: int = 1, transform=None, noise_seed: int = 0, targets=None, share=None):
        super().__init__(workers=1, use_multiprocessing=False)
        if end_epoch <= start_epoch:
            raise ValueError(f"end_epoch ({end_epoch}) must exceed start_epoch ({start_epoch}).")
        if targets is not None and (len(targets) != len(images) or transform is not None):
            raise ValueError("targets must pair with the images one to one, and exclude a transform.")
        self.images, self.targets = images, targets
        self.transform, self.noise_seed = transform, noise_seed
        self.batch_size, self.seed = batch_size, seed
        self.start_epoch, self.end_epoch = start_epoch, end_epoch
        self.steps_per_epoch = math.ceil(len(images) / batch_size)
        self.share = share
        self._cached: tuple[int, np.ndarray] | None = None

    def order(self, epoch: int) -> np.ndarray:
        """Permutation of the sample indices for 0-based ``epoch``."""
        if self.seed is None:
            return np.arange(len(self.images))
        cached = self._cached  # one read: tf.data's reader threads may ask for two epochs at once
        if cached is None or cached[0] != epoch:
            cached = self._cached = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.images)))
        return cached[1]

    def __len__(self) -> int:
        return self.steps_per_epoch * (self.end_epoch - self.start_epoch)

    def _rows(self, index: int) -> tuple[int, int, np.ndarray, BatchShare | None]:
        """(epoch, step, sorted image indices, this process's BatchShare or None) of batch ``index``."""
        epoch = self.start_epoch + index // self.steps_per_epoch
        step = index % self.steps_per_epoch
        # Sorted indices read memory (or disk) in order; the order inside a batch does not change its mean loss.
        batch = np.sort(self.order(epoch)[step * self.batch_size:(step + 1) * self.batch_size])
        part = self.share(len(batch)) if self.share is not None else None
        return epoch, step, batch, part

    @property
    def stored_as_uint8(self) -> bool:
        """Whether :meth:`stored` can give the batches as their uint8 bytes: images (and targets)
        read from a cache, no transform, one process."""
        return (hasattr(self.images, "uint8") and (self.targets is None or hasattr(self.targets, "uint8"))
                and self.transform is None and self.share is None)

    def stored(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``index`` as stored: uint8 (inputs, targets), each (k, H, W, C), in [0, 255]; the
        float32 batch is this divided by 255. Only when :attr:`stored_as_uint8`."""
        if not self.stored_as_uint8:
            raise ValueError("stored() needs cached images, no transform and one process")
        batch = self._rows(index)[2]
        with _remembering_read_failures():
            images = self.images.uint8(batch)
            return images, (images if self.targets is None else self.targets.uint8(batch))

    def __getitem__(self, index: int):
        with _remembering_read_failures():
            return self._read(index)

    def _read(self, index: int):
        epoch, step, batch, share = self._rows(index)
        if share is not None and self.transform is None:
            batch = batch[share.positions()]
        targets = self.images[batch]
        if self.targets is not None:  # input/target pairs: the images are the inputs
            inputs, targets = targets, self.targets[batch]
        elif self.transform is None:
            inputs = targets
        else:
            rng = np.random.default_rng([self.noise_seed, epoch, step])
            inputs = self.transform(targets, rng)
            if share is not None:
                positions = share.positions()
                inputs, targets = inputs[positions], targets[positions]
        return (inputs, targets) if share is None else (inputs, targets, share.weights())
