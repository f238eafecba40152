"""Size of a zspace model from its ModelConfig, known before anything is built, and its limits.

:func:`model_size` counts, layer by layer, the weights (scalars and tensors, exactly as Keras
creates them) and the activation values per image (the output of every conv / dense layer plus
the input image, and a resize decoder's upsampled and padded maps: what one image needs in memory
in a forward pass) of the Autoencoder that
``build_model`` would build. :func:`check_model_size` refuses a config above the limits; it runs
when a ModelConfig is constructed, so a config file, ``--set z_dim=...`` and the config inside a
model file are all refused before Keras allocates anything.

Limits (an environment variable of the same name, read at each check, replaces the default):

``ZSPACE_MAX_MODEL_PARAMETERS`` (:data:`MAX_MODEL_PARAMETERS`, 100,000,000)
    Weights of one model (400 MB in float32; a checkpoint with Adam's two moments holds three times
    that). The largest shipped config (configs/celeba-ae-z1600.toml) has about 15 million.
``ZSPACE_MAX_ACTIVATIONS_PER_IMAGE`` (:data:`MAX_ACTIVATIONS_PER_IMAGE`, 2**28 = 268,435,456)
    Activation values of one image (1 GiB in float32); a batch needs that times its size.
:data:`MAX_CONV_LAYERS` (256, not configurable)
    Conv layers of the encoder, and of the decoder, residual blocks' convolutions included: each
    costs Keras objects and graph nodes whatever its size.

No Keras imports: the CLI checks configs before TensorFlow starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zspace.config_fields import config_error
from zspace.errors import ConfigError

if TYPE_CHECKING:
    from zspace.config import ModelConfig

__all__ = ["MAX_MODEL_PARAMETERS", "MAX_ACTIVATIONS_PER_IMAGE", "MAX_CONV_LAYERS", "LayerSize", "ModelSize",
           "model_size", "check_model_size", "env_limit", "approx"]

MAX_MODEL_PARAMETERS = 100_000_000
MAX_ACTIVATIONS_PER_IMAGE = 2**28
MAX_CONV_LAYERS = 256


def env_limit(name: str, default: int) -> int:
    """The positive integer in environment variable ``name`` (``_`` separators allowed), else ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"environment variable {name} must be a positive integer. Received: {raw[:80]!r}")
    return value


def approx(n: int) -> str:
    """``n`` for a message: exact below a million, else 3 significant digits (any size of int)."""
    if n < 10**6:
        return f"{n:,}"
    if n.bit_length() < 1000:
        return f"{float(n):.3g}"
    return f"about 2^{n.bit_length() - 1}"


@dataclass(frozen=True)
class LayerSize:
    """One layer of the model.

    Attributes:
        name: the layer's name in the built model ("encoder_conv_0", "mu", ...).
        parameters: scalars in its weights.
        tensors: its weight tensors (variables).
        activations: values of its output for one image.
        factors: the config field that sets each dimension of the weights -> that dimension's size;
            the largest names the field that makes the layer large.
        activation_factors: the same for the dimensions of the output.
    """

    name: str
    parameters: int = 0
    tensors: int = 0
    activations: int = 0
    factors: dict[str, int] = field(default_factory=dict)
    activation_factors: dict[str, int] = field(default_factory=dict)

    def main_field(self, attribute: str) -> str:
        """The field that makes ``attribute`` ("parameters" or "activations") of this layer large."""
        factors = self.factors if attribute == "parameters" else self.activation_factors
        return max(factors, key=factors.get) if factors else "input_shape"


@dataclass(frozen=True)
class ModelSize:
    """The layers of a model and their totals."""

    layers: tuple[LayerSize, ...]

    @property
    def parameters(self) -> int:
        return sum(layer.parameters for layer in self.layers)

    @property
    def tensors(self) -> int:
        return sum(layer.tensors for layer in self.layers)

    @property
    def activations(self) -> int:
        return sum(layer.activations for layer in self.layers)


def _dense(name: str, n_in: int, units: int, in_field: str, units_field: str, batch_norm: bool) -> list[LayerSize]:
    """A Dense layer (kernel and bias) and, with batch_norm, its BatchNormalization (4 per unit)."""
    layers = [LayerSize(name, n_in * units + units, 2, units, {in_field: n_in, units_field: units},
                        {units_field: units})]
    if batch_norm:
        layers.append(LayerSize(f"{name}_bn", 4 * units, 4, 0, {units_field: units}))
    return layers


def _conv(name: str, c_in: int, filters: int, kernel: int, spatial: int, fields: tuple[str, str, str],
          batch_norm: bool) -> list[LayerSize]:
    """A Conv2D / Conv2DTranspose (kernel k*k*c_in*filters, bias) and optional BatchNormalization."""
    in_field, filters_field, kernel_field = fields
    factors = {kernel_field: kernel * kernel, in_field: c_in}
    factors[filters_field] = max(filters, factors.get(filters_field, 0))
    layers = [LayerSize(name, kernel * kernel * c_in * filters + filters, 2, spatial * filters, factors,
                        {"input_shape": spatial, filters_field: filters})]
    if batch_norm:
        layers.append(LayerSize(f"{name}_bn", 4 * filters, 4, 0, {filters_field: filters}))
    return layers


def _residual(prefix: str, channels: int, spatial: int, count: int, filters_field: str, config: ModelConfig
              ) -> list[LayerSize]:
    """``count`` residual blocks of ``channels`` (zspace.models.networks): two 3x3 Conv2D each, with
    their BatchNormalization when batch_norm is on (the Add and activations hold no weights)."""
    from zspace.config import RESIDUAL_KERNEL  # here: zspace.config imports this module

    fields = (filters_field, filters_field, "residual_blocks")
    layers: list[LayerSize] = []
    for j in range(count):
        for part in ("a", "b"):
            layers += _conv(f"{prefix}_res_{j}_conv_{part}", channels, channels, RESIDUAL_KERNEL, spatial, fields,
                            config.batch_norm)
    return layers


def _resampled(name: str, values: int) -> LayerSize:
    """The output of a resize decoder's UpSampling2D or ZeroPadding2D: activations, no weights."""
    return LayerSize(name, activations=values, activation_factors={"decoder_strides": values})


def model_size(config: ModelConfig) -> ModelSize:
    """The layers :func:`zspace.models.build_model` builds for ``config``, with their sizes.

    Exact for the weights (``parameters`` equals ``sum(prod(w.shape) for w in model.weights)`` and
    ``tensors`` equals ``len(model.weights)``). Assumes the config's own checks passed (shapes fit).
    """
    from zspace.config import _conv_out, _deconv_out, resize_padding  # here: zspace.config imports this module

    h, w, channels = config.input_shape
    layers = [LayerSize("image", activations=h * w * channels, activation_factors={"input_shape": 1})]
    c_in = channels
    for i, (filters, kernel, stride, padding) in enumerate(zip(
            config.encoder_filters, config.encoder_kernels, config.encoder_strides, config.encoder_padding)):
        h, w = _conv_out(h, kernel, stride, padding), _conv_out(w, kernel, stride, padding)
        fields = ("input_shape" if i == 0 else "encoder_filters", "encoder_filters", "encoder_kernels")
        layers += _conv(f"encoder_conv_{i}", c_in, filters, kernel, h * w, fields, config.batch_norm)
        layers += _residual(f"encoder_{i}", filters, h * w, config.residual_blocks_in("encoder"),
                            "encoder_filters", config)
        c_in = filters
    flat = h * w * c_in
    # A flattened feature map is large through its channels or through the image's size.
    flat_field = "encoder_filters" if c_in >= h * w else "input_shape"
    latent_in, latent_field = flat, flat_field
    if config.encoder_dense_units:
        layers += _dense("encoder_dense", flat, config.encoder_dense_units, flat_field, "encoder_dense_units",
                         config.batch_norm)
        latent_in, latent_field = config.encoder_dense_units, "encoder_dense_units"
    for name in (("z",) if config.kind == "ae" else ("mu", "logvar_raw")):
        layers += _dense(name, latent_in, config.z_dim, latent_field, "z_dim", batch_norm=False)
    if config.kind == "vae":
        layers.append(LayerSize("sampling", 1, 1, 0, {"kind": 1}))  # epsilon_scale
    layers.append(LayerSize("kl_scale", 1, 1, 0, {"kind": 1}))  # the Autoencoder's KL warm-up weight

    layers += _dense("decoder_dense", config.z_dim, flat, "z_dim", flat_field, batch_norm=False)
    specs = list(zip(*(config.value_of(f"decoder_{n}") for n in ("filters", "kernels", "strides", "padding"))))
    last = len(specs) - 1
    for i, (filters, kernel, stride, padding) in enumerate(specs):
        if config.decoder_upsampling != "transpose":  # the resize-convolution's intermediate maps
            if stride > 1:
                layers.append(_resampled(f"decoder_upsample_{i}", h * stride * w * stride * c_in))
            before, after = resize_padding(kernel, stride, padding)
            if before + after:
                layers.append(_resampled(f"decoder_pad_{i}", (h * stride + before + after)
                                         * (w * stride + before + after) * c_in))
        h, w = _deconv_out(h, kernel, stride, padding), _deconv_out(w, kernel, stride, padding)
        fields = ("encoder_filters" if i == 0 else "decoder_filters", "decoder_filters", "decoder_kernels")
        layers += _conv(f"decoder_conv_{i}", c_in, filters, kernel, h * w, fields, config.batch_norm and i < last)
        if i < last:
            layers += _residual(f"decoder_{i}", filters, h * w, config.residual_blocks_in("decoder"),
                                "decoder_filters", config)
        c_in = filters
    return ModelSize(tuple(layers))


def _field_to_name(config: ModelConfig, name: str) -> str:
    # A decoder field left at None is the encoder's mirror: name the field the user set.
    return name.replace("decoder_", "encoder_") if getattr(config, name, 0) is None else name


def check_model_size(config: ModelConfig) -> None:
    """Raises ConfigError naming the field that makes ``config``'s model larger than the limits."""
    for name in ("encoder_filters", "decoder_filters"):
        value = config.value_of(name)
        if len(value) > MAX_CONV_LAYERS:
            raise config_error(_field_to_name(config, name), getattr(config, name),
                               f"a list of at most {MAX_CONV_LAYERS} layers (it has {len(value)})")
        network = name.split("_")[0]
        hidden = len(value) - (network == "decoder")  # the decoder's output layer has no residual blocks
        total = len(value) + 2 * config.residual_blocks_in(network) * hidden
        if total > MAX_CONV_LAYERS:
            raise config_error("residual_blocks", config.residual_blocks,
                               f"small enough for at most {MAX_CONV_LAYERS} conv layers in the {network} "
                               f"({len(value)} layers with {config.residual_blocks} residual blocks of two convs "
                               f"after each of {hidden} give {total})")
    size = model_size(config)
    for total, attribute, limit_name, default, what in (
        (size.parameters, "parameters", "ZSPACE_MAX_MODEL_PARAMETERS", MAX_MODEL_PARAMETERS, "parameters"),
        (size.activations, "activations", "ZSPACE_MAX_ACTIVATIONS_PER_IMAGE", MAX_ACTIVATIONS_PER_IMAGE,
         "activation values per image"),
    ):
        limit = env_limit(limit_name, default)
        if total > limit:
            largest = max(size.layers, key=lambda layer: getattr(layer, attribute))
            name = _field_to_name(config, largest.main_field(attribute))
            raise config_error(
                name, getattr(config, name),
                f"small enough for a model of at most {limit:,} {what} ({limit_name}); this one "
                f"would have {approx(total)}, {approx(getattr(largest, attribute))} in layer {largest.name}",
            )
