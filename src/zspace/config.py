"""Run configuration: frozen dataclasses whose fields declare their documentation and checks.

A run config has two sections, ``[model]`` (:class:`ModelConfig`) and ``[train]``
(:class:`TrainConfig`). Field names are unique across both sections, so a CLI override
``--set z_dim=32`` names a field by its plain name.

Each field declares its doc (the README reference, scripts/config_reference.py) and its checks
beside it (:mod:`zspace.config_fields`); a bad value raises ConfigError naming field, value and
what was expected. No Keras imports: the CLI loads configs before TensorFlow starts.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from zspace.config_fields import (MAX_BATCH_SIZE, Check, Config, at_least, at_most, check, config_error,
                                  config_field, did_you_mean, each, in_range, non_empty, parse_toml, positive,
                                  read_toml, same_length_as, toml_value)
from zspace.errors import ConfigError
from zspace.model_size import check_model_size

__all__ = ["ModelConfig", "TrainConfig", "RunConfig", "AnalysisConfig", "Task", "load_config", "parse_overrides",
           "field_docs"]

Kind = Literal["ae", "vae"]
Activation = Literal["leaky_relu", "relu", "selu"]
Padding = Literal["same", "valid"]
ReconstructionLoss = Literal["bce", "mse"]
KLMethod = Literal["layer", "outputs", "add_loss", "train_step"]
Upsampling = Literal["transpose", "nearest", "bilinear"]
ResidualIn = Literal["both", "encoder", "decoder"]
PixelReduction = Literal["sum", "mean"]
Task = Literal["reconstruct", "denoise", "recolor", "pairs"]  # zspace.data.tasks.TASKS derives from this


# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------

_f = config_field
_POSITIVE_INTS = each(lambda v: v > 0, "positive integers")
_AT_MOST_MAX_BATCH = at_most(MAX_BATCH_SIZE)

MAX_EPOCHS = 10_000
"""Most epochs of a run: the input pipeline draws every epoch's shuffled order up front
(epochs x training images indices; 10,000 epochs of 60,000 images are 4.5 GiB of int64)."""

MAX_EPSILON_SCALE = 1e3
"""Largest epsilon_scale: beyond about 3e38 the scale does not even fit the model's float32 variable."""

MAX_HISTOGRAM_BINS = 10_000
"""Most bins of one analysis histogram (radius, per axis): the plots show a few hundred at most."""

MIN_RADIUS_BIN_WIDTH = 1e-3
"""Finest radius histogram bin: with radius_range none the bin count follows the data's largest radius."""

MAX_TSNE_FITS = 16
"""Most t-SNE fits one analysis computes (tsne_sizes x perplexity / early_exaggeration settings)."""

MAX_KEPT_TSNE_FITS = 32
"""Most t-SNE embeddings an analysis holds, this analysis' and those kept from earlier ones together
(analysis.npz holds two arrays per fit)."""

MAX_SKLEARN_TSNE_POINTS = 100_000
"""Largest t-SNE subset with tsne_backend "sklearn": scikit-learn's Barnes-Hut costs about 1.5x openTSNE at equal
iterations and does not have its FFT method for large subsets (measured on 5,000 Fashion-MNIST z-points, one thread: scikit-learn 57 s for 1,000 iterations, openTSNE
38 s for 1,000 and 27 s for its default 750); 100,000 covers the seed's 80,000."""

TSNE_EXAGGERATION_ITERATIONS = 250
"""Early-exaggeration iterations of both t-SNE backends (scikit-learn's fixed exploration phase)."""

MAX_TSNE_ITERATIONS = 100_000
"""Most t-SNE iterations (tsne_n_iter): each costs a gradient over all points of the subset."""

MAX_CLUSTERS = 10_000
"""Largest k of the MiniBatchKMeans sweep (k_max): one fit per k and seed, each costing O(N k) per step."""

MAX_PROJECTOR_POINTS = 50_000
"""Most points ``zspace analyze --tensorboard`` writes for TensorBoard's Embedding Projector
(projector_points): the projector's own PCA samples 50,000 points (its t-SNE 10,000, its UMAP 5,000), and
the sprite of that many thumbnails must fit its 8192 x 8192 px limit (224 per row: 36 px each)."""


RESIDUAL_KERNEL = 3
"""Kernel size of the two convolutions of a residual block (ResNet's 3x3; ``residual_blocks``)."""


def _as_tuple(value) -> tuple:
    """A list field that also takes a single value: the value as a one-entry tuple."""
    return value if isinstance(value, tuple) else (value,)


def _pairable(a, b) -> bool:
    """Two list-or-value fields pair entry by entry: equal lengths, or one of them a single value."""
    n_a, n_b = len(_as_tuple(a)), len(_as_tuple(b))
    return n_a == n_b or 1 in (n_a, n_b)


def at_most_entries(n: int) -> Check:
    return check(lambda v: len(v) <= n, f"a list of at most {n:,} entries")


def _conv_out(size: int, kernel: int, stride: int, padding: str) -> int:
    """Spatial size after a Conv2D (Keras' conv_output_length)."""
    return -(-size // stride) if padding == "same" else (size - kernel) // stride + 1


def _deconv_out(size: int, kernel: int, stride: int, padding: str) -> int:
    """Spatial size after a decoder layer: a Conv2DTranspose (Keras' deconv_output_length, no
    output_padding), or the resize-convolution of decoder_upsampling "nearest" / "bilinear", which
    zero-pads to give the same size (:func:`resize_padding`)."""
    return size * stride if padding == "same" else size * stride + max(kernel - stride, 0)


def resize_padding(kernel: int, stride: int, padding: str) -> tuple[int, int]:
    """(before, after) zeros a resize decoder layer pads its upsampled input with, per spatial axis.

    UpSampling2D by ``stride`` then a "valid" Conv2D of ``kernel`` gives size*stride - kernel + 1;
    padding ``max(kernel - stride, 0) + kernel - 1`` zeros in total makes that :func:`_deconv_out`,
    the transposed layer's size (which is itself a zero-padded "full" convolution). "same" needs none.
    """
    if padding == "same":
        return (0, 0)
    total = max(kernel - stride, 0) + kernel - 1
    return (total // 2, total - total // 2)


def _ends_with_channels() -> Check:
    return Check(lambda v, c: v[-1] == c.input_shape[2],
                 lambda c: f"a list whose last entry is the image's channel count ({c.input_shape[2]})")


@dataclass(frozen=True)
class ModelConfig(Config):
    """Architecture and loss of an AE or VAE. Defaults: the Fashion-MNIST reference VAE.

    Decoder fields left at None stay None; :meth:`resolved` (and the shape properties) use the
    encoder's mirror image for them, so a changed encoder never keeps a stale mirror.
    """

    kind: Kind = _f('"ae" (plain autoencoder) or "vae" (variational).', "vae")
    input_shape: tuple[int, ...] = _f(
        "Image shape (height, width, channels).", (28, 28, 1),
        check(lambda v: len(v) == 3 and all(d > 0 for d in v), "three positive integers (height, width, channels)"),
    )
    z_dim: int = _f("Dimension of the latent space.", 16, positive())
    encoder_filters: tuple[int, ...] = _f(
        "Conv2D filters per encoder layer.", (32, 64, 64, 64), non_empty("at least one layer"), _POSITIVE_INTS
    )
    encoder_kernels: tuple[int, ...] = _f(
        "Conv2D kernel sizes (square).", (3, 3, 3, 3), same_length_as("encoder_filters"), _POSITIVE_INTS
    )
    encoder_strides: tuple[int, ...] = _f(
        "Conv2D strides.", (1, 2, 2, 1), same_length_as("encoder_filters"), _POSITIVE_INTS
    )
    encoder_padding: tuple[Padding, ...] = _f(
        'Conv2D padding per layer, "same" or "valid".', ("same", "same", "same", "same"),
        same_length_as("encoder_filters"),
    )
    decoder_filters: tuple[int, ...] | None = _f(
        "Decoder conv filters (Conv2DTranspose, or the Conv2D after an upsampling); default mirrors the "
        "encoder and ends with the image's channel count.", None,
        non_empty("at least one layer"), _POSITIVE_INTS, _ends_with_channels(),
    )
    decoder_kernels: tuple[int, ...] | None = _f(
        "Decoder conv kernel sizes; default mirror.", None, same_length_as("decoder_filters"), _POSITIVE_INTS
    )
    decoder_strides: tuple[int, ...] | None = _f(
        "Decoder strides (each layer's upsampling factor); default mirror.", None, same_length_as("decoder_filters"),
        _POSITIVE_INTS
    )
    decoder_padding: tuple[Padding, ...] | None = _f(
        "Decoder padding; default mirror.", None, same_length_as("decoder_filters")
    )
    decoder_upsampling: Upsampling = _f(
        'How each decoder layer enlarges its input: "transpose" (Conv2DTranspose), or "nearest" / "bilinear" '
        "(UpSampling2D by the layer's stride with that interpolation, then a Conv2D of the same filters and "
        'kernel: the "resize-convolution" that avoids the checkerboard artefacts of strided transposed '
        'convolutions). Same parameters and output shapes for all three; with "valid" padding the resize '
        "decoder zero-pads before the Conv2D so it gives the transposed layer's size.",
        "transpose",
    )
    residual_blocks: int = _f(
        "Residual blocks after each hidden conv layer (every encoder layer, every decoder layer but the "
        "output one); 0 = none. A block: Conv2D 3x3 -> [BatchNorm] -> activation -> [Dropout] -> Conv2D "
        "3x3 -> [BatchNorm], added to its input, then the activation; the layer's filters, same padding.",
        0, at_least(0, "a non-negative integer (0 = no residual blocks)"),
    )
    residual_in: ResidualIn = _f(
        'Where residual_blocks go: "both", "encoder" or "decoder".', "both",
    )
    activation: Activation = _f(
        'Hidden activation: "leaky_relu", "relu" or "selu" (selu implies lecun_normal '
        "initialisation and AlphaDropout).",
        "leaky_relu",
    )
    batch_norm: bool = _f("BatchNormalization before each hidden activation.", False)
    dropout_rate: float = _f("Dropout after each hidden activation, in [0, 1); 0 = none.", 0.0, in_range(0, 1, "[)"))
    encoder_dense_units: int = _f(
        "Units of a Dense layer between Flatten and the latent layers; 0 = none. Cuts the "
        "parameters of the big Flatten->mu/logvar connections.",
        0, at_least(0, "a non-negative integer (0 = no dense layer)"),
    )
    reconstruction_loss: ReconstructionLoss = _f(
        'Reconstruction loss of an image (reduced over its pixels by reconstruction_reduction), averaged '
        'over the batch: "bce" (binary cross-entropy) or "mse" (squared error).',
        "bce",
    )
    reconstruction_reduction: PixelReduction = _f(
        'How the reconstruction loss reduces over an image\'s H*W*C pixel values: "sum" (nats per image) or '
        '"mean" (per pixel value, the seed\'s scale_fact; Keras\' own binary_crossentropy). The KL term '
        "(nats per image) is weighted by kl_factor either way, so \"mean\" with kl_factor f trains on "
        "exactly 1 / (H*W*C) times the loss of \"sum\" with kl_factor f*H*W*C: the same optimum, and with "
        "Adam (scale-invariant but for its epsilon, 1e-7) nearly the same trajectory. The history's reco_loss and total_loss are in "
        "this unit; reco_loss_per_pixel and reco_loss_per_image are the same in every run.",
        "sum",
    )
    kl_factor: float = _f(
        "Weight of the KL loss (the reference's `fact`): total = reco + kl_factor * KL (KL in nats per "
        "image; reco as reconstruction_reduction says). Ignored for an AE.",
        1.0, at_least(0, "a non-negative number"),
    )
    kl_method: KLMethod = _f(
        'How the KL term reaches the optimizer: "layer", "outputs", "add_loss" or '
        '"train_step". All four give the same loss and gradients.',
        "add_loss",
    )
    epsilon_clip: float | None = _f(
        "The sampling noise eps ~ N(0, 1) is clipped to [-clip, clip]; false/none = no clip.",
        5.0, positive("a positive number, or none to switch clipping off"),
    )
    logvar_max: float = _f(
        "Smooth upper bound on logvar (max - softplus(max - logvar)): exp(logvar) and z stay finite "
        "even for a diverging encoder, in float16 too (the noise term exp(logvar / 2) * eps is at most "
        "exp(max / 2) * epsilon_clip); below about max - 5 it changes nothing.",
        10.0, in_range(0, 50, "(]", "in (0, 50] (exp(50) is near float32's limit once summed over z_dim)"),
    )
    epsilon_scale: float = _f(
        "z = mu + exp(logvar / 2) * eps * epsilon_scale; 0 gives z = mu. Changeable on a "
        "trained model (Autoencoder.set_epsilon_scale). At most 1000.",
        1.0, in_range(0, MAX_EPSILON_SCALE, expected=f"in [0, {MAX_EPSILON_SCALE:g}]"),
    )

    def value_of(self, name: str) -> Any:
        """A decoder field left at None gives the encoder's mirror (ending with the image's channels)."""
        value = getattr(self, name)
        if value is not None or not name.startswith("decoder_"):
            return value
        encoder = tuple(reversed(getattr(self, name.replace("decoder_", "encoder_"))))
        return encoder[1:] + (self.input_shape[2],) if name == "decoder_filters" else encoder

    def resolved(self) -> ModelConfig:
        """This config with every decoder field spelled out (the mirror filled in)."""
        names = ("decoder_filters", "decoder_kernels", "decoder_strides", "decoder_padding")
        return dataclasses.replace(self, **{n: self.value_of(n) for n in names})

    def _check_together(self) -> None:
        """The shapes must fit: a non-empty encoder output, and a decoder giving back the input's size."""
        (h, w), decoded = self.encoded_shape[:2], self.decoded_shape
        if h <= 0 or w <= 0:
            raise config_error("encoder_strides", self.encoder_strides, f"strides and kernels that leave a "
                               f"non-empty feature map for input_shape={self.input_shape} (they leave {h}x{w})")
        if decoded != self.input_shape[:2]:
            raise config_error(
                "decoder_strides", self.value_of("decoder_strides"),
                f"strides, kernels and padding whose decoder gives back the input's {self.input_shape[0]}x"
                f"{self.input_shape[1]} from the encoder's {h}x{w} (they give {decoded[0]}x{decoded[1]})",
            )
        check_model_size(self)  # parameters and activations within the limits (zspace.model_size)

    @property
    def encoded_shape(self) -> tuple[int, int, int]:
        """Shape (height, width, channels) of the last encoder feature map."""
        h, w = self.input_shape[:2]
        for k, s, p in zip(self.encoder_kernels, self.encoder_strides, self.encoder_padding):
            h, w = _conv_out(h, k, s, p), _conv_out(w, k, s, p)
        return (h, w, self.encoder_filters[-1])

    @property
    def pixel_values(self) -> int:
        """H * W * C of one image: a per-image loss sum / this = the per-pixel mean."""
        h, w, c = self.input_shape
        return h * w * c

    def residual_blocks_in(self, network: str) -> int:
        """Residual blocks after each hidden conv layer of ``network`` ("encoder" or "decoder")."""
        return self.residual_blocks if self.residual_in in ("both", network) else 0

    @property
    def decoded_shape(self) -> tuple[int, int]:
        """Spatial shape (height, width) the decoder produces from ``encoded_shape``."""
        h, w = self.encoded_shape[:2]
        for k, s, p in zip(*(self.value_of(f"decoder_{n}") for n in ("kernels", "strides", "padding"))):
            h, w = _deconv_out(h, k, s, p), _deconv_out(w, k, s, p)
        return (h, w)


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------


MAX_MONITOR_IMAGES = 10_000
"""Most validation images the per-epoch z-space monitor encodes (monitor_images): they are held in
memory for the whole run (10,000 CelebA 64x64 images are 470 MiB of float32) and encoded every epoch."""


@dataclass(frozen=True)
class TrainConfig(Config):
    """Data, optimisation and output of a training run."""

    dataset: str = _f(
        'Dataset: "digits" (scikit-learn 8x8, embedded), "mnist", "fashion_mnist", "cifar10" (binary '
        'version, from data_dir or the Keras cache), "idx:DIR" (a folder of IDX files) or "cache:DIR" '
        "(a cache written by `zspace prepare`).",
        "digits", non_empty("a dataset name"),
    )
    data_dir: str = _f("Folder holding the dataset's files; empty = Keras cache, then download.", "")
    subset: int = _f("Use only this many training images (seeded choice); 0 = all.", 0,
                     at_least(0, "a non-negative integer (0 = all)"))
    task: Task = _f(
        '"reconstruct"; "denoise" (input: image + noise + dropped pixels, target: clean image); '
        '"recolor" (input: grayscale, target: colour; needs 3 channels); "pairs" (input and target are '
        'two images of a cache written by `zspace prepare pairs`: any image-to-image task).',
        "reconstruct",
    )
    noise_sigma: float = _f("denoise: std of the Gaussian noise added to the input (pixels in [0, 1]).", 0.1,
                            at_least(0))
    drop_fraction: float = _f("denoise: fraction of input pixels set to 0.", 0.1, in_range(0, 1, "[)"))
    validation_split: float = _f(
        "Fraction held out for validation when the dataset has no test split.", 0.1, in_range(0, 1, "()")
    )
    epochs: int = _f("Total number of epochs of the run, at most 10,000.", 10, positive(), at_most(MAX_EPOCHS))
    batch_size: int = _f("Images per training step, at most 65,536.", 128, positive(), _AT_MOST_MAX_BATCH)
    learning_rate: float = _f("Adam learning rate.", 1e-3, positive("positive"))
    lr_decay_factor: float = _f(
        "Step decay: the learning rate is multiplied by this every lr_decay_epochs.", 1.0, in_range(0, 1, "(]")
    )
    lr_decay_epochs: int = _f("Epochs between learning-rate decays; 0 = no decay.", 0, at_least(0))
    seed: int = _f("Seed of weights, shuffling, noise and subsets, in [0, 2**32).", 0)
    run_dir: str = _f("Directory of the run's results and checkpoints.", "runs/default", non_empty("a directory path"))
    keep_checkpoints: int = _f("Keep the newest N epoch checkpoints; 0 = keep all.", 0, at_least(0))
    gradient_clip_norm: float = _f("Clip each gradient to this L2 norm (Adam clipnorm); 0 = off.", 0.0,
                                   at_least(0, ">= 0 (0 = off)"))
    steps_per_execution: int = _f(
        "Training steps per compiled call, at most; the largest divisor of the epoch's steps not above it "
        "is used, so no call straddles two epochs. Fewer Python round trips; the progress bar updates "
        "every that many steps. Always 1 on the PyTorch backend.",
        8, at_least(1),
    )
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16", "auto"] = _f(
        'Compute dtype of the layers (weights, losses and sampling stay float32). "mixed_bfloat16" '
        "is 1.5-1.6x faster on CPUs with AVX512-BF16; its final losses and z-space statistics stayed "
        "inside the seed-to-seed spread, though its validation loss ended 0.2-0.4% higher in every "
        "seed (benchmarks/README.md, precision.py); "
        '"mixed_float16" is for GPUs (with loss scaling). "auto": mixed_float16 on a GPU, '
        "mixed_bfloat16 on a CPU with AVX512-BF16, float32 otherwise (resolved on each start; "
        "summary.json says which). Saved models load and run in float32.",
        "float32",
    )
    distribution: Literal["none", "data_parallel"] = _f(
        '"data_parallel": a replica of the model on each of `devices` devices, every batch split among them '
        "(TensorFlow: tf.distribute.MirroredStrategy; JAX: keras.distribution.DataParallel; not on PyTorch). "
        "batch_size stays the global batch and the learning rate is not rescaled. Several processes or machines: "
        "JAX only, `zspace train --coordinator HOST:PORT --num-processes N --process-id I` (README).",
        "none",
    )
    devices: int = _f(
        'distribution = "data_parallel": devices per process; 0 = every GPU (1 CPU device on a machine without '
        "GPUs); N = the first N GPUs, or N logical CPU devices on a machine without GPUs (how it is tested on a "
        "CPU). batch_size must divide by the devices of all processes.",
        0, at_least(0),
        Check(lambda v, c: v == 0 or c.distribution == "data_parallel",
              lambda c: f'0 unless distribution = "data_parallel" (distribution = {c.distribution!r})'),
    )
    kl_warmup_epochs: int = _f(
        "The KL weight ramps linearly from 0 (epoch 1) to kl_factor over this many epochs; 0 = off.", 0,
        at_least(0, ">= 0 (0 = off)"),
    )
    on_nonfinite: Literal["stop", "retry"] = _f(
        'A non-finite loss "stop"s training (naming epoch and step, no checkpoint written) or '
        '"retry"s from the last good checkpoint with the learning rate times retry_lr_factor.',
        "stop",
    )
    nonfinite_retries: int = _f("How many retries on_nonfinite = \"retry\" makes before stopping.", 3, at_least(0))
    retry_lr_factor: float = _f("Learning-rate multiplier applied at each retry.", 0.5, in_range(0, 1, "()"))
    monitor_images: int = _f(
        "Validation images (a seeded choice, the same every epoch) encoded after each epoch for the z-space "
        "columns of history.csv: mean and max radius (L2 norm) of z and of mu, mean and min logvar, and a "
        "VAE's active units; at most 10,000. 0 = off (no z-space columns, no jump check on the radius).",
        1000, at_least(0, ">= 0 (0 = off)"), at_most(MAX_MONITOR_IMAGES),
    )
    jump_factor: float = _f(
        "A jump: the validation KL divergence (a VAE's) or the mean radius of z rises above this many times "
        "the previous epoch's value (a value below 1 counts as 1: tiny numbers that triple are noise). "
        "0 = no jump check.", 3.0,
        check(lambda v: v == 0 or v > 1, "0 (off) or a factor above 1"),
    )
    on_jump: Literal["warn", "reseed"] = _f(
        'On a jump: "warn" on stderr and go on, or "reseed": roll back to the previous epoch\'s checkpoint and '
        "train on with fresh noise (the noise seed + 1 each time; the noise seed drives a VAE's sampling "
        "noise, the order of the training batches and the denoise task's noise), at most jump_reseeds times. "
        "Every jump is recorded in run_state.json (Run.jump_events).",
        "warn",
    )
    jump_reseeds: int = _f('How many times on_jump = "reseed" rolls back before it only warns.', 3, at_least(0))
    tensorboard: bool = _f(
        "Write TensorBoard logs into RUN/tensorboard (train/ and validation/, Keras' layout; open with "
        "`tensorboard --logdir RUN/tensorboard`): every history.csv column as a scalar per epoch (tag "
        "epoch_COLUMN, the val_ columns under validation/ without the prefix), a grid of the first 8 validation "
        "images above their reconstructions, a grid of 16 fixed prior samples z ~ N(0, I) decoded, and "
        "histograms of mu and logvar (z for an AE) of the z-space monitor's images (monitor_images; the grid's "
        "when 0). Steps are epochs, 1-based as in history.csv; a resumed run appends to the same logs without "
        "repeating a step. Needs TensorFlow (installed with zspace), whatever the Keras backend.", False)
    verbose: int = _f("0 = silent, 1 = progress bar per epoch, 2 = one line per epoch.", 1,
                      check(lambda v: v in (0, 1, 2), "0, 1 or 2"))

    def kl_scale_at(self, epoch: int) -> float:
        """KL warm-up multiplier of 0-based ``epoch``: 0, 1/N, ..., 1."""
        return 1.0 if self.kl_warmup_epochs == 0 else min(1.0, epoch / self.kl_warmup_epochs)

    def learning_rate_at(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch`` under the step-decay schedule."""
        if self.lr_decay_epochs == 0:
            return self.learning_rate
        return self.learning_rate * self.lr_decay_factor ** (epoch // self.lr_decay_epochs)


# ---------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisConfig(Config):
    """What ``zspace analyze`` computes (a separate TOML file; ``--set`` names its fields)."""

    _what = "analysis config"

    split: Literal["all", "train", "validation"] = _f("Images of the run's dataset to encode.", "all")
    batch_size: int = _f("Images per encoding batch, at most 65,536.", 512, positive(), _AT_MOST_MAX_BATCH)
    radius_bin_width: float = _f("Bin width of the radius histogram, at least 0.001; at most 10,000 bins.", 0.5,
                                 at_least(MIN_RADIUS_BIN_WIDTH, f"at least {MIN_RADIUS_BIN_WIDTH:g}"))
    radius_range: tuple[float, ...] | None = _f(
        "[low, high] of the radius histogram; false/none = 0 to the largest radius.", (0.0, 35.0),
        check(lambda v: len(v) == 2 and v[1] > v[0], "[low, high] with high > low, or none"),
        Check(lambda v, c: (v[1] - v[0]) / c.radius_bin_width <= MAX_HISTOGRAM_BINS,
              lambda c: f"a range of at most {MAX_HISTOGRAM_BINS:,} bins of radius_bin_width ({c.radius_bin_width:g})"),
    )
    axes: tuple[int, ...] = _f("Latent coordinates whose distributions are histogrammed.", (0, 1),
                               each(lambda a: a >= 0, "non-negative coordinate indices"))
    axis_bins: int = _f("Bins of each per-axis histogram, at most 10,000.", 50, positive(), at_most(MAX_HISTOGRAM_BINS))
    active_threshold: float = _f("Activity (variance of mu over the data) above which a unit is active.", 0.01)
    k_min: int = _f("Smallest number of MiniBatchKMeans clusters.", 2, at_least(1, "at least 1"))
    k_max: int = _f("Largest number of clusters, at most 10,000.", 80,
                    Check(lambda v, c: v >= c.k_min, lambda c: f">= k_min ({c.k_min})"),
                    at_most(MAX_CLUSTERS))
    k_step: int = _f("Step between cluster counts.", 2, positive())
    kmeans_seeds: tuple[int, ...] = _f("One inertia curve per seed (their spread shows the noise); each in "
                                       "[0, 2**32).", (0, 1, 2),
                                       non_empty("at least one seed"))
    kmeans_batch_size: int = _f("MiniBatchKMeans batch size.", 4096, positive("positive"))
    pca_subset: int = _f("Points drawn for the PCA scatter (the PCA itself uses all).", 20_000, positive())
    tsne_sizes: tuple[int, ...] = _f("Subset sizes for t-SNE, e.g. [20000, 80000]; [] = no t-SNE.", (20_000,),
                                     each(lambda n: n > 1, "sizes above 1"))
    perplexity: float | tuple[float, ...] = _f(
        "t-SNE perplexity, or a list: one fit per entry, paired with early_exaggeration's (a single value goes "
        "with every entry of the other), e.g. [30, 10] with [12, 16]; each at least 1, at most (points - 1) / 3 "
        "is used (openTSNE takes 3 x perplexity neighbours).", 30.0,
        check(lambda v: len(_as_tuple(v)) > 0, "a number or a non-empty list"),
        check(lambda v: all(p >= 1 for p in _as_tuple(v)), "at least 1 (each entry)"))
    early_exaggeration: float | tuple[float, ...] = _f(
        "t-SNE early exaggeration, or a list paired with perplexity's entries.", 12.0,
        check(lambda v: len(_as_tuple(v)) > 0, "a number or a non-empty list"),
        check(lambda v: all(e >= 1 for e in _as_tuple(v)), ">= 1 (each entry)"),
        Check(lambda v, c: _pairable(c.perplexity, v),
              lambda c: f"a number or a list of as many entries as perplexity ({len(_as_tuple(c.perplexity))})"))
    tsne_backend: Literal["opentsne", "sklearn"] = _f(
        '"opentsne" (FFT-accelerated, fast on 20,000+ points) or "sklearn" (scikit-learn\'s TSNE, Barnes-Hut, '
        f"as the seed ran it; slower, every size at most {MAX_SKLEARN_TSNE_POINTS:,}).", "opentsne",
        Check(lambda v, c: v != "sklearn" or all(n <= MAX_SKLEARN_TSNE_POINTS for n in c.tsne_sizes),
              lambda c: f'"opentsne" for tsne_sizes above {MAX_SKLEARN_TSNE_POINTS:,} ({list(c.tsne_sizes)})'))
    tsne_n_iter: int | None = _f(
        "t-SNE iterations in all, the 250 early-exaggeration ones included (scikit-learn's max_iter), in "
        f"[{TSNE_EXAGGERATION_ITERATIONS + 1}, {MAX_TSNE_ITERATIONS:,}]; none = the backend's default (openTSNE "
        "750, scikit-learn 1,000).", None,
        in_range(TSNE_EXAGGERATION_ITERATIONS + 1, MAX_TSNE_ITERATIONS,
                 expected=f"in [{TSNE_EXAGGERATION_ITERATIONS + 1}, {MAX_TSNE_ITERATIONS:,}] or none"))
    tsne_keep_previous: bool = _f(
        "Keep the t-SNE embeddings of the run's previous analysis that this one does not recompute (when both "
        f"encoded the same z-points), so analyses with new settings add theirs beside them; at most "
        f"{MAX_KEPT_TSNE_FITS} in all, the oldest dropped first.", True)
    z_minus_mu_threshold: float = _f("|z - mu| above which a component is counted.", 0.05)
    logvar_edges: tuple[float, ...] = _f(
        "Inner edges of the logvar intervals counted (VAE), increasing: [-3, 5] counts (-inf, -3), [-3, 5) and "
        "[5, inf); at most 10,000.", (-20.0, -10.0, -5.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0),
        check(lambda v: all(a < b for a, b in zip(v, v[1:])), "strictly increasing numbers"),
        at_most_entries(MAX_HISTOGRAM_BINS))
    seed: int = _f("Seed of the subsets, clustering and t-SNE, in [0, 2**32).", 0)
    color_by: str = _f('Colour of the PCA / t-SNE points: "label", or an attribute name such as "Smiling".',
                       "label")
    tensorboard: bool = _f(
        "Also write TensorBoard Embedding Projector data into RUN/tensorboard (`zspace analyze --tensorboard`; "
        "open it with `tensorboard --logdir RUN/tensorboard`, Projector tab): for projector_points of the analysed "
        "points, a VAE's mu and z (an AE's z) as two tensors, metadata.tsv (point id, split, label, class name, "
        "attributes) and a sprite of their images. Replaces the projector data of the previous analysis.", False)
    projector_points: int = _f(
        f"Most points written for the Embedding Projector (tensorboard = true): a seeded random subset (seed) when "
        f"the analysis has more; at most {MAX_PROJECTOR_POINTS:,}.", 10_000,
        positive(), at_most(MAX_PROJECTOR_POINTS))

    @property
    def ks(self) -> range:
        return range(self.k_min, self.k_max + 1, self.k_step)

    def _check_together(self) -> None:
        fits = len(self.tsne_sizes) * len(self.tsne_settings)
        if fits > MAX_TSNE_FITS:
            raise config_error("tsne_sizes", list(self.tsne_sizes),
                               f"sizes giving at most {MAX_TSNE_FITS} t-SNE fits with the {len(self.tsne_settings)} "
                               f"perplexity / early_exaggeration settings ({len(self.tsne_sizes)} sizes x "
                               f"{len(self.tsne_settings)} = {fits})")

    @property
    def tsne_settings(self) -> tuple[tuple[float, float], ...]:
        """(perplexity, early_exaggeration) of each t-SNE fit per size: the two fields paired entry by entry."""
        perplexities, exaggerations = _as_tuple(self.perplexity), _as_tuple(self.early_exaggeration)
        n = max(len(perplexities), len(exaggerations))
        if not _pairable(perplexities, exaggerations):
            return ()
        return tuple(zip(perplexities * n if len(perplexities) == 1 else perplexities,
                         exaggerations * n if len(exaggerations) == 1 else exaggerations))


# ---------------------------------------------------------------------------------------
# Run = model + train, TOML round trip
# ---------------------------------------------------------------------------------------

_SECTIONS: dict[str, type[Config]] = {"model": ModelConfig, "train": TrainConfig}
_overlap = set(ModelConfig.field_names()) & set(TrainConfig.field_names())
assert not _overlap, f"config field names must be unique across sections: {_overlap}"


@dataclass(frozen=True)
class RunConfig:
    """A complete run: ``model`` and ``train`` sections."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"`{name}` must be a {cls.__name__}. Received: {type(getattr(self, name)).__name__}")
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

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{"model": {...}, "train": {...}}`` of plain values (decoder fields left at None as false)."""
        return {name: getattr(self, name).to_dict() for name in _SECTIONS}

    def resolved_dict(self) -> dict[str, dict[str, Any]]:
        """:meth:`to_dict` with the decoder mirror spelled out: equal for equal networks (resume checks)."""
        return {**self.to_dict(), "model": self.model.resolved().to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> RunConfig:
        """Builds a RunConfig from ``{"model": {...}, "train": {...}}``; unknown names are errors."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a table with [model] and [train] sections.")
        unknown = set(data) - set(_SECTIONS)
        if unknown:
            scalars = sorted(k for k in unknown if not isinstance(data[k], dict))
            if scalars:
                raise ConfigError(f"{source}: {', '.join(scalars)} outside any section; a run config has [model] and "
                                  f"[train] (an analysis or evaluation config? Those go to `zspace analyze --config` / "
                                  f"`zspace evaluate --config`).")
            raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; expected [model] and [train].")
        return cls(**{name: section.from_dict(data.get(name, {}), source, f" in [{name}]")
                      for name, section in _SECTIONS.items()})

    def to_toml(self) -> str:
        """TOML text with one line per field (lists inline), readable by :func:`load_config`."""
        return "\n".join(f"[{name}]\n{getattr(self, name).to_toml()}" for name in _SECTIONS)

    @classmethod
    def from_toml(cls, text: str, source: str = "config") -> RunConfig:
        return cls.from_dict(parse_toml(text, source), source=source)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Reads a TOML run config; errors name the file."""
        data, source = read_toml(path, "config")
        return cls.from_dict(data, source=source)

    def with_overrides(self, overrides: dict[str, Any]) -> RunConfig:
        """A copy with fields replaced by plain name (``{"z_dim": 32, "epochs": 3}``)."""
        owner = {name: section for section, cls in _SECTIONS.items() for name in cls.field_names()}
        data = self.to_dict()
        for key, value in overrides.items():
            if key not in owner:
                raise ConfigError(f"unknown config field `{key}`" + did_you_mean(key, owner))
            data[owner[key]][key] = value
        return RunConfig.from_dict(data, source="overrides")


def load_config(path: str | Path) -> RunConfig:
    """Reads a TOML run config; errors name the file."""
    return RunConfig.load(path)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Parses ``["z_dim=32", "run_dir=/tmp/r"]``: values are TOML literals, else plain strings."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects field=value. Received: {pair!r}")
        if key in overrides:  # the later one would silently win
            raise ConfigError(f"--set {key} given twice ({key}={toml_value(overrides[key])} and {key}={raw.strip()}); "
                              f"give it once.")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        except RecursionError:  # tomllib recurses once per nested array / inline table
            raise ConfigError(f"--set {key}: the value nests arrays or tables deeper than Python can parse.") from None
        overrides[key] = value
    return overrides


def field_docs() -> dict[str, list[tuple[str, str, str]]]:
    """Per section: (field name, default as TOML text, documentation) for the README reference."""
    docs: dict[str, list[tuple[str, str, str]]] = {}
    for section, cls in {**_SECTIONS, "analysis": AnalysisConfig}.items():
        defaults = cls().to_dict()
        docs[section] = [
            (f.name, "mirror of encoder" if f.name.startswith("decoder_") else toml_value(defaults[f.name]),
             f.metadata["doc"])
            for f in dataclasses.fields(cls)
        ]
    return docs
