"""Functional encoder and decoder networks built from a ModelConfig."""

from __future__ import annotations

import math

import keras
from keras import layers

from zspace.config import ModelConfig
from zspace.models.layers import FusibleLeakyReLU, Sampling, SoftUpperClip

__all__ = ["build_encoder", "build_decoder"]


def _initializer(config: ModelConfig) -> str:
    # SELU's self-normalisation assumes LeCun-normal weights.
    return "lecun_normal" if config.activation == "selu" else "glorot_uniform"


def _hidden_activation(x, config: ModelConfig, prefix: str):
    """[BatchNorm] -> activation -> [Dropout] (AlphaDropout for selu)."""
    if config.batch_norm:
        x = layers.BatchNormalization(name=f"{prefix}_bn")(x)
    if config.activation == "leaky_relu":
        x = FusibleLeakyReLU(name=f"{prefix}_act")(x)
    else:
        x = layers.Activation(config.activation, name=f"{prefix}_act")(x)
    if config.dropout_rate > 0:
        dropout = layers.AlphaDropout if config.activation == "selu" else layers.Dropout
        x = dropout(config.dropout_rate, name=f"{prefix}_dropout")(x)
    return x


def build_encoder(config: ModelConfig, seed: int | None = None) -> keras.Model:
    """Image (batch, H, W, C) -> {"z"} for an AE, {"mu", "logvar", "z"} for a VAE, each (batch, z_dim)."""
    init = _initializer(config)
    # === Layers ===
    image = keras.Input(config.input_shape, name="image")
    x = image
    layer_specs = zip(
        config.encoder_filters, config.encoder_kernels, config.encoder_strides,
        config.encoder_padding,
    )
    for i, (filters, kernel, stride, padding) in enumerate(layer_specs):
        x = layers.Conv2D(
            filters, kernel, strides=stride, padding=padding, kernel_initializer=init,
            name=f"encoder_conv_{i}",
        )(x)
        x = _hidden_activation(x, config, f"encoder_{i}")
    x = layers.Flatten(name="flatten")(x)
    if config.encoder_dense_units:
        x = layers.Dense(config.encoder_dense_units, kernel_initializer=init, name="encoder_dense")(x)
        x = _hidden_activation(x, config, "encoder_dense")
    # === Functional Model ===
    if config.kind == "ae":
        z = layers.Dense(config.z_dim, name="z")(x)
        return keras.Model(image, {"z": z}, name="encoder")
    mu = layers.Dense(config.z_dim, name="mu")(x)
    logvar = layers.Dense(config.z_dim, name="logvar_raw")(x)
    logvar = SoftUpperClip(config.logvar_max, name="logvar")(logvar)
    z = Sampling(
        seed=seed, epsilon_clip=config.epsilon_clip, epsilon_scale=config.epsilon_scale,
        name="sampling",
    )([mu, logvar])
    return keras.Model(image, {"mu": mu, "logvar": logvar, "z": z}, name="encoder")


def build_decoder(config: ModelConfig) -> keras.Model:
    """z (batch, z_dim) -> image (batch, H, W, C) in [0, 1] (sigmoid output)."""
    init = _initializer(config)
    # === Layers ===
    z = keras.Input((config.z_dim,), name="z")
    encoded_shape = config.encoded_shape
    x = layers.Dense(math.prod(encoded_shape), kernel_initializer=init, name="decoder_dense")(z)
    x = layers.Reshape(encoded_shape, name="decoder_reshape")(x)
    decoder = config.resolved()  # decoder fields left at None mirror the encoder
    layer_specs = list(zip(
        decoder.decoder_filters, decoder.decoder_kernels, decoder.decoder_strides,
        decoder.decoder_padding,
    ))
    last = len(layer_specs) - 1
    for i, (filters, kernel, stride, padding) in enumerate(layer_specs):
        x = layers.Conv2DTranspose(
            filters, kernel, strides=stride, padding=padding,
            kernel_initializer="glorot_uniform" if i == last else init,
            name=f"decoder_conv_{i}",
        )(x)
        if i < last:
            x = _hidden_activation(x, config, f"decoder_{i}")
    image = layers.Activation("sigmoid", dtype="float32", name="image")(x)
    # === Functional Model ===
    return keras.Model(z, image, name="decoder")
