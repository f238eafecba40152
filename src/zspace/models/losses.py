"""Loss maths in ``keras.ops`` (runs on TensorFlow, JAX and PyTorch).

Per-image functions return shape (batch,); the Keras ``Loss`` wrappers average over the batch.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = [
    "reconstruction_per_image",
    "kl_per_image",
    "ReconstructionLoss",
    "MuKLLoss",
    "LogvarKLLoss",
    "replicas_in_sync",
    "per_replica",
    "whole_batch",
    "batch_mean",
    "batch_rows",
]


def replicas_in_sync() -> int:
    """Replicas that sum their gradients each step: TensorFlow's tf.distribute strategy's, else 1.

    (JAX's DataParallel shards one program over the devices: its mean over a batch is already the
    global mean, as on one device.)
    """
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def per_replica(loss, rows):
    """A replica's mean loss over its ``rows`` images -> its part of the global batch's mean: x rows /
    all rows (the replicas' gradients are summed). The identity without several tf.distribute replicas.
    (Keras' own losses divide by the replica count instead, which is wrong for an unevenly split last batch.)"""
    n = replicas_in_sync()
    if n == 1:
        return loss
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context (Keras' symbolic build): no step is taken
        return loss / n
    # The row counts of every replica, gathered like the sampling noise's (_replica_window in layers.py).
    every = context.all_gather(tf.reshape(tf.cast(rows, loss.dtype), [1]), axis=0)
    return loss * tf.cast(rows, loss.dtype) / tf.reduce_sum(every)


def whole_batch(loss):
    """Keras' convention (a replica's mean / the replica count) -> the replica's mean, for metrics."""
    n = replicas_in_sync()
    return loss if n == 1 else loss * ops.cast(n, loss.dtype)


def batch_mean(values, sample_weight=None):
    """Mean of per-image ``values`` (batch,) over a batch, each weighted by ``sample_weight`` (batch,) if given.

    zspace's sample weights keep the mean (Keras' mask convention): a batch padded to a multiple of
    the devices weighs its padding rows 0 and its real rows padded / real, so this is the mean over
    the real rows."""
    if sample_weight is None:
        return ops.mean(values)
    return ops.mean(values * ops.cast(ops.reshape(sample_weight, (-1,)), values.dtype))


def batch_rows(y_pred, sample_weight=None):
    """The images in a batch, padding rows (weight 0) left out: the weight of its mean in an epoch's."""
    if sample_weight is None:
        return ops.shape(y_pred["z"])[0]
    return ops.sum(ops.cast(ops.reshape(sample_weight, (-1,)) > 0, "float32"))


def reconstruction_per_image(target, output, kind: str, reduction: str = "sum"):
    """Reconstruction loss of each image, summed (or averaged) over its pixel values.

    Args:
        target: images (batch, height, width, channels) in [0, 1].
        output: decoded images of the same shape, in [0, 1] (sigmoid outputs).
        kind: "bce" (binary cross-entropy, nats) or "mse" (squared error).
        reduction: "sum" over the H*W*C values (per image), or "mean" (per pixel value: the sum / H*W*C).

    Returns:
        (batch,) tensor.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f'`reduction` must be "sum" or "mean". Received: reduction={reduction!r}')
    # float32 even under mixed precision: per-image sums of 27,648 pixels overflow float16.
    target, output = ops.cast(target, "float32"), ops.cast(output, "float32")
    if kind == "bce":
        per_pixel = ops.binary_crossentropy(target, output)
    elif kind == "mse":
        per_pixel = ops.square(target - output)
    else:
        raise ValueError(f'`kind` must be "bce" or "mse". Received: kind={kind!r}')
    flat = ops.reshape(per_pixel, (ops.shape(per_pixel)[0], -1))
    return ops.sum(flat, axis=-1) if reduction == "sum" else ops.mean(flat, axis=-1)


def kl_per_image(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) = -0.5 * sum_j(1 + logvar - mu^2 - exp(logvar)).

    Args:
        mu, logvar: (batch, z_dim).

    Returns:
        (batch,) tensor, in nats.
    """
    mu, logvar = ops.cast(mu, "float32"), ops.cast(logvar, "float32")
    return -0.5 * ops.sum(1.0 + logvar - ops.square(mu) - ops.exp(logvar), axis=-1)


@keras.saving.register_keras_serializable(package="zspace")
class ReconstructionLoss(keras.losses.Loss):
    """Reconstruction loss of a batch: per-image pixel sum (or mean: ``pixel_reduction``), batch mean."""

    def __init__(self, kind: str = "bce", pixel_reduction: str = "sum", name: str = "reconstruction", **kwargs):
        super().__init__(name=name, **kwargs)
        self.kind = kind
        self.pixel_reduction = pixel_reduction

    def call(self, y_true, y_pred):
        return reconstruction_per_image(y_true, y_pred, self.kind, self.pixel_reduction)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "pixel_reduction": self.pixel_reduction}


# The KL splits into a part that depends only on mu and one that depends only on logvar:
#   KL = 0.5 * sum(mu^2) + (-0.5) * sum(1 + logvar - exp(logvar)),
# so with kl_method="outputs" each extra model output carries its own loss function.
# y_true is unused by both (the model passes its own outputs there).


@keras.saving.register_keras_serializable(package="zspace")
class MuKLLoss(keras.losses.Loss):
    """The mu part of the weighted KL loss: kl_factor * 0.5 * sum(mu^2), batch mean."""

    def __init__(self, kl_factor: float = 1.0, name: str = "mu_kl", **kwargs):
        super().__init__(name=name, **kwargs)
        self.kl_factor = kl_factor

    def call(self, y_true, y_pred):
        return self.kl_factor * 0.5 * ops.sum(ops.square(ops.cast(y_pred, "float32")), axis=-1)

    def get_config(self):
        return {**super().get_config(), "kl_factor": self.kl_factor}


@keras.saving.register_keras_serializable(package="zspace")
class LogvarKLLoss(keras.losses.Loss):
    """The logvar part of the weighted KL loss: kl_factor * -0.5 * sum(1 + lv - exp(lv))."""

    def __init__(self, kl_factor: float = 1.0, name: str = "logvar_kl", **kwargs):
        super().__init__(name=name, **kwargs)
        self.kl_factor = kl_factor

    def call(self, y_true, y_pred):
        logvar = ops.cast(y_pred, "float32")
        return self.kl_factor * -0.5 * ops.sum(1.0 + logvar - ops.exp(logvar), axis=-1)

    def get_config(self):
        return {**super().get_config(), "kl_factor": self.kl_factor}
