"""The CLI in-process (typer's CliRunner): exit codes and the files written."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import tiny_run_config
from zspace.cli import app

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
        assert set(data.files) == {"z", "mu", "logvar", "labels", "split"}
        assert data["z"].shape == (1797, 3) and data["labels"].shape == (1797,)
        assert np.bincount(data["split"]).tolist() == [1617, 180]


@pytest.mark.parametrize("dist", ["normal", "uniform"])
def test_generate_writes_a_grid(trained_run, tmp_path, dist):
    out = tmp_path / "grid.png"
    result = runner.invoke(app, ["generate", str(trained_run), "--n", "28", "--dist", dist,
                                 "--limit", "2", "--cols", "7", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:
        assert img.size[0] > img.size[1]  # 7 columns, 4 rows


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
        assert (out / kind / "reconstructions.png").is_file()
        assert (out / kind / "random_normal.png").is_file()
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("run"))
    ae_row, vae_row = lines[header + 1].split(), lines[header + 2].split()
    assert ae_row[0] == "ae" and vae_row[0] == "vae"
    assert float(ae_row[4]) == 0.0 and float(vae_row[4]) > 0.0  # KL only for the VAE
