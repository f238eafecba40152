"""Importance-sampled log-likelihood against a linear Gaussian model, where log p(x) is exact."""

import json
import math

import numpy as np
import pytest

from zspace.evaluation.likelihood import (
    Likelihood,
    bernoulli_log_likelihood,
    gaussian_log_likelihood,
    importance_log_likelihood,
    summarize,
)

D, Z, S2 = 6, 2, 0.3  # pixels, latent dimension, decoder variance


@pytest.fixture(scope="module")
def linear_model():
    """p(z) = N(0, I), p(x | z) = N(W z + b, S2 I) with orthogonal columns of W: a diagonal exact posterior."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(D, Z)))
    w = q * np.array([1.5, 0.7])
    b = rng.normal(size=D)
    x = rng.multivariate_normal(b, w @ w.T + S2 * np.eye(D), size=200)
    cov = w @ w.T + S2 * np.eye(D)
    diff = x - b
    exact = -0.5 * (np.einsum("nd,de,ne->n", diff, np.linalg.inv(cov), diff) + np.linalg.slogdet(cov)[1]
                    + D * math.log(2 * math.pi))
    post_var = 1.0 / (1.0 + (w**2).sum(0) / S2)  # (Z,)
    post_mu = diff @ w / S2 * post_var
    log_p_x_given_z = lambda xs, z: -0.5 * (((xs - z @ w.T - b) ** 2) / S2 + math.log(2 * math.pi * S2)).sum(1)  # noqa: E731
    return x, exact, post_mu, np.log(np.broadcast_to(post_var, post_mu.shape)), log_p_x_given_z


def test_exact_posterior_gives_the_exact_likelihood_for_any_k(linear_model):
    x, exact, mu, logvar, log_lik = linear_model
    for k in (1, 7):
        log_px, elbo = importance_log_likelihood(x, mu, logvar, log_lik, k=k, samples_per_call=64)
        np.testing.assert_allclose(log_px, exact, rtol=1e-9)
    assert elbo.mean() == pytest.approx(exact.mean(), abs=0.1)  # ELBO = log p(x) when q is the posterior (MC noise)


def test_a_worse_posterior_bound_tightens_with_k_and_stays_below(linear_model):
    x, exact, mu, logvar, log_lik = linear_model
    mu, logvar = mu + 0.4, logvar + 0.8  # q off the posterior: the ELBO is loose
    means = {}
    for k in (1, 10, 100, 2000):
        log_px, elbo = importance_log_likelihood(x, mu, logvar, log_lik, k=k, samples_per_call=5000, seed=k)
        means[k] = log_px.mean()
    assert means[1] < means[10] < means[100] < means[2000] <= exact.mean() + 0.01
    assert exact.mean() - means[2000] < 0.05 < exact.mean() - elbo.mean()  # IS closes most of the ELBO's gap
    assert elbo.mean() < means[10]


def test_samples_split_over_calls_give_the_same_estimate(linear_model):
    x, _, mu, logvar, log_lik = linear_model
    whole = importance_log_likelihood(x[:5], mu[:5] + 0.3, logvar[:5], log_lik, k=50, samples_per_call=10_000)
    pieces = importance_log_likelihood(x[:5], mu[:5] + 0.3, logvar[:5], log_lik, k=50, samples_per_call=50)
    np.testing.assert_allclose(whole[0], pieces[0], rtol=1e-12)
    np.testing.assert_allclose(whole[1], pieces[1], rtol=1e-12)


def test_decoder_likelihoods_are_the_runs_losses():
    x = np.array([[[0.0], [1.0], [0.5]]])
    p = np.array([[[0.1], [0.8], [0.5]]])
    expected = math.log(0.9) + math.log(0.8) + 0.5 * math.log(0.25)
    assert bernoulli_log_likelihood(x, p)[0] == pytest.approx(expected)
    assert gaussian_log_likelihood(x, p)[0] == pytest.approx(-(0.01 + 0.04) - 1.5 * math.log(math.pi))


@pytest.mark.backend
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_in_graph_decoder_likelihood_matches_numpy(likelihood):
    """The fused decoder + likelihood graph gives the numpy functions' numbers, for a batch tail too."""
    import keras

    from zspace.evaluation.likelihood import decoder_log_likelihood

    z_in = keras.Input((3,))
    decoder = keras.Model(z_in, keras.layers.Reshape((2, 2, 1))(keras.layers.Dense(4, activation="sigmoid")(z_in)))
    rng = np.random.default_rng(0)
    z = rng.standard_normal((11, 3)).astype(np.float32)
    x = rng.random((11, 2, 2, 1)).astype(np.float32)
    x[:3] = x[:3] > 0.5
    fused = decoder_log_likelihood(decoder, likelihood, batch_size=4)
    numpy_version = bernoulli_log_likelihood if likelihood == "bernoulli" else gaussian_log_likelihood
    np.testing.assert_allclose(fused(x, z), numpy_version(x, decoder.predict(z, verbose=0)), rtol=1e-5)


def test_summary_record():
    record = summarize(np.array([-10.0, -12.0]), np.array([-11.0, -13.0]), k=5, dims=4, likelihood="bernoulli")
    assert record.nll == 11.0 and record.elbo == -12.0 and record.bits_per_dim == pytest.approx(11 / (4 * math.log(2)))
    assert Likelihood.from_json(json.loads(json.dumps(record.to_json()))) == record
    with pytest.raises(ValueError, match="`k` must be a positive"):
        importance_log_likelihood(np.zeros((1, 2)), np.zeros((1, 1)), np.zeros((1, 1)), None, k=0)


@pytest.mark.parametrize("values, k, rows", [
    (784, 1000, 4000),      # Fashion-MNIST: 4 images of K = 1,000 per call, below the 4,096-row cap
    (27648, 200, 200),      # 96x96x3: 303 rows fit the value budget; one image of K = 200 per call
    (27648, 1000, 250),     # K = 1,000 in 4 calls of 250 (not 303, 303, 303, 91)
    (10**9, 5, 1),          # a huge image: one pair per call
    (64, 3, 4095),          # tiny images: the row cap, a multiple of K
])
def test_likelihood_calls_are_bounded_in_values_and_pad_nothing(values, k, rows):
    from zspace.evaluation.likelihood import MAX_ROWS_PER_CALL, VALUES_PER_CALL, rows_per_call

    got = rows_per_call(values, k)
    assert got == rows
    assert got <= MAX_ROWS_PER_CALL and (got * values <= VALUES_PER_CALL or got == 1)
    if k <= got:
        assert got % k == 0  # whole images per call
    else:
        calls = -(-k // got)
        assert calls * got - k < calls  # K split evenly: under one padded row per call


@pytest.mark.slow
def test_likelihood_of_a_trained_run(tmp_path, monkeypatch):
    from conftest import tiny_run_config
    from zspace import Run
    from zspace.evaluation import run_likelihood
    from zspace.training import train

    train(tiny_run_config(tmp_path / "vae", epochs=2))
    train(tiny_run_config(tmp_path / "ae", epochs=1).with_overrides({"kind": "ae"}))
    assert run_likelihood(tmp_path / "ae", n_images=10, k=5) is None  # an AE has no likelihood
    few = run_likelihood(Run(tmp_path / "vae"), n_images=180, k=1, seed=1)
    many = run_likelihood(Run(tmp_path / "vae"), n_images=180, k=200, seed=1, samples_per_call=1000)
    assert many.n_images == 180 and many.dims == 64 and many.likelihood == "bernoulli"
    assert many.nll <= -many.elbo + 1e-6  # the importance-sampled bound is at least as tight as the ELBO
    assert many.nll < few.nll  # and tightens with K
    # sized by the image: with a budget of 50 images of 8x8, K = 200 goes in 4 calls; the same samples, the same NLL
    import zspace.evaluation.likelihood as likelihood

    monkeypatch.setattr(likelihood, "VALUES_PER_CALL", 50 * 64)
    split = run_likelihood(Run(tmp_path / "vae"), n_images=180, k=200, seed=1)
    assert split.nll == pytest.approx(many.nll, rel=1e-6) and split.elbo == pytest.approx(many.elbo, rel=1e-6)
    assert many.bits_per_dim == pytest.approx(many.nll / (64 * math.log(2)))
    # -ELBO is the run's own validation loss (reco + KL, kl_factor 1), up to Monte Carlo noise
    val_total = Run(tmp_path / "vae").history[-1]["val_total_loss"]
    assert -many.elbo == pytest.approx(val_total, rel=0.02)
