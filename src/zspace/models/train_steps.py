"""Backend-specific custom training steps for ``kl_method="train_step"``.

Each computes total = reco + kl_factor * KL (+ any layer losses such as regularisers)
explicitly under its backend's autodiff, applies the optimizer and updates the metrics, so
the reported ``loss`` is the loss that was differentiated.
"""

from __future__ import annotations

import keras

__all__ = ["custom_train_step"]


def _unpack(data):
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    return x, (x if y is None else y), sample_weight


def _tensorflow_step(model, data):
    import tensorflow as tf

    x, y, sample_weight = _unpack(data)
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = model.explicit_loss(y, y_pred, model.losses)
    gradients = tape.gradient(loss, model.trainable_weights)
    model.optimizer.apply_gradients(zip(gradients, model.trainable_weights))
    model._loss_tracker.update_state(loss, sample_weight=tf.shape(x)[0])
    return model.compute_metrics(x, y, y_pred, sample_weight)


def _torch_step(model, data):
    import torch

    x, y, sample_weight = _unpack(data)
    model.zero_grad()
    y_pred = model(x, training=True)
    loss = model.explicit_loss(y, y_pred, model.losses)
    loss.backward()
    trainable = model.trainable_weights
    gradients = [v.value.grad for v in trainable]
    with torch.no_grad():
        model.optimizer.apply(gradients, trainable)
    model._loss_tracker.update_state(loss, sample_weight=x.shape[0])
    return model.compute_metrics(x, y, y_pred, sample_weight)


def _jax_step(model, state, data):
    import jax

    trainable, non_trainable, optimizer_vars, metrics_vars = state
    x, y, sample_weight = _unpack(data)

    def loss_fn(trainable, non_trainable):
        y_pred, non_trainable, losses = model.stateless_call(
            trainable, non_trainable, x, training=True, return_losses=True
        )
        return model.explicit_loss(y, y_pred, losses), (y_pred, non_trainable)

    (loss, (y_pred, non_trainable)), gradients = jax.value_and_grad(loss_fn, has_aux=True)(
        trainable, non_trainable
    )
    trainable, optimizer_vars = model.optimizer.stateless_apply(optimizer_vars, gradients, trainable)
    mapping = list(zip(model.metrics_variables, metrics_vars))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        model._loss_tracker.update_state(loss, sample_weight=x.shape[0])
        logs = model.compute_metrics(x, y, y_pred, sample_weight)
    metrics_vars = [scope.get_current_value(v) for v in model.metrics_variables]
    return logs, (trainable, non_trainable, optimizer_vars, metrics_vars)


_STEPS = {"tensorflow": _tensorflow_step, "torch": _torch_step, "jax": _jax_step}


def custom_train_step(model, *args):
    """Dispatches to the step of the active Keras backend (JAX's takes ``state`` first)."""
    backend = keras.backend.backend()
    if backend not in _STEPS:
        raise NotImplementedError(
            f'kl_method="train_step" supports the tensorflow, jax and torch backends. '
            f"Received backend: {backend}"
        )
    return _STEPS[backend](model, *args)
