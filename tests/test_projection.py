import numpy as np
import pytest

from zspace.analysis.projection import pca_projection, random_subset, tsne_projection


def test_pca_explained_variance_of_a_known_covariance():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5000, 3)) * np.array([3.0, 1.0, 0.0])
    result = pca_projection(z, subset=100)
    np.testing.assert_allclose(result.explained_variance_ratio, [0.9, 0.1, 0.0], atol=0.01)
    assert result.embedding.shape == (100, 2) and len(np.unique(result.indices)) == 100


def test_tsne_separates_two_far_clusters():
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 1, (150, 8)), rng.normal(20, 1, (150, 8))])
    result = tsne_projection(z, subset=None, perplexity=20, n_jobs=1)
    labels = result.indices >= 150
    a, b = result.embedding[~labels], result.embedding[labels]
    gap = np.linalg.norm(a.mean(0) - b.mean(0))
    assert gap > 3 * max(a.std(0).max(), b.std(0).max())


def test_subset_and_perplexity_errors():
    assert random_subset(10, None).tolist() == list(range(10))
    assert random_subset(10, 4, seed=1).tolist() == random_subset(10, 4, seed=1).tolist()
    with pytest.raises(ValueError, match="perplexity"):
        tsne_projection(np.zeros((20, 2)), subset=None, perplexity=50)


# --- several t-SNE settings in one analysis, two backends, kept across analyses (issue 13, item 3) ----------

import json  # noqa: E402
import math  # noqa: E402
import tomllib  # noqa: E402
from dataclasses import replace  # noqa: E402

from zspace.analysis import analyze_codes  # noqa: E402
from zspace.analysis.analyze import same_points, tsne_fits, with_previous_tsne  # noqa: E402
from zspace.analysis.records import Analysis  # noqa: E402
from zspace.config import MAX_KEPT_TSNE_FITS, AnalysisConfig  # noqa: E402
from zspace.errors import ConfigError  # noqa: E402

TINY = dict(k_min=2, k_max=4, kmeans_seeds=(0,), pca_subset=50)


@pytest.fixture(autouse=True)
def one_thread_tsne(monkeypatch):
    """Fits of 60 points on one thread: on a busy 2-core machine all-core t-SNE threads wait on each other
    (16 s instead of 0.5 s a fit)."""
    import functools

    import zspace.analysis.analyze as analyze

    monkeypatch.setattr(analyze, "tsne_projection", functools.partial(tsne_projection, n_jobs=1))


def _two_clusters(n=60, seed=0):
    rng = np.random.default_rng(seed)
    z = np.concatenate([rng.normal(0, 1, (n // 2, 4)), rng.normal(20, 1, (n // 2, 4))]).astype(np.float32)
    return {"z": z}, (np.arange(n) >= n // 2).astype(np.int64)


@pytest.mark.parametrize("backend", ["opentsne", "sklearn"])
def test_both_backends_separate_two_far_clusters_with_the_iterations_asked(backend):
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 1, (100, 8)), rng.normal(20, 1, (100, 8))])
    with threadpool_limits(1):  # scikit-learn's gradient threads wait on each other on a busy machine
        result = tsne_projection(z, subset=None, perplexity=20, n_jobs=1, backend=backend, n_iter=400)
        again = tsne_projection(z, subset=None, perplexity=20, n_jobs=1, backend=backend, n_iter=400)
    assert (result.backend, result.n_iter) == (backend, 400) and math.isfinite(result.kl_divergence)
    far = result.indices >= 100
    a, b = result.embedding[~far], result.embedding[far]
    assert np.linalg.norm(a.mean(0) - b.mean(0)) > 3 * max(a.std(0).max(), b.std(0).max())
    np.testing.assert_array_equal(result.embedding, again.embedding)  # seeded: the same fit twice


def test_sklearn_backend_calls_scikit_learn_with_the_settings(monkeypatch):
    """The "sklearn" backend is scikit-learn's TSNE with the seed's parameters (max_iter from 1.5 on, n_iter before)."""
    import sklearn.manifold

    seen = {}

    class Spy(sklearn.manifold.TSNE):
        def fit_transform(self, X, y=None):
            seen.update(self.get_params())
            return super().fit_transform(X)

    monkeypatch.setattr(sklearn.manifold, "TSNE", Spy)
    tsne_projection(np.random.default_rng(0).normal(size=(80, 3)), None, 10, 16, seed=3, n_jobs=1,
                    backend="sklearn", n_iter=300)
    iterations = seen.get("max_iter", seen.get("n_iter"))
    assert (seen["perplexity"], seen["early_exaggeration"], iterations, seen["random_state"]) == (10, 16, 300, 3)


def test_tsne_projection_refuses_bad_backend_and_iterations():
    z = np.random.default_rng(0).normal(size=(40, 2))
    with pytest.raises(ValueError, match="backend"):
        tsne_projection(z, None, 5, backend="umap")
    with pytest.raises(ValueError, match="n_iter"):
        tsne_projection(z, None, 5, n_iter=250)


def test_config_pairs_perplexity_with_early_exaggeration_and_old_scalars_still_load():
    assert AnalysisConfig(perplexity=(30, 10), early_exaggeration=(12, 16)).tsne_settings == ((30, 12), (10, 16))
    assert AnalysisConfig(perplexity=(5, 30, 50)).tsne_settings == ((5, 12), (30, 12), (50, 12))  # one value: all
    old = AnalysisConfig.from_dict({"perplexity": 30, "early_exaggeration": 12})  # analysis.json of older versions
    assert old.tsne_settings == ((30, 12),) and old.tsne_backend == "opentsne" and old.tsne_n_iter is None
    paired = AnalysisConfig().with_overrides({"perplexity": [30, 10], "early_exaggeration": [12, 16]})
    assert AnalysisConfig.from_dict(tomllib.loads(paired.to_toml())) == paired
    for bad, message in [({"perplexity": (30, 10), "early_exaggeration": (12, 16, 4)}, "as many entries as perplexity"),
                         ({"perplexity": ()}, "non-empty"), ({"early_exaggeration": (12, 0.5)}, ">= 1"),
                         ({"tsne_n_iter": 250}, "tsne_n_iter"),
                         ({"tsne_backend": "sklearn", "tsne_sizes": (200_000,)}, "opentsne"),
                         ({"tsne_sizes": tuple(range(2, 11)), "perplexity": (5, 10)}, "at most 16 t-SNE fits")]:
        with pytest.raises(ConfigError, match=message):
            AnalysisConfig(**bad)


def test_tsne_fits_every_size_with_every_setting_and_clips_to_the_points():
    config = AnalysisConfig(tsne_sizes=(50, 500, 1000), perplexity=(30, 10), early_exaggeration=(12, 16))
    assert tsne_fits(config, 100) == [(50, 49 / 3, 12), (50, 10, 16), (100, 30, 12), (100, 10, 16)]


def test_one_analysis_holds_every_setting_side_by_side_and_round_trips():
    codes, labels = _two_clusters()
    config = AnalysisConfig(**TINY, tsne_sizes=(60,), perplexity=(15, 5), early_exaggeration=(12, 16))
    a = analyze_codes(codes, config, labels)
    assert [(t.perplexity, t.early_exaggeration, t.backend, t.n_iter) for t in a.tsne] == [
        (15, 12, "opentsne", 750), (5, 16, "opentsne", 750)]
    assert len({t.name for t in a.tsne}) == 2 and all(a.embedding(t.name)[1].shape == (60, 2) for t in a.tsne)
    back = Analysis.from_json(json.loads(json.dumps(a.to_json())), a.arrays)
    assert back.tsne == a.tsne


def test_a_second_analysis_keeps_the_first_ones_other_settings():
    codes, labels = _two_clusters()
    first = analyze_codes(codes, AnalysisConfig(**TINY, tsne_sizes=(60,), perplexity=15), labels)
    second = analyze_codes(codes, AnalysisConfig(**TINY, tsne_sizes=(60,), perplexity=5, early_exaggeration=16),
                           labels)
    merged = with_previous_tsne(second, first)
    assert [t.perplexity for t in merged.tsne] == [15, 5] and "kept 1 t-SNE" in merged.notes[0]
    kept = first.tsne[0]
    np.testing.assert_array_equal(merged.embedding(kept.name)[1], first.embedding(kept.name)[1])
    assert merged.seconds[kept.name] == first.seconds[kept.name]  # its timing stays with it
    merged.check_arrays()
    assert with_previous_tsne(first, first).tsne == first.tsne  # recomputed settings replace, never duplicate
    # other z-points (a retrained model): the old embeddings are not of these points
    moved = analyze_codes({"z": codes["z"] + 1}, AnalysisConfig(**TINY, tsne_sizes=()), labels)
    assert not same_points(moved, first)
    dropped = with_previous_tsne(moved, first)
    assert dropped.tsne == () and "other z-points" in dropped.notes[0]


def test_fits_of_older_analyses_get_their_full_names_and_the_total_is_bounded():
    codes, labels = _two_clusters()
    first = analyze_codes(codes, AnalysisConfig(**TINY, tsne_sizes=(60,), perplexity=15), labels)
    fit = first.tsne[0]
    legacy = replace(fit, backend=None, n_iter=None, seed=None)  # as analysis.json of older versions reads
    assert legacy.name == "tsne_60"
    old_arrays = {k.replace(fit.name, "tsne_60"): v for k, v in first.arrays.items()}
    old = replace(first, tsne=(legacy,), arrays=old_arrays)
    old.check_arrays()
    same_again = with_previous_tsne(first, old)  # the same fit under its full name: not kept twice
    assert same_again.tsne == first.tsne
    many = tuple(replace(fit, perplexity=float(p)) for p in range(1, MAX_KEPT_TSNE_FITS + 5))
    arrays = {**first.arrays, **{f"{t.name}_{part}": first.arrays[f"{fit.name}_{part}"]
                                 for t in many for part in ("indices", "embedding")}}
    full = with_previous_tsne(first, replace(first, tsne=many, arrays=arrays))
    assert len(full.tsne) == MAX_KEPT_TSNE_FITS and full.tsne[-1] == fit and "dropped the 4 oldest" in full.notes[1]


def test_an_analysis_file_cannot_ask_for_thousands_of_tsne_panels():
    codes, labels = _two_clusters()
    a = analyze_codes(codes, AnalysisConfig(**TINY, tsne_sizes=(60,)), labels)
    data = a.to_json()
    data["tsne"] = data["tsne"] * (MAX_KEPT_TSNE_FITS + 1)  # one fit listed again and again: its arrays exist
    with pytest.raises(ValueError, match="at most"):
        Analysis.from_json(data, a.arrays)


def test_settings_panels_share_one_legend_of_every_class():
    from zspace.report.plots import plot_embeddings

    rng = np.random.default_rng(0)
    points = rng.normal(size=(30, 2))
    panels = [(points, np.zeros(30, int), "first"), (points, np.arange(30) % 3, "second")]  # class 2 only in one
    fig = plot_embeddings(panels)  # unnamed integer labels (an IDX dataset): named by their numbers
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["0", "1", "2"]
    assert [ax.get_title() for ax in fig.axes[:2]] == ["first", "second"]
