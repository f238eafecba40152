import json
import math

import numpy as np
import pytest

from zspace.analysis.statistics import axis_stats, expected_normal_radius, radius_stats, vae_internals


def test_expected_normal_radius_known_values_and_monte_carlo():
    assert expected_normal_radius(1) == pytest.approx(math.sqrt(2 / math.pi))
    assert expected_normal_radius(2) == pytest.approx(math.sqrt(math.pi / 2))
    z = np.random.default_rng(0).standard_normal((200_000, 256))
    assert expected_normal_radius(256) == pytest.approx(np.linalg.norm(z, axis=1).mean(), rel=1e-3)


def test_radius_histogram_of_hand_made_vectors():
    z = np.array([[3.0, 4.0], [0.0, 0.2], [0.0, 1.2], [1.0, 0.0], [0.0, 40.0]])  # radii 5, .2, 1.2, 1, 40
    stats = radius_stats(z, bin_width=0.5, value_range=(0.0, 6.0))
    assert len(stats.edges) == 13 and stats.edges[-1] == 6.0
    assert stats.counts.tolist() == [1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    assert stats.above == 1 and stats.below == 0
    assert stats.mode == pytest.approx(1.25)
    assert stats.median == pytest.approx(1.2)
    assert stats.mean == pytest.approx((5 + 0.2 + 1.2 + 1 + 40) / 5)
    auto = radius_stats(z, bin_width=10.0, value_range=None)
    assert auto.counts.sum() == 5 and auto.above == 0


def test_radius_shells_hold_the_stated_fractions():
    z = np.random.default_rng(1).standard_normal((10_000, 16))
    stats = radius_stats(z)
    r = np.linalg.norm(z, axis=1)
    assert np.mean((r >= stats.shell_50[0]) & (r <= stats.shell_50[1])) == pytest.approx(0.5, abs=0.01)
    assert np.mean((r >= stats.shell_95[0]) & (r <= stats.shell_95[1])) == pytest.approx(0.95, abs=0.01)
    assert stats.mean == pytest.approx(stats.expected_normal, rel=0.01)


def test_axis_stats_and_active_units():
    rng = np.random.default_rng(2)
    mu = np.stack([rng.normal(0, 1, 5000), rng.normal(3, 0.05, 5000), np.zeros(5000)], axis=1)
    stats = axis_stats(mu, axes=(1,), bins=10)
    assert stats.active_units == 1  # only axis 0 varies more than 0.01 (std 0.05 -> var 0.0025)
    assert stats.mean[1] == pytest.approx(3, abs=0.01) and stats.std[0] == pytest.approx(1, abs=0.03)
    counts, edges = stats.histograms[1]
    assert counts.sum() == 5000 and len(edges) == 11
    with pytest.raises(ValueError, match="axes"):
        axis_stats(mu, axes=(3,))


def test_vae_internals_of_constructed_arrays():
    mu = np.array([[3.0, 4.0], [0.0, 0.0]])
    logvar = np.array([[-30.0, -12.0], [0.0, 0.3]])
    z = mu + np.array([[0.01, 0.0], [0.1, -0.2]])
    out = vae_internals(z, mu, logvar)
    assert (out.logvar_min, out.logvar_max) == (-30.0, 0.3)
    assert out.logvar_counts.tolist() == [1, 1, 0, 0, 0, 0, 0, 2, 0, 0]  # -30, -12, then 0 and 0.3 in [0, 0.5)
    assert out.abs_z_minus_mu_max == pytest.approx(0.2)
    assert out.n_z_minus_mu_above == 2
    r_diff_first = abs(np.hypot(3.01, 4.0) - 5.0)
    assert out.radius_abs_diff_max == pytest.approx(np.hypot(0.1, 0.2))
    assert out.radius_rel_diff_max == math.inf  # mu at the origin, z not
    kl_first = -0.5 * ((1 - 30 - 9 - math.exp(-30)) + (1 - 12 - 16 - math.exp(-12)))
    kl_second = -0.5 * (0 + (1 + 0.3 - math.exp(0.3)))
    assert out.kl_total == pytest.approx((kl_first + kl_second) / 2)
    assert out.kl_per_dim.shape == (2,)
    assert r_diff_first < out.radius_abs_diff_max
    json.dumps(out.to_json(), allow_nan=False)  # strict JSON: infinities become strings


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, z_dim\)"):
        radius_stats(np.zeros(3))
    with pytest.raises(ValueError, match="one shape"):
        vae_internals(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 3)))


def test_an_automatic_radius_range_is_bounded_and_far_outliers_count_as_above():
    from zspace.analysis.statistics import MAX_RADIUS_BINS

    z = np.zeros((100, 4))
    z[:, 0] = np.linspace(0.1, 3.0, 100)
    z[-2:, 0] = [1e12, np.inf]  # two points far away (one not even finite)
    stats = radius_stats(z, bin_width=0.01, value_range=None)
    assert len(stats.counts) == MAX_RADIUS_BINS and stats.above == 2
    assert stats.counts.sum() == 98


# --- blog part XIII's radius table: min / max / mean of r(z), r(mu); logvar per given interval (issue 13, item 5) ---

def test_radius_min_and_max_of_hand_made_vectors():
    stats = radius_stats(np.array([[3.0, 4.0], [0.0, 0.2], [0.0, 40.0]]))
    assert (stats.min, stats.max) == pytest.approx((0.2, 40.0))


def test_logvar_counts_on_the_intervals_the_config_gives():
    from zspace.analysis import analyze_codes
    from zspace.analysis.tables import format_radius_table, interval_labels, radius_extents
    from zspace.config import AnalysisConfig

    mu = np.array([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.5]], dtype=np.float32)
    logvar = np.array([[-7.0, -3.0], [4.9, 5.0], [0.0, 9.0], [-3.1, 1.0]], dtype=np.float32)
    z = mu + np.float32(0.1)
    config = AnalysisConfig(logvar_edges=(-3, 5), tsne_sizes=(), k_min=1, k_max=2, pca_subset=4)
    a = analyze_codes({"z": z, "mu": mu, "logvar": logvar}, config)
    # (-inf, -3): -7, -3.1; [-3, 5): -3, 4.9, 0, 1; [5, inf): 5, 9
    assert a.internals.logvar_counts.tolist() == [2, 4, 2]
    assert interval_labels(a.internals.logvar_edges) == ["(-inf, -3)", "[-3, 5)", "[5, inf)"]
    r_mu = np.linalg.norm(mu, axis=1)
    assert radius_extents(a)["mu"] == pytest.approx((r_mu.min(), r_mu.max(), r_mu.mean()))
    assert radius_extents(a)["z"][1] == pytest.approx(np.linalg.norm(z, axis=1).max())
    text = format_radius_table(a).splitlines()
    assert text[1].split()[0] == "z" and text[2].split()[0] == "mu" and text[-1].split()[1:] == ["2", "4", "2"]
    with pytest.raises(Exception, match="logvar_edges"):
        AnalysisConfig(logvar_edges=(5, -3))


def test_radius_extents_of_an_analysis_written_before_min_and_max():
    """Older analysis.json files have no min / max: they come from the arrays of analysis.npz."""
    import dataclasses
    from pathlib import Path

    from zspace.analysis.tables import radius_extents
    from zspace.rundir import Run

    old = Path(__file__).parent / "data" / "run_v0_1"
    assert "min" not in json.loads((old / "analysis.json").read_text())["radius"]
    a = Run(old).load_analysis()
    r = np.linalg.norm(a.arrays["mu"].astype(np.float64), axis=1)
    assert radius_extents(a)["mu"] == pytest.approx((r.min(), r.max(), a.radius_mu.mean))
    bare = dataclasses.replace(a, arrays={})
    assert math.isnan(radius_extents(bare)["z"][0])
