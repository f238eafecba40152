"""The Autoencoder / VAE model: one Keras model class for every kind and KL method."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from zspace.config import ModelConfig
from zspace.models.kl_methods import KLMethod, kl_method_for
from zspace.models.layers import PerThreadLosses
from zspace.models.losses import batch_mean, batch_rows, kl_per_image, per_replica, whole_batch
from zspace.models.networks import build_decoder, build_encoder

__all__ = ["Autoencoder", "build_model"]


@keras.saving.register_keras_serializable(package="zspace")
class FirstNonFiniteStep(keras.metrics.Metric):
    """1-based index (since the last reset) of the first update with a non-finite value; 0 if none.

    Computed in the graph, so it names the exact step even when several steps run per
    compiled call (``steps_per_execution``) and callbacks only see every k-th step.
    """

    def __init__(self, name="nonfinite_step", **kwargs):
        super().__init__(name=name, **kwargs)
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="count")
        self.first = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="first")

    def update_state(self, value, sample_weight=None):
        # Plain tensors in ops.where: JAX >= 0.10.2 refuses Keras variables there.
        count = ops.convert_to_tensor(self.count) + 1.0
        first = ops.convert_to_tensor(self.first)
        bad = ops.logical_not(ops.all(ops.isfinite(value)))
        self.count.assign(count)
        self.first.assign(ops.where(ops.logical_and(bad, ops.equal(first, 0.0)), count, first))

    def result(self):
        return ops.convert_to_tensor(self.first)


@keras.saving.register_keras_serializable(package="zspace")
class Autoencoder(PerThreadLosses, keras.Model):
    """Convolutional AE or VAE.

    ``call`` returns a dict: ``reconstruction`` (batch, H, W, C) and ``z`` (batch, z_dim),
    plus ``mu`` and ``logvar`` (batch, z_dim) and ``weighted_kl`` (batch,), each image's
    kl_factor * kl_scale * KL in nats, for a VAE.

    How the KL term reaches the optimizer depends on ``config.kl_method`` ("layer",
    "outputs", "add_loss" or "train_step"): ``self.kl_method`` is that method's object from
    :mod:`zspace.models.kl_methods`, which holds everything the method changes (layers,
    forward pass, compile losses, loss, training step). All four give the same loss and
    gradients for the same batch, weights and noise. An AE has no KL term (``NoKL``).

    Reported metrics (batch-size-weighted means, so ``total_loss == reco_loss + kl_loss``
    also holds for epoch means): ``loss`` and ``total_loss`` (the differentiated total),
    ``reco_loss`` (= total - KL terms; per image, or per pixel value with
    ``reconstruction_reduction="mean"``), ``reco_loss_per_pixel`` and ``reco_loss_per_image`` (the
    same in every run), ``kl_loss`` (weighted by ``kl_factor``) and, for a
    VAE, ``kl_divergence`` (unweighted KL, nats per image); ``nonfinite_step``
    (:class:`FirstNonFiniteStep` of the total). The reconstruction term is not computed a
    second time for the metrics: that pass over every pixel cost 1-3% of a training step.
    """

    def __init__(self, config: ModelConfig | dict[str, Any], seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.model_config = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
        self.seed = seed
        cfg = self.model_config
        self.is_vae = cfg.kind == "vae"
        self.kl_method: KLMethod = kl_method_for(cfg)
        # === Layers ===
        self.encoder = build_encoder(cfg, seed=seed)
        self.decoder = build_decoder(cfg)
        self.kl_method.build(self)
        # Multiplies the KL weight; the KL warm-up callback ramps it from 0 to 1.
        self.kl_scale = self.add_weight(shape=(), initializer="ones", trainable=False, name="kl_scale")
        # === Metrics ===
        # The model's own total-loss tracker: Keras' `loss` tracker is private and is not
        # updated by the "train_step" method's custom steps.
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")
        if self.is_vae:
            self.kl_divergence_tracker = keras.metrics.Mean(name="kl_divergence")
        self.nonfinite_step_tracker = FirstNonFiniteStep(name="nonfinite_step")
        self.build((None, *cfg.input_shape))

    def build(self, input_shape):
        # Encoder and decoder are functional models, built at construction.
        self.built = True

    # --- forward ------------------------------------------------------------------
    def call(self, inputs, training=None):
        outputs = dict(self.encoder(inputs, training=training))
        if self.is_vae:
            # An output rather than a read of kl_scale in compute_metrics: Keras' JAX trainer
            # empties the model's variables while it trains, so only outputs reach the metrics.
            outputs["weighted_kl"] = self.kl_weight() * kl_per_image(outputs["mu"], outputs["logvar"])
        outputs = self.kl_method.forward(self, outputs)
        outputs["reconstruction"] = self.decoder(outputs["z"], training=training)
        return outputs

    def kl_weight(self):
        """kl_factor * kl_scale (scalar, float32): the weight of the KL term right now."""
        return self.model_config.kl_factor * ops.cast(self.kl_scale, "float32")

    # --- training -----------------------------------------------------------------
    def compile(self, optimizer="adam", **kwargs):
        """Compiles with the losses the KL method needs; pass only optimizer and options."""
        if "loss" in kwargs:
            raise ValueError("Autoencoder.compile sets its own loss; do not pass `loss`.")
        super().compile(optimizer=optimizer, loss=self.kl_method.compile_loss(self.model_config), **kwargs)

    def get_compile_config(self):
        if not self.compiled:
            return None
        return {"optimizer": keras.optimizers.serialize(self.optimizer)}

    def compile_from_config(self, config):
        self.compile(optimizer=keras.optimizers.deserialize(config["optimizer"]))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The batch's total loss (scalar) by the KL method; also tracks it.

        Under a tf.distribute strategy of several replicas, each returns its share of the global
        batch's mean (:func:`per_replica`: the replicas' gradients are summed); the tracked value is
        the replica's own mean (the metric weighs replicas by their images).

        ``sample_weight`` (batch,), given only by JAX's DataParallel, pads a batch that does not divide by
        the devices: 0 on the padding rows, padded / real on the others (see :func:`batch_mean`).
        """
        total = whole_batch(self.kl_method.compute_loss(self, x, y, y_pred, sample_weight, training))
        self.track_total_loss(total, y_pred, sample_weight)
        return per_replica(total, ops.shape(y_pred["z"])[0])

    def track_total_loss(self, total, y_pred, sample_weight=None):
        """Feeds one step's total loss (scalar) to ``total_loss`` and ``nonfinite_step``.

        Called once per train/test step: by :meth:`compute_loss` in Keras' steps, by the
        "train_step" method's own steps. Under JAX both run where metric variables are mapped.
        """
        self.total_loss_tracker.update_state(total, sample_weight=batch_rows(y_pred, sample_weight))
        self.nonfinite_step_tracker.update_state(total)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        batch_size = batch_rows(y_pred, sample_weight)
        if self.is_vae:
            raw_kl = batch_mean(kl_per_image(y_pred["mu"], y_pred["logvar"]), sample_weight)
            self.kl_divergence_tracker.update_state(raw_kl, sample_weight=batch_size)
            kl = batch_mean(y_pred["weighted_kl"], sample_weight)
        else:
            kl = ops.zeros((), dtype="float32")
        self.kl_loss_tracker.update_state(kl, sample_weight=batch_size)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def get_metrics_result(self):
        logs = super().get_metrics_result()
        # Keras' own `loss` equals total_loss in its steps and stays 0 in "train_step"'s.
        logs["loss"] = logs["total_loss"]
        logs["reco_loss"] = logs["total_loss"] - logs["kl_loss"]
        logs.update(self.reco_loss_scales(logs["reco_loss"]))
        return logs

    def reco_loss_scales(self, reco_loss):
        """``reco_loss`` (in ``reconstruction_reduction``'s unit) as ``reco_loss_per_pixel`` (per pixel
        value: / H*W*C for "sum") and ``reco_loss_per_image`` (summed over H*W*C: x H*W*C for "mean")."""
        n = float(self.model_config.pixel_values)
        if self.model_config.reconstruction_reduction == "sum":
            return {"reco_loss_per_pixel": reco_loss / n, "reco_loss_per_image": reco_loss}
        return {"reco_loss_per_pixel": reco_loss, "reco_loss_per_image": reco_loss * n}

    def train_step(self, *args):
        return self.kl_method.train_step(self, *args)

    # --- inference ----------------------------------------------------------------
    def encode(self, images, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Images (N, H, W, C) in [0, 1] -> {"z"} (+ "mu", "logvar" for a VAE), each (N, z_dim)."""
        return _predict_fixed_batches(self.encoder, images, batch_size)

    def decode(self, z, batch_size: int = 256) -> np.ndarray:
        """z (N, z_dim) -> images (N, H, W, C) in [0, 1]."""
        return _predict_fixed_batches(self.decoder, z, batch_size)

    def reconstruct(self, images, batch_size: int = 256) -> np.ndarray:
        """Images (N, H, W, C) -> decoded images of the same shape (through the sampled z)."""
        return self.decode(self.encode(images, batch_size)["z"], batch_size)

    @property
    def sampling_layer(self):
        return self.encoder.get_layer("sampling") if self.is_vae else None

    def noise_state(self):
        """The sampling layer's seed-generator state (a copy), or None for an AE.

        Every VAE encode advances it; :meth:`set_noise_state` puts it back, so an operation can
        draw the same z whatever ran on the model before.
        """
        return None if not self.is_vae else keras.ops.convert_to_numpy(self.sampling_layer.seed_generator.state)

    def set_noise_state(self, state) -> None:
        if state is not None:
            self.sampling_layer.seed_generator.state.assign(state)

    def set_epsilon_scale(self, value: float) -> None:
        """Changes the noise scale of z = mu + sigma * eps * scale on a trained model (0: z = mu)."""
        if not self.is_vae:
            raise ValueError("epsilon_scale only exists for kind='vae' models.")
        if value < 0:
            raise ValueError(f"`epsilon_scale` must be non-negative. Received: {value}")
        self.sampling_layer.epsilon_scale.assign(float(value))

    # === Config ===
    def get_config(self):
        return {**super().get_config(), "config": self.model_config.to_dict(), "seed": self.seed}


def _predict_fixed_batches(network: keras.Model, x, batch_size: int):
    """``network.predict`` in batches of one shape: the tail is zero-padded to a full batch.

    A partial last batch of a new size makes TensorFlow retrace the predict function on
    every call with a new array length; padding keeps one trace per batch size.
    """
    x = np.asarray(x, dtype="float32")
    n_full = len(x) - len(x) % batch_size
    parts = []
    if n_full:
        parts.append(network.predict(x[:n_full], batch_size=batch_size, verbose=0))
    if n_full < len(x):
        tail = np.zeros((batch_size, *x.shape[1:]), dtype="float32")
        tail[: len(x) - n_full] = x[n_full:]
        out = network.predict(tail, batch_size=batch_size, verbose=0)
        parts.append(keras.tree.map_structure(lambda a: a[: len(x) - n_full], out))
    if len(parts) == 1:
        return parts[0]
    return keras.tree.map_structure(lambda *arrays: np.concatenate(arrays), *parts)


def build_model(config: ModelConfig, seed: int | None = None, precision: str = "float32") -> Autoencoder:
    """A new, uncompiled Autoencoder for ``config`` (weights from Keras' global seed).

    Args:
        precision: Keras dtype policy of the layers ("float32", "mixed_bfloat16",
            "mixed_float16"); the sampling, KL and output layers and the losses stay float32.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)  # layers take the global policy when they are created
    try:
        return Autoencoder(config, seed=seed, name=f"{config.kind}")
    finally:
        keras.config.set_dtype_policy(previous)
