"""Run configuration: frozen dataclasses validated at construction, with a TOML round trip.

A run config has two sections, ``[model]`` (:class:`ModelConfig`) and ``[train]``
(:class:`TrainConfig`). Field names are unique across both sections, so a CLI override
``--set z_dim=32`` names a field by its plain name.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomli_w

from zspace.errors import ConfigError

__all__ = [
    "ModelConfig",
    "TrainConfig",
    "RunConfig",
    "AnalysisConfig",
    "load_config",
    "parse_overrides",
    "field_docs",
]

Kind = Literal["ae", "vae"]
Activation = Literal["leaky_relu", "relu", "selu"]
Padding = Literal["same", "valid"]
ReconstructionLoss = Literal["bce", "mse"]
KLMethod = Literal["layer", "outputs", "add_loss", "train_step"]


def _doc(text: str, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field carrying its one-line documentation (README reference, CLI help)."""
    return field(default=default, metadata={"doc": text})


# ---------------------------------------------------------------------------------------
# Generic validation: coerce TOML / CLI values to the annotated type or say what was wrong.
# ---------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "none (false in TOML)"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Returns ``value`` converted to ``tp``; raises ConfigError naming the field otherwise."""
    origin = typing.get_origin(tp)
    bad = ConfigError(
        f"`{name}` must be {_type_name(tp)}. Received: {name}={value!r}"
    )
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and (value is None or value is False or value == "none"):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(name, value, arg)
            except ConfigError:
                pass
        raise bad
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise bad
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        (item_tp, _ellipsis) = typing.get_args(tp)
        return tuple(_coerce(f"{name}[{i}]", v, item_tp) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if not math.isfinite(value):
            raise ConfigError(f"`{name}` must be a finite number. Received: {name}={value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise TypeError(f"unsupported config type {tp!r} for {name}")  # programming error


def _validate_types(obj: Any) -> None:
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = _coerce(f.name, getattr(obj, f.name), hints[f.name])
        object.__setattr__(obj, f.name, value)


def _require(condition: bool, name: str, value: Any, expected: str) -> None:
    if not condition:
        raise ConfigError(f"`{name}` must be {expected}. Received: {name}={value!r}")


def _conv_out(size: int, kernel: int, stride: int, padding: str) -> int:
    """Spatial size after a Conv2D (Keras' conv_output_length)."""
    if padding == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1


def _deconv_out(size: int, kernel: int, stride: int, padding: str) -> int:
    """Spatial size after a Conv2DTranspose (Keras' deconv_output_length, no output_padding)."""
    if padding == "same":
        return size * stride
    return size * stride + max(kernel - stride, 0)


# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and loss of an AE or VAE. Defaults: the Fashion-MNIST reference VAE."""

    kind: Kind = _doc('"ae" (plain autoencoder) or "vae" (variational).', "vae")
    input_shape: tuple[int, ...] = _doc("Image shape (height, width, channels).", (28, 28, 1))
    z_dim: int = _doc("Dimension of the latent space.", 16)
    encoder_filters: tuple[int, ...] = _doc("Conv2D filters per encoder layer.", (32, 64, 64, 64))
    encoder_kernels: tuple[int, ...] = _doc("Conv2D kernel sizes (square).", (3, 3, 3, 3))
    encoder_strides: tuple[int, ...] = _doc("Conv2D strides.", (1, 2, 2, 1))
    encoder_padding: tuple[Padding, ...] = _doc(
        'Conv2D padding per layer, "same" or "valid".', ("same", "same", "same", "same")
    )
    decoder_filters: tuple[int, ...] | None = _doc(
        "Conv2DTranspose filters; default mirrors the encoder and ends with the image's "
        "channel count.",
        None,
    )
    decoder_kernels: tuple[int, ...] | None = _doc("Conv2DTranspose kernel sizes; default mirror.", None)
    decoder_strides: tuple[int, ...] | None = _doc("Conv2DTranspose strides; default mirror.", None)
    decoder_padding: tuple[Padding, ...] | None = _doc(
        "Conv2DTranspose padding; default mirror.", None
    )
    activation: Activation = _doc(
        'Hidden activation: "leaky_relu", "relu" or "selu" (selu implies lecun_normal '
        "initialisation and AlphaDropout).",
        "leaky_relu",
    )
    batch_norm: bool = _doc("BatchNormalization before each hidden activation.", False)
    dropout_rate: float = _doc("Dropout after each hidden activation, in [0, 1); 0 = none.", 0.0)
    encoder_dense_units: int = _doc(
        "Units of a Dense layer between Flatten and the latent layers; 0 = none. Cuts the "
        "parameters of the big Flatten->mu/logvar connections.",
        0,
    )
    reconstruction_loss: ReconstructionLoss = _doc(
        'Reconstruction loss summed over the pixels of an image, averaged over the batch: '
        '"bce" (binary cross-entropy) or "mse" (squared error).',
        "bce",
    )
    kl_factor: float = _doc(
        "Weight of the KL loss (the reference's `fact`): total = reco + kl_factor * KL. "
        "Ignored for an AE.",
        1.0,
    )
    kl_method: KLMethod = _doc(
        'How the KL term reaches the optimizer: "layer", "outputs", "add_loss" or '
        '"train_step". All four give the same loss and gradients.',
        "add_loss",
    )
    epsilon_clip: float | None = _doc(
        "The sampling noise eps ~ N(0, 1) is clipped to [-clip, clip]; false/none = no clip.",
        5.0,
    )
    logvar_max: float = _doc(
        "Smooth upper bound on logvar (max - softplus(max - logvar)): exp(logvar) and z stay finite "
        "even for a diverging encoder, in float16 too (the noise term exp(logvar / 2) * eps is at most "
        "exp(max / 2) * epsilon_clip); below about max - 5 it changes nothing.",
        10.0,
    )
    epsilon_scale: float = _doc(
        "z = mu + exp(logvar / 2) * eps * epsilon_scale; 0 gives z = mu. Changeable on a "
        "trained model (Autoencoder.set_epsilon_scale).",
        1.0,
    )

    def __post_init__(self) -> None:
        _validate_types(self)
        n_layers = len(self.encoder_filters)
        _require(self.kind in ("ae", "vae"), "kind", self.kind, '"ae" or "vae"')
        _require(
            len(self.input_shape) == 3 and all(d > 0 for d in self.input_shape),
            "input_shape", self.input_shape, "three positive integers (height, width, channels)",
        )
        _require(self.z_dim > 0, "z_dim", self.z_dim, "a positive integer")
        _require(n_layers > 0, "encoder_filters", self.encoder_filters, "at least one layer")
        for name in ("encoder_kernels", "encoder_strides", "encoder_padding"):
            value = getattr(self, name)
            _require(
                len(value) == n_layers, name, value,
                f"a list of the same length as encoder_filters ({n_layers})",
            )
        for name in ("encoder_filters", "encoder_kernels", "encoder_strides"):
            value = getattr(self, name)
            _require(all(v > 0 for v in value), name, value, "positive integers")
        self._resolve_decoder()
        _require(0.0 <= self.dropout_rate < 1.0, "dropout_rate", self.dropout_rate, "in [0, 1)")
        _require(
            self.encoder_dense_units >= 0, "encoder_dense_units", self.encoder_dense_units,
            "a non-negative integer (0 = no dense layer)",
        )
        _require(self.kl_factor >= 0.0, "kl_factor", self.kl_factor, "a non-negative number")
        _require(
            self.epsilon_clip is None or self.epsilon_clip > 0, "epsilon_clip",
            self.epsilon_clip, "a positive number, or none to switch clipping off",
        )
        _require(self.epsilon_scale >= 0.0, "epsilon_scale", self.epsilon_scale, "non-negative")
        _require(0.0 < self.logvar_max <= 50.0, "logvar_max", self.logvar_max,
                 "in (0, 50] (exp(50) is near float32's limit once summed over z_dim)")
        self._check_shapes()

    def _resolve_decoder(self) -> None:
        """Fills the decoder fields left at None with the encoder's mirror image."""
        mirror = {
            "decoder_filters": tuple(reversed(self.encoder_filters[:-1])) + (self.input_shape[2],),
            "decoder_kernels": tuple(reversed(self.encoder_kernels)),
            "decoder_strides": tuple(reversed(self.encoder_strides)),
            "decoder_padding": tuple(reversed(self.encoder_padding)),
        }
        for name, default in mirror.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        n_layers = len(self.decoder_filters)
        _require(n_layers > 0, "decoder_filters", self.decoder_filters, "at least one layer")
        for name in ("decoder_kernels", "decoder_strides", "decoder_padding"):
            value = getattr(self, name)
            _require(
                len(value) == n_layers, name, value,
                f"a list of the same length as decoder_filters ({n_layers})",
            )
        for name in ("decoder_filters", "decoder_kernels", "decoder_strides"):
            value = getattr(self, name)
            _require(all(v > 0 for v in value), name, value, "positive integers")
        _require(
            self.decoder_filters[-1] == self.input_shape[2], "decoder_filters",
            self.decoder_filters,
            f"a list whose last entry is the image's channel count ({self.input_shape[2]})",
        )

    def _check_shapes(self) -> None:
        h, w = self.encoded_shape[:2]
        _require(
            h > 0 and w > 0, "encoder_strides", self.encoder_strides,
            f"strides and kernels that leave a non-empty feature map for input_shape="
            f"{self.input_shape} (they leave {h}x{w})",
        )
        decoded = self.decoded_shape
        _require(
            decoded == self.input_shape[:2], "decoder_strides", self.decoder_strides,
            f"strides, kernels and padding whose decoder gives back the input's "
            f"{self.input_shape[0]}x{self.input_shape[1]} from the encoder's {h}x{w} "
            f"(they give {decoded[0]}x{decoded[1]})",
        )

    @property
    def encoded_shape(self) -> tuple[int, int, int]:
        """Shape (height, width, channels) of the last encoder feature map."""
        h, w = self.input_shape[:2]
        for k, s, p in zip(self.encoder_kernels, self.encoder_strides, self.encoder_padding):
            h, w = _conv_out(h, k, s, p), _conv_out(w, k, s, p)
        return (h, w, self.encoder_filters[-1])

    @property
    def decoded_shape(self) -> tuple[int, int]:
        """Spatial shape (height, width) the decoder produces from ``encoded_shape``."""
        h, w = self.encoded_shape[:2]
        for k, s, p in zip(self.decoder_kernels, self.decoder_strides, self.decoder_padding):
            h, w = _deconv_out(h, k, s, p), _deconv_out(w, k, s, p)
        return (h, w)


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Data, optimisation and output of a training run."""

    dataset: str = _doc(
        'Dataset: "digits" (scikit-learn 8x8, embedded), "mnist", "fashion_mnist", or '
        '"idx:DIR" (a folder of IDX files).',
        "digits",
    )
    data_dir: str = _doc(
        "Folder holding the dataset's files; empty = Keras cache, then download.", ""
    )
    subset: int = _doc("Use only this many training images (seeded choice); 0 = all.", 0)
    task: Literal["reconstruct", "denoise", "recolor"] = _doc(
        '"reconstruct"; "denoise" (input: image + noise + dropped pixels, target: clean image); '
        '"recolor" (input: grayscale, target: colour; needs 3 channels).',
        "reconstruct",
    )
    noise_sigma: float = _doc("denoise: std of the Gaussian noise added to the input (pixels in [0, 1]).", 0.1)
    drop_fraction: float = _doc("denoise: fraction of input pixels set to 0.", 0.1)
    validation_split: float = _doc(
        "Fraction held out for validation when the dataset has no test split.", 0.1
    )
    epochs: int = _doc("Total number of epochs of the run.", 10)
    batch_size: int = _doc("Images per training step.", 128)
    learning_rate: float = _doc("Adam learning rate.", 1e-3)
    lr_decay_factor: float = _doc(
        "Step decay: the learning rate is multiplied by this every lr_decay_epochs.", 1.0
    )
    lr_decay_epochs: int = _doc("Epochs between learning-rate decays; 0 = no decay.", 0)
    seed: int = _doc("Seed of weights, shuffling, noise and subsets.", 0)
    run_dir: str = _doc("Directory of the run's results and checkpoints.", "runs/default")
    keep_checkpoints: int = _doc("Keep the newest N epoch checkpoints; 0 = keep all.", 0)
    gradient_clip_norm: float = _doc("Clip each gradient to this L2 norm (Adam clipnorm); 0 = off.", 0.0)
    steps_per_execution: int = _doc(
        "Training steps per compiled call, at most; the largest divisor of the epoch's steps not above it "
        "is used, so no call straddles two epochs. Fewer Python round trips; the progress bar updates "
        "every that many steps. Always 1 on the PyTorch backend.",
        8,
    )
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"] = _doc(
        'Compute dtype of the layers (weights, losses and sampling stay float32). "mixed_bfloat16" '
        "is about 1.4x faster on CPUs with AVX512-BF16 (benchmarks/README.md) but changes the numbers; "
        '"mixed_float16" is for GPUs (with loss scaling). Saved models load and run in float32.',
        "float32",
    )
    kl_warmup_epochs: int = _doc(
        "The KL weight ramps linearly from 0 (epoch 1) to kl_factor over this many epochs; 0 = off.", 0
    )
    on_nonfinite: Literal["stop", "retry"] = _doc(
        'A non-finite loss "stop"s training (naming epoch and step, no checkpoint written) or '
        '"retry"s from the last good checkpoint with the learning rate times retry_lr_factor.',
        "stop",
    )
    nonfinite_retries: int = _doc("How many retries on_nonfinite = \"retry\" makes before stopping.", 3)
    retry_lr_factor: float = _doc("Learning-rate multiplier applied at each retry.", 0.5)
    verbose: int = _doc("0 = silent, 1 = progress bar per epoch, 2 = one line per epoch.", 1)

    def __post_init__(self) -> None:
        _validate_types(self)
        _require(bool(self.dataset.strip()), "dataset", self.dataset, "a dataset name")
        _require(self.subset >= 0, "subset", self.subset, "a non-negative integer (0 = all)")
        _require(self.noise_sigma >= 0, "noise_sigma", self.noise_sigma, ">= 0")
        _require(0 <= self.drop_fraction < 1, "drop_fraction", self.drop_fraction, "in [0, 1)")
        _require(
            0.0 < self.validation_split < 1.0, "validation_split", self.validation_split,
            "in (0, 1)",
        )
        _require(self.epochs > 0, "epochs", self.epochs, "a positive integer")
        _require(self.batch_size > 0, "batch_size", self.batch_size, "a positive integer")
        _require(self.learning_rate > 0, "learning_rate", self.learning_rate, "positive")
        _require(
            0.0 < self.lr_decay_factor <= 1.0, "lr_decay_factor", self.lr_decay_factor,
            "in (0, 1]",
        )
        _require(self.lr_decay_epochs >= 0, "lr_decay_epochs", self.lr_decay_epochs, ">= 0")
        _require(self.seed >= 0, "seed", self.seed, "a non-negative integer")
        _require(bool(self.run_dir.strip()), "run_dir", self.run_dir, "a directory path")
        _require(self.keep_checkpoints >= 0, "keep_checkpoints", self.keep_checkpoints, ">= 0")
        _require(self.verbose in (0, 1, 2), "verbose", self.verbose, "0, 1 or 2")
        _require(self.steps_per_execution >= 1, "steps_per_execution", self.steps_per_execution, ">= 1")
        _require(self.gradient_clip_norm >= 0, "gradient_clip_norm", self.gradient_clip_norm, ">= 0 (0 = off)")
        _require(self.kl_warmup_epochs >= 0, "kl_warmup_epochs", self.kl_warmup_epochs, ">= 0 (0 = off)")
        _require(self.nonfinite_retries >= 0, "nonfinite_retries", self.nonfinite_retries, ">= 0")
        _require(0 < self.retry_lr_factor < 1, "retry_lr_factor", self.retry_lr_factor, "in (0, 1)")

    def kl_scale_at(self, epoch: int) -> float:
        """KL warm-up multiplier of 0-based ``epoch``: 0, 1/N, ..., 1."""
        if self.kl_warmup_epochs == 0:
            return 1.0
        return min(1.0, epoch / self.kl_warmup_epochs)

    def learning_rate_at(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch`` under the step-decay schedule."""
        if self.lr_decay_epochs == 0:
            return self.learning_rate
        return self.learning_rate * self.lr_decay_factor ** (epoch // self.lr_decay_epochs)


# ---------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisConfig:
    """What ``zspace analyze`` computes (a separate TOML file; ``--set`` names its fields)."""

    split: Literal["all", "train", "validation"] = _doc("Images of the run's dataset to encode.", "all")
    batch_size: int = _doc("Images per encoding batch.", 512)
    radius_bin_width: float = _doc("Bin width of the radius histogram.", 0.5)
    radius_range: tuple[float, ...] | None = _doc(
        "[low, high] of the radius histogram; false/none = 0 to the largest radius.", (0.0, 35.0)
    )
    axes: tuple[int, ...] = _doc("Latent coordinates whose distributions are histogrammed.", (0, 1))
    axis_bins: int = _doc("Bins of each per-axis histogram.", 50)
    active_threshold: float = _doc("Activity (variance of mu over the data) above which a unit is active.", 0.01)
    k_min: int = _doc("Smallest number of MiniBatchKMeans clusters.", 2)
    k_max: int = _doc("Largest number of clusters.", 80)
    k_step: int = _doc("Step between cluster counts.", 2)
    kmeans_seeds: tuple[int, ...] = _doc("One inertia curve per seed (their spread shows the noise).", (0, 1, 2))
    kmeans_batch_size: int = _doc("MiniBatchKMeans batch size.", 4096)
    pca_subset: int = _doc("Points drawn for the PCA scatter (the PCA itself uses all).", 20_000)
    tsne_sizes: tuple[int, ...] = _doc("Subset sizes for t-SNE, e.g. [20000, 80000]; [] = no t-SNE.", (20_000,))
    perplexity: float = _doc("t-SNE perplexity.", 30.0)
    early_exaggeration: float = _doc("t-SNE early exaggeration.", 12.0)
    z_minus_mu_threshold: float = _doc("|z - mu| above which a component is counted.", 0.05)
    seed: int = _doc("Seed of the subsets, clustering and t-SNE.", 0)
    color_by: str = _doc('Colour of the PCA / t-SNE points: "label", or an attribute name such as "Smiling".',
                         "label")

    def __post_init__(self) -> None:
        _validate_types(self)
        _require(self.batch_size > 0, "batch_size", self.batch_size, "a positive integer")
        _require(self.radius_bin_width > 0, "radius_bin_width", self.radius_bin_width, "positive")
        _require(
            self.radius_range is None or (len(self.radius_range) == 2 and self.radius_range[1] > self.radius_range[0]),
            "radius_range", self.radius_range, "[low, high] with high > low, or none",
        )
        _require(all(a >= 0 for a in self.axes), "axes", self.axes, "non-negative coordinate indices")
        _require(self.axis_bins > 0, "axis_bins", self.axis_bins, "a positive integer")
        _require(self.k_min >= 1, "k_min", self.k_min, "at least 1")
        _require(self.k_max >= self.k_min, "k_max", self.k_max, f">= k_min ({self.k_min})")
        _require(self.k_step >= 1, "k_step", self.k_step, "a positive integer")
        _require(len(self.kmeans_seeds) > 0, "kmeans_seeds", self.kmeans_seeds, "at least one seed")
        _require(self.kmeans_batch_size > 0, "kmeans_batch_size", self.kmeans_batch_size, "positive")
        _require(self.pca_subset > 0, "pca_subset", self.pca_subset, "a positive integer")
        _require(all(n > 1 for n in self.tsne_sizes), "tsne_sizes", self.tsne_sizes, "sizes above 1")
        _require(self.perplexity > 0, "perplexity", self.perplexity, "positive")
        _require(self.early_exaggeration >= 1, "early_exaggeration", self.early_exaggeration, ">= 1")
        _require(self.seed >= 0, "seed", self.seed, "a non-negative integer")

    @property
    def ks(self) -> range:
        return range(self.k_min, self.k_max + 1, self.k_step)

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in dataclasses.asdict(self).items()}

    def to_toml(self) -> str:
        return "\n".join(f"{k} = {_toml_value(v)}" for k, v in self.to_dict().items()) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "analysis config") -> AnalysisConfig:
        known = _field_names(cls)
        for key in data:
            if key not in known:
                raise ConfigError(f"{source}: unknown field `{key}`" + _did_you_mean(key, known))
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> AnalysisConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"analysis config file not found: {path}")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(data, source=str(path))

    def with_overrides(self, overrides: dict[str, Any]) -> AnalysisConfig:
        return self.from_dict({**self.to_dict(), **overrides}, source="overrides")


def _plain(value: Any) -> Any:
    """TOML-ready value: tuples as lists, None as False."""
    if value is None:
        return False
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------
# Run = model + train, TOML round trip
# ---------------------------------------------------------------------------------------

_SECTIONS = {"model": ModelConfig, "train": TrainConfig}


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


_overlap = set(_field_names(ModelConfig)) & set(_field_names(TrainConfig))
assert not _overlap, f"config field names must be unique across sections: {_overlap}"


@dataclass(frozen=True)
class RunConfig:
    """A complete run: ``model`` and ``train`` sections."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelConfig):
            raise ConfigError(f"`model` must be a ModelConfig. Received: {type(self.model).__name__}")
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"`train` must be a TrainConfig. Received: {type(self.train).__name__}")
        if self.train.task == "recolor" and self.model.input_shape[2] != 3:
            raise ConfigError(
                f"`task` = \"recolor\" needs colour images: input_shape with 3 channels. "
                f"Received: input_shape={self.model.input_shape}"
            )
        if self.train.kl_warmup_epochs and self.model.kl_method == "outputs":
            raise ConfigError(
                '`kl_warmup_epochs` needs kl_method "layer", "add_loss" or "train_step": with "outputs" '
                f"the KL weight lives in compiled loss functions. Received: kl_warmup_epochs="
                f"{self.train.kl_warmup_epochs}, kl_method='outputs'"
            )

    # --- dict / TOML ---------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (tuples as lists, None as False) that TOML can hold."""
        return {
            name: {f: _plain(v) for f, v in dataclasses.asdict(getattr(self, name)).items()}
            for name in _SECTIONS
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> RunConfig:
        """Builds a RunConfig from ``{"model": {...}, "train": {...}}``; unknown names are errors."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a table with [model] and [train] sections.")
        unknown = set(data) - set(_SECTIONS)
        if unknown:
            raise ConfigError(
                f"{source}: unknown section(s) {sorted(unknown)}; expected [model] and [train]."
            )
        sections = {}
        for name, section_cls in _SECTIONS.items():
            values = data.get(name, {})
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: [{name}] must be a table. Received: {values!r}")
            known = _field_names(section_cls)
            for key in values:
                if key not in known:
                    raise ConfigError(
                        f"{source}: unknown field `{key}` in [{name}]"
                        + _did_you_mean(key, known)
                    )
            sections[name] = section_cls(**values)
        return cls(**sections)

    def to_toml(self) -> str:
        """TOML text with one line per field (lists inline), readable by :func:`load_config`."""
        lines = []
        for section, values in self.to_dict().items():
            lines.append(f"[{section}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
            lines.append("")
        return "\n".join(lines)

    @classmethod
    def from_toml(cls, text: str, source: str = "config") -> RunConfig:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        return cls.from_dict(data, source=source)

    def with_overrides(self, overrides: dict[str, Any]) -> RunConfig:
        """A copy with fields replaced by plain name (``{"z_dim": 32, "epochs": 3}``)."""
        changes: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        all_names = {f: s for s, c in _SECTIONS.items() for f in _field_names(c)}
        for key, value in overrides.items():
            if key not in all_names:
                raise ConfigError(f"unknown config field `{key}`" + _did_you_mean(key, all_names))
            changes[all_names[key]][key] = value
        data = self.to_dict()
        for section, values in changes.items():
            data[section].update(values)
            if section == "model":
                # A changed encoder must not keep the old encoder's mirrored decoder.
                for name in ("filters", "kernels", "strides", "padding"):
                    if f"encoder_{name}" in values and f"decoder_{name}" not in values:
                        data["model"][f"decoder_{name}"] = None
                if "input_shape" in values and "decoder_filters" not in values:
                    data["model"]["decoder_filters"] = None
        return RunConfig.from_dict(data, source="overrides")


def _toml_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value})[4:].strip()


def _did_you_mean(key: str, known: Any) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"; did you mean `{close[0]}`?" if close else f". Known fields: {', '.join(sorted(known))}"


def load_config(path: str | Path) -> RunConfig:
    """Reads a TOML run config; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    return RunConfig.from_toml(path.read_text(encoding="utf-8"), source=str(path))


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Parses ``["z_dim=32", "run_dir=/tmp/r"]``: values are TOML literals, else plain strings."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects field=value. Received: {pair!r}")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        overrides[key] = value
    return overrides


def field_docs() -> dict[str, list[tuple[str, str, str]]]:
    """Per section: (field name, default as TOML text, documentation) for the README reference."""
    docs: dict[str, list[tuple[str, str, str]]] = {}
    defaults = {**RunConfig().to_dict(), "analysis": AnalysisConfig().to_dict()}
    for section, cls in {**_SECTIONS, "analysis": AnalysisConfig}.items():
        rows = []
        for f in dataclasses.fields(cls):
            default = f.default
            shown = "mirror of encoder" if default is None and f.name.startswith("decoder_") else (
                _toml_value(defaults[section][f.name])
            )
            rows.append((f.name, shown, f.metadata["doc"]))
        docs[section] = rows
    return docs
