"""The Keras half of :class:`zspace.generation.SecondStageVAESampler`: a small dense VAE on z-points.

Imported only when a second stage is fitted, so ``zspace.generation`` stays free of TensorFlow.
Backend-agnostic: the model's one output concatenates what the loss needs, so plain
``model.fit`` with :func:`second_stage_loss` trains it on TensorFlow, torch and JAX alike.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from zspace.models.layers import Sampling
from zspace.models.losses import kl_per_image

# Standardised z has variance 1 in every dimension, and gamma = 1 is then a stationary point where the
# decoder outputs the mean, the encoder carries nothing and KL = 0 (as in probabilistic PCA when the
# noise variance reaches the data's): started there, the second stage stays collapsed (measured: gamma
# 0.96 after 2000 steps, samples shrunk to the mean). Started at 0.1 it must encode, and learns gamma from there.
INITIAL_GAMMA = 0.1

__all__ = ["LogGamma", "second_stage_loss", "build_second_stage", "IndexBatches"]


@keras.saving.register_keras_serializable(package="zspace")
class LogGamma(keras.layers.Layer):
    """The learned log of the decoder's noise variance gamma, one trainable scalar.

    Call args:
        inputs: any (batch, ...) tensor; only its batch size is read.

    Returns:
        (batch, 1): log gamma repeated, to travel beside the other outputs to the loss.
    """

    def __init__(self, initial_value=0.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.initial_value = float(initial_value)
        self.log_gamma = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.initial_value), trainable=True, name="log_gamma"
        )

    def call(self, inputs):
        return ops.zeros_like(ops.cast(inputs[:, :1], "float32")) + self.log_gamma

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        return {**super().get_config(), "initial_value": self.initial_value}


@keras.saving.register_keras_serializable(package="zspace")
def second_stage_loss(y_true, y_pred):
    """Negative ELBO of the second stage with a learned gamma (Dai & Wipf 2019, eq. 5), in nats.

    sum_d (z - z_hat)^2 / (2 gamma) + (z_dim / 2) log gamma + KL(q(u|z) || N(0, I)),
    dropping the constant (z_dim / 2) log(2 pi).

    Args:
        y_true: (batch, z_dim) standardised z-points.
        y_pred: (batch, 3 * z_dim + 1): z_hat, mu_u, logvar_u, log gamma.

    Returns:
        (batch,) loss per point.
    """
    z = ops.cast(y_true, "float32")
    z_dim = z.shape[-1]
    z_hat, mu, logvar = y_pred[:, :z_dim], y_pred[:, z_dim:2 * z_dim], y_pred[:, 2 * z_dim:3 * z_dim]
    log_gamma = y_pred[:, 3 * z_dim]
    squared_error = ops.sum(ops.square(z - z_hat), axis=-1)
    return squared_error / (2.0 * ops.exp(log_gamma)) + 0.5 * z_dim * log_gamma + kl_per_image(mu, logvar)


def _dense_stack(x, hidden: int, layers: int, seeds, name: str):
    """``layers`` ReLU Dense layers of width ``hidden``, then the stack's input concatenated back.

    The skip concatenation follows the paper's second stage: it keeps a near-identity map
    (u dim = z dim, so the decoder may invert the encoder almost exactly) easy to learn.
    """
    h = x
    for i in range(layers):
        h = keras.layers.Dense(hidden, activation="relu", name=f"{name}_dense_{i}",
                               kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)))(h)
    return keras.layers.Concatenate(name=f"{name}_skip")([h, x]) if layers else x


def _seed_stream(seed: int | None):
    """Endless distinct seeds, one per initializer or noise layer, drawn from ``seed`` (all None if it is)."""
    rng = np.random.default_rng(seed)
    while True:
        yield None if seed is None else int(rng.integers(2**31 - 1))


def build_second_stage(z_dim: int, hidden: int, layers: int, seed: int | None) -> tuple[keras.Model, keras.Model]:
    """The training model z -> [z_hat, mu_u, logvar_u, log gamma] and its decoder u -> z_hat.

    Args:
        z_dim: dimension of the z-points, and of u.
        seed: seeds every initializer and the reparameterisation noise (None: unseeded).

    Returns:
        (model, decoder): model maps (batch, z_dim) to (batch, 3 * z_dim + 1); decoder maps
        (batch, z_dim) u to (batch, z_dim) z_hat and shares its weights with the model.
    """
    seeds = _seed_stream(seed)

    # === Decoder ===
    u_in = keras.Input((z_dim,), name="u")
    h = _dense_stack(u_in, hidden, layers, seeds, "decoder")
    z_hat = keras.layers.Dense(z_dim, name="z_hat",
                               kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)))(h)
    decoder = keras.Model(u_in, z_hat, name="second_stage_decoder")

    # === Encoder ===
    z_in = keras.Input((z_dim,), name="z")
    h = _dense_stack(z_in, hidden, layers, seeds, "encoder")
    mu = keras.layers.Dense(z_dim, name="mu_u",
                            kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)))(h)
    logvar = keras.layers.Dense(z_dim, name="logvar_u",
                                kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)))(h)
    u = Sampling(seed=next(seeds), epsilon_clip=None, name="u_sample")([mu, logvar])

    # === Functional Model ===
    outputs = keras.layers.Concatenate(name="loss_inputs")(
        [decoder(u), mu, logvar, LogGamma(float(np.log(INITIAL_GAMMA)), name="log_gamma")(z_in)]
    )
    model = keras.Model(z_in, outputs, name="second_stage_vae")
    return model, decoder


class IndexBatches(keras.utils.PyDataset):
    """Batches ``(z[rows], z[rows])`` for each row of a precomputed (steps, batch) index matrix.

    One item per optimizer step, so a fit is a fixed number of steps whatever N is, and the
    batch order is a pure function of the index matrix (hence of the seed).
    """

    def __init__(self, z: np.ndarray, index: np.ndarray):
        super().__init__(workers=1, use_multiprocessing=False)
        self.z, self.index = z, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, step: int):
        batch = self.z[self.index[step]]
        return batch, batch
