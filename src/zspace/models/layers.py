"""Registered-serializable Keras layers of the VAE (no Lambda layers: models load with safe_mode)."""

from __future__ import annotations

import threading

import keras
from keras import ops

from zspace.models.losses import kl_per_image

__all__ = ["Sampling", "KLDivergenceLoss", "SoftUpperClip", "FusibleLeakyReLU", "PerThreadLosses"]


class PerThreadLosses:
    """Mixin for a Keras layer that calls ``add_loss``: one list of loss terms per thread.

    Keras keeps a layer's ``add_loss`` terms in one list, cleared when a call begins. tf.distribute's
    MirroredStrategy traces each replica's step in a thread of its own, at the same time: a replica
    then reads (or clears) another replica's KL term (seen with 2 replicas: the second replica's
    total loss held both terms). A list per thread keeps each replica's terms its own.
    """

    @property
    def _losses(self):
        local = self.__dict__.get("_per_thread_losses")
        if local is None:  # Layer.__init__ sets _losses before anything else
            local = self.__dict__["_per_thread_losses"] = threading.local()
        if not hasattr(local, "terms"):
            local.terms = []
        return local.terms

    @_losses.setter
    def _losses(self, value):
        self.__dict__["_per_thread_losses"] = threading.local()
        self._losses.extend(value)


@keras.saving.register_keras_serializable(package="zspace")
class Sampling(keras.layers.Layer):
    """Reparameterisation: z = mu + exp(logvar / 2) * clip(eps, -c, c) * epsilon_scale.

    ``epsilon_scale`` is a non-trainable variable, so it can be changed on a trained, loaded
    model without retracing or retraining (0 gives z = mu). The noise seed state is saved
    with the weights, so a resumed run draws the same noise as an uninterrupted one.

    Call args:
        inputs: ``[mu, logvar]``, each (batch, z_dim).

    Returns:
        z, (batch, z_dim).
    """

    def __init__(self, seed=None, epsilon_clip=5.0, epsilon_scale=1.0, **kwargs):
        kwargs.setdefault("dtype", "float32")  # exp(logvar / 2) overflows float16 under mixed precision
        super().__init__(**kwargs)
        self.seed = seed
        self.epsilon_clip = epsilon_clip
        self.initial_epsilon_scale = float(epsilon_scale)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.epsilon_scale = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.initial_epsilon_scale),
            trainable=False,
            name="epsilon_scale",
        )

    def call(self, inputs):
        mu, logvar = (ops.cast(t, "float32") for t in inputs)
        eps = self._noise(mu)
        if self.epsilon_clip is not None:
            eps = ops.clip(eps, -self.epsilon_clip, self.epsilon_clip)
        scale = ops.cast(self.epsilon_scale, mu.dtype)
        return mu + ops.exp(0.5 * logvar) * eps * scale

    def _noise(self, mu):
        """eps of the shape of ``mu``. Under a tf.distribute strategy each replica draws the noise of the
        whole global batch and keeps its own rows, so R replicas see the noise one device would."""
        window = _replica_window(mu) if keras.backend.backend() == "tensorflow" else None
        if window is None:
            return keras.random.normal(ops.shape(mu), seed=self.seed_generator, dtype=mu.dtype)
        offset, total = window
        eps = keras.random.normal((total, mu.shape[-1]), seed=self.seed_generator, dtype=mu.dtype)
        return eps[offset:offset + ops.shape(mu)[0]]

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def save_own_variables(self, store):
        super().save_own_variables(store)
        store["seed_state"] = self.seed_generator.state

    def load_own_variables(self, store):
        seed_state = store["seed_state"] if "seed_state" in store else None
        own = {k: store[k] for k in store.keys() if k != "seed_state"}
        super().load_own_variables(own)
        if seed_state is not None:
            self.seed_generator.state.assign(seed_state)

    def get_config(self):
        return {
            **super().get_config(),
            "seed": self.seed,
            "epsilon_clip": self.epsilon_clip,
            "epsilon_scale": self.initial_epsilon_scale,
        }


def _replica_window(mu):
    """(first row, rows in all) of this replica's rows in the global batch under a tf.distribute
    strategy of several replicas (which hands replica r the r-th consecutive part); None otherwise."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    rows = context.all_gather(tf.shape(mu)[:1], axis=0)  # every replica's row count, in replica order
    return tf.reduce_sum(rows[:context.replica_id_in_sync_group]), tf.reduce_sum(rows)


@keras.saving.register_keras_serializable(package="zspace")
class KLDivergenceLoss(PerThreadLosses, keras.layers.Layer):
    """Identity on ``[mu, logvar]`` that adds ``kl_factor * scale * mean_batch(KL)`` with ``add_loss``.

    Call args:
        inputs: ``[mu, logvar]``, each (batch, z_dim).
        scale: optional scalar tensor multiplying the loss (KL warm-up); default 1.
    """

    def __init__(self, kl_factor=1.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.kl_factor = float(kl_factor)

    def call(self, inputs, scale=None):
        mu, logvar = inputs
        loss = self.kl_factor * ops.mean(kl_per_image(mu, logvar))
        self.add_loss(loss if scale is None else loss * ops.cast(scale, loss.dtype))
        return mu, logvar

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "kl_factor": self.kl_factor}


@keras.saving.register_keras_serializable(package="zspace")
class SoftUpperClip(keras.layers.Layer):
    """Smooth upper bound: ``max_value - softplus(max_value - x)``.

    Equal to x well below ``max_value`` (the gap is below exp(x - max_value)), never above
    it, and with a non-zero gradient everywhere, so a logvar pushed to +1e4 gives a finite
    exp(logvar) and can still come back (a hard clip would stop its gradient).
    """

    def __init__(self, max_value=20.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.max_value = float(max_value)

    def call(self, x):
        x = ops.cast(x, "float32")
        return self.max_value - ops.softplus(self.max_value - x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value}


@keras.saving.register_keras_serializable(package="zspace")
class FusibleLeakyReLU(keras.layers.LeakyReLU):
    """``keras.layers.LeakyReLU`` whose TensorFlow gradient reads the layer's output, not its input.

    Same values and the same gradients (for ``negative_slope >= 0`` output and input have the
    same sign, which is all the gradient looks at). Why: TensorFlow's registered LeakyRelu
    gradient reads the input, which is the output of the convolution's BiasAdd; grappler's
    remapper then cannot fold Conv2D + BiasAdd + LeakyRelu into one oneDNN kernel and gives up
    every rewrite of the training graph ("remapper failed ... LeakyReluGrad"). With this layer
    the fusion happens: about +4% training img/s on the Fashion-MNIST VAE (benchmarks/levers.py).
    Other backends use the plain LeakyReLU.
    """

    def call(self, inputs):
        if keras.backend.backend() != "tensorflow":
            return super().call(inputs)
        return _leaky_relu_with_output_gradient(inputs, float(self.negative_slope))


def _leaky_relu_with_output_gradient(x, slope: float):
    import tensorflow as tf

    @tf.custom_gradient
    def leaky_relu(x):
        y = tf.nn.leaky_relu(x, alpha=slope)

        def gradient(dy):
            return tf.raw_ops.LeakyReluGrad(gradients=dy, features=y, alpha=slope)

        return y, gradient

    return leaky_relu(x)
