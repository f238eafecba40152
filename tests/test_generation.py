import numpy as np
import pytest
from PIL import Image

from zspace.generation import image_grid, sample_latent, save_grid


def test_normal_and_uniform_latents():
    z = sample_latent(5000, 4, "normal", seed=0)
    assert z.shape == (5000, 4) and z.dtype == np.float32
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05
    u = sample_latent(5000, 4, "uniform", limit=2.5, seed=0)
    assert u.min() >= -2.5 and u.max() <= 2.5 and u.max() > 2.4
    np.testing.assert_array_equal(sample_latent(3, 2, seed=9), sample_latent(3, 2, seed=9))


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0, "z_dim": 2}, "`n`"), ({"n": 2, "z_dim": 0}, "`z_dim`"),
    ({"n": 2, "z_dim": 2, "dist": "cauchy"}, "`dist`"), ({"n": 2, "z_dim": 2, "dist": "uniform", "limit": 0}, "`limit`"),
])
def test_latent_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_latent(**kwargs)


def test_grid_places_tiles_row_major_with_upscaling():
    images = np.stack([np.full((8, 8, 1), v, np.float32) for v in (0.0, 1.0, 0.5)])
    grid = image_grid(images, cols=2, pad=2, min_tile=16)
    assert grid.shape == (2 * 18 + 2, 2 * 18 + 2, 1)
    assert grid[2:18, 2:18].max() == 0          # first tile black
    assert grid[2:18, 20:36].min() == 255        # second tile white
    assert np.all(grid[20:36, 2:18] == 128)      # third tile grey, next row
    assert np.all(grid[20:36, 20:36] == 255)     # empty slot stays white


def test_save_grid_writes_png(tmp_path):
    path = save_grid(tmp_path / "g.png", np.random.default_rng(0).random((6, 8, 8, 3)))
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode == "RGB"
    with pytest.raises(ValueError, match="shape"):
        image_grid(np.zeros((2, 8, 8)))


# --- with a model ------------------------------------------------------------------

import keras  # noqa: E402
from PIL import ImageEnhance  # noqa: E402

from conftest import tiny_model_config  # noqa: E402
from zspace.generation import GaussianMixtureSampler, interpolate, sharpen, uniform_sweep  # noqa: E402
from zspace.models import build_model  # noqa: E402


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_model(tiny_model_config(epsilon_scale=0.0), seed=0)


def test_uniform_sweep_scales_one_draw_per_row(model, monkeypatch):
    seen = []
    monkeypatch.setattr(model, "decode", lambda z: seen.append(z) or np.zeros((len(z), 8, 8, 1)))
    out = uniform_sweep(model, [0.5, 2.0], n=4, seed=1)
    z = seen[0]
    assert out.shape == (8, 8, 8, 1) and z.shape == (8, 3)
    np.testing.assert_allclose(z[4:], 4 * z[:4], rtol=1e-6)  # same directions, box 4x wider
    assert np.abs(z[:4]).max() <= 0.5
    with pytest.raises(ValueError, match="limits"):
        uniform_sweep(model, [0.0], n=2)


def test_interpolation_ends_at_the_two_decodes(model, images):
    path = interpolate(model, images[0], images[1], steps=5)
    ends = model.reconstruct(images[:2])  # epsilon_scale 0: decode(mu)
    np.testing.assert_allclose(path[[0, -1]], ends, atol=1e-5)
    assert path.shape == (5, 8, 8, 1)


def test_gaussian_mixture_sampler_draws_where_the_points_are():
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(-10, 0.1, (300, 2)), rng.normal(10, 0.1, (300, 2))])
    sampler = GaussianMixtureSampler(n_components=2, random_state=0).fit(z)
    draws = sampler.sample(400)
    assert draws.shape == (400, 2) and draws.dtype == np.float32
    assert np.all(np.abs(np.abs(draws) - 10) < 1)  # near one of the two blobs, never between
    assert 0.3 < np.mean(draws[:, 0] > 0) < 0.7 and np.mean(draws[:50, 0] > 0) not in (0.0, 1.0)
    with pytest.raises(RuntimeError, match="before fit"):
        GaussianMixtureSampler().sample(2)


def test_sharpen_equals_pil_and_factor_one_is_identity():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 9, 9, 3)).astype(np.float32) / 255
    out = sharpen(images, 7.0)
    expected = np.asarray(ImageEnhance.Sharpness(Image.fromarray((images[1] * 255).round().astype(np.uint8))).enhance(7.0))
    np.testing.assert_array_equal(np.rint(out[1] * 255).astype(np.uint8), expected)
    np.testing.assert_allclose(sharpen(images, 1.0), images, atol=1e-6)
    assert not np.allclose(out, images, atol=0.01)
