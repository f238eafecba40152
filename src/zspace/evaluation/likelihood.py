"""Importance-sampled log-likelihood of a VAE (Burda et al. 2015), beside the ELBO.

    log p(x) ~ logmeanexp_k [log p(x | z_k) + log p(z_k) - log q(z_k | x)],  z_k ~ q(z | x), k = 1..K

q(z | x) = N(mu, diag(exp(logvar))) from the encoder, p(z) = N(0, I). The estimate is a lower
bound of log p(x) for every K (Jensen) that tightens as K grows; K = 1 gives the ELBO in
expectation. The sampling noise is not clipped: the clip of training would change q.

The decoder's likelihood is the run's own reconstruction loss read as a density:
- "bce": Bernoulli, log p(x | z) = sum_pixels x log p + (1 - x) log(1 - p) (= -BCE; exact for
  binary images, the usual convention for grey ones, whose continuous-Bernoulli normaliser is
  left out);
- "mse": Gaussian with the fixed variance that makes the summed squared error its negative log
  density: sigma^2 = 1/2, log p(x | z) = -sum (x - x_hat)^2 - (D / 2) log(pi).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops
from tqdm.auto import tqdm

from zspace.records import Record

__all__ = ["importance_log_likelihood", "bernoulli_log_likelihood", "gaussian_log_likelihood", "Likelihood", "summarize",
           "run_likelihood", "DecoderLogLikelihood", "decoder_log_likelihood"]

_LOG_2PI = math.log(2.0 * math.pi)
_EPS = 1e-7  # Keras' clip of probabilities in its binary cross-entropy


def bernoulli_log_likelihood(x: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """(n,) sum over pixels of x log p + (1 - x) log(1 - p), p clipped to [1e-7, 1 - 1e-7] like Keras' BCE."""
    # float32 per pixel (a tenth of the decoder's time at 28x28), float64 sums over pixels.
    p = np.clip(probabilities.astype(np.float32, copy=False), _EPS, 1.0 - _EPS).reshape(len(x), -1)
    x = x.astype(np.float32, copy=False).reshape(len(x), -1)
    log_p, log_q = np.log(p), np.log1p(-p)
    return (log_q.sum(1, dtype=np.float64) + (x * (log_p - log_q)).sum(1, dtype=np.float64))


def gaussian_log_likelihood(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    """(n,) log N(x; means, I / 2) summed over pixels: -sum (x - mean)^2 - (D / 2) log(pi)."""
    diff = (x.astype(np.float64) - means.astype(np.float64)).reshape(len(x), -1)
    return -(diff * diff).sum(1) - 0.5 * diff.shape[1] * math.log(math.pi)


@keras.saving.register_keras_serializable(package="zspace")
class DecoderLogLikelihood(keras.layers.Layer):
    """``[targets, decoded]`` (m, H, W, C) each -> (m,) log p(targets | z), the two functions above in-graph.

    Computed in float32 where the decoder runs, so only m numbers per call leave the graph (the
    decoded images stay inside it): 7% of the NLL's time at 28x28 went to moving them out and
    re-reading them in numpy.
    """

    def __init__(self, likelihood: str = "bernoulli", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f'`likelihood` must be "bernoulli" or "gaussian". Received: {likelihood!r}')
        self.likelihood = likelihood

    def call(self, inputs):
        targets, decoded = (ops.cast(t, "float32") for t in inputs)
        dims = math.prod(targets.shape[1:])
        targets, decoded = ops.reshape(targets, (-1, dims)), ops.reshape(decoded, (-1, dims))
        if self.likelihood == "bernoulli":
            p = ops.clip(decoded, _EPS, 1.0 - _EPS)
            log_q = ops.log1p(-p)
            return ops.sum(log_q + targets * (ops.log(p) - log_q), axis=1)
        return -ops.sum(ops.square(targets - decoded), axis=1) - 0.5 * dims * math.log(math.pi)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0],)

    def get_config(self):
        return {**super().get_config(), "likelihood": self.likelihood}


# Target values (pixels x channels) per decoder call of the likelihood: 2^23 float32 values are 32 MiB for the
# targets, the decoded images and each decoder activation of their size. At a fixed 4,096 rows a 96x96x3 decoder
# held several GB of activations (5.5 GB peak RSS in benchmarks/workflow.py); 28x28 images still get 4,096 rows.
VALUES_PER_CALL = 2**23
MAX_ROWS_PER_CALL = 4096


def rows_per_call(values_per_image: int, k: int) -> int:
    """(image, z) pairs per decoder call for ``values_per_image`` (H x W x C) targets and K samples:
    at most :data:`VALUES_PER_CALL` values and :data:`MAX_ROWS_PER_CALL` rows, and a multiple of K (or
    an even share of it), so that the fixed-shape calls pad (and waste) nothing."""
    rows = max(1, min(MAX_ROWS_PER_CALL, VALUES_PER_CALL // max(1, values_per_image)))
    if k <= rows:
        return rows // k * k
    return math.ceil(k / math.ceil(k / rows))


def decoder_log_likelihood(decoder: keras.Model, likelihood: str, batch_size: int = MAX_ROWS_PER_CALL
                           ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``(targets (m, H, W, C), z (m, z_dim)) -> (m,)`` log p(targets | z) through ``decoder``, in one graph.

    Calls run in batches of one shape (the tail zero-padded) so the graph is traced once.
    """
    z_in = keras.Input(decoder.input_shape[1:], name="z")
    targets_in = keras.Input(decoder.output_shape[1:], name="targets")
    fused = keras.Model([z_in, targets_in], DecoderLogLikelihood(likelihood)([targets_in, decoder(z_in)]))

    def log_p_x_given_z(targets: np.ndarray, z: np.ndarray) -> np.ndarray:
        out = np.empty(len(z))
        for start in range(0, len(z), batch_size):
            rows = slice(start, min(len(z), start + batch_size))
            m = rows.stop - rows.start
            z_batch = np.zeros((batch_size, z.shape[1]), np.float32)
            t_batch = np.zeros((batch_size, *targets.shape[1:]), np.float32)
            z_batch[:m], t_batch[:m] = z[rows], targets[rows]
            out[rows] = keras.ops.convert_to_numpy(fused.predict_on_batch([z_batch, t_batch]))[:m]
        return out

    return log_p_x_given_z


def _log_normal(z: np.ndarray, mean: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """(..., ) log N(z; mean, diag(exp(logvar))) summed over the last axis."""
    return -0.5 * (((z - mean) ** 2) * np.exp(-logvar) + logvar + _LOG_2PI).sum(-1)


@dataclass(frozen=True)
class Likelihood(Record):
    """Importance-sampled NLL and the ELBO of a VAE on ``n_images`` images, K samples each.

    Attributes:
        nll: mean -log p(x) estimate, nats per image; nll_std_error: its standard error over images.
        elbo: mean ELBO, nats per image (analytic KL, reconstruction term averaged over the K samples).
        bits_per_dim: nll / (D ln 2), D pixels x channels, of the continuous [0, 1] pixels under the
            run's loss: not the discretised 8-bit bits/dim of published results. k, n_images, dims: the sizes.
        likelihood: "bernoulli" or "gaussian (sigma^2 = 1/2)".
    """

    nll: float
    nll_std_error: float
    elbo: float
    bits_per_dim: float
    k: int
    n_images: int
    dims: int
    likelihood: str


def importance_log_likelihood(x: np.ndarray, mu: np.ndarray, logvar: np.ndarray,
                              log_p_x_given_z: Callable[[np.ndarray, np.ndarray], np.ndarray], k: int = 1000,
                              samples_per_call: int = 8192, seed: int = 0,
                              progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-image importance-sampled log p(x) and ELBO.

    Args:
        x: (n, ...) images; mu, logvar: (n, z_dim) of q(z | x).
        log_p_x_given_z: (images (m, ...), z (m, z_dim)) -> (m,) log p(image | z); called on at most
            ``samples_per_call`` (image, z) pairs at a time, so K x batch never has to fit at once.
        k: importance samples per image.
        progress: a tqdm bar over the images (shown on a terminal only).

    Returns:
        (log_px (n,), elbo (n,)), nats.
    """
    if k < 1:
        raise ValueError(f"`k` must be a positive number of samples. Received: k={k}")
    mu, logvar = mu.astype(np.float64), logvar.astype(np.float64)
    n, z_dim = mu.shape
    rng = np.random.default_rng(seed)
    images_per_call = max(1, samples_per_call // k)
    k_per_call = min(k, samples_per_call)
    log_px, elbo = np.empty(n), np.empty(n)
    kl = 0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar).sum(1)
    bar = tqdm(total=n, desc=f"NLL (K = {k})", unit="image", disable=None if progress else True, leave=False)
    for start in range(0, n, images_per_call):
        rows = slice(start, min(n, start + images_per_call))
        m = rows.stop - rows.start
        log_w = np.empty((m, k))
        for k0 in range(0, k, k_per_call):  # K larger than one call: the samples of one image in pieces
            kk = min(k_per_call, k - k0)
            eps = rng.standard_normal((m, kk, z_dim))
            z = mu[rows, None] + np.exp(0.5 * logvar[rows, None]) * eps
            images = np.repeat(x[rows], kk, axis=0)
            log_lik = log_p_x_given_z(images, z.reshape(m * kk, z_dim)).reshape(m, kk)
            log_w[:, k0:k0 + kk] = log_lik + _log_normal(z, 0.0, np.zeros(1)) - _log_normal(
                z, mu[rows, None], logvar[rows, None])
            if k0 == 0:
                reco_sum = log_lik.sum(1)
            else:
                reco_sum += log_lik.sum(1)
        top = log_w.max(1)
        log_px[rows] = top + np.log(np.exp(log_w - top[:, None]).mean(1))
        elbo[rows] = reco_sum / k - kl[rows]
        bar.update(m)
    bar.close()
    return log_px, elbo


def summarize(log_px: np.ndarray, elbo: np.ndarray, k: int, dims: int, likelihood: str) -> Likelihood:
    """The :class:`Likelihood` record of per-image estimates."""
    nll = float(-log_px.mean())
    return Likelihood(nll=nll, nll_std_error=float(log_px.std(ddof=1) / math.sqrt(len(log_px))) if len(log_px) > 1
                      else 0.0, elbo=float(elbo.mean()), bits_per_dim=nll / (dims * math.log(2.0)), k=k,
                      n_images=len(log_px), dims=dims, likelihood=likelihood)


def run_likelihood(run, n_images: int = 1000, k: int = 1000, seed: int = 0,
                   samples_per_call: int | None = None, progress: bool = False) -> Likelihood | None:
    """NLL and ELBO of a run's VAE on its first ``n_images`` validation images; None for an AE (it has none).

    Args:
        run: a :class:`zspace.Run` (or its directory). The images are encoded as the run's task
            feeds them (grey for recolor); the likelihood is that of the target images.
        samples_per_call: (image, z) pairs per decoder call; None: :func:`rows_per_call` of the image size.
    """
    from zspace.data.tasks import inference_inputs
    from zspace.rundir import Run

    run = Run.of(run)
    if run.config.model.kind != "vae":
        return None
    model = run.model
    images = run.validation_images(n_images)
    codes = model.encode(inference_inputs(images, run.config.train.task))
    bce = run.config.model.reconstruction_loss == "bce"
    samples_per_call = samples_per_call or rows_per_call(int(np.prod(images.shape[1:])), k)
    log_p_x_given_z = decoder_log_likelihood(model.decoder, "bernoulli" if bce else "gaussian",
                                             batch_size=min(samples_per_call, MAX_ROWS_PER_CALL))
    log_px, elbo = importance_log_likelihood(images, codes["mu"], codes["logvar"], log_p_x_given_z, k,
                                             samples_per_call, seed, progress)
    return summarize(log_px, elbo, k, int(np.prod(images.shape[1:])),
                     "bernoulli" if bce else "gaussian (sigma^2 = 1/2)")
