"""Holes in the prior: the aggregate-posterior density, ELBO surgery and the hole fraction on constructed codes."""

import json
import math

import numpy as np
import pytest

from zspace.evaluation.prior import (PriorSurgery, aggregate_log_density, elbo_surgery, hole_fraction, hole_fractions,
                                     knn_bandwidths)


def test_aggregate_density_is_the_mixture_of_the_posteriors():
    rng = np.random.default_rng(0)
    mu, logvar, points = rng.normal(size=(7, 3)), rng.normal(0, 0.5, size=(7, 3)), rng.normal(size=(5, 3))
    var = np.exp(logvar)
    direct = [math.log(np.mean([np.prod(np.exp(-0.5 * (p - m) ** 2 / v) / np.sqrt(2 * math.pi * v))
                                for m, v in zip(mu, var)])) for p in points]
    np.testing.assert_allclose(aggregate_log_density(points, mu, logvar), direct, rtol=1e-10)


def test_identical_posteriors_carry_no_information():
    mu, logvar = np.tile([[0.5, -1.0]], (2000, 1)), np.tile([[-0.5, 0.2]], (2000, 1))
    s = elbo_surgery(mu, logvar)
    assert abs(s.mutual_information) < 1e-9  # q(z) is q(z | x): nothing to learn about x from z
    assert s.marginal_kl == pytest.approx(s.average_kl, abs=1e-9) and s.average_kl > 0.5


def test_separated_posteriors_carry_log_n_nats():
    n = 500
    mu = np.random.default_rng(1).normal(size=(n, 4)) * 100.0  # far apart
    s = elbo_surgery(mu, np.full((n, 4), -8.0))
    assert s.mutual_information == pytest.approx(math.log(n), abs=1e-6)
    assert s.marginal_kl == pytest.approx(s.average_kl - math.log(n), abs=1e-6)
    record = PriorSurgery.from_json(json.loads(json.dumps(s.to_json())))
    assert record == s and record.bandwidth is None


def test_hole_fraction_of_a_covering_and_of_a_displaced_aggregate_posterior():
    rng = np.random.default_rng(2)
    n, d, var = 3000, 2, 0.3
    mu = rng.normal(size=(n, d)) * math.sqrt(1 - var)  # q(z) = N(0, I) exactly in the limit
    prior = rng.normal(size=(4000, d))
    covered = hole_fraction(prior, mu, np.full((n, d), math.log(var)))
    assert covered == pytest.approx(0.01, abs=0.01)  # as rare as the reference's own 1% tail
    displaced = hole_fraction(prior, mu * 0.05 + 6.0, np.full((n, d), math.log(0.01)))
    assert displaced > 0.99
    directions = rng.normal(size=(n, d))
    shell = directions / np.linalg.norm(directions, axis=1, keepdims=True) * rng.normal(12.0, 0.3, (n, 1))
    assert hole_fraction(prior, shell) > 0.99  # an AE's z on a far shell (bandwidth-smoothed): the prior hits holes


def test_an_ae_reference_leaves_each_points_own_kernel_out():
    """An AE whose z-points are N(0, I) draws: fresh N(0, I) samples are about as rare as its own points.

    Scored with its own kernel, each point's density would be inflated by its own peak and fresh
    in-distribution z would fall below the 1% threshold several times too often (7-12% for seeds 0-3)."""
    rng = np.random.default_rng(4)
    points = rng.normal(size=(300, 8))
    fresh = rng.normal(size=(3000, 8))
    leave_one_out = hole_fraction(fresh, points)
    assert leave_one_out < 0.04
    logvar = np.repeat(2 * np.log(knn_bandwidths(points))[:, None], 8, axis=1)
    with_own_peak = aggregate_log_density(points, points, logvar)
    assert (aggregate_log_density(fresh, points, logvar) < np.quantile(with_own_peak, 0.01)).mean() > 0.05
    # leave-one-out against the direct sum over the other points
    direct = [aggregate_log_density(points[i:i + 1], np.delete(points, i, 0), np.delete(logvar, i, 0))[0]
              for i in range(5)]
    loo = aggregate_log_density(points, points, logvar, leave_one_out=True)[:5]
    np.testing.assert_allclose(loo, direct, rtol=1e-10)
    with pytest.raises(ValueError, match="leave_one_out needs one point per component"):
        aggregate_log_density(fresh, points, logvar, leave_one_out=True)


def test_an_ae_kernel_widths_follow_the_local_spacing_of_its_points():
    rng = np.random.default_rng(3)
    dense, sparse = rng.normal(size=(500, 4)) * 0.1, rng.normal(size=(500, 4)) * 3.0 + 20.0
    z = np.concatenate([dense, sparse])
    h = knn_bandwidths(z)
    brute = np.sort(np.linalg.norm(z[:3, None] - z[None], axis=-1), axis=1)[:, 5] / 2.0  # 5th other point, sqrt(4)
    np.testing.assert_allclose(h[:3], brute, rtol=1e-5)
    assert np.median(h[500:]) > 10 * np.median(h[:500])
    s = elbo_surgery(z)
    assert s.bandwidth == pytest.approx(float(np.median(h)), rel=1e-6) and s.n_points == 1000
    # a shell far from the origin: N(0, I) falls in its hole although it sits at the cloud's centre
    directions = rng.normal(size=(2000, 8))
    shell = directions / np.linalg.norm(directions, axis=1, keepdims=True) * 12.0
    assert hole_fraction(rng.normal(size=(2000, 8)), shell) > 0.9
    with pytest.raises(ValueError, match="N > k = 5 points"):
        knn_bandwidths(z[:5])


@pytest.mark.parametrize("sigma", [0.3, 0.05])
def test_a_vae_with_narrow_posteriors_is_scored_like_an_ae(sigma):
    """Codes spread like N(0, I), narrow q(z|x): fresh N(0, I) z are about as rare as the codes' own draws.

    With each draw scored by its own component too, the reference would sit on the narrow peaks and
    94% (sigma 0.05) of the fresh z would count as holes."""
    rng = np.random.default_rng(5)
    mu = rng.normal(size=(2000, 4)) * math.sqrt(1 - sigma**2)
    logvar = np.full_like(mu, 2 * math.log(sigma))
    assert hole_fraction(rng.normal(size=(4000, 4)), mu, logvar) < 0.04
    assert hole_fraction(rng.normal(size=(4000, 4)) + 8.0, mu, logvar) > 0.99


def test_a_tiny_kl_vae_has_the_holes_of_the_ae_it_behaves_like():
    """Posteriors far narrower than the spacing of the codes (a tiny KL weight) are widened to the
    AE's kernel widths: the same codes give the same hole fractions either way."""
    rng = np.random.default_rng(6)
    directions = rng.normal(size=(1500, 6))
    codes = directions / np.linalg.norm(directions, axis=1, keepdims=True) * rng.normal(10.0, 0.5, (1500, 1))
    samplers = {"normal": rng.normal(size=(2000, 6)), "near": codes[:500] + rng.normal(size=(500, 6)) * 0.05}
    as_ae = hole_fractions(samplers, codes)
    as_vae = hole_fractions(samplers, codes, np.full_like(codes, 2 * math.log(1e-4)))
    assert as_ae["normal"] > 0.3 and as_ae["near"] < 0.05
    assert as_vae["normal"] == pytest.approx(as_ae["normal"], abs=0.03) and as_vae["near"] < 0.05
