"""`zspace reconstruct`: your own image files through a run's model, cropped and resized as `zspace prepare` does."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import tiny_model_config, train_ae_and_vae
from zspace import Run
from zspace.cli import app
from zspace.config import RunConfig, TrainConfig
from zspace.data import Dataset
from zspace.data.prepare import load_image
from zspace.errors import ConfigError, DataError
from zspace.generation import labelled_grid
from zspace.generation.reconstruct import DEFAULT_SAMPLES, load_images, reconstruct_arrays, reconstruct_images
from zspace.training import train

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_ae_and_vae(tmp_path_factory.mktemp("reconstruct"), epochs=1)


@pytest.fixture(scope="module")
def recolor_run(tmp_path_factory):
    """A colour 8x8 VAE trained (briefly) to recolor grey inputs, on seeded random colour images."""
    root = tmp_path_factory.mktemp("recolor")
    x = np.random.default_rng(0).random((64, 8, 8, 3)).astype(np.float32)
    config = RunConfig(tiny_model_config(input_shape=(8, 8, 3), encoder_filters=(4, 3)),
                       TrainConfig(task="recolor", epochs=1, batch_size=32, run_dir=str(root / "run"), verbose=0))
    train(config, Dataset("colour", "memory", x, None, x_test=x[:16]))
    return root / "run"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Three image files: a wide RGB PNG, a tall grey JPEG and a paletted PNG."""
    folder = tmp_path_factory.mktemp("files")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)).save(folder / "wide.png")
    Image.fromarray(rng.integers(0, 256, (40, 24), dtype=np.uint8)).save(folder / "tall.jpg", quality=95)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).convert("P").save(folder / "palette.png")
    return [folder / name for name in ("wide.png", "tall.jpg", "palette.png")]


def test_files_are_cropped_and_resized_as_prepare_does_then_made_grey(files):
    images = load_images(files, (8, 8, 1))
    assert images.shape == (3, 8, 8, 1) and images.dtype == np.float32
    for path, image in zip(files, images):
        rgb = load_image(str(path), 8, None, 10**6)[0].astype(np.float32) / 255
        np.testing.assert_allclose(image[..., 0], rgb @ np.array([0.299, 0.587, 0.114], np.float32), atol=1e-6)
    colour = load_images(files[:1], (8, 8, 3), crop=(10, 0, 40, 30))
    expected = load_image(str(files[0]), 8, (10, 0, 40, 30), 10**6)[0] / 255
    np.testing.assert_allclose(colour[0], expected, atol=1e-6)


def test_a_non_square_run_gets_the_centre_of_the_resized_square(files):
    wide = load_images(files[:1], (4, 8, 3))
    np.testing.assert_allclose(wide[0], load_image(str(files[0]), 8, None, 10**6)[0][2:6] / 255, atol=1e-6)


def test_vae_rows_hold_the_decode_of_mu_and_seeded_samples_around_it(runs, files):
    vae = Run(runs[1])
    result = reconstruct_images(vae, files, samples=3, epsilon_scale=2.0, seed=5)
    mu, logvar = result.codes["mu"], result.codes["logvar"]
    assert result.samples.shape == (3, 3, 8, 8, 1) and result.epsilon_scale == 2.0
    np.testing.assert_allclose(result.reconstructions, vae.model.decode(mu), atol=1e-6)
    eps = np.clip(np.random.default_rng(5).standard_normal((3, 3, mu.shape[1])), -5, 5).astype(np.float32)
    z = mu[:, None] + np.exp(0.5 * logvar)[:, None] * eps * 2.0
    np.testing.assert_allclose(result.codes["z_samples"], z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.samples.reshape(9, 8, 8, 1), vae.model.decode(z.reshape(9, -1)), atol=1e-5)
    grid = result.grid()
    assert grid.cols == 2 + 3 and len(grid.images) == 3 * 5
    np.testing.assert_array_equal(grid.images[5], result.originals[1])
    np.testing.assert_array_equal(grid.images[6], result.reconstructions[1])


def test_scale_zero_samples_are_the_reconstruction(runs, files):
    result = reconstruct_images(runs[1], files[:1], samples=2, epsilon_scale=0.0)
    np.testing.assert_array_equal(result.samples[0, 0], result.reconstructions[0])
    assert reconstruct_images(runs[1], files[:1]).samples.shape[1] == DEFAULT_SAMPLES


def test_an_ae_has_no_samples_and_refuses_them(runs, files):
    result = reconstruct_images(runs[0], files[:2])
    assert result.samples.shape == (2, 0, 8, 8, 1) and result.columns == ("original", "decode(z)")
    with pytest.raises(ConfigError, match="is an AE"):
        reconstruct_images(runs[0], files[:1], samples=2)
    with pytest.raises(ConfigError, match="is an AE"):
        reconstruct_images(runs[0], files[:1], epsilon_scale=0.0)


def test_a_recolor_run_is_given_the_grey_image(recolor_run, files):
    result = reconstruct_images(recolor_run, files[:2], samples=1)
    grey = result.originals @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(result.inputs, np.repeat(grey[..., None], 3, axis=-1), atol=1e-6)
    assert result.columns[:3] == ("original", "grey input", "decode(mu)") and result.grid().cols == 4


def test_the_command_writes_the_grid_with_what_it_shows(runs, files, tmp_path):
    out = tmp_path / "grid.png"
    result = runner.invoke(app, ["reconstruct", str(runs[1]), *map(str, files), "--out", str(out), "--samples",
                                 "2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "columns: original | decode(mu) | z #1 = decode(mu + sigma * eps_1 * 1)" in result.output  # as in the grid
    expected = reconstruct_images(runs[1], files, samples=2, seed=3).grid()
    with Image.open(out) as png:
        assert expected.row_labels == tuple(p.name for p in files)
        assert expected.col_labels == ("original", "mu", "z #1", "z #2")
        np.testing.assert_array_equal(np.asarray(png), labelled_grid(
            expected.images, expected.cols, expected.row_labels, expected.col_labels)[..., 0])
        assert png.text["zspace:files"].splitlines() == [p.name for p in files]
        assert png.text["zspace:epsilon_scale"] == "1" and png.text["zspace:seed"] == "3"


@pytest.mark.parametrize("content, reason", [(b"", "empty file"), (b"GIF89a" + bytes(40), "not an image"),
                                             (None, "corrupt or truncated")])
def test_a_bad_file_is_one_line_naming_it_and_nothing_is_written(runs, files, tmp_path, content, reason):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content if content is not None else files[0].read_bytes()[:300])  # None: a cut PNG
    out = tmp_path / "grid.png"
    result = runner.invoke(app, ["reconstruct", str(runs[1]), str(files[0]), str(bad), "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.startswith(f"zspace: error: {bad}: ") and reason in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_a_decompression_bomb_is_refused_by_its_header(runs, files, tmp_path):
    with pytest.raises(DataError, match="wide.png: decompression bomb: 50x30 pixels"):
        reconstruct_images(runs[1], files[:1], max_pixels=1000)
    result = runner.invoke(app, ["reconstruct", str(runs[1]), str(files[0]), "--max-pixels", "1000", "--out",
                                 str(tmp_path / "g.png")])
    assert result.exit_code == 2 and "decompression bomb" in result.output


@pytest.mark.parametrize("args, message", [
    (["--samples", "101"], "--samples"), (["--crop", "1,2,3"], "--crop"), (["--crop", "5,0,2,4"], "crop"),
    (["--epsilon-scale", "-1"], "--epsilon-scale"), (["--out", "grid.jpg"], ".png"),
])
def test_bad_options_are_one_line(runs, files, tmp_path, args, message):
    out = ["--out", str(tmp_path / "g.png")] if "--out" not in args else ["--out", str(tmp_path / args[-1])]
    args = [a for a in args if a not in ("--out", "grid.jpg")]
    result = runner.invoke(app, ["reconstruct", str(runs[1]), str(files[0]), *args, *out])
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_arrays_of_another_shape_are_refused(runs):
    with pytest.raises(ConfigError, match=r"images must be \(N, 8, 8, 1\)"):
        reconstruct_arrays(runs[1], np.zeros((2, 28, 28, 1), np.float32))
