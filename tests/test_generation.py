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


# --- issue 13: labelled, enlarged grids (item 12), sharpening series (item 4), latent grid (item 10) -----

from zspace.errors import ConfigError  # noqa: E402
from zspace.generation import (  # noqa: E402
    Grid,
    check_generate_options,
    check_grid_pixels,
    labelled_grid,
    latent_plane,
    sharpen_series,
)


def test_labels_sit_in_margins_and_leave_the_enlarged_cells_as_they_were():
    images = np.random.default_rng(0).random((6, 8, 8, 1)).astype(np.float32)
    plain = image_grid(images, cols=3)
    assert plain.shape[0] == 2 * 66 + 2  # 8x8 cells enlarged to 64 px (nearest neighbour) + padding
    labelled = labelled_grid(images, cols=3, row_labels=["r=0.5", "r=1"], col_labels=["a", "b", "c"],
                             title="a title")
    top = labelled.shape[0] - plain.shape[0] - (labelled.shape[0] - plain.shape[0]) // 2  # title line above
    left = labelled.shape[1] - plain.shape[1]
    assert left > 20 and labelled.shape[0] > plain.shape[0]
    np.testing.assert_array_equal(labelled[top:top + plain.shape[0], left:], plain)
    assert labelled[top:top + plain.shape[0], :left].min() < 128  # the row labels are drawn (dark text)
    assert labelled[top + plain.shape[0]:].min() < 128  # the column labels
    with pytest.raises(ValueError, match="one label per row"):
        labelled_grid(images, cols=3, row_labels=["one"])
    with pytest.raises(ConfigError, match="pixels"):
        check_grid_pixels(10_000, (28, 28, 1), cell=512)


def test_sharpen_series_is_one_grid_with_a_labelled_block_per_factor():
    images = np.random.default_rng(1).random((5, 8, 8, 1)).astype(np.float32)
    series = sharpen_series(Grid(images, cols=3), [0.0, 3.0, 6.0])
    assert series.cols == 3 and len(series.images) == 3 * 6  # each block padded to whole rows of 3
    for k, factor in enumerate([0.0, 3.0, 6.0]):
        block = series.images[6 * k:6 * k + 6]
        np.testing.assert_array_equal(block[:5], sharpen(images, factor))
        assert np.all(block[5] == 1.0)  # a white cell ends the block's last row
    assert series.row_labels == ("sharpness 0", "", "sharpness 3", "", "sharpness 6", "")
    swept = sharpen_series(Grid(images[:4], cols=2, row_labels=("r=1", "r=2")), [1, 2.5])
    assert swept.row_labels == ("sharpness 1 · r=1", "sharpness 1 · r=2", "sharpness 2.5 · r=1",
                                "sharpness 2.5 · r=2")
    np.testing.assert_allclose(swept.images[:4], images[:4], atol=1 / 255)  # factor 1: unchanged
    with pytest.raises(ConfigError, match="--sharpen must be a finite number >= 0. Received: -1"):
        sharpen_series(Grid(images), [1, -1])


def test_sharpen_series_of_one_factor_names_it_in_the_title_not_on_every_row():
    images = np.random.default_rng(2).random((4, 8, 8, 1)).astype(np.float32)
    swept = Grid(images, cols=2, row_labels=("r=1", "r=2"), title="z1 against z0")
    one = sharpen_series(swept, [3])
    assert one.row_labels == ("r=1", "r=2") and one.title == "z1 against z0; sharpness 3"  # was "sharpness 3 · r=1"
    np.testing.assert_array_equal(one.images, sharpen(images, 3))
    assert sharpen_series(Grid(images), [0.5]).title == "sharpness 0.5"


def test_sharpening_leaves_the_given_images_of_a_reconstruction_grid_alone():
    """Originals and targets are data, not decoder output: a series sharpens only the model's rows."""
    images = np.random.default_rng(3).random((9, 8, 8, 1)).astype(np.float32)
    grid = Grid(images, cols=3, row_labels=("input", "output", "target"), reference_rows=(0, 2))
    for series in (sharpen_series(grid, [4]), sharpen_series(grid, [0, 4])):
        block = series.images[-9:]
        np.testing.assert_array_equal(block[:3], images[:3])
        np.testing.assert_array_equal(block[6:], images[6:])
        np.testing.assert_array_equal(block[3:6], sharpen(images[3:6], 4))


def test_latent_plane_of_two_axes_or_the_first_two_principal_directions():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(2000, 4)) * [0.1, 3.0, 1.0, 0.1] + [5, 0, 0, 0]
    origin, directions, names = latent_plane(codes, 4, axes=(2, 0))
    np.testing.assert_array_equal(origin, 0)
    np.testing.assert_array_equal(directions, [[0, 0, 1, 0], [1, 0, 0, 0]])
    assert names == ("z2", "z0")
    origin, directions, names = latent_plane(codes, 4, pca=True)
    np.testing.assert_allclose(origin, codes.mean(axis=0), rtol=1e-5)  # PCA: around the mean
    np.testing.assert_allclose(np.abs(directions), [[0, 1, 0, 0], [0, 0, 1, 0]], atol=0.05)
    assert names == ("PC1", "PC2")
    origin, _, _ = latent_plane(codes, 4, axes=(0, 1), center="mean")
    np.testing.assert_allclose(origin, codes.mean(axis=0), rtol=1e-5)
    for kwargs, message in [({"axes": (0, 4)}, "--axes must be two different axes in \\[0, 4\\)"),
                            ({"axes": (1, 1)}, "two different axes"), ({"center": "median"}, "--center")]:
        with pytest.raises(ConfigError, match=message):
            latent_plane(codes, 4, **kwargs)
    with pytest.raises(ConfigError, match="at least 2 dimensions"):
        latent_plane(codes[:, :1], 1)


@pytest.mark.parametrize("mode, options, message", [
    ("normal", {"limits": [0.5, 1]}, "--limit given 2 times (0.5, 1): one row per half-width r is a sweep of "
                                     "--dist uniform; --dist normal has no box"),
    ("grid", {"limits": [1, 2]}, "--dist grid has one grid over [-r, r] per axis: give one --limit"),
    ("reconstruct", {"limits": [1, 2]}, "--reconstruct has no box"),
    ("gmm", {"limits": [1], "strengths": [1.0]}, "--strength applies to --attribute"),
    ("uniform", {"limits": [1], "axes": (0, 1)}, "--axes: only for --dist grid"),
    ("grid", {"limits": [], "axes": (0, 1), "pca": True}, "--axes and --pca exclude each other"),
])
def test_options_a_mode_would_ignore_are_refused(mode, options, message):
    with pytest.raises(ConfigError) as error:
        check_generate_options(mode, **options)
    assert message in str(error.value)


def test_options_a_mode_uses_are_accepted():
    check_generate_options("uniform", [0.5, 1, 2])  # the sweep
    check_generate_options("normal", [2])  # one --limit is the uniform box; normal ignores it as before
    check_generate_options("attribute", [1], [-1, 0, 1])
    check_generate_options("grid", [2], axes=(0, 1), center="mean")


# --- the CLI on a trained run ----------------------------------------------------

from conftest import tiny_run_config  # noqa: E402
from zspace.cli import main  # noqa: E402
from zspace.rundir import Run  # noqa: E402
from zspace.training import train  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("generation") / "run"
    train(tiny_run_config(root, epochs=1))
    return root


def _png(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def test_generate_sharpen_series_writes_one_labelled_grid(run_dir, tmp_path, capsys):
    out = tmp_path / "g.png"
    assert main(["generate", str(run_dir), "--out", str(out), "--n", "6", "--seed", "2",
                 "--sharpen", "0", "--sharpen", "3", "--sharpen", "6"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png"]  # one grid, no sharpened copies
    decoded = Run(run_dir).model.decode(sample_latent(6, 3, "normal", seed=2))
    expected = labelled_grid(np.concatenate([sharpen(decoded, f) for f in (0, 3, 6)]), cols=6,
                             row_labels=["sharpness 0", "sharpness 3", "sharpness 6"])  # a row per factor
    np.testing.assert_array_equal(_png(out), expected[..., 0])


@pytest.mark.parametrize("args", [["--dist", "uniform", "--limit", "1", "--limit", "3"], ["--reconstruct"],
                                  ["--interpolate", "0", "1"], ["--dist", "gmm", "--components", "2"],
                                  ["--dist", "grid"]])
def test_generate_sharpen_series_in_every_mode(run_dir, tmp_path, args):
    plain, series = tmp_path / "plain.png", tmp_path / "series.png"
    assert main(["generate", str(run_dir), "--out", str(plain), "--n", "3", "--cols", "3", *args]) == 0
    assert main(["generate", str(run_dir), "--out", str(series), "--n", "3", "--cols", "3", *args,
                 "--sharpen", "1", "--sharpen", "4"]) == 0
    assert _png(series).shape[0] > 1.9 * _png(plain).shape[0] - 40  # two blocks of the grid's rows


def test_generate_grid_decodes_a_regular_grid_over_two_axes(run_dir, tmp_path, monkeypatch):
    seen = []
    model_class = type(Run(run_dir).model)
    decode = model_class.decode
    monkeypatch.setattr(model_class, "decode", lambda self, z: seen.append(z) or decode(self, z))
    out = tmp_path / "map.png"
    assert main(["generate", str(run_dir), "--out", str(out), "--dist", "grid", "--axes", "2", "0",
                 "--limit", "1.5", "--n", "4"]) == 0
    z = seen[-1].reshape(4, 4, 3)
    np.testing.assert_allclose(z[0, :, 2], np.linspace(-1.5, 1.5, 4), rtol=1e-6)  # columns step along z2
    np.testing.assert_allclose(z[:, 0, 0], np.linspace(1.5, -1.5, 4), rtol=1e-6)  # rows along z0, top high
    assert np.all(z[..., 1] == 0)  # the other coordinate: 0
    assert _png(out).shape[0] > 4 * 66  # a title line and the column labels
    assert main(["generate", str(run_dir), "--out", str(out), "--dist", "grid", "--pca", "--n", "5"]) == 0
    z = seen[-1]
    assert z.shape == (25, 3) and np.linalg.matrix_rank(z - z[12]) == 2  # a plane around its centre cell


def test_generate_refuses_what_it_would_drop(run_dir, tmp_path, capsys):
    out = tmp_path / "x.png"
    for args, message in [(["--dist", "normal", "--limit", "0.5", "--limit", "1"], "--limit given 2 times"),
                          (["--strength", "2"], "--strength applies to --attribute"),
                          (["--pca"], "--pca: only for --dist grid"),
                          (["--dist", "grid", "--axes", "0", "3"], "--axes must be two different axes in [0, 3)"),
                          (["--cell", "5000"], "--cell must be in [1, 1024]")]:
        assert main(["generate", str(run_dir), "--out", str(out), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not out.exists()
