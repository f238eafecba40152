import numpy as np
import pytest

from zspace.analysis.clustering import elbow, inertia_sweep


def blobs(n_centres=5, per=200, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, (n_centres, dim))
    return (centres[:, None, :] + rng.normal(0, 0.3, (n_centres, per, dim))).reshape(-1, dim)


def test_inertia_falls_with_k_and_the_elbow_finds_the_blobs():
    curve = inertia_sweep(blobs(), ks=range(2, 13), seeds=(0, 1), batch_size=256, n_init=3)
    assert curve.inertia.shape == (2, 11)
    assert curve.mean[0] > curve.mean[3] > curve.mean[-1]  # k=2 > k=5 > k=12
    assert curve.elbow_k == 5


def test_elbow_on_known_curves():
    ks = np.arange(1, 11)
    assert elbow(ks, np.where(ks <= 3, 100 - 30 * (ks - 1), 40 - (ks - 3))) == 3
    assert elbow(ks, 10 - ks) == 1  # a straight line has no elbow
    assert elbow([2, 4], [5, 1]) == 2


def test_too_few_points():
    with pytest.raises(ValueError, match="n_samples=10 should be >= n_clusters=20"):
        inertia_sweep(np.zeros((10, 2)), ks=[2, 20])
