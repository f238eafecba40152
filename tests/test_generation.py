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
