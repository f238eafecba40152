"""`zspace analyze --tensorboard`: Embedding Projector data, read back with TensorBoard's own projector plugin.

The plugin (tensorboard.plugins.projector.projector_plugin) is the code `tensorboard --logdir` serves the
Projector tab with; here it is driven offline through its WSGI routes (/runs, /info, /tensor, /metadata,
/sprite_image) on real files.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image

from zspace.analysis import analyze_codes, analyze_run
from zspace.analysis.projector import (MAX_SPRITE_PX, MIN_THUMBNAIL_PX, ProjectorData, as_rgb, check_projector_z_dim,
                                       escape_tsv_field, metadata_columns, metadata_tsv, point_images,
                                       projector_config_path, projector_data, sprite_image, tensor_tsv,
                                       tensorboard_dir, thumbnail_side, write_projector, write_run_projector)
from zspace.cli import main
from zspace.config import MAX_PROJECTOR_POINTS, AnalysisConfig
from zspace.data import load_dataset
from zspace.errors import ConfigError, RunError
from zspace.rundir import Run

from conftest import train_ae_and_vae

FAST = AnalysisConfig(tsne_sizes=(), k_min=2, k_max=4, kmeans_seeds=(0,), pca_subset=200, tensorboard=True,
                      projector_points=400)
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The tiny digits AE and VAE (one epoch each)."""
    return train_ae_and_vae(tmp_path_factory.mktemp("projector"), epochs=1)


# --- TensorBoard's own reader ------------------------------------------------------------------------

class Projector:
    """TensorBoard's projector plugin on a log directory, as `tensorboard --logdir` builds it."""

    def __init__(self, logdir: Path):
        from tensorboard.backend.event_processing import data_provider
        from tensorboard.backend.event_processing import plugin_event_multiplexer as multiplexer_module
        from tensorboard.plugins import base_plugin
        from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin

        multiplexer = multiplexer_module.EventMultiplexer()
        multiplexer.AddRunsFromDirectory(str(logdir))
        multiplexer.Reload()
        provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
        self.apps = ProjectorPlugin(base_plugin.TBContext(logdir=str(logdir), data_provider=provider)).get_plugin_apps()

    def get(self, route: str, **params) -> bytes:
        from werkzeug.test import Client

        response = Client(self.apps[route]).get(f"{route}?{urlencode(params)}")
        assert response.status_code == 200, (route, params, response.get_data()[:300])
        return response.get_data()

    def runs(self) -> list[str]:
        import json

        return json.loads(self.get("/runs"))

    def config(self):
        from google.protobuf import json_format
        from tensorboard.plugins.projector import ProjectorConfig

        return json_format.Parse(self.get("/info", run="."), ProjectorConfig())

    def tensor(self, name: str, shape) -> np.ndarray:
        return np.frombuffer(self.get("/tensor", run=".", name=name), dtype=np.float32).reshape(shape)

    def metadata(self, name: str) -> tuple[list[str] | None, list[list[str]]]:
        """(header or None, rows) parsed as the projector's frontend does: blank lines skipped, the first
        line a header when it holds a tab."""
        lines = [line for line in self.get("/metadata", run=".", name=name).decode("utf-8").split("\n")
                 if line.strip()]
        header = lines[0].split("\t") if "\t" in lines[0] else None
        return header, [line.split("\t") for line in (lines[1:] if header else lines)]

    def sprite(self, name: str) -> Image.Image:
        return Image.open(io.BytesIO(self.get("/sprite_image", run=".", name=name)))


def saved_config(run_root: Path):
    from tensorboard.plugins.projector import ProjectorConfig

    return text_format.Parse(projector_config_path(run_root).read_text(), ProjectorConfig())


def columns_of(header: list[str], rows: list[list[str]]) -> dict[str, list[str]]:
    return {name: [row[i] for row in rows] for i, name in enumerate(header)}


# --- a real run, end to end --------------------------------------------------------------------------

def test_tensorboards_projector_serves_the_analysis_points_labels_and_thumbnails(runs):
    _, vae = runs
    analysis = analyze_run(vae, FAST)
    saved = Run.open(vae).load_analysis()
    projector = Projector(tensorboard_dir(vae))
    assert projector.runs() == ["."]
    config = projector.config()
    assert config == saved_config(vae)  # the plugin's reading is the file's text proto
    assert [e.tensor_name for e in config.embeddings] == ["mu", "z"]

    header, rows = projector.metadata("z")
    assert header == ["point", "label", "class", "split"]
    meta = columns_of(header, rows)
    ids = np.array([int(p) for p in meta["point"]])
    n = FAST.projector_points
    assert len(ids) == n and len(set(ids)) == n and np.all(np.diff(ids) > 0) and ids.max() < analysis.n_points
    for embedding in config.embeddings:  # rows of the tensor = the analysis rows of the metadata's point ids
        assert list(embedding.tensor_shape) == [n, analysis.z_dim]
        served = projector.tensor(embedding.tensor_name, (n, analysis.z_dim))
        np.testing.assert_array_equal(served, saved.arrays[embedding.tensor_name][ids])
    assert meta["label"] == [str(y) for y in saved.arrays["labels"][ids]]
    assert meta["class"] == [saved.label_names[y] for y in saved.arrays["labels"][ids]]
    assert meta["split"] == [("train", "validation")[s] for s in saved.arrays["split"][ids]]

    side = config.embeddings[0].sprite.single_image_dim
    assert list(side) == [32, 32]  # 8x8 digits enlarged 4x
    sprite = projector.sprite("z")
    assert sprite.mode == "RGB" and sprite.size == (math.ceil(math.sqrt(n)) * 32,) * 2
    pixels = np.asarray(sprite)
    images = point_images(Run.open(vae).split, saved.arrays["split"], ids)
    per_row = math.ceil(math.sqrt(n))
    for i in (0, 1, per_row, n - 1):  # each cell is its point's grey image, as RGB, each pixel a 4x4 block
        r, c = divmod(i, per_row)
        cell = pixels[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32]
        grey = np.round(images[i, :, :, 0] * 255).astype(np.uint8)
        np.testing.assert_array_equal(cell, np.repeat(np.kron(grey, np.ones((4, 4), np.uint8))[..., None], 3, -1))
    assert not pixels[(n // per_row) * 32 + 32:].any()  # rows past the last thumbnail are black


def test_an_ae_has_one_tensor_z_and_all_points_under_the_limit(runs):
    ae, _ = runs
    analysis = analyze_run(ae, dataclasses.replace(FAST, projector_points=MAX_PROJECTOR_POINTS))
    projector = Projector(tensorboard_dir(ae))
    config = projector.config()
    assert [e.tensor_name for e in config.embeddings] == ["z"]
    assert list(config.embeddings[0].tensor_shape) == [analysis.n_points, analysis.z_dim]
    np.testing.assert_array_equal(projector.tensor("z", (analysis.n_points, analysis.z_dim)), analysis.arrays["z"])


def test_a_second_analysis_replaces_the_projector_data(runs):
    _, vae = runs
    analyze_run(vae, FAST)
    first = saved_config(vae).embeddings[0].tensor_path
    analyze_run(vae, dataclasses.replace(FAST, projector_points=100, seed=3))
    config = saved_config(vae)
    assert config.embeddings[0].tensor_path != first and list(config.embeddings[0].tensor_shape)[0] == 100
    assert [p.name for p in (tensorboard_dir(vae) / "projector").iterdir()] == [Path(config.embeddings[0].tensor_path).parent.name]
    header, rows = Projector(tensorboard_dir(vae)).metadata("mu")
    ids = [int(p) for p in columns_of(header, rows)["point"]]
    assert len(ids) == 100 and ids != list(range(100))


def test_hostile_class_and_attribute_names_keep_one_row_per_point(runs):
    _, vae = runs
    names = ("zero\tTAB", "one\nNEWLINE", "two\r\nCRLF", "", " ", "five", "six", "seven", "eight", "point")
    digits = dataclasses.replace(load_dataset("digits"), label_names=names)
    analyze_run(Run.open(vae, digits), dataclasses.replace(FAST, projector_points=300))
    header, rows = Projector(tensorboard_dir(vae)).metadata("z")
    assert header == ["point", "label", "class", "split"] and len(rows) == 300
    assert all(len(row) == 4 for row in rows)
    meta = columns_of(header, rows)
    shown = dict(zip(meta["label"], meta["class"]))
    assert shown["0"] == "zero\\tTAB" and shown["1"] == "one\\nNEWLINE" and shown["2"] == "two\\r\\nCRLF"
    assert shown["3"] == shown["4"] == "-"  # a blank field would read as a missing value


def test_the_python_api_writes_it_for_a_saved_analysis(runs):
    _, vae = runs
    analysis = analyze_run(vae, dataclasses.replace(FAST, tensorboard=False))
    config_path = write_run_projector(vae, limit=50, seed=1)
    assert config_path == projector_config_path(vae)
    projector = Projector(tensorboard_dir(vae))
    header, rows = projector.metadata("z")
    ids = [int(p) for p in columns_of(header, rows)["point"]]
    np.testing.assert_array_equal(projector.tensor("z", (50, analysis.z_dim)), analysis.arrays["z"][ids])
    other = dataclasses.replace(load_dataset("digits"), name="digits-copy")
    with pytest.raises(RunError, match="dataset"):
        write_run_projector(Run.open(vae, other))


def test_the_cli_flag_writes_it_and_says_how_to_open_it(runs, capsys):
    ae, _ = runs
    projector_config_path(ae).unlink(missing_ok=True)
    code = main(["analyze", str(ae), "--tensorboard", "--set", "tsne_sizes=[]", "--set", "k_max=4",
                 "--set", "kmeans_seeds=[0]", "--set", "projector_points=64"])
    out = capsys.readouterr().out
    assert code == 0 and f"tensorboard --logdir {tensorboard_dir(ae)}" in out
    assert list(saved_config(ae).embeddings[0].tensor_shape) == [64, 3]


def test_the_flag_and_a_contrary_set_are_one_error_line_and_nothing_written(runs, capsys):
    ae, _ = runs
    before = projector_config_path(ae).read_bytes() if projector_config_path(ae).exists() else None
    code = main(["analyze", str(ae), "--tensorboard", "--set", "tensorboard=false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--tensorboard" in err[0] and "tensorboard=False" in err[0]
    after = projector_config_path(ae).read_bytes() if projector_config_path(ae).exists() else None
    assert before == after


def test_a_symlinked_log_directory_is_refused_and_not_written_through(runs, tmp_path):
    ae, _ = runs
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    logs = tensorboard_dir(ae)
    moved = ae / "tensorboard-moved"
    if logs.exists():
        logs.rename(moved)
    logs.symlink_to(outside)
    analysis_before = Run.open(ae).analysis_json.stat().st_mtime_ns if Run.open(ae).has_analysis() else None
    try:
        with pytest.raises(RunError, match="symlink"):
            analyze_run(ae, FAST)
        assert list(outside.iterdir()) == []
        # refused before the analysis: the run's previous one is untouched
        assert (Run.open(ae).analysis_json.stat().st_mtime_ns if Run.open(ae).has_analysis() else None) == analysis_before
    finally:
        logs.unlink()
        if moved.exists():
            moved.rename(logs)


# --- atomic writes -----------------------------------------------------------------------------------

def small_data(n: int = 20, value: float = 0.5) -> ProjectorData:
    rng = np.random.default_rng(n)
    z = rng.normal(size=(n, 3)).astype(np.float32)
    return ProjectorData(np.arange(n), {"z": z}, metadata_tsv([("point", [str(i) for i in range(n)]),
                                                               ("split", ["train"] * n)]),
                         sprite_image(np.full((n, 8, 8, 1), value, np.float32), 32), 32)


def test_a_write_killed_midway_leaves_the_previous_projector_whole(tmp_path):
    logs = tmp_path / "tensorboard"
    write_projector(logs, small_data(20))
    before = Projector(logs).tensor("z", (20, 3))
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        import zspace.analysis.projector as projector
        def killed(path, sprite):
            os.kill(os.getpid(), signal.SIGKILL)  # after the tensors and metadata, before the commit
        projector._write_sprite = killed
        data = projector.ProjectorData(np.arange(30), {{"z": np.ones((30, 3), np.float32)}}, "0\\n" * 30,
                                       np.zeros((192, 192, 3), np.uint8), 32)
        projector.write_projector({str(logs)!r}, data)
    """)
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(SRC)})
    assert result.returncode == -9
    leftovers = [p.name for p in (logs / "projector").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers  # the killed writer's half folder ...
    projector = Projector(logs)  # ... which TensorBoard does not show: it still serves the previous data
    assert list(projector.config().embeddings[0].tensor_shape) == [20, 3]
    np.testing.assert_array_equal(projector.tensor("z", (20, 3)), before)
    write_projector(logs, small_data(10))
    assert len(list((logs / "projector").iterdir())) == 1  # the next write clears the leftovers


def test_a_failed_write_removes_its_folder_and_keeps_the_previous(tmp_path, monkeypatch):
    import zspace.analysis.projector as projector_module

    logs = tmp_path / "tensorboard"
    write_projector(logs, small_data(20))
    config_before = (logs / "projector_config.pbtxt").read_text()
    folders_before = sorted(p.name for p in (logs / "projector").iterdir())

    def disk_full(path, sprite):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(projector_module, "_write_sprite", disk_full)
    with pytest.raises(Exception, match="disk full.*previous projector data is intact"):
        write_projector(logs, small_data(10))
    assert (logs / "projector_config.pbtxt").read_text() == config_before
    assert sorted(p.name for p in (logs / "projector").iterdir()) == folders_before


# --- pure pieces -------------------------------------------------------------------------------------

def test_metadata_header_only_with_more_than_one_column():
    assert metadata_tsv([("label", ["a", "b"])]) == "a\nb\n"
    assert metadata_tsv([("point", ["0", "1"]), ("class", ["a", "b"])]) == "point\tclass\n0\ta\n1\tb\n"
    assert metadata_tsv([("x", ["1"]), ("x", ["2"])]).splitlines()[0] == "x\tx (2)"  # keyed by name: kept apart
    with pytest.raises(ValueError):
        metadata_tsv([("a", ["1"]), ("b", ["1", "2"])])


@pytest.mark.parametrize("text, shown", [("a\tb", "a\\tb"), ("a\nb", "a\\nb"), ("a\r", "a\\r"), ("", "-"),
                                         ("\t", "\\t"), ("  ", "-"), ("T-shirt/top", "T-shirt/top")])
def test_a_field_never_splits_a_row_or_a_column(text, shown):
    assert escape_tsv_field(text) == shown
    assert "\t" not in shown and "\n" not in shown and "\r" not in shown and shown.strip()


def test_a_single_column_of_hostile_values_keeps_its_rows():
    text = metadata_tsv([("class", ["a\tb", "", "c\nd"])])
    lines = [line for line in text.split("\n") if line.strip()]
    assert len(lines) == 3 and "\t" not in lines[0]  # no tab in the first line: not taken for a header


def fake_analysis(n: int = 50, z_dim: int = 3, attributes: bool = False, **codes_changes):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, z_dim)).astype(np.float32)
    codes = {"z": z, "mu": z * 0.5, "logvar": np.zeros_like(z), **codes_changes}
    attrs = rng.choice(np.array([-1, 1], np.int8), size=(n, 2)) if attributes else None
    analysis = analyze_codes(codes, AnalysisConfig(tsne_sizes=(), k_min=2, k_max=2, kmeans_seeds=(0,), pca_subset=n),
                             labels=rng.integers(0, 3, n), attributes=attrs,
                             attribute_names=("Smiling\tor not", "point") if attributes else (),
                             label_names=("a", "b", "c"))
    return dataclasses.replace(analysis, arrays={**analysis.arrays, "split": (np.arange(n) >= 40).astype(np.int8)})


def test_metadata_columns_name_every_point_and_its_attributes():
    analysis = fake_analysis(attributes=True)
    ids = np.array([0, 7, 45])
    columns = metadata_columns(analysis, ids)
    assert [name for name, _ in columns] == ["point", "label", "class", "split", "Smiling\tor not", "point"]
    values = [v for _, v in columns]
    assert values[0] == ["0", "7", "45"] and values[3] == ["train", "train", "validation"]
    assert values[2] == [("a", "b", "c")[y] for y in analysis.arrays["labels"][ids]]
    assert values[4] == [str(v) for v in analysis.arrays["attributes"][ids, 0]]
    assert values[5] == [str(v) for v in analysis.arrays["attributes"][ids, 1]]  # the attribute, not the id
    header = metadata_tsv(metadata_columns(analysis, ids)).splitlines()[0].split("\t")
    assert header == ["point", "label", "class", "split", "Smiling\\tor not", "point (2)"]


def test_the_subset_is_bounded_seeded_and_sorted():
    analysis = fake_analysis(n=50)

    def ids(limit, seed):
        data = projector_data(analysis, lambda idx: np.zeros((len(idx), 8, 8, 1), np.float32), limit, seed)
        assert all(t.shape == (len(data.indices), 3) for t in data.tensors.values())
        return data.indices.tolist()

    assert ids(50, 0) == ids(500, 0) == list(range(50))
    assert len(ids(20, 0)) == 20 and ids(20, 0) == sorted(set(ids(20, 0)))
    assert ids(20, 0) == ids(20, 0) != ids(20, 1)
    with pytest.raises(ConfigError, match="projector_points"):
        AnalysisConfig(projector_points=MAX_PROJECTOR_POINTS + 1)
    with pytest.raises(ConfigError, match="projector_points"):
        AnalysisConfig(projector_points=0)


def test_non_finite_points_and_one_dimensional_ones_are_refused():
    nan = np.full((50, 3), np.nan, np.float32)
    with pytest.raises(RunError, match="non-finite"):
        projector_data(fake_analysis(mu=nan), lambda idx: np.zeros((len(idx), 8, 8, 1), np.float32))
    with pytest.raises(ConfigError, match="z_dim is 1"):
        check_projector_z_dim(1)
    check_projector_z_dim(2)


@pytest.mark.parametrize("n, h, w, side", [(1797, 8, 8, 32), (10_000, 28, 28, 28), (10_000, 96, 96, 81),
                                           (MAX_PROJECTOR_POINTS, 28, 28, 28), (MAX_PROJECTOR_POINTS, 64, 64, 36), (4, 20, 10, 40), (1, 200, 200, 200)])
def test_thumbnails_fit_the_sprite_limit(n, h, w, side):
    assert thumbnail_side(n, h, w) == side
    assert math.ceil(math.sqrt(n)) * side <= MAX_SPRITE_PX
    assert side >= min(MIN_THUMBNAIL_PX, MAX_SPRITE_PX // math.ceil(math.sqrt(n)))


def test_sprite_geometry_grey_to_rgb_and_non_square_images():
    rng = np.random.default_rng(0)
    grey = rng.random((5, 4, 2, 1)).astype(np.float32)  # 4 tall, 2 wide
    sprite = sprite_image(grey, 8)
    assert sprite.shape == (3 * 8, 3 * 8, 3) and sprite.dtype == np.uint8
    cell = sprite[8:16, 8:16]  # image 4: row 1, column 1
    assert (cell[..., 0] == cell[..., 1]).all() and (cell[..., 1] == cell[..., 2]).all()
    expected = np.round(grey[4, :, :, 0] * 255).astype(np.uint8)
    np.testing.assert_array_equal(cell[:, 2:6, 0], np.kron(expected, np.ones((2, 2), np.uint8)))  # centred, 2x
    assert not cell[:, :2].any() and not cell[:, 6:].any()  # black padding left and right
    assert not sprite[16:, 8:].any()  # cells 7 and 8 do not exist
    colour = rng.random((2, 3, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(as_rgb(colour), np.round(colour * 255).astype(np.uint8))
    assert as_rgb(rng.random((1, 2, 2, 4))).shape == (1, 2, 2, 3)


def test_tensor_text_gives_every_float32_back():
    points = np.random.default_rng(0).normal(size=(100, 7)).astype(np.float32) * np.float32(1e3)
    points[0, 0], points[0, 1] = np.finfo(np.float32).tiny, np.finfo(np.float32).max
    read = np.array([[float(v) for v in line.split("\t")] for line in tensor_tsv(points).splitlines()], np.float32)
    np.testing.assert_array_equal(read, points)
