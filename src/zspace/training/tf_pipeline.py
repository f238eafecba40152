"""TensorFlow-only input pipelines: the batches of :class:`EpochBatches`, through tf.data.

Same permutation per (seed, epoch), same batch boundaries, same sorting within a batch, so
a run gives identical results whichever pipeline feeds it.

- :func:`epoch_dataset`, in-memory arrays: the gather happens in-graph instead of in a Python
  generator, which saved about 3% of a Fashion-MNIST training step (benchmarks/README.md).
- :func:`streamed_dataset`, a ``cache:`` dataset: the batches are read as uint8 (a quarter of
  the bytes of float32) ahead of the step, and converted to float32 in the graph.

Used by ``zspace.train`` on the TensorFlow backend; everything else goes through :class:`EpochBatches`.
"""

from __future__ import annotations

import numpy as np

from zspace.training.batches import EpochBatches

__all__ = ["epoch_dataset", "streamed_dataset"]

# Batches read ahead of the training step. Each is a few MB of uint8 (CelebA: 3.5 MB at batch 128), and
# a fixed depth, unlike AUTOTUNE, keeps streamed training's memory flat whatever the cache size.
READ_AHEAD_BATCHES = 4
# Batches read at once: one read waits on the disk while the other copies; more only compete with the step.
PARALLEL_READS = 2


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


def streamed_dataset(batches: EpochBatches):
    """A ``tf.data.Dataset`` of ``batches`` read as uint8 and divided by 255 in the graph.

    Gives the float32 batches of ``batches[i]`` bit for bit (the same IEEE division). The reads
    (one ``os.pread`` per run of images, which releases the GIL) run on tf.data's threads,
    :data:`READ_AHEAD_BATCHES` ahead of the step.

    Args:
        batches: an :class:`EpochBatches` whose ``stored_as_uint8`` is true.
    """
    import tensorflow as tf

    if not batches.stored_as_uint8:
        raise ValueError("streamed_dataset needs cached images, no transform and one process")
    input_shape = tuple(batches.images.shape[1:])
    target_shape = input_shape if batches.targets is None else tuple(batches.targets.shape[1:])
    same = batches.targets is None

    def read(index):
        inputs, targets = batches.stored(int(index))
        return (inputs,) if same else (inputs, targets)

    def load(index):
        stored = tf.numpy_function(read, [index], (tf.uint8,) if same else (tf.uint8, tf.uint8), stateful=False)
        inputs = tf.ensure_shape(stored[0], (None, *input_shape))
        inputs = tf.cast(inputs, tf.float32) / 255.0
        if same:
            return inputs, inputs
        targets = tf.cast(tf.ensure_shape(stored[1], (None, *target_shape)), tf.float32) / 255.0
        return inputs, targets

    dataset = tf.data.Dataset.range(len(batches))
    dataset = dataset.map(load, num_parallel_calls=PARALLEL_READS, deterministic=True)
    return dataset.prefetch(READ_AHEAD_BATCHES)
