"""The CLI in-process (typer's CliRunner): exit codes and the files written."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import tiny_run_config
from zspace import Run
from zspace.analysis import encode_images
from zspace.cli import app
from zspace.generation import GaussianMixtureSampler, image_grid, labelled_grid, sample_latent, uniform_sweep

runner = CliRunner()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    config_path = root / "run.toml"
    config_path.write_text(tiny_run_config(root / "unused", epochs=1).to_toml())
    run_dir = root / "run"
    result = runner.invoke(app, ["train", "--config", str(config_path), "--set", "epochs=2",
                                 "--set", f"run_dir={run_dir}"])
    assert result.exit_code == 0, result.output
    assert "2 epochs" in result.output
    return run_dir


def test_train_writes_the_run(trained_run):
    for name in ("config.toml", "history.csv", "model.keras", "checkpoints/epoch-0002.keras"):
        assert (trained_run / name).is_file()
    assert "epochs = 2" in (trained_run / "config.toml").read_text()


def test_encode_writes_z_mu_logvar_labels(trained_run, tmp_path):
    out = tmp_path / "z.npz"
    result = runner.invoke(app, ["encode", str(trained_run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out, allow_pickle=False) as data:
        assert set(data.files) == {"z", "mu", "logvar", "labels", "split", "epsilon_scale"}
        assert data["z"].shape == (1797, 3) and data["labels"].shape == (1797,)
        assert np.bincount(data["split"]).tolist() == [1617, 180]


def _png(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def _grid(images, cols=None, **labels) -> np.ndarray:
    return labelled_grid(images, cols, **labels)[..., 0]  # the digits are grey: PNG mode "L"


def _generate(trained_run, out, *args):
    result = runner.invoke(app, ["generate", str(trained_run), "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return _png(out)


@pytest.fixture(scope="module")
def model(trained_run):
    return Run(trained_run).model


def test_generate_draws_from_the_chosen_distribution(trained_run, model, tmp_path):
    grids = {}
    for dist in ("normal", "uniform"):
        grids[dist] = _generate(trained_run, tmp_path / f"{dist}.png", "--n", "28", "--dist", dist, "--limit", "2",
                                "--cols", "7", "--seed", "3")
        z = sample_latent(28, 3, dist, 2.0, seed=3)
        np.testing.assert_array_equal(grids[dist], _grid(model.decode(z), cols=7))
    assert grids["normal"].shape == grids["uniform"].shape and grids["normal"].shape[1] > grids["normal"].shape[0]
    assert not np.array_equal(grids["normal"], grids["uniform"])


def test_generate_with_several_limits_gives_one_row_per_limit(trained_run, model, tmp_path):
    grid = _generate(trained_run, tmp_path / "sweep.png", "--dist", "uniform", "--n", "5", "--limit", "0.5",
                     "--limit", "1", "--limit", "4")
    np.testing.assert_array_equal(grid, _grid(uniform_sweep(model, [0.5, 1.0, 4.0], 5, seed=0), cols=5,
                                              row_labels=["r=0.5", "r=1", "r=4"]))
    cells = image_grid(np.zeros((15, 8, 8, 1)), cols=5).shape  # 3 rows of 5, the labels to their left
    assert grid.shape[0] == cells[0] and grid.shape[1] > cells[1]


def test_generate_reconstruct_shows_validation_images_over_their_decodes(trained_run, tmp_path):
    grid = _generate(trained_run, tmp_path / "reco.png", "--reconstruct", "--n", "6")
    x_val = Run(trained_run).validation_images(6)
    tiles = _grid(np.concatenate([x_val, x_val]), cols=6, row_labels=["original", "reconstruction"])
    top = tiles.shape[0] // 2
    np.testing.assert_array_equal(grid[:top], tiles[:top])  # first row: the originals, exactly
    assert grid.shape == tiles.shape  # second row: their reconstructions
    assert not np.array_equal(grid[top:], tiles[top:])


def test_generate_interpolate_decodes_the_line_between_two_codes(trained_run, model, tmp_path):
    grid = _generate(trained_run, tmp_path / "line.png", "--interpolate", "2", "9", "--n", "5", "--cols", "5")
    x_val = Run(trained_run).validation_images(10)
    ends = model.encode(x_val[[2, 9]])["mu"]
    line = ends[0] + np.linspace(0, 1, 5, dtype=np.float32)[:, None] * (ends[1] - ends[0])
    np.testing.assert_array_equal(grid, _grid(model.decode(line), cols=5, row_labels=["#2 to #9"]))
    result = runner.invoke(app, ["generate", str(trained_run), "--out", str(tmp_path / "x.png"), "--interpolate",
                                 "0", "180"])
    assert result.exit_code == 2 and "--interpolate indices must be in [0, 180)" in result.output


def test_generate_gmm_samples_a_mixture_fitted_to_the_training_codes(trained_run, tmp_path):
    grid = _generate(trained_run, tmp_path / "gmm.png", "--dist", "gmm", "--components", "3", "--n", "8",
                     "--seed", "1")
    run = Run(trained_run)
    model = run.model  # freshly loaded: its sampling noise starts where the command's did
    z_train = encode_images(model, run.split.x_train)["z"]
    z = GaussianMixtureSampler(3, random_state=1).fit(z_train).sample(8)
    np.testing.assert_array_equal(grid, _grid(model.decode(z)))
    normal = _generate(trained_run, tmp_path / "normal.png", "--n", "8", "--seed", "1")
    assert not np.array_equal(grid, normal)


@pytest.mark.parametrize("args, message", [
    (["train", "--config", "missing.toml"], "does not exist"),
    (["generate", "no-such-run", "--out", "x.png"], "does not exist"),
])
def test_missing_inputs_exit_nonzero(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_bad_field_is_one_clear_line(tmp_path):
    config_path = tmp_path / "c.toml"
    config_path.write_text(tiny_run_config(tmp_path / "r").to_toml())
    result = runner.invoke(app, ["train", "--config", str(config_path), "--set", "z_dim=-4"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "zspace: error: `z_dim` must be a positive integer. Received: z_dim=-4"
    ]
    assert not (tmp_path / "r").exists()


def test_generate_on_an_unfinished_run_dir(tmp_path):
    result = runner.invoke(app, ["generate", str(tmp_path), "--out", str(tmp_path / "g.png")])
    assert result.exit_code == 2 and "config file not found" in result.output


@pytest.mark.slow
def test_demo_trains_ae_and_vae_and_writes_grids(tmp_path):
    config = tiny_run_config(tmp_path / "unused", epochs=2)
    config_path = tmp_path / "demo.toml"
    config_path.write_text(config.to_toml())
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--config", str(config_path),
                                 "--fashion-config", str(tmp_path / "absent.toml")])
    assert result.exit_code == 0, result.output
    for kind in ("ae", "vae"):
        assert (out / kind / "gallery" / "reconstructions.png").is_file()
        assert (out / kind / "gallery" / "normal.png").is_file()
        assert f"{kind}: {out / kind / 'gallery' / 'normal.png'}" in result.output
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("run"))
    ae_row, vae_row = lines[header + 1].split(), lines[header + 2].split()
    assert ae_row[0] == "ae" and vae_row[0] == "vae"
    assert float(ae_row[4]) == 0.0 and float(vae_row[4]) > 0.0  # KL only for the VAE
