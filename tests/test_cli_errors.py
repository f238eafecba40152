"""Every command, given bad input, exits 2 with one clear line on stderr and writes nothing half-done."""

import gzip
import os
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
    for limits in (["inf"], ["1", "nan"], ["0"], ["1e308"]):  # 1e308: numpy's uniform overflows
        args = [arg for r in limits for arg in ("--limit", r)]
        assert "--limit must be positive finite numbers" in one_error_line(
            capsys, ["generate", str(run_dir), "--out", str(out), "--dist", "uniform", *args])
    assert "--sharpen must be a finite number >= 0. Received: -5.0" in one_error_line(
        capsys, ["generate", str(run_dir), "--out", str(out), "--sharpen", "-5"])
    assert "--components must be in [1, 1000]. Received: 5000" in one_error_line(
        capsys, ["generate", str(run_dir), "--out", str(out), "--dist", "gmm", "--components", "5000"])
    assert not out.exists()
    from test_data import fake_idx_folder

    other = tmp_path / "five-by-five"
    other.mkdir()
    fake_idx_folder(other)
    assert "has images of shape (5, 5, 1) but the model's input_shape is (8, 8, 1)" in one_error_line(
        capsys, ["analyze", str(run_dir), "--data", f"idx:{other}"])
    assert "`perplexity` must be at least 1" in one_error_line(capsys, ["analyze", str(run_dir), "--set", "perplexity=0"])
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


# --- issue 12, item 17: arguments that crashed, or failed only after the work ----------------------

def snapshot(folder):
    """{relative path: (size, mtime_ns)} of everything under ``folder``: equal snapshots, nothing written."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("setting, message", [
    ("seed=4294967296", "`seed` must be an integer in [0, 4294967295]"),
    ("seed=99999999999", "`seed` must be an integer in [0, 4294967295]"),
    ("seed=-1", "`seed` must be an integer in [0, 4294967295]"),
    ("epochs=99999999999", "`epochs` must be at most 10,000"),
    ("epochs=9223372036854775808", "`epochs` must be at most 10,000"),
    ("batch_size=99999999999", "`batch_size` must be at most 65,536"),
    ("epsilon_scale=1e39", "`epsilon_scale` must be in [0, 1000]"),
    ('run_dir="runs/nul\\u0000byte"', "`run_dir` must be a string without NUL characters"),  # os calls raise
])
def test_out_of_range_train_settings_write_nothing(capsys, tmp_path, setting, message):
    path = write_config(tmp_path)
    line = one_error_line(capsys, ["train", "--config", str(path), "--set", setting])
    assert message in line and f"Received: {setting.partition('=')[0]}=" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content", [
    bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)),  # random bytes
    b"\xff\xfe[model]\nz_dim = 4\n",  # not UTF-8
    b"[model]\nz_dim = 4\x00\x00\n",  # NUL bytes
])
@pytest.mark.parametrize("command", ["train", "analyze", "evaluate"])
def test_binary_config_files_are_one_line(capsys, run_dir, tmp_path, content, command):
    path = tmp_path / "binary.toml"
    path.write_bytes(content)
    argv = [command, "--config", str(path)] if command == "train" else [command, str(run_dir), "--config", str(path)]
    before = snapshot(run_dir)
    line = one_error_line(capsys, argv)
    assert str(path) in line and ("not UTF-8 text" in line or "not valid TOML" in line)
    assert snapshot(run_dir) == before


def test_oversized_config_file_is_refused_before_parsing(capsys, tmp_path):
    path = tmp_path / "huge.toml"
    path.write_text("[model]\n" + "# padding\n" * 110_000)  # valid TOML, 1.1 MB
    assert "larger than 1 MiB; expected a TOML config file" in one_error_line(capsys, ["train", "-c", str(path)])


@pytest.mark.parametrize("settings, message", [
    (["kmeans_seeds=[-1]"], "`kmeans_seeds` must be integers in [0, 4294967295]"),
    (["kmeans_seeds=[0, 4294967296]"], "`kmeans_seeds` must be integers in [0, 4294967295]"),
    (["seed=4294967296"], "`seed` must be an integer in [0, 4294967295]"),
    (["batch_size=99999999999"], "`batch_size` must be at most 65,536"),
    (["axis_bins=99999999999"], "`axis_bins` must be at most 10,000"),
    (["k_max=99999999999"], "`k_max` must be at most 10,000"),
    (["radius_range=[0, 99999999999]"], "`radius_range` must be a range of at most 10,000 bins"),
    (["radius_range=false", "radius_bin_width=1e-300"], "`radius_bin_width` must be at least 0.001"),
    (["perplexity=1e-300"], "`perplexity` must be at least 1"),
])
def test_out_of_range_analysis_settings(capsys, run_dir, settings, message):
    before = snapshot(run_dir)
    args = [arg for s in settings for arg in ("--set", s)]
    assert message in one_error_line(capsys, ["analyze", str(run_dir), *args])
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("setting, message", [
    ("seed=99999999999", "`seed` must be an integer in [0, 4294967295]"),
    ('features_dir="nul\\u0000byte"', "`features_dir` must be a string without NUL characters"),
])
def test_bad_evaluation_settings(capsys, run_dir, setting, message):
    before = snapshot(run_dir)
    assert message in one_error_line(capsys, ["evaluate", str(run_dir), "--set", setting])
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("args, message", [
    (["--seed", "4294967296"], "Invalid value for '--seed'"),
    (["--n", "99999999999"], "--n must give at most 10,000 images per grid"),
    (["--dist", "uniform", "--n", "2000", *["--limit", "1", "--limit", "2"] * 3], "= 12,000 images"),
    (["--cols", "99999999999"], "--cols must be at most 10,000"),
    (["--attribute", "Smiling", "--strength", "nan"], "--strength must be finite numbers"),
    (["--dist", "gmm", "--components", "99999999999999999999"], "--components must be in [1, 1000]"),
])
def test_bad_generate_sizes(capsys, run_dir, tmp_path, args, message):
    out = tmp_path / "g.png"
    assert message in one_error_line(capsys, ["generate", str(run_dir), "--out", str(out), *args])
    assert not out.exists()


@pytest.fixture
def no_work(monkeypatch):
    """Makes loading any run's model fail the test: an --out check must come before the work."""
    from zspace.rundir import Run

    def refuse(self):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(Run, "model", property(refuse))


@pytest.mark.parametrize("command, name, message", [
    ("encode", "z.txt", "encoding output must end in .npz. Received:"),
    ("generate", "g.txt", "--out must name a .png file. Received:"),
    ("generate", "g", "--out must name a .png file. Received:"),
    ("report", "r.txt", "--out must name an .html file. Received:"),
])
def test_wrong_out_suffix_is_refused_before_the_work(capsys, run_dir, tmp_path, no_work, command, name, message):
    out = tmp_path / name
    assert message in one_error_line(capsys, [command, str(run_dir), "--out", str(out)])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command, name", [("encode", "z.npz"), ("generate", "g.png"), ("report", "r.html"),
                                           ("compare", "cmp")])
def test_out_below_a_file_is_refused_before_the_work(capsys, run_dir, tmp_path, no_work, command, name):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / name
    assert f"--out {out}: {blocker} is not a folder" in one_error_line(capsys, [command, str(run_dir), "--out", str(out)])
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


@pytest.mark.parametrize("command, name", [("encode", "z.npz"), ("generate", "g.png"), ("report", "r.html")])
def test_out_naming_a_folder_is_refused_before_the_work(capsys, run_dir, tmp_path, no_work, command, name):
    out = tmp_path / name
    out.mkdir()
    assert f"--out {out}: is a folder; expected a file name" in one_error_line(
        capsys, [command, str(run_dir), "--out", str(out)])


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder_is_refused_before_the_work(capsys, run_dir, tmp_path, no_work):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert "is not writable" in one_error_line(capsys, ["encode", str(run_dir), "--out", str(locked / "z.npz")])
    finally:
        locked.chmod(0o755)


def test_a_fresh_process_prints_one_error_line_without_tensorflows_startup_lines(tmp_path):
    """TensorFlow's C++ runtime logs two lines on import whatever TF_CPP_MIN_LOG_LEVEL says; the CLI
    drops exactly those, so a shell user sees the one error line (and other stderr output is kept)."""
    import os
    import subprocess
    import sys

    path = write_config(tmp_path)
    result = subprocess.run([sys.executable, "-m", "zspace.cli", "train", "--config", str(path), "--set",
                             "z_dim=1000000000"], capture_output=True, text=True, timeout=300,
                            env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zspace: error: `z_dim`"), result.stderr


def test_an_output_name_longer_than_the_file_system_allows_is_one_line(capsys, run_dir, tmp_path):
    line = one_error_line(capsys, ["generate", str(run_dir), "--out", str(tmp_path / ("y" * 300 + ".png"))])
    assert "a file name longer than this file system allows" in line
