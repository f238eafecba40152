"""``zspace evaluate``: reconstruction, likelihood and prior-hole numbers of a run, as typed records.

The result is an :class:`Evaluation`; :meth:`zspace.Run.save_evaluation` writes it into the run
directory (evaluation.json, strict JSON). Sample-quality distances per sampler (FD-domain, KID,
precision / recall, density / coverage: :mod:`zspace.evaluation.sample_quality`) need the domain
feature network, which is not there yet: ``samples`` stays empty until then.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from zspace.config_fields import Config, check, config_field, each, non_empty, positive
from zspace.evaluation.likelihood import Likelihood, bernoulli_log_likelihood, gaussian_log_likelihood, run_likelihood
from zspace.evaluation.prior import PriorSurgery, elbo_surgery, hole_fraction
from zspace.evaluation.sample_quality import SampleQuality
from zspace.generation.gallery import DEFAULT_LIMITS
from zspace.records import Record
from zspace.rundir import Run

__all__ = ["EvaluationConfig", "Evaluation", "Reconstruction", "PriorHoles", "evaluate", "reconstruction_quality"]

_NON_NEGATIVE = check(lambda v: v >= 0, "a non-negative integer")


@dataclass(frozen=True)
class EvaluationConfig(Config):
    """What ``zspace evaluate`` computes (a TOML file of top-level keys; ``--set`` names its fields)."""

    _what = "evaluation config"

    images: int = config_field("Validation images for the reconstruction and prior numbers (0 = all).", 0,
                               _NON_NEGATIVE)
    nll_images: int = config_field("Validation images of the importance-sampled NLL (VAE).", 1000, positive())
    k: int = config_field("Importance samples per image of the NLL.", 1000, positive())
    hole_samples: int = config_field("z-points drawn per sampler for the hole fraction.", 10_000, positive())
    limits: tuple[float, ...] = config_field(
        "Half-widths r of the uniform samplers U[-r, r]^z_dim.", DEFAULT_LIMITS, non_empty("at least one limit"),
        each(lambda r: math.isfinite(r) and r > 0, "positive finite half-widths"))
    seed: int = config_field("Seed of every draw.", 0, _NON_NEGATIVE)


@dataclass(frozen=True)
class Reconstruction(Record):
    """Reconstruction of validation images (through the sampled z, as the training loss).

    Attributes:
        loss: "bce" or "mse"; loss_per_image (nats for BCE, summed over pixels) and loss_per_pixel.
        psnr: mean over images of 10 log10(1 / MSE), dB. ssim: mean SSIM (TensorFlow's tf.image.ssim,
            max value 1, filter size min(11, H, W)). n_images: images used.
    """

    loss: Literal["bce", "mse"]
    loss_per_image: float
    loss_per_pixel: float
    psnr: float
    ssim: float
    n_images: int


@dataclass(frozen=True)
class PriorHoles(Record):
    """ELBO surgery and, per sampler ("normal", "uniform_<r>"), the share of its z-points in holes of q(z)."""

    surgery: PriorSurgery
    hole_fraction: dict[str, float]


@dataclass(frozen=True)
class Evaluation(Record):
    """Everything ``zspace evaluate`` computes; ``likelihood`` is None for an AE (it has none)."""

    config: EvaluationConfig
    kind: Literal["ae", "vae"]
    reconstruction: Reconstruction
    prior: PriorHoles
    seconds: dict[str, float]
    likelihood: Likelihood | None = None
    samples: tuple[SampleQuality, ...] = ()


def reconstruction_quality(targets: np.ndarray, decoded: np.ndarray, loss: str) -> Reconstruction:
    """Loss, PSNR and SSIM of (n, H, W, C) decoded images against their targets, all in [0, 1]."""
    import tensorflow as tf

    per_image = -(bernoulli_log_likelihood(targets, decoded) if loss == "bce" else
                  gaussian_log_likelihood(targets, decoded) + 0.5 * targets[0].size * math.log(math.pi))
    mse = ((targets.astype(np.float64) - decoded) ** 2).reshape(len(targets), -1).mean(1)
    psnr = 10.0 * np.log10(1.0 / np.maximum(mse, 1e-12))
    size = min(11, targets.shape[1], targets.shape[2])
    ssim = tf.image.ssim(tf.constant(targets, tf.float32), tf.constant(decoded, tf.float32), max_val=1.0,
                         filter_size=size).numpy()
    return Reconstruction(loss, float(per_image.mean()), float(per_image.mean() / targets[0].size), float(psnr.mean()),
                          float(ssim.mean()), len(targets))


def evaluate(run: Run | str | Path, config: EvaluationConfig = EvaluationConfig()) -> Evaluation:
    """Evaluates a run on its validation images and saves the result (evaluation.json) in the run."""
    from zspace.analysis.encoding import encode_images

    run = Run.of(run)
    c = config
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    n = len(run.split.x_val) if c.images == 0 else c.images
    targets = run.validation_images(n)
    model = run.reset_noise()
    codes = encode_images(model, targets, task=run.config.train.task)  # one encoding for both parts
    reconstruction = reconstruction_quality(targets, model.decode(codes["z"]), run.config.model.reconstruction_loss)
    seconds["reconstruction"] = round(time.perf_counter() - start, 3)

    start = time.perf_counter()
    mu, logvar = codes.get("mu", codes["z"]), codes.get("logvar")
    rng = np.random.default_rng(c.seed)
    z_dim = mu.shape[1]
    samplers = {"normal": rng.standard_normal((c.hole_samples, z_dim))}
    unit = rng.uniform(-1.0, 1.0, (c.hole_samples, z_dim))
    samplers.update({f"uniform_{r:g}": r * unit for r in c.limits})
    prior = PriorHoles(elbo_surgery(mu, logvar, c.seed),
                       {name: hole_fraction(z, mu, logvar, seed=c.seed) for name, z in samplers.items()})
    seconds["prior"] = round(time.perf_counter() - start, 3)

    start = time.perf_counter()
    likelihood = run_likelihood(run, c.nll_images, c.k, c.seed)
    seconds["likelihood"] = round(time.perf_counter() - start, 3)
    evaluation = Evaluation(c, run.config.model.kind, reconstruction, prior, seconds, likelihood)
    run.save_evaluation(evaluation)
    return evaluation
