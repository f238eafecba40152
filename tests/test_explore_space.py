"""The explorer's z-space arithmetic (zspace.explore.space): blends, directions, interpolation, prior, search."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zspace.explore import space

seeds = st.integers(0, 2**32 - 1)


def points(seed, n=50, d=5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)), rng.normal(size=(n, d)).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(seeds, st.floats(-3, 3), st.floats(-3, 3), st.integers(1, 12))
def test_blend_weights_are_normalised_inverse_distances_of_the_nearest(seed, x, y, k):
    xy, codes = points(seed)
    z, rows, weights = space.blend_nearest(xy, codes, (x, y), k)
    distances = np.hypot(*(xy - [x, y]).T)
    assert len(rows) == k and math.isclose(weights.sum(), 1.0)
    assert np.all(np.diff(distances[rows]) >= 0)  # nearest first
    assert distances[rows].max() <= np.sort(distances)[k - 1] + 1e-12  # and they are the k nearest
    expected = 1 / (distances[rows] + space.BLEND_EPS)
    np.testing.assert_allclose(weights, expected / expected.sum(), rtol=1e-9)
    np.testing.assert_allclose(z, weights @ codes[rows], rtol=1e-5, atol=1e-6)


def test_a_click_on_a_point_returns_that_points_z_exactly():
    xy, codes = points(1)
    z, rows, weights = space.blend_nearest(xy, codes, tuple(xy[17]), 8)
    assert rows[0] == 17 and weights[0] == 1.0 and weights[1:].sum() == 0
    np.testing.assert_array_equal(z, codes[17])


def test_blend_asks_for_no_more_neighbours_than_points():
    xy, codes = points(2, n=3)
    _, rows, weights = space.blend_nearest(xy, codes, (10.0, 10.0), 8)
    assert sorted(rows) == [0, 1, 2] and math.isclose(weights.sum(), 1.0)


def test_pca_directions_are_orthonormal_and_carry_the_data_spread():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 6)) * [5, 3, 2, 1, 0.5, 0.1] @ np.linalg.qr(rng.normal(size=(6, 6)))[0]
    directions, std = space.pca_directions(z, 4)
    assert directions.shape == (4, 6) and std.shape == (4,)
    np.testing.assert_allclose(directions @ directions.T, np.eye(4), atol=1e-5)
    assert np.all(np.diff(std) < 0)
    np.testing.assert_allclose(std, ((z - z.mean(0)) @ directions.T).std(axis=0, ddof=1), rtol=1e-4)
    np.testing.assert_allclose(std, [5, 3, 2, 1], rtol=0.1)
    assert np.all(directions[np.arange(4), np.abs(directions).argmax(1)] > 0)  # one sign, whatever SVD returns


def test_pca_directions_stop_at_the_directions_the_points_span():
    directions, std = space.pca_directions(np.random.default_rng(0).normal(size=(3, 8)), 8)
    assert len(directions) == len(std) == 2  # three points span a plane


def test_pca_directions_in_blocks_equal_one_block(monkeypatch):
    z = np.random.default_rng(1).normal(size=(1000, 5)) * [3, 2, 1, 0.5, 0.2] + 7
    whole = space.pca_directions(z, 3)
    monkeypatch.setattr(space, "PCA_BLOCK_ROWS", 64)
    for a, b in zip(whole, space.pca_directions(z, 3)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(seeds, st.integers(2, 16))
def test_slerp_keeps_the_great_circle_and_blends_the_radius(seed, steps):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=8) * 3, rng.normal(size=8)
    path = space.interpolate(a, b, steps, "spherical").astype(np.float64)
    assert path.shape == (steps, 8)
    np.testing.assert_allclose(path[[0, -1]], [a, b], rtol=1e-5, atol=1e-5)
    t = np.linspace(0, 1, steps)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), (1 - t) * np.linalg.norm(a) + t * np.linalg.norm(b),
                               rtol=1e-5)
    unit = path / np.linalg.norm(path, axis=1, keepdims=True)
    angle = np.arccos(np.clip(unit[0] @ unit[-1], -1, 1))
    np.testing.assert_allclose(np.arccos(np.clip(unit[0] @ unit.T, -1, 1)), t * angle, atol=1e-4)
    plane = np.linalg.qr(np.stack([a, b], 1))[0]  # every point in the plane of a and b
    np.testing.assert_allclose(path, path @ plane @ plane.T, atol=1e-4)


def test_linear_interpolation_is_the_straight_line():
    a, b = np.zeros(4), np.arange(4.0)
    np.testing.assert_allclose(space.interpolate(a, b, 5), np.linspace(0, 1, 5)[:, None] * b)


@pytest.mark.parametrize("b", [np.array([2.0, 4.0, 6.0]), np.array([-1.0, -2.0, -3.0]), np.zeros(3)],
                         ids=["parallel", "antiparallel", "zero"])
def test_slerp_falls_back_to_linear_without_a_unique_great_circle(b):
    a = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(space.interpolate(a, b, 5, "spherical"), space.interpolate(a, b, 5, "linear"),
                               atol=1e-6)


def test_interpolate_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="linear"):
        space.interpolate(np.zeros(2), np.ones(2), 3, "cubic")


def test_prior_samples_are_seeded_and_in_range():
    a = space.prior_samples("uniform", 500, 4, r=2.5, seed=3)
    assert a.shape == (500, 4) and a.dtype == np.float32 and np.abs(a).max() <= 2.5 and np.abs(a).max() > 2.3
    np.testing.assert_array_equal(a, space.prior_samples("uniform", 500, 4, r=2.5, seed=3))
    assert not np.array_equal(a, space.prior_samples("uniform", 500, 4, r=2.5, seed=4))
    normal = space.prior_samples("normal", 4000, 3, seed=0)
    np.testing.assert_allclose(normal.std(0), 1, atol=0.05)
    with pytest.raises(ValueError, match="normal"):
        space.prior_samples("gmm", 1, 1)


@settings(max_examples=25, deadline=None)
@given(seeds, st.integers(1, 7), st.integers(1, 300))
def test_nearest_neighbours_match_a_brute_force_search(seed, k, block):
    rng = np.random.default_rng(seed)
    pts, queries = rng.normal(size=(40, 3)), rng.normal(size=(23, 3))
    original = space.NEIGHBOUR_BLOCK_FLOATS
    space.NEIGHBOUR_BLOCK_FLOATS = block  # blocks of 1 .. 7 queries: the block edges are crossed
    try:
        idx, dist = space.nearest_neighbours(pts, queries, k)
    finally:
        space.NEIGHBOUR_BLOCK_FLOATS = original
    full = np.linalg.norm(queries[:, None] - pts[None], axis=2)
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :k], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(full, idx, 1), dist, rtol=1e-4, atol=1e-5)


def test_max_norm_admits_every_prior_sample_and_the_data_but_not_far_beyond():
    codes = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32) * 5  # an AE's wide spread
    radius = space.prior_radius(codes)
    assert radius >= np.abs(codes).max() and radius == math.ceil(radius)
    limit = space.max_norm(codes, radius)
    for dist in ("normal", "uniform"):
        samples = space.prior_samples(dist, 1000, 16, r=radius, seed=1)
        assert np.linalg.norm(samples, axis=1).max() <= limit
    assert np.linalg.norm(codes, axis=1).max() * space.MAX_NORM_FACTOR <= limit
    assert space.max_norm(np.zeros((5, 4), np.float32), space.PRIOR_RADIUS_FLOOR) == 2 * 2 + space.MAX_NORM_MARGIN


@pytest.mark.parametrize("value, reason", [
    ([0.0, 1.0], "must have 3 numbers"),
    ("0,0,0", "must be a list"),
    ({"z": 1}, "must be a list"),
    ([0, "1", 2], "numbers"),
    ([0, True, 2], "numbers"),
    ([0, None, 2], "numbers"),
    ([0, [1], 2], "numbers"),
    ([0, float("nan"), 1], "finite"),
    ([0, float("inf"), 1], "finite"),
    ([0, 10**400, 1], "finite"),
    ([0, 0, 10.5], "above the largest accepted norm 10"),
    ([1e308, 1e308, 0], "above the largest accepted norm 10"),
])
def test_check_z_refuses_with_one_line(value, reason):
    with pytest.raises(ValueError, match=reason) as info:
        space.check_z(value, 3, 10.0)
    assert "\n" not in str(info.value)


def test_check_z_accepts_a_valid_vector():
    z = space.check_z([3, 4.0, 0], 3, 5.0)
    assert z.dtype == np.float32 and z.tolist() == [3, 4, 0]


def test_typical_spacing_is_the_median_nearest_other_point_distance():
    codes = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
    full = np.linalg.norm(codes[:, None] - codes[None], axis=2)
    np.fill_diagonal(full, np.inf)
    assert space.typical_spacing(codes, queries=1000) == pytest.approx(np.median(full.min(axis=1)), rel=1e-4)
    sampled = space.typical_spacing(codes, queries=100, seed=3)
    assert sampled == pytest.approx(np.median(full.min(axis=1)), rel=0.25)
    assert space.typical_spacing(codes[:1]) == 0.0
    assert space.typical_spacing(np.repeat(codes[:5], 2, axis=0)) == 0.0  # each point has a twin
