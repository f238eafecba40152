"""Every command, given bad input, exits 2 with one clear line on stderr and writes nothing half-done."""

import gzip
import shutil

import numpy as np
import pytest

from conftest import tiny_run_config
from zspace.cli import main
from zspace.training import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors") / "run"
    train(tiny_run_config(root, epochs=1))
    return root


def one_error_line(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured
    assert len(lines) == 1 and lines[0].startswith("zspace: error: "), captured.err
    return lines[0]


@pytest.mark.parametrize("argv", [
    ["train", "--config", "missing.toml"],
    ["encode", "no-such-run", "--out", "z.npz"],
    ["analyze", "no-such-run"],
    ["generate", "no-such-run", "--out", "g.png"],
    ["compare", "no-such-run"],
    ["report", "no-such-run"],
    ["analyze", ".", "--config", "missing-analysis.toml"],
])
def test_missing_files(capsys, argv):
    assert "does not exist" in one_error_line(capsys, argv)


def write_config(tmp_path, **overrides):
    path = tmp_path / "run.toml"
    path.write_text(tiny_run_config(tmp_path / "run").with_overrides(overrides).to_toml())
    return path


def test_wrong_dataset_shape_writes_nothing(capsys, tmp_path):
    path = write_config(tmp_path, input_shape=[16, 16, 1])
    line = one_error_line(capsys, ["train", "--config", str(path)])
    assert "has images of shape (8, 8, 1) but the model's input_shape is (16, 16, 1)" in line
    assert not (tmp_path / "run").exists()


def test_empty_dataset(capsys, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    header = lambda *dims: bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)  # noqa: E731
    for stem, dims in [("train-images-idx3-ubyte", (0, 8, 8)), ("train-labels-idx1-ubyte", (0,)),
                       ("t10k-images-idx3-ubyte", (0, 8, 8)), ("t10k-labels-idx1-ubyte", (0,))]:
        with gzip.open(folder / f"{stem}.gz", "wb") as f:
            f.write(header(*dims))
    path = write_config(tmp_path, dataset=f"idx:{folder}")
    assert "has no images" in one_error_line(capsys, ["train", "--config", str(path)])
    assert not (tmp_path / "run").exists()


def test_unknown_field_in_file_and_in_set(capsys, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nepocs = 3\n")
    assert "unknown field `epocs` in [train]; did you mean `epochs`" in one_error_line(
        capsys, ["train", "--config", str(path)])
    good = write_config(tmp_path)
    assert "unknown config field `zdim`" in one_error_line(capsys, ["train", "-c", str(good), "--set", "zdim=4"])


@pytest.mark.parametrize("setting, message", [
    ("epochs=0", "`epochs` must be a positive integer. Received: epochs=0"),
    ("kl_factor=-1", "`kl_factor` must be a non-negative number"),
    ("activation=gelu", "`activation` must be 'leaky_relu' | 'relu' | 'selu'"),
])
def test_bad_values(capsys, tmp_path, setting, message):
    path = write_config(tmp_path)
    assert message in one_error_line(capsys, ["train", "--config", str(path), "--set", setting])
    assert not (tmp_path / "run").exists()


def test_bad_generate_and_analyze_options(capsys, run_dir, tmp_path):
    out = tmp_path / "g.png"
    assert "--interpolate indices must be in [0, 180)" in one_error_line(
        capsys, ["generate", str(run_dir), "--out", str(out), "--interpolate", "0", "999"])
    assert "--limit must be positive" in one_error_line(
        capsys, ["generate", str(run_dir), "--out", str(out), "--dist", "uniform", "--limit", "-1"])
    assert "'gauss' is not one of" in one_error_line(capsys, ["generate", str(run_dir), "--out", str(out),
                                                              "--dist", "gauss"])
    assert "Invalid value for '--n'" in one_error_line(capsys, ["generate", str(run_dir), "--out", str(out),
                                                                "--n", "many"])
    for limits in (["inf"], ["1", "nan"], ["0"]):
        args = [arg for r in limits for arg in ("--limit", r)]
        assert "--limit must be positive finite numbers" in one_error_line(
            capsys, ["generate", str(run_dir), "--out", str(out), "--dist", "uniform", *args])
    assert "--sharpen must be a finite number >= 0. Received: -5.0" in one_error_line(
        capsys, ["generate", str(run_dir), "--out", str(out), "--sharpen", "-5"])
    assert "--components (5000) must not exceed the number of training z-points (1617)" in one_error_line(
        capsys, ["generate", str(run_dir), "--out", str(out), "--dist", "gmm", "--components", "5000"])
    assert not out.exists()
    from test_data import fake_idx_folder

    other = tmp_path / "five-by-five"
    other.mkdir()
    fake_idx_folder(other)
    assert "has images of shape (5, 5, 1) but the model's input_shape is (8, 8, 1)" in one_error_line(
        capsys, ["analyze", str(run_dir), "--data", f"idx:{other}"])
    assert "`perplexity` must be positive" in one_error_line(capsys, ["analyze", str(run_dir), "--set", "perplexity=0"])
    assert not (run_dir / "analysis.json").exists()


def test_damaged_run_files_are_named_in_one_line(capsys, run_dir, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(run_dir, damaged)
    (damaged / "config.toml").write_text("[model\n")
    assert "config.toml: not valid TOML" in one_error_line(
        capsys, ["generate", str(damaged), "--out", str(tmp_path / "g.png")])  # read before the model, as before
    shutil.copy(run_dir / "config.toml", damaged / "config.toml")
    (damaged / "history.csv").write_text("epoch,total_loss\n1,lots\n")
    assert "history.csv: not a history written by zspace" in one_error_line(
        capsys, ["report", str(damaged), "-o", str(tmp_path / "r.html"), "--set", "tsne_sizes=[]"])
    (damaged / "run_state.json").write_text("{not json")
    config = tmp_path / "c.toml"
    config.write_text((damaged / "config.toml").read_text().replace(str(run_dir), str(damaged)))
    assert "run_state.json: not a run state written by zspace" in one_error_line(
        capsys, ["train", "--config", str(config), "--set", "epochs=3"])


def test_unfinished_run_and_hostile_model(capsys, run_dir, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(run_dir / "config.toml", unfinished / "config.toml")
    assert "has no model.keras yet" in one_error_line(capsys, ["encode", str(unfinished), "--out", str(tmp_path / "z.npz")])
    import keras

    inputs = keras.Input((3,))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x + 1)(inputs)).save(unfinished / "model.keras")
    assert "Lambda layer" in one_error_line(capsys, ["generate", str(unfinished), "--out", str(tmp_path / "g.png")])
    assert not (tmp_path / "g.png").exists()


def test_debug_shows_the_traceback(capsys, tmp_path):
    path = write_config(tmp_path)
    assert main(["--debug", "train", "--config", str(path), "--set", "epochs=0"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("Received: epochs=0")


def test_help_without_arguments(capsys):
    assert main([]) == 0
    assert "Usage: zspace" in capsys.readouterr().out


def test_corrupt_idx_header(capsys, tmp_path):
    # a dataset folder whose IDX header lies about its size
    folder = tmp_path / "lying"
    folder.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (folder / stem).write_bytes(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + np.zeros(3, np.uint8).tobytes())
    path = write_config(tmp_path, dataset=f"idx:{folder}")
    assert "header declares shape (100,)" in one_error_line(capsys, ["train", "--config", str(path)])
