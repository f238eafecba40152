"""The four ways the KL term reaches the optimizer (``ModelConfig.kl_method``), one class each.

:class:`~zspace.models.autoencoder.Autoencoder` holds one of these objects as ``kl_method``
and calls its hooks; everything a method changes is in its class, so a reader follows one
method top to bottom. The hooks (defaults in :class:`KLMethod`: no KL term, Keras' own loss
path and training step):

- ``build(model)``, in ``__init__``: the layers the method needs, set as model attributes so
  Keras tracks, calls and saves them.
- ``forward(model, outputs)``, in ``call`` between encoder and decoder: may change the
  outputs or add losses. ``outputs`` already holds ``z``, ``mu``, ``logvar`` (batch, z_dim)
  and ``weighted_kl`` (batch,), kl_factor * kl_scale * KL in nats.
- ``compile_loss(config)``: the ``loss`` argument of ``keras.Model.compile``.
- ``compute_loss(model, x, y, y_pred, sample_weight, training)``: the total loss of a
  batch (scalar): reco + weighted KL + any other ``add_loss`` terms (regularisers).
- ``train_step(model, *args)``: one training step.

All four give the same loss and gradients for the same batch, weights and noise
(tests/test_models.py checks it on TensorFlow, PyTorch and JAX). An AE uses :class:`NoKL`.
A batch padded to a multiple of the devices (JAX's DataParallel) comes with sample weights,
0 on its padding rows: every method's loss is then the mean over the real rows (tested).
"""

from __future__ import annotations

import keras
from keras import ops

from zspace.config import ModelConfig
from zspace.models.layers import KLDivergenceLoss
from zspace.models.losses import (LogvarKLLoss, MuKLLoss, ReconstructionLoss, batch_mean, per_replica,
                                  reconstruction_per_image, replicas_in_sync)

__all__ = [
    "KLMethod", "NoKL", "LayerKL", "OutputsKL", "AddLossKL", "TrainStepKL", "KL_METHODS", "kl_method_for",
]


class KLMethod:
    """Base: Keras' compile-loss path with only the reconstruction loss (no KL term)."""

    name = "none"

    def build(self, model) -> None:
        pass

    def forward(self, model, outputs: dict) -> dict:
        return outputs

    def compile_loss(self, config: ModelConfig):
        return {"reconstruction": ReconstructionLoss(config.reconstruction_loss, config.reconstruction_reduction)}

    def compute_loss(self, model, x, y, y_pred, sample_weight, training):
        # Keras' own: compile's losses on (y, y_pred) plus everything in model.losses.
        return keras.Model.compute_loss(model, x, y, y_pred, sample_weight, training)

    def train_step(self, model, *args):
        # Keras' own step for the backend (it calls model.compute_loss).
        return keras.Model.train_step(model, *args)


class NoKL(KLMethod):
    """A plain AE: the loss is the reconstruction alone."""


class _KLThroughAddLoss(KLMethod):
    """A method whose KL term reaches the loss through ``add_loss``, which sees no sample weights."""

    def compute_loss(self, model, x, y, y_pred, sample_weight, training):
        total = super().compute_loss(model, x, y, y_pred, sample_weight, training)
        if sample_weight is None:
            return total
        # A padded batch (JAX's DataParallel): the added KL is the mean over every row, padding included;
        # swap it for the weighted mean. With weights all 1 the two terms are one value and cancel exactly.
        kl = y_pred["weighted_kl"]
        return total + per_replica_count(batch_mean(kl, sample_weight) - ops.mean(kl))


class LayerKL(_KLThroughAddLoss):
    """A :class:`KLDivergenceLoss` layer on ``[mu, logvar]`` calls ``add_loss`` in the forward pass."""

    name = "layer"

    def build(self, model):
        # The attribute name is part of saved models (the weights file walks attributes).
        model.kl_loss_layer = KLDivergenceLoss(model.model_config.kl_factor, name="kl_loss_layer")

    def forward(self, model, outputs):
        outputs["mu"], outputs["logvar"] = model.kl_loss_layer(
            [outputs["mu"], outputs["logvar"]], scale=model.kl_scale
        )
        return outputs


class OutputsKL(KLMethod):
    """``mu`` and ``logvar`` are outputs with their own loss functions given to ``compile``.

    The KL splits into a mu part and a logvar part (:class:`MuKLLoss`, :class:`LogvarKLLoss`).
    They ignore ``kl_scale``, so the KL warm-up needs another method (config.py refuses it).
    """

    name = "outputs"

    def compile_loss(self, config):
        return {
            **super().compile_loss(config),
            "mu": MuKLLoss(config.kl_factor),
            "logvar": LogvarKLLoss(config.kl_factor),
        }

    def compute_loss(self, model, x, y, y_pred, sample_weight, training):
        # The KL losses ignore y_true; hand them the outputs so the structures match.
        y = {"reconstruction": y, "mu": y_pred["mu"], "logvar": y_pred["logvar"]}
        return super().compute_loss(model, x, y, y_pred, sample_weight, training)


class AddLossKL(_KLThroughAddLoss):
    """The model calls ``self.add_loss`` in its own ``call``.

    (Keras 2 let a functional model take ``model.add_loss(kl_tensor)`` on symbolic tensors;
    Keras 3's ``Functional.add_loss`` raises ``NotImplementedError``: a Keras 3 functional
    graph only records layer calls, so a loss built from raw ops on symbolic tensors could
    never be re-evaluated at training time.)
    """

    name = "add_loss"

    def forward(self, model, outputs):
        model.add_loss(ops.mean(outputs["weighted_kl"]))
        return outputs


class TrainStepKL(KLMethod):
    """A custom training step computes reco + KL explicitly under the backend's autodiff.

    Nothing goes through ``compile``'s loss. One step per backend: TensorFlow (GradientTape),
    PyTorch (``backward``) and JAX (stateless, ``jax.value_and_grad``). Each applies the
    optimizer's loss scaling (mixed_float16), then tracks the unscaled total like
    ``Autoencoder.compute_loss`` does for Keras' own steps.
    """

    name = "train_step"

    def compile_loss(self, config):
        return None

    def total_loss(self, model, y, y_pred, losses, sample_weight=None):
        """reco + weighted KL + the other ``add_loss`` terms (regularisers): scalar, float32. The batch
        means are weighted by ``sample_weight`` (a padded batch, see ``Autoencoder.compute_loss``)."""
        config = model.model_config
        reco = reconstruction_per_image(y, y_pred["reconstruction"], config.reconstruction_loss,
                                        config.reconstruction_reduction)
        total = batch_mean(reco, sample_weight)
        if "weighted_kl" in y_pred:
            total = total + batch_mean(y_pred["weighted_kl"], sample_weight)
        for loss in losses:
            total = total + ops.cast(ops.sum(loss), "float32")
        return total

    def compute_loss(self, model, x, y, y_pred, sample_weight, training):
        # Keras' test step (evaluate) uses this: the loss the custom step trains on, in Keras' convention
        # (a replica's mean / the replica count, as Keras' own losses).
        return per_replica_count(self.total_loss(model, y, y_pred, model.losses, sample_weight))

    def train_step(self, model, *args):
        step = {"tensorflow": self._tensorflow_step, "torch": self._torch_step, "jax": self._jax_step}
        backend = keras.backend.backend()
        if backend not in step:
            raise NotImplementedError(
                f'kl_method="train_step" supports the tensorflow, jax and torch backends. '
                f"Received backend: {backend}"
            )
        return step[backend](model, *args)

    def _tensorflow_step(self, model, data):
        import tensorflow as tf

        x, y, sample_weight = _unpack(data)
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = self.total_loss(model, y, y_pred, model.losses, sample_weight)
            # the replicas sum their gradients: each contributes its share of the global mean
            scaled = model.optimizer.scale_loss(per_replica(loss, ops.shape(y_pred["z"])[0]))
        gradients = tape.gradient(scaled, model.trainable_weights)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_weights))
        model.track_total_loss(loss, y_pred, sample_weight)
        return model.compute_metrics(x, y, y_pred, sample_weight)

    def _torch_step(self, model, data):
        import torch

        x, y, sample_weight = _unpack(data)
        model.zero_grad()
        y_pred = model(x, training=True)
        loss = self.total_loss(model, y, y_pred, model.losses, sample_weight)
        model.optimizer.scale_loss(loss).backward()
        trainable = model.trainable_weights
        gradients = [v.value.grad for v in trainable]
        with torch.no_grad():
            model.optimizer.apply(gradients, trainable)
        model.track_total_loss(loss, y_pred, sample_weight)
        return model.compute_metrics(x, y, y_pred, sample_weight)

    def _jax_step(self, model, state, data):
        import jax

        trainable, non_trainable, optimizer_vars, metrics_vars = state
        x, y, sample_weight = _unpack(data)

        def loss_fn(trainable, non_trainable):
            y_pred, non_trainable, losses = model.stateless_call(
                trainable, non_trainable, x, training=True, return_losses=True
            )
            loss = self.total_loss(model, y, y_pred, losses, sample_weight)
            # The loss scale is an optimizer variable: read it from optimizer_vars.
            with keras.StatelessScope(state_mapping=list(zip(model.optimizer.variables, optimizer_vars))):
                scaled = model.optimizer.scale_loss(loss)
            return scaled, (loss, y_pred, non_trainable)

        (_, (loss, y_pred, non_trainable)), gradients = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable
        )
        trainable, optimizer_vars = model.optimizer.stateless_apply(optimizer_vars, gradients, trainable)
        # Metrics update statelessly too: map their variables to this step's values.
        with keras.StatelessScope(state_mapping=list(zip(model.metrics_variables, metrics_vars))) as scope:
            model.track_total_loss(loss, y_pred, sample_weight)
            logs = model.compute_metrics(x, y, y_pred, sample_weight)
        metrics_vars = [scope.get_current_value(v) for v in model.metrics_variables]
        return logs, (trainable, non_trainable, optimizer_vars, metrics_vars)


def per_replica_count(loss):
    """Keras' convention for a loss under tf.distribute: a replica's mean / the replica count."""
    n = replicas_in_sync()
    return loss if n == 1 else loss * ops.cast(1.0 / n, loss.dtype)


def _unpack(data):
    """(x, y, sample_weight) of a batch; y defaults to x (an autoencoder's target)."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    return x, (x if y is None else y), sample_weight


KL_METHODS: dict[str, type[KLMethod]] = {
    cls.name: cls for cls in (LayerKL, OutputsKL, AddLossKL, TrainStepKL)
}


def kl_method_for(config: ModelConfig) -> KLMethod:
    """The KL method object of ``config``: ``NoKL`` for an AE, else ``config.kl_method``'s."""
    if config.kind != "vae":
        return NoKL()
    return KL_METHODS[config.kl_method]()
