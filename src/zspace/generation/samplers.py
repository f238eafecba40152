"""Post-hoc latent samplers fitted to the training z-points."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.mixture import GaussianMixture

from zspace.config_fields import Config, at_least, config_field, in_range, positive
from zspace.errors import TrainingDiverged

__all__ = ["GaussianMixtureSampler", "SecondStageConfig", "SecondStageVAESampler", "DEFAULT_CANDIDATES",
           "mixture_parameters"]

# Optimizer steps per compiled call on TensorFlow and JAX (torch runs one): the second stage is so
# small that Python and dispatch overhead dominated a step (60,000 x 16: 15.5 s -> 7.9 s for 2000 steps).
STEPS_PER_EXECUTION = 20
# Powers of two: BIC compares orders of magnitude; a finer grid costs fits and rarely changes the images.
DEFAULT_CANDIDATES = (1, 2, 4, 8, 16, 32)
# A count is tried only if the data have this many points per free parameter of its mixture. BIC's
# penalty (p log N) is derived for N >> p; below about two points per parameter the components
# collapse onto a few points each (full covariances are held non-singular only by reg_covar), the
# likelihood is not worth comparing, and these largest counts are also the slowest to fit.
POINTS_PER_PARAMETER = 2


def mixture_parameters(n_components: int, z_dim: int, covariance_type: str) -> int:
    """Free parameters of a Gaussian mixture: weights, means, covariances (as scikit-learn counts them)."""
    covariance = {"full": n_components * z_dim * (z_dim + 1) // 2, "tied": z_dim * (z_dim + 1) // 2,
                  "diag": n_components * z_dim, "spherical": n_components}[covariance_type]
    return (n_components - 1) + n_components * z_dim + covariance


def _steps_per_execution(steps: int) -> int:
    """STEPS_PER_EXECUTION, or a divisor of ``steps`` (no ragged last call); 1 on torch, which allows no other."""
    import keras

    return 1 if keras.backend.backend() == "torch" else math.gcd(steps, STEPS_PER_EXECUTION)


def _check_points(z, min_points: int, what: str) -> np.ndarray:
    """``z`` as float64 (N, z_dim); ValueError naming the shape or value if it cannot be fitted."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 1:
        raise ValueError(f"`z` must be a 2-D array (N, z_dim) of z-points. Received shape {z.shape}")
    if len(z) < min_points:
        raise ValueError(f"`z` must have at least {min_points} points ({what}). Received shape {z.shape}")
    if not np.all(np.isfinite(z)):
        bad = z[~np.isfinite(z)][0]
        raise ValueError(f"`z` must be finite. Received a {bad} in {np.sum(~np.all(np.isfinite(z), axis=1))} "
                         f"of its {len(z)} rows")
    return z


class GaussianMixtureSampler:
    """A Gaussian mixture fitted to encoded training points, to draw new z-points from.

    Drawing z where the encoder actually put its points lets even a plain AE, whose
    z-points lie far from N(0, I), generate meaningful images (Ghosh et al. 2020,
    "From variational to deterministic autoencoders").

    Args:
        n_components: mixture components; None chooses them by BIC among ``candidates``.
        covariance_type: as scikit-learn's GaussianMixture ("full", "diag", "tied", "spherical").
        random_state: seed of the fit and of the draws.
        candidates: the counts BIC chooses from when ``n_components`` is None. A count is tried
            only if N >= POINTS_PER_PARAMETER (2) x the mixture's free parameters (see
            :func:`mixture_parameters`); the smallest candidate is always tried.

    Attributes:
        mixture_: the fitted ``sklearn.mixture.GaussianMixture`` (the lowest-BIC one when chosen).
        n_components_: its number of components.
        bic_: {count: BIC of the fit with that many components, on the training points}, one
            entry per count fitted (the skipped ones are absent).
    """

    def __init__(self, n_components: int | None = 10, covariance_type: str = "full", random_state: int | None = 0,
                 candidates: Sequence[int] = DEFAULT_CANDIDATES):
        if n_components is not None and (isinstance(n_components, bool) or not isinstance(n_components, int)
                                         or n_components < 1):
            raise ValueError(f"`n_components` must be a positive integer or None (choose by BIC). "
                             f"Received: n_components={n_components!r}")
        candidates = tuple(candidates)
        if not candidates or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in candidates):
            raise ValueError(f"`candidates` must be a non-empty list of positive integers. "
                             f"Received: candidates={candidates!r}")
        if covariance_type not in ("full", "tied", "diag", "spherical"):
            raise ValueError(f"`covariance_type` must be one of 'full', 'tied', 'diag', 'spherical'. "
                             f"Received: covariance_type={covariance_type!r}")
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.random_state = random_state
        self.candidates = tuple(sorted(set(candidates)))

    def _fit_one(self, z: np.ndarray, n_components: int) -> GaussianMixture:
        mixture = GaussianMixture(n_components, covariance_type=self.covariance_type, random_state=self.random_state)
        return mixture.fit(z)

    def fit(self, z: np.ndarray) -> GaussianMixtureSampler:
        """Fits the mixture to (N, z_dim) points; returns self."""
        if self.n_components is not None:
            z = np.asarray(z, dtype=np.float64)
            if z.ndim != 2 or len(z) < self.n_components:
                raise ValueError(
                    f"`z` must be (N, z_dim) with N >= n_components={self.n_components}. Received shape {z.shape}"
                )
            self.mixture_ = self._fit_one(z, self.n_components)
            self.n_components_ = self.n_components
            self.bic_ = {self.n_components: float(self.mixture_.bic(z))}
            return self
        z = _check_points(z, self.candidates[0], f"the smallest of candidates={self.candidates}")
        counts = [k for k in self.candidates
                  if len(z) >= POINTS_PER_PARAMETER * mixture_parameters(k, z.shape[1], self.covariance_type)]
        mixtures = {k: self._fit_one(z, k) for k in counts or self.candidates[:1]}
        self.bic_ = {k: float(m.bic(z)) for k, m in mixtures.items()}
        self.n_components_ = min(self.bic_, key=self.bic_.get)
        self.mixture_ = mixtures[self.n_components_]
        return self

    def sample(self, n: int) -> np.ndarray:
        """n new z-points, float32 (n, z_dim), in random component order (the same n points each call)."""
        if not hasattr(self, "mixture_"):
            raise RuntimeError("GaussianMixtureSampler.sample called before fit.")
        points, _ = self.mixture_.sample(n)  # grouped by component
        order = np.random.default_rng(self.random_state).permutation(n)
        return points[order].astype(np.float32)


@dataclass(frozen=True)
class SecondStageConfig(Config):
    """Hyperparameters of :class:`SecondStageVAESampler`; a bad value raises ConfigError naming it."""

    _what = "second-stage config"

    hidden: int = config_field("Width of each hidden Dense layer of the encoder and of the decoder.", 128, positive())
    layers: int = config_field("Hidden Dense layers in the encoder and in the decoder.", 2,
                               at_least(0, "a non-negative integer"))
    steps: int = config_field("Optimizer steps (a fixed count: the cost does not grow with N).", 2000, positive())
    batch_size: int = config_field("z-points per optimizer step.", 256, positive())
    learning_rate: float = config_field("Adam's initial learning rate (cosine-decayed to 0 over the steps).", 3e-3,
                                        in_range(0, math.inf, "()", "a positive number"))
    random_state: int | None = config_field("Seed of the initial weights, batches, noise and draws (None: unseeded).",
                                            0, at_least(0, "a non-negative integer, or none"))


class SecondStageVAESampler:
    """A second, small dense VAE fitted to the z-points; draws z = decoder(u), u ~ N(0, I).

    Dai & Wipf 2019 ("Diagnosing and enhancing VAE models", the two-stage VAE; pythae's
    ``TwoStageVAESampler``): the first model's aggregate posterior q(z) is usually not N(0, I),
    so N(0, I) draws land in holes. A second VAE with u as wide as z and a learned decoder
    variance gamma can drive gamma towards 0 and fit q(u) to N(0, I) closely, and its decoder
    then carries N(0, I) onto q(z).

    Args:
        hidden, layers, steps, batch_size, learning_rate, random_state: see :class:`SecondStageConfig`.

    Attributes:
        config: the validated :class:`SecondStageConfig`.
        mean_, std_: (z_dim,) per-dimension mean and std of the training z-points.
        gamma_: the learned decoder variance, in standardised units.
        loss_: the loss averaged over the fit's steps (nats per point).
    """

    def __init__(self, hidden: int = 128, layers: int = 2, steps: int = 2000, batch_size: int = 256,
                 learning_rate: float = 3e-3, random_state: int | None = 0):
        self.config = SecondStageConfig(hidden=hidden, layers=layers, steps=steps, batch_size=batch_size,
                                        learning_rate=learning_rate, random_state=random_state)

    def fit(self, z: np.ndarray) -> SecondStageVAESampler:
        """Trains the second stage on (N, z_dim) z-points (N >= 2) for ``steps`` steps; returns self."""
        import keras

        from zspace.generation.second_stage import IndexBatches, build_second_stage, second_stage_loss

        c = self.config
        z = _check_points(z, 2, "a standard deviation needs two")
        # Standardised per dimension: gamma is one noise variance shared by all dimensions, and the
        # initial weights and learning rate assume unit-scale inputs. Left raw, a z whose dims
        # differ in scale (an AE's, or a VAE's active vs. collapsed dims) would have its small dims
        # drowned in gamma and reproduced as noise. A constant dimension keeps std 1 (it stays constant).
        self.mean_ = z.mean(axis=0)
        std = z.std(axis=0)
        self.std_ = np.where(std > 0, std, 1.0)
        z_std = ((z - self.mean_) / self.std_).astype(np.float32)

        # Batches: consecutive seeded permutations of the N points, cut into steps x batch_size.
        rng = np.random.default_rng(c.random_state)
        needed = c.steps * c.batch_size
        index = np.concatenate([rng.permutation(len(z)) for _ in range(-(-needed // len(z)))])[:needed]
        model, self._decoder = build_second_stage(z.shape[1], c.hidden, c.layers, c.random_state)
        schedule = keras.optimizers.schedules.CosineDecay(c.learning_rate, decay_steps=c.steps)
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=second_stage_loss,
                      steps_per_execution=_steps_per_execution(c.steps))
        history = model.fit(IndexBatches(z_std, index.reshape(c.steps, c.batch_size)), epochs=1, verbose=0,
                            shuffle=False)  # the index matrix is the seeded order; Keras would reshuffle it unseeded
        self.loss_ = float(history.history["loss"][-1])
        self.gamma_ = float(np.exp(keras.ops.convert_to_numpy(model.get_layer("log_gamma").log_gamma)))
        if not np.isfinite(self.loss_):
            raise TrainingDiverged(f"The second-stage VAE's loss became {self.loss_} within its {c.steps} steps; "
                                   f"try a lower learning_rate (now {c.learning_rate}).")
        return self

    def sample(self, n: int) -> np.ndarray:
        """n new z-points, float32 (n, z_dim): decoder means of u ~ N(0, I) (the same n points each call)."""
        if not hasattr(self, "_decoder"):
            raise RuntimeError("SecondStageVAESampler.sample called before fit.")
        u = np.random.default_rng(self.config.random_state).standard_normal((n, len(self.mean_))).astype(np.float32)
        z_std = self._decoder.predict(u, batch_size=4096, verbose=0)
        return (z_std * self.std_ + self.mean_).astype(np.float32)
