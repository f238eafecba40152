"""The peer stacks zspace is measured against, written the way their users write them.

- :class:`KerasDocsVAE`: the Keras documentation's VAE pattern (keras.io/examples/generative/vae,
  Keras 3): a ``keras.Model`` whose ``train_step`` runs under ``tf.GradientTape``, with
  total / reconstruction / KL ``Mean`` trackers, trained with ``fit`` on numpy arrays.
- :func:`torch_vae`: a plain PyTorch 2.13 module of the same network, trained by a hand-written
  loop (BCE-with-logits summed per image + KL, Adam).

Both build exactly the architecture of a zspace ``ModelConfig`` (conv stacks, 'same' padding,
LeakyReLU, Dense heads, mirrored Conv2DTranspose decoder, sigmoid output).
"""

from __future__ import annotations

import math

import numpy as np


def keras_docs_vae(config):
    """The Keras documentation's VAE (custom train_step with tf.GradientTape) for ``config``."""
    config = config.resolved()  # the decoder fields left at None mirror the encoder
    import keras
    import tensorflow as tf
    from keras import layers, ops

    class Sampling(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seed_generator = keras.random.SeedGenerator(1337)

        def call(self, inputs):
            z_mean, z_log_var = inputs
            epsilon = keras.random.normal(shape=ops.shape(z_mean), seed=self.seed_generator)
            return z_mean + ops.exp(0.5 * z_log_var) * epsilon

    inputs = keras.Input(shape=config.input_shape)
    x = inputs
    for f, k, s in zip(config.encoder_filters, config.encoder_kernels, config.encoder_strides):
        x = layers.LeakyReLU()(layers.Conv2D(f, k, strides=s, padding="same")(x))
    x = layers.Flatten()(x)
    z_mean = layers.Dense(config.z_dim)(x)
    z_log_var = layers.Dense(config.z_dim)(x)
    z = Sampling()([z_mean, z_log_var])
    encoder = keras.Model(inputs, [z_mean, z_log_var, z])

    latent = keras.Input(shape=(config.z_dim,))
    x = layers.Reshape(config.encoded_shape)(layers.Dense(math.prod(config.encoded_shape))(latent))
    specs = list(zip(config.decoder_filters, config.decoder_kernels, config.decoder_strides))
    for i, (f, k, s) in enumerate(specs):
        last = i == len(specs) - 1
        x = layers.Conv2DTranspose(f, k, strides=s, padding="same", activation="sigmoid" if last else None)(x)
        if not last:
            x = layers.LeakyReLU()(x)
    decoder = keras.Model(latent, x)

    class VAE(keras.Model):
        def __init__(self, encoder, decoder, **kwargs):
            super().__init__(**kwargs)
            self.encoder, self.decoder = encoder, decoder
            self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
            self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
            self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

        @property
        def metrics(self):
            return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

        def train_step(self, data):
            with tf.GradientTape() as tape:
                z_mean, z_log_var, z = self.encoder(data)
                reconstruction = self.decoder(z)
                reconstruction_loss = ops.mean(ops.sum(
                    keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2)))
                kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
                kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
                total_loss = reconstruction_loss + kl_loss
            grads = tape.gradient(total_loss, self.trainable_weights)
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
            self.total_loss_tracker.update_state(total_loss)
            self.reconstruction_loss_tracker.update_state(reconstruction_loss)
            self.kl_loss_tracker.update_state(kl_loss)
            return {m.name: m.result() for m in self.metrics}

    vae = VAE(encoder, decoder)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    return vae


def torch_vae(config):
    """(model, optimizer, train_step(batch) -> loss) in plain PyTorch for ``config``."""
    config = config.resolved()  # the decoder fields left at None mirror the encoder
    import torch
    from torch import nn

    class TorchVAE(nn.Module):
        def __init__(self):
            super().__init__()
            channels = config.input_shape[2]
            blocks, c_in = [], channels
            for f, k, s in zip(config.encoder_filters, config.encoder_kernels, config.encoder_strides):
                blocks += [nn.Conv2d(c_in, f, k, stride=s, padding=k // 2), nn.LeakyReLU(0.3)]
                c_in = f
            self.encoder = nn.Sequential(*blocks, nn.Flatten())
            h, w, c = config.encoded_shape
            self.encoded = (c, h, w)
            self.mu = nn.Linear(h * w * c, config.z_dim)
            self.logvar = nn.Linear(h * w * c, config.z_dim)
            self.dense = nn.Linear(config.z_dim, h * w * c)
            blocks, c_in = [], c
            specs = list(zip(config.decoder_filters, config.decoder_kernels, config.decoder_strides))
            for i, (f, k, s) in enumerate(specs):
                blocks.append(nn.ConvTranspose2d(c_in, f, k, stride=s, padding=k // 2, output_padding=s - 1))
                if i < len(specs) - 1:
                    blocks.append(nn.LeakyReLU(0.3))
                c_in = f
            self.decoder = nn.Sequential(*blocks)

        def forward(self, x):
            h = self.encoder(x)
            mu, logvar = self.mu(h), self.logvar(h)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            logits = self.decoder(self.dense(z).view(-1, *self.encoded))
            return logits, mu, logvar

    model = TorchVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train_step(batch):
        optimizer.zero_grad(set_to_none=True)
        logits, mu, logvar = model(batch)
        reco = nn.functional.binary_cross_entropy_with_logits(logits, batch, reduction="sum") / batch.shape[0]
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()
        loss = reco + kl
        loss.backward()
        optimizer.step()
        return loss

    return model, optimizer, train_step


def training_flops_per_image(config) -> float:
    """Forward multiply-adds x 2 from the layer shapes, times 3 for a training step (forward + backward)."""
    config = config.resolved()  # the decoder fields left at None mirror the encoder
    h, w, c = config.input_shape
    flops = 0.0
    for f, k, s, p in zip(config.encoder_filters, config.encoder_kernels, config.encoder_strides,
                          config.encoder_padding):
        h, w = (-(-h // s), -(-w // s)) if p == "same" else ((h - k) // s + 1, (w - k) // s + 1)
        flops += 2 * k * k * c * f * h * w
        c = f
    flat = h * w * c
    flops += 2 * 2 * flat * config.z_dim + 2 * config.z_dim * flat  # mu, logvar, decoder dense
    for f, k, s in zip(config.decoder_filters, config.decoder_kernels, config.decoder_strides):
        flops += 2 * k * k * c * f * h * w  # transposed conv: one k x k x f scatter per input pixel
        h, w, c = h * s, w * s, f
    return 3 * flops


def gemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Measured float32 matrix-multiply throughput of this machine (numpy), GFLOP/s."""
    import time

    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    a @ b
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9
