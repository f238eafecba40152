"""The sample-quality distances against closed forms, scipy, direct formulas and constructed sets."""

import json

import numpy as np
import pytest
import scipy.linalg

from zspace.evaluation import (
    SampleQuality,
    density_coverage,
    frechet_distance,
    frechet_distance_from_stats,
    kernel_distance,
    kth_neighbour_radii,
    precision_recall,
    sample_quality,
)


def test_frechet_distance_of_diagonal_gaussians_has_its_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.2, 2.0, 6), rng.uniform(0.2, 2.0, 6)
    expected = ((mu1 - mu2) ** 2).sum() + ((s1 - s2) ** 2).sum()
    assert frechet_distance_from_stats(mu1, np.diag(s1**2), mu2, np.diag(s2**2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_scipy_sqrtm_on_random_features():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
    fake = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12)) + 0.5
    c1, c2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root = scipy.linalg.sqrtm(c1 @ c2).real
    expected = ((real.mean(0) - fake.mean(0)) ** 2).sum() + np.trace(c1 + c2 - 2 * root)
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-8)


def test_kernel_distance_equals_the_direct_unbiased_mmd():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 5)), rng.normal(0.3, 1.0, size=(30, 5))

    def k(a, b):
        return (a @ b / 5 + 1.0) ** 3

    n = len(x)
    direct = (sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
              - 2 * sum(k(x[i], y[j]) for i in range(n) for j in range(n)) / n**2)
    mean, std = kernel_distance(x, y, subsets=3, subset_size=30)  # the whole sets: every subset is the same
    assert mean == pytest.approx(direct, rel=1e-10) and std == pytest.approx(0.0, abs=1e-12)
    far_mean, _ = kernel_distance(x, y + 3.0, subsets=3, subset_size=30)
    assert far_mean > 10 * abs(direct)


def test_kth_neighbour_radii_exclude_the_point_itself():
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    np.testing.assert_allclose(kth_neighbour_radii(x, 1), [1.0, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(kth_neighbour_radii(x, 2), [3.0, 2.0, 3.0, 6.0])
    with pytest.raises(ValueError, match="`k` must be in"):
        kth_neighbour_radii(x, 4)


def test_precision_recall_density_coverage_on_constructed_sets():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(200, 4))
    assert precision_recall(real, real.copy()) == (1.0, 1.0)
    density, coverage = density_coverage(real, real.copy())
    assert coverage == 1.0 and density == pytest.approx((5 + 1) / 5, rel=0.05)  # each in its own ball and k others
    far = real + 100.0
    assert precision_recall(real, far) == (0.0, 0.0) and density_coverage(real, far) == (0.0, 0.0)
    two_modes = np.concatenate([real[:100], real[100:] + 50.0])
    one_mode = two_modes[:100] + rng.normal(0, 0.01, size=(100, 4))  # drops the second mode
    assert precision_recall(two_modes, one_mode) == (1.0, 0.5)
    density, coverage = density_coverage(two_modes, one_mode)
    assert coverage == 0.5 and density == pytest.approx(6 / 5, rel=0.15)  # density is per fake: still about 1


def test_sample_quality_record_is_strict_json_and_round_trips():
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(60, 3)), rng.normal(0.5, 1.0, size=(50, 3))
    record = sample_quality(real, fake, "normal", "FD-domain")
    assert (record.n_real, record.n_fake) == (60, 50) and record.fd == pytest.approx(frechet_distance(real, fake))
    assert (record.precision, record.recall) == precision_recall(real, fake, 3)
    assert (record.density, record.coverage) == density_coverage(real, fake, 5)
    assert (record.kid, record.kid_std) == kernel_distance(real, fake, subset_size=25)  # half the smaller set
    assert record.kid_std > 0  # subsets of the whole sets would all be equal
    back = SampleQuality.from_json(json.loads(json.dumps(record.to_json(), allow_nan=False)))
    assert back == record


def test_bad_feature_arrays_are_named():
    with pytest.raises(ValueError, match="`fake` must be a finite"):
        frechet_distance(np.zeros((5, 2)), np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="one feature dimension"):
        precision_recall(np.zeros((5, 2)), np.zeros((5, 3)))


def test_fd_and_kid_agree_with_torchmetrics():
    """An independent implementation on the same feature arrays (torchmetrics, installed with the torch extra)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchmetrics")
    from torchmetrics.image.fid import _compute_fid
    from torchmetrics.image.kid import poly_mmd

    rng = np.random.default_rng(5)
    real = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16))
    fake = rng.normal(0.2, 1.1, size=(250, 16)) @ rng.normal(size=(16, 16))
    stats = [torch.tensor(v) for v in (real.mean(0), np.cov(real, rowvar=False), fake.mean(0),
                                        np.cov(fake, rowvar=False))]
    assert frechet_distance(real, fake) == pytest.approx(float(_compute_fid(*stats)), rel=1e-6)
    kid, _ = kernel_distance(real[:250], fake, subsets=2, subset_size=250)  # whole sets: every subset the same
    assert kid == pytest.approx(float(poly_mmd(torch.tensor(real[:250]), torch.tensor(fake))), rel=1e-9)
