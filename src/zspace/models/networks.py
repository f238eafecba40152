"""Functional encoder and decoder networks built from a ModelConfig."""

from __future__ import annotations

import math

import keras
from keras import layers

from zspace.config import RESIDUAL_KERNEL, ModelConfig, resize_padding
from zspace.models.layers import FusibleLeakyReLU, Sampling, SoftUpperClip

__all__ = ["build_encoder", "build_decoder"]


def _initializer(config: ModelConfig) -> str:
    # SELU's self-normalisation assumes LeCun-normal weights.
    return "lecun_normal" if config.activation == "selu" else "glorot_uniform"


def _activation(x, config: ModelConfig, name: str):
    if config.activation == "leaky_relu":
        return FusibleLeakyReLU(name=name)(x)
    return layers.Activation(config.activation, name=name)(x)


def _hidden_activation(x, config: ModelConfig, prefix: str):
    """[BatchNorm] -> activation -> [Dropout] (AlphaDropout for selu)."""
    if config.batch_norm:
        x = layers.BatchNormalization(name=f"{prefix}_bn")(x)
    x = _activation(x, config, f"{prefix}_act")
    if config.dropout_rate > 0:
        dropout = layers.AlphaDropout if config.activation == "selu" else layers.Dropout
        x = dropout(config.dropout_rate, name=f"{prefix}_dropout")(x)
    return x


def _residual_blocks(x, config: ModelConfig, prefix: str, count: int):
    """``count`` residual blocks on x (batch, h, w, c), each keeping its shape:
    act(x + [BN](Conv(hidden(Conv(x))))), with "hidden" = [BN] -> act -> [Dropout].

    Built from stock Keras layers (Conv2D, BatchNormalization, Add) rather than one custom layer:
    the functional graph saves and loads with safe_mode like every other layer, and the safe
    loader bounds each Conv2D's weights from its own recorded shape (zspace.models.saving).
    Layer names: ``{prefix}_res_{j}_conv_a`` / ``_conv_b`` / ``_add`` / ``_act``.
    """
    init = _initializer(config)
    filters = x.shape[-1]
    for j in range(count):
        name = f"{prefix}_res_{j}"
        y = layers.Conv2D(filters, RESIDUAL_KERNEL, padding="same", kernel_initializer=init, name=f"{name}_conv_a")(x)
        y = _hidden_activation(y, config, f"{name}_a")
        y = layers.Conv2D(filters, RESIDUAL_KERNEL, padding="same", kernel_initializer=init, name=f"{name}_conv_b")(y)
        if config.batch_norm:
            y = layers.BatchNormalization(name=f"{name}_b_bn")(y)
        x = layers.Add(name=f"{name}_add")([x, y])
        x = _activation(x, config, f"{name}_act")
    return x


def _decoder_layer(x, config: ModelConfig, i: int, filters: int, kernel: int, stride: int, padding: str, init: str):
    """One decoder layer: Conv2DTranspose, or (decoder_upsampling "nearest" / "bilinear") UpSampling2D by
    ``stride`` -> [ZeroPadding2D for "valid"] -> Conv2D; both give ModelConfig's ``_deconv_out`` size."""
    name = f"decoder_conv_{i}"
    if config.decoder_upsampling == "transpose":
        return layers.Conv2DTranspose(filters, kernel, strides=stride, padding=padding, kernel_initializer=init,
                                      name=name)(x)
    if stride > 1:
        x = layers.UpSampling2D(stride, interpolation=config.decoder_upsampling, name=f"decoder_upsample_{i}")(x)
    pad = resize_padding(kernel, stride, padding)
    if pad != (0, 0):
        x = layers.ZeroPadding2D((pad, pad), name=f"decoder_pad_{i}")(x)
    return layers.Conv2D(filters, kernel, padding=padding, kernel_initializer=init, name=name)(x)


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
        x = _residual_blocks(x, config, f"encoder_{i}", config.residual_blocks_in("encoder"))
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
        x = _decoder_layer(x, config, i, filters, kernel, stride, padding,
                           "glorot_uniform" if i == last else init)
        if i < last:
            x = _hidden_activation(x, config, f"decoder_{i}")
            x = _residual_blocks(x, config, f"decoder_{i}", config.residual_blocks_in("decoder"))
    image = layers.Activation("sigmoid", dtype="float32", name="image")(x)
    # === Functional Model ===
    return keras.Model(z, image, name="decoder")
