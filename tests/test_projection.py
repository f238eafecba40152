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
