"""``zspace evaluate``: reconstruction, likelihood, prior-hole and sample-quality numbers of a run, as typed records.

The result is an :class:`Evaluation`; :meth:`zspace.Run.save_evaluation` writes it into the run
directory (evaluation.json, strict JSON). Parts:

- reconstruction of validation images (loss, PSNR, SSIM);
- likelihood (VAE): importance-sampled NLL beside the ELBO (:mod:`zspace.evaluation.likelihood`);
- prior: ELBO surgery and the hole fraction of every sampler's z-points (:mod:`zspace.evaluation.prior`);
- samples: per sampler (N(0, I), uniform [-r, r] for each r, a BIC-chosen Gaussian mixture and a
  second-stage VAE fitted to the training z-points), FD / KID / precision / recall / density /
  coverage of its decoded images against as many held-out real images, in each feature space
  (:mod:`zspace.evaluation.features`: "FD-domain" always, "FID" when Inception-v3's weights are in
  the Keras cache).
"""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from zspace.config_fields import Check, Config, check, config_field, each, non_empty
from zspace.evaluation.likelihood import Likelihood, bernoulli_log_likelihood, gaussian_log_likelihood, run_likelihood
from zspace.evaluation.prior import PriorSurgery, elbo_surgery, hole_fractions
from zspace.errors import RunError
from zspace.evaluation.features import FeatureSpace
from zspace.evaluation.sample_quality import SampleQuality, is_sampler_name, sample_quality
from zspace.generation.gallery import DEFAULT_LIMITS
from zspace.records import Record
from zspace.rundir import Run

__all__ = ["EvaluationConfig", "Evaluation", "Reconstruction", "PriorHoles", "evaluate", "reconstruction_quality"]

_NON_NEGATIVE = check(lambda v: v >= 0, "a non-negative integer")
SAMPLERS = ("normal", "uniform", "gmm", "second_stage")
FEATURE_SPACES = ("domain", "inception")
_MIN_SAMPLE_IMAGES = 10  # k-NN radii need k + 1 = 6 points; KID subsets a few more (checked by the config)
_MIN_IMAGES = 100  # the 1% density quantile of the hole fraction needs a point below it
_MAX_DRAWS = 10**6  # per sampler, per image (K) and per fit: bounds memory (10^6 x z_dim float64) and time
_MAX_LIMIT = 1e4  # U[-r, r] beyond this only overflows the float32 decoder input


def _count(low: int, high: int, zero_means: str = "") -> Check:
    """An integer in [low, high] (or 0 when ``zero_means`` says what 0 stands for)."""
    text = f"an integer in [{low:,}, {high:,}]" + (f" or 0 ({zero_means})" if zero_means else "")
    return check(lambda v: low <= v <= high or (bool(zero_means) and v == 0), text)


def _distinct_names(limits) -> bool:
    return len({f"{r:g}" for r in limits}) == len(limits)


@dataclass(frozen=True)
class EvaluationConfig(Config):
    """What ``zspace evaluate`` computes (a TOML file of top-level keys; ``--set`` names its fields)."""

    _what = "evaluation config"

    images: int = config_field("Validation images for the reconstruction and prior numbers (0 = all).", 0,
                               _count(_MIN_IMAGES, 10**7, "all"))
    nll_images: int = config_field(
        "Validation images of the importance-sampled NLL (VAE); 0 = 1,000 or all if fewer.", 0,
        _count(1, 10**7, "1,000 or all if fewer"))
    k: int = config_field("Importance samples per image of the NLL.", 1000, _count(1, _MAX_DRAWS))
    hole_samples: int = config_field("z-points drawn per sampler for the hole fraction.", 10_000,
                                     _count(100, _MAX_DRAWS))
    limits: tuple[float, ...] = config_field(
        "Half-widths r of the uniform samplers U[-r, r]^z_dim.", DEFAULT_LIMITS, non_empty("at least one limit"),
        each(lambda r: math.isfinite(r) and 0 < r <= _MAX_LIMIT, f"half-widths in (0, {_MAX_LIMIT:g}]"),
        check(_distinct_names, "distinct half-widths (as printed with %g: they name the samplers)"))
    samplers: tuple[str, ...] = config_field(
        "Samplers whose images are compared with real ones: normal, uniform (each limit), gmm, second_stage.",
        SAMPLERS, each(lambda s: s in SAMPLERS, f"names among {', '.join(SAMPLERS)}"))
    sample_images: int = config_field(
        "Generated and real images per sampler; 0 = 10,000 or all validation images if fewer.", 0,
        _count(_MIN_SAMPLE_IMAGES, _MAX_DRAWS, "10,000 or all if fewer"))
    features: tuple[str, ...] = config_field(
        'Feature spaces of the distances: "domain" (zspace\'s per-dataset network), "inception" (FID, only '
        "if its weights are in the Keras cache).", FEATURE_SPACES,
        each(lambda s: s in FEATURE_SPACES, f"names among {', '.join(FEATURE_SPACES)}"))
    features_dir: str = config_field(
        "Folder of the cached domain feature networks; empty = a prepared cache's features/ folder, else "
        "$KERAS_HOME/datasets/zspace-features (~/.keras by default).", "")
    gmm_components: int = config_field("Components of the GMM sampler; 0 = chosen by BIC.", 0,
                                       _count(1, 1000, "chosen by BIC"))
    second_stage_steps: int = config_field("Optimizer steps of the second-stage VAE sampler.", 2000,
                                           _count(1, 100_000))
    fit_images: int = config_field(
        "Training images whose z-points the GMM and second-stage samplers are fitted to (0 = all).", 10_000,
        _count(_MIN_IMAGES, 10**7, "all"))
    seed: int = config_field("Seed of every draw (and of the domain feature network: a new seed, a new network), "
                             "in [0, 2**32).", 0, _NON_NEGATIVE)
    progress: bool = config_field("Progress bars on a terminal.", True)


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

    def __post_init__(self):  # a hand-edited evaluation.json is refused with the field's name
        if "normal" not in self.hole_fraction or not all(map(is_sampler_name, self.hole_fraction)):
            raise ValueError(f"`hole_fraction` needs \"normal\" and sampler names only. Received: "
                             f"{list(self.hole_fraction)[:12]}")
        if not all(0.0 <= v <= 1.0 for v in self.hole_fraction.values()):
            raise ValueError("`hole_fraction` values must be shares in [0, 1].")


@dataclass(frozen=True)
class Evaluation(Record):
    """Everything ``zspace evaluate`` computes; ``likelihood`` is None for an AE (it has none).

    Attributes:
        samples: one :class:`SampleQuality` per sampler and feature space.
        features: the feature spaces used, by label ("FD-domain", "FD-random", "FID").
        samplers: what each sampler is ("gmm": "Gaussian mixture, 8 full components (BIC)", ...).
        notes: what was left out and why (an AE's likelihood, Inception weights not on the machine).
        seconds: wall time of each part.
        epsilon_scale: the VAE's z = mu + sigma * eps * epsilon_scale of the reconstructions and the
            samplers' training z-points; None for an AE, and in evaluations written before zspace
            recorded it (they used the run's own scale).
    """

    config: EvaluationConfig
    kind: Literal["ae", "vae"]
    reconstruction: Reconstruction
    prior: PriorHoles
    seconds: dict[str, float]
    likelihood: Likelihood | None = None
    samples: tuple[SampleQuality, ...] = ()
    features: dict[str, FeatureSpace] = dataclasses.field(default_factory=dict)
    samplers: dict[str, str] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()
    epsilon_scale: float | None = None

    def sample(self, sampler: str, features: str | None = None) -> SampleQuality | None:
        """The numbers of one sampler (in the first feature space if ``features`` is None), or None."""
        return next((q for q in self.samples if q.sampler == sampler and features in (None, q.features)), None)


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


def _size(asked: int, default: int, available: int, field: str, what: str, run: Run) -> int:
    """``asked`` images (0: min(default, available)); more than ``available`` is an error naming both."""
    if asked > available:
        raise RunError(f"{run.root}: {field}={asked} asks for more {what} than the run has ({available}).")
    return asked or min(default, available)


def _family(sampler: str) -> str:
    """The config name of a sampler: "uniform_2.5" -> "uniform"."""
    return sampler.split("_")[0] if sampler.startswith("uniform_") else sampler


def _fit_samplers(c: EvaluationConfig, z_train: np.ndarray) -> tuple[dict, dict[str, str]]:
    """The configured samplers fitted to (N, z_dim) training z-points ({name: sampler}, {name: description})."""
    from zspace.generation.samplers import GaussianMixtureSampler, SecondStageVAESampler

    fitted, about = {}, {}
    if "gmm" in c.samplers:
        fitted["gmm"] = GaussianMixtureSampler(c.gmm_components or None, random_state=c.seed).fit(z_train)
        how = "given" if c.gmm_components else "chosen by BIC"
        about["gmm"] = (f"Gaussian mixture fitted to {len(z_train)} training z-points, {fitted['gmm'].n_components_} "
                        f"full components ({how})")
    if "second_stage" in c.samplers:
        fitted["second_stage"] = SecondStageVAESampler(steps=c.second_stage_steps, random_state=c.seed).fit(z_train)
        about["second_stage"] = f"second-stage VAE (Dai & Wipf 2019) fitted to {len(z_train)} training z-points"
    return fitted, about


def _draw(c: EvaluationConfig, z_dim: int, n: int, purpose: int, fitted: dict) -> dict[str, np.ndarray]:
    """{name: (n, z_dim) float32}: N(0, I), each U[-r, r] (one set of directions for all r) and the fitted
    samplers. Each purpose (0: holes, 1: images) has its own streams, so one part's sizes never move
    the other's draws."""
    z = {"normal": np.random.default_rng([c.seed, purpose, 0]).standard_normal((n, z_dim))}
    unit = np.random.default_rng([c.seed, purpose, 1]).uniform(-1.0, 1.0, (n, z_dim))
    z.update({f"uniform_{r:g}": r * unit for r in c.limits})
    z.update({name: sampler.sample(n) for name, sampler in fitted.items()})
    return {name: points.astype(np.float32) for name, points in z.items()}


def _describe_fixed(c: EvaluationConfig, z_dim: int) -> dict[str, str]:
    return {"normal": "N(0, I)", **{f"uniform_{r:g}": f"uniform in [-{r:g}, {r:g}]^{z_dim}" for r in c.limits}}


def _feature_extractors(run: Run, c: EvaluationConfig, notes: list[str]) -> list:
    from zspace.evaluation.features import domain_network, inception_network

    extractors = []
    if "domain" in c.features:
        extractors.append(domain_network(run.data, c.features_dir or None, seed=c.seed, progress=c.progress))
    if "inception" in c.features:
        inception, note = inception_network(progress=c.progress)
        if inception is None:
            notes.append(note)
        else:
            extractors.append(inception)
    return extractors


@contextmanager
def _timed(seconds: dict[str, float], part: str):
    start = time.perf_counter()
    yield
    seconds[part] = round(time.perf_counter() - start, 3)


def _sample_quality(model, extractors: list, real_images: np.ndarray, latent: dict[str, np.ndarray],
                    c: EvaluationConfig) -> list[SampleQuality]:
    """One record per compared sampler and feature space: its decoded z against ``real_images``."""
    real = [extractor.features(real_images) for extractor in extractors]
    compared = [(name, z) for name, z in latent.items() if _family(name) in c.samplers]
    records = []
    for name, z in tqdm(compared, desc="samplers", unit="sampler", disable=None if c.progress else True, leave=False):
        images = model.decode(z[:len(real_images)])
        for extractor, real_features in zip(extractors, real):
            records.append(sample_quality(real_features, extractor.features(images), name, extractor.space.label,
                                          seed=c.seed))
    return records


def evaluate(run: Run | str | Path, config: EvaluationConfig = EvaluationConfig(),
             epsilon_scale: float | None = None) -> Evaluation:
    """Evaluates a run on its validation images and saves the result (evaluation.json) in the run.

    Args:
        epsilon_scale: VAE: z = mu + sigma * eps * epsilon_scale in the reconstructions and the z-points
            the gmm / second-stage samplers are fitted to (NLL, ELBO and the prior numbers use mu and
            logvar: the scale does not change them); None = the run's own. Recorded in the evaluation,
            which REPLACES the run's evaluation.json whatever the scale (a note says so).
    """
    from zspace.analysis.encoding import epsilon_scaled, resolve_epsilon_scale

    run = Run.of(run)
    resolve_epsilon_scale(run, epsilon_scale)  # a bad scale fails before the lock is taken
    with run.lock("evaluate"), epsilon_scaled(run, epsilon_scale) as scale:
        return _evaluate_locked(run, config, scale)


def _scale_note(run: Run, scale: float | None) -> list[str]:
    """A note when the evaluation's epsilon_scale is not the run's own (so it is never read as the default)."""
    own = run.config.model.epsilon_scale
    if scale is None or scale == own:
        return []
    return [f"epsilon_scale: z = mu + sigma * eps * {scale:g} (the run's own scale is {own:g}) in the "
            f"reconstruction and the gmm / second-stage fits; NLL, ELBO and the prior numbers use mu and logvar "
            f"and do not depend on it."]


def _evaluate_locked(run: Run, c: EvaluationConfig, scale: float | None = None) -> Evaluation:
    from zspace.analysis.encoding import encode_images

    seconds: dict[str, float] = {}
    notes: list[str] = _scale_note(run, scale)
    n_val = len(run.split.x_val)
    if n_val < _MIN_IMAGES:
        raise RunError(f"{run.root}: evaluate needs at least {_MIN_IMAGES} validation images (the hole fraction's "
                       f"1% density quantile); the run has {n_val}.")
    n = _size(c.images, n_val, n_val, "images", "validation images", run)
    n_nll = _size(c.nll_images, 1000, n_val, "nll_images", "validation images", run)
    n_samples = _size(c.sample_images, 10_000, n_val, "sample_images", "validation images", run)
    task = run.config.train.task

    with _timed(seconds, "reconstruction"):
        images = run.validation_images(max(n, n_samples))  # what the model is given
        # input/target pairs: the decoder is to give back the targets, not the stored (input) images
        targets = images if run.split.t_val is None else np.asarray(run.split.t_val[:len(images)], np.float32)
        model = run.reset_noise()
        codes = encode_images(model, images[:n], task=task)  # one encoding for this part and the prior's
        reconstruction = reconstruction_quality(targets[:n], model.decode(codes["z"]),
                                                run.config.model.reconstruction_loss)
    with _timed(seconds, "likelihood"):
        likelihood = run_likelihood(run, n_nll, c.k, c.seed, progress=c.progress)
        if likelihood is None:
            notes.append("likelihood: an AE has none (no q(z|x) to sample from); NLL and ELBO are left out.")
    z_dim = codes["z"].shape[1]
    with _timed(seconds, "samplers"):
        model = run.reset_noise()
        fitted, about = {}, _describe_fixed(c, z_dim)
        if {"gmm", "second_stage"} & set(c.samplers):
            x_train = run.split.x_train
            fit_points = min(c.fit_images or len(x_train), len(x_train))
            if fit_points < max(_MIN_IMAGES, c.gmm_components):
                raise RunError(f"{run.root}: the GMM / second-stage samplers need at least "
                               f"{max(_MIN_IMAGES, c.gmm_components)} training z-points (gmm_components="
                               f"{c.gmm_components}); fit_images gives {fit_points} of {len(x_train)}.")
            fitted, fitted_about = _fit_samplers(c, encode_images(model, x_train[:fit_points], task=task)["z"])
            about.update(fitted_about)
    with _timed(seconds, "prior"):
        mu, logvar = codes.get("mu", codes["z"]), codes.get("logvar")
        prior = PriorHoles(elbo_surgery(mu, logvar, c.seed),
                           hole_fractions(_draw(c, z_dim, c.hole_samples, 0, fitted), mu, logvar, seed=c.seed))
    with _timed(seconds, "feature_network"):
        extractors = _feature_extractors(run, c, notes) if c.samplers else []
    with _timed(seconds, "samples"):
        samples = _sample_quality(model, extractors, targets[:n_samples], _draw(c, z_dim, n_samples, 1, fitted), c)
        if not extractors or not c.samplers:
            notes.append("samples: no sample distances (samplers or features is empty, or no feature space is "
                         "available).")
        small = [e.space for e in extractors if n_samples <= e.space.dim]
        notes += [f"samples: {n_samples} images for {space.dim} {space.label} features: the covariances are rank-"
                  f"deficient and FD / KID biased; compare them only at equal image counts." for space in small]
    evaluation = Evaluation(c, run.config.model.kind, reconstruction, prior, seconds, likelihood, tuple(samples),
                            {e.space.label: e.space for e in extractors}, about, tuple(notes), scale)
    run.save_evaluation(evaluation)
    return evaluation
