"""TensorFlow-only input pipeline for in-memory arrays: the batches of :class:`EpochBatches`, in-graph.

Same permutation per (seed, epoch), same batch boundaries, same sorting within a batch, so
a run gives identical results whichever pipeline feeds it; the gather happens in tf.data
instead of a Python generator, which saved about 3% of a Fashion-MNIST training step here
(benchmarks/README.md). Used by ``zspace.train`` on the TensorFlow backend for numpy images
and the plain reconstruction task; everything else goes through :class:`EpochBatches`.
"""

from __future__ import annotations

import numpy as np

from zspace.training.batches import EpochBatches

__all__ = ["epoch_dataset"]


def epoch_dataset(images: np.ndarray, batch_size: int, seed: int | None = None, start_epoch: int = 0,
                  end_epoch: int = 1):
    """A ``tf.data.Dataset`` of (images, images) batches for epochs ``start_epoch .. end_epoch - 1``.

    Args:
        images: (N, H, W, C) float32 array (copied once into TensorFlow memory).
        batch_size, seed, start_epoch, end_epoch: as :class:`EpochBatches`.
    """
    import tensorflow as tf

    reference = EpochBatches(images, batch_size, seed=seed, start_epoch=start_epoch, end_epoch=end_epoch)
    n, steps = len(images), reference.steps_per_epoch
    # (epochs * steps, batch_size) sorted index rows; the last row of an epoch is padded with -1
    padded = np.full((end_epoch - start_epoch, steps * batch_size), -1, dtype=np.int64)
    for row, epoch in enumerate(range(start_epoch, end_epoch)):
        padded[row, :n] = reference.order(epoch)
    rows = padded.reshape(-1, batch_size)
    rows = np.where(rows < 0, np.iinfo(np.int64).max, rows)
    rows.sort(axis=1)  # sorted within each batch; the padding goes last
    lengths = np.full(len(rows), batch_size)
    lengths[steps - 1::steps] = n - (steps - 1) * batch_size
    data = tf.constant(images)

    def gather(row, length):
        batch = tf.gather(data, row[:length])
        return batch, batch

    dataset = tf.data.Dataset.from_tensor_slices((rows, lengths))
    return dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)

