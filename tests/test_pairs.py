"""Input/target pairs: `zspace prepare pairs`, task = "pairs", and the inputs seen by encode / generate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_model_config
from zspace.cli import main
from zspace.config import RunConfig, TrainConfig
from zspace.data import Dataset, check_task_data, load_dataset, read_cache
from zspace.data.prepare import PrepareConfig, load_image, prepare_pairs
from zspace.errors import DataError
from zspace.training.batches import EpochBatches

N_PAIRS = 60
CONFIG = PrepareConfig(size=8, workers=1, max_bad_fraction=0.5)


def _png(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_pairs(root, n=N_PAIRS):
    """Inputs 12x16 RGB (other sizes than the targets), targets 8x8 grey: the target is not a
    function of the input that any built-in task computes."""
    rng = np.random.default_rng(0)
    for i in range(n):
        _png(root / "input" / f"{i:03d}.png", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        _png(root / "target" / f"{i:03d}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    return root


@pytest.fixture(scope="module")
def pairs_cache(tmp_path_factory):
    root = make_pairs(tmp_path_factory.mktemp("pairs") / "src")
    result = prepare_pairs(root, root.parent / "cache", CONFIG)
    return root, result.folder


def test_each_pair_is_stored_as_its_input_and_its_target_cropped_and_resized_alike(pairs_cache):
    root, folder = pairs_cache
    cache = read_cache(folder)
    assert cache.is_pairs and len(cache.files) == N_PAIRS and cache.images.shape == (N_PAIRS, 8, 8, 6)
    inputs, targets = cache.images.channel_view(0, 3), cache.images.channel_view(3, 6)
    for i, name in enumerate(cache.files[:5]):
        for view, folder_name in ((inputs, "input"), (targets, "target")):
            expected, _ = load_image(str(root / folder_name / name), 8, None, 10**7)  # as `prepare images`
            np.testing.assert_array_equal(view.uint8([i])[0], expected)
    assert inputs.select([3, 1]).shape == (2, 8, 8, 3)  # a view of a view keeps its channels
    np.testing.assert_array_equal(inputs.select([3, 1])[:], inputs[[3, 1]])


def test_a_pairs_cache_loads_as_inputs_with_aligned_targets(pairs_cache):
    _, folder = pairs_cache
    data = load_dataset(f"cache:{folder}")
    cache = read_cache(folder)
    assert data.is_pairs and data.x_train.shape == data.t_train.shape and data.x_test.shape == data.t_test.shape
    both = cache.images[:]
    train = cache.split == 0
    np.testing.assert_array_equal(data.x_train[:], both[train][..., :3])
    np.testing.assert_array_equal(data.t_train[:], both[train][..., 3:])


def test_names_missing_on_either_side_are_one_line_naming_a_few(tmp_path):
    root = make_pairs(tmp_path / "src", n=8)
    for i in range(5):
        (root / "target" / f"{i:03d}.png").unlink()
    _png(root / "target" / "extra.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError) as error:
        prepare_pairs(root, tmp_path / "cache", CONFIG)
    message = str(error.value)
    assert "\n" not in message
    assert "5 file(s) of input/ are missing from target/ (000.png, 001.png, 002.png and 2 more)" in message
    assert "1 file(s) of target/ are missing from input/ (extra.png)" in message
    assert not (tmp_path / "cache").exists()  # nothing written


def test_a_pair_with_a_bad_half_is_skipped_and_listed_by_that_file(tmp_path):
    root = make_pairs(tmp_path / "src", n=20)
    (root / "target" / "004.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "input" / "007.png").write_bytes(b"")
    result = prepare_pairs(root, tmp_path / "cache", CONFIG)
    assert result.n_images == 18
    bad = dict(result.bad)
    assert bad[str(root / "target" / "004.png")].startswith("target of a pair: ")
    assert bad[str(root / "input" / "007.png")] == "input of a pair: empty file (0 bytes)"
    assert "004.png" not in set(read_cache(tmp_path / "cache").files)


def test_a_manifest_that_lies_about_pairs_is_refused(pairs_cache, tmp_path):
    _, folder = pairs_cache
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for value, message in ((False, r"holds \(\d+, 8, 8, 6\).*says \(\d+, 8, 8, 3\)"), ("yes", "'pairs' is not true")):
        (copy / "manifest.json").write_text(json.dumps({**manifest, "pairs": value}))
        with pytest.raises(DataError, match=message):
            read_cache(copy)


def test_batches_of_pairs_are_inputs_and_their_own_targets():
    inputs = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    batches = EpochBatches(inputs, 4, seed=0, targets=100 + inputs)
    x, y = batches[1]
    np.testing.assert_array_equal(y, 100 + x)
    assert not np.array_equal(x, inputs[4:8])  # shuffled, and still paired


def test_task_and_dataset_must_agree():
    x = np.zeros((4, 8, 8, 3), np.float32)
    with pytest.raises(DataError, match='task` = "pairs" needs a dataset of input/target pairs'):
        check_task_data(Dataset("single", "test", x, None), "pairs")
    with pytest.raises(DataError, match='holds input/target pairs; set task = "pairs"'):
        check_task_data(Dataset("pairs", "test", x, None, t_train=x), "reconstruct")
    with pytest.raises(DataError, match="targets must match the inputs"):
        Dataset("pairs", "test", x, None, t_train=x[:3])


def _pairs_config(tmp_path, dataset: str = "digits", **train) -> RunConfig:
    settings = dict(dataset=dataset, task="pairs", epochs=1, batch_size=16, run_dir=str(tmp_path / "run"), verbose=0)
    return RunConfig(tiny_model_config(input_shape=(8, 8, 3), kind="ae"), TrainConfig(**{**settings, **train}))


def test_in_memory_pairs_train_input_to_target(tmp_path):
    """Python API: a Dataset with targets; the model must learn the pairing, not to copy its input."""
    from zspace.training import train

    rng = np.random.default_rng(0)
    x = rng.random((256, 8, 8, 3)).astype(np.float32)
    targets = np.broadcast_to(x.mean(axis=(1, 2, 3), keepdims=True), x.shape).astype(np.float32)  # flat images
    config = _pairs_config(tmp_path, epochs=8, learning_rate=0.01)
    result = train(config, dataset=Dataset("flat", "test", x, None, t_train=targets))
    out = result.model.reconstruct(x[:32])
    to_target = np.abs(out - targets[:32]).mean()
    to_input = np.abs(out - x[:32]).mean()
    assert to_target < 0.5 * to_input  # it learned input -> target


def test_cli_prepare_pairs_train_encode_and_reconstruct(pairs_cache, tmp_path, capsys):
    root, _ = pairs_cache
    out = tmp_path / "cache"
    assert main(["prepare", "pairs", "--src", str(root), "--out", str(out), "--size", "8", "--workers", "1"]) == 0
    assert f"wrote {N_PAIRS} input/target pairs" in capsys.readouterr().out
    config = tmp_path / "pairs.toml"
    config.write_text(_pairs_config(tmp_path, dataset=f"cache:{out}").to_toml())
    assert main(["train", "--config", str(config)]) == 0, capsys.readouterr().err

    from zspace.analysis import encode_run_images
    from zspace.generation import reconstruction_grid
    from zspace.rundir import Run

    run = Run.open(tmp_path / "run")
    data = load_dataset(f"cache:{out}")
    codes = encode_run_images(run, "validation").codes["z"]
    np.testing.assert_allclose(codes, run.model.encode(data.x_test[:])["z"], atol=1e-5)  # the inputs, encoded
    grid = reconstruction_grid(run, n=4)
    assert grid.reference_rows == (0, 2)  # a sharpening series leaves inputs and targets as they are
    grid = grid.images
    inputs, targets = data.x_test[:4], data.t_test[:4]
    np.testing.assert_array_equal(grid[0:4], inputs)                          # row 1: inputs
    np.testing.assert_allclose(grid[4:8], run.model.reconstruct(inputs), atol=1e-5)  # row 2: outputs
    np.testing.assert_array_equal(grid[8:12], targets)                        # row 3: targets
    assert main(["generate", str(tmp_path / "run"), "--reconstruct", "--n", "4", "--out", str(tmp_path / "r.png")]) == 0


def test_cli_prepare_pairs_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "src" / "input").mkdir(parents=True)
    assert main(["prepare", "pairs", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no target/ folder" in err


def test_evaluate_scores_a_pairs_run_against_its_targets(tmp_path):
    """The reconstruction numbers of a pairs run compare the outputs with the targets, not the inputs."""
    from zspace.evaluation.evaluate import EvaluationConfig, evaluate, reconstruction_quality
    from zspace.rundir import Run
    from zspace.training import train

    rng = np.random.default_rng(1)
    x, x_test = (0.2 * rng.random((n, 8, 8, 3)).astype(np.float32) for n in (128, 100))  # dark inputs
    invert = lambda images: 1 - images  # noqa: E731  (bright targets: outputs near them score far from the inputs)
    data = Dataset("inverted", "test", x, None, x_test, None, t_train=invert(x), t_test=invert(x_test))
    config = _pairs_config(tmp_path, epochs=3, learning_rate=0.01)
    model = train(config, dataset=data).model
    run = Run.open(tmp_path / "run", data)
    result = evaluate(run, EvaluationConfig(samplers=(), features=(), hole_samples=100, progress=False))
    outputs = model.reconstruct(x_test)
    expected = reconstruction_quality(invert(x_test), outputs, "bce")
    np.testing.assert_allclose(result.reconstruction.loss_per_image, expected.loss_per_image, rtol=1e-4)
    against_inputs = reconstruction_quality(x_test, outputs, "bce").loss_per_image
    assert against_inputs > 1.5 * expected.loss_per_image  # the test can tell the two apart
