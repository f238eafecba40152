"""Preparing a CelebA-like folder (made here) into a cache, streaming training from it, tasks."""

import gc
import json
import os

import numpy as np
import pytest
from PIL import Image

from zspace.cli import main
from zspace.data import load_dataset, read_cache
from zspace.data.prepare import PrepareConfig, prepare_celeba, prepare_images
from zspace.data.tasks import corrupt, task_transform, to_grayscale
from zspace.errors import DataError
from zspace.training import EpochBatches

N_GOOD = 30
ATTRIBUTES = ["Smiling", "Male", "Young"]


def make_celeba(root, n_good=N_GOOD):
    """A CelebA-like folder: 178x218 JPEGs, annotation files, and one bad file of every kind."""
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"{i:06d}.jpg" for i in range(1, n_good + 1)]
    for i, name in enumerate(names):
        # smooth random pictures (JPEG-friendly), each different
        base = rng.integers(0, 256, (14, 11, 3)).astype(np.uint8)
        Image.fromarray(base).resize((178, 218), Image.Resampling.BILINEAR).save(images / name, quality=95)
    good_bytes = (images / names[0]).read_bytes()
    bad = {
        "900001.jpg": good_bytes[: len(good_bytes) // 2],            # truncated
        "900002.jpg": b"",                                            # zero bytes
        "900003.jpg": b"this is not an image at all\n" * 10,          # not an image
        # a valid header followed by garbage where the compressed data should be
        "900004.jpg": good_bytes[:1000] + bytes(rng.integers(0, 256, 3000, dtype=np.uint8)) + good_bytes[4000:],
    }
    for name, data in bad.items():
        (images / name).write_bytes(data)
    Image.new("L", (3000, 3000)).save(images / "900005.png")        # too many pixels for the test's limit
    all_names = names + sorted(bad) + ["900005.png"]
    attrs = {n: rng.choice([-1, 1], len(ATTRIBUTES)) for n in all_names}
    with open(root / "list_attr_celeba.txt", "w") as f:
        f.write(f"{len(all_names)}\n{' '.join(ATTRIBUTES)}\n")
        for n in all_names:
            f.write(f"{n} {' '.join(f'{v:2d}' for v in attrs[n])}\n")
    split = {n: (0 if i < 20 else 1 if i < 25 else 2) for i, n in enumerate(all_names)}
    (root / "list_eval_partition.txt").write_text("".join(f"{n} {split[n]}\n" for n in all_names))
    return names, attrs, split


CONFIG = PrepareConfig(size=32, shard_size=8, workers=1, max_bad_fraction=0.5, max_pixels=5_000_000)


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    root = tmp_path_factory.mktemp("celeba")
    names, attrs, split = make_celeba(root)
    result = prepare_celeba(root, root / "cache", CONFIG)
    return root, names, attrs, split, result


def test_cache_shape_values_split_and_attributes(celeba):
    root, names, attrs, split, result = celeba
    assert result.n_images == N_GOOD
    cache = read_cache(root / "cache")
    assert cache.images.shape == (N_GOOD, 32, 32, 3)
    assert cache.files.tolist() == names
    assert cache.split.tolist() == [split[n] for n in names]
    assert cache.attribute_names == ATTRIBUTES
    np.testing.assert_array_equal(cache.attributes, np.stack([attrs[n] for n in names]))
    # values: the centre square (0, 20, 178, 198) resized with area averaging, as PIL does it
    with Image.open(root / "img_align_celeba" / names[7]) as img:
        expected = np.asarray(img.convert("RGB").crop((0, 20, 178, 198)).resize((32, 32), Image.Resampling.BOX))
    np.testing.assert_array_equal(cache.images.uint8([7])[0], expected)
    np.testing.assert_allclose(cache.images[7], expected / 255.0, atol=1e-7)
    assert cache.manifest["split_counts"] == {"train": 20, "valid": 5, "test": 5}


def test_bad_files_are_reported_by_path_and_reason(celeba):
    root, *_ , result = celeba
    reasons = {os.path.basename(p): r for p, r in result.bad}
    assert set(reasons) == {"900001.jpg", "900002.jpg", "900003.jpg", "900004.jpg", "900005.png"}
    assert "truncated" in reasons["900001.jpg"]
    assert reasons["900002.jpg"] == "empty file (0 bytes)"
    assert "not an image" in reasons["900003.jpg"]
    assert "corrupt" in reasons["900004.jpg"]
    assert "decompression bomb" in reasons["900005.png"]
    report = (root / "cache" / "bad_files.tsv").read_text().splitlines()
    assert report[0] == "path\treason" and len(report) == 6
    assert all(str(root) in line for line in report[1:])


def test_the_users_files_are_untouched(tmp_path):
    make_celeba(tmp_path, n_good=6)
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")}
    prepare_celeba(tmp_path, tmp_path / "cache", PrepareConfig(size=16, workers=1, max_bad_fraction=1.0))
    after = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if "cache" not in p.parts}
    assert after == before


def test_too_many_bad_files_stop_with_a_clear_message(tmp_path):
    make_celeba(tmp_path, n_good=6)
    config = PrepareConfig(size=16, shard_size=4, workers=1, max_bad_fraction=0.2)
    with pytest.raises(DataError, match=r"bad .*> max_bad_fraction=0.2\); stopped. The list is in .*bad_files.tsv"):
        prepare_celeba(tmp_path, tmp_path / "cache", config)
    with pytest.raises(DataError, match="preparation has not finished"):
        read_cache(tmp_path / "cache")


def test_interrupted_preparation_resumes_with_the_finished_shards(tmp_path, monkeypatch):
    import zspace.data.prepare as prepare

    make_celeba(tmp_path)
    real_write = prepare._write_shard
    calls = []

    def crash_on_third(folder, name, images, meta):
        calls.append(name)
        if len(calls) == 3:
            # killed after the images file, before the metadata and the manifest entry
            with prepare.atomic_path(folder / f"{name}.images.npy") as tmp:
                np.save(tmp, images)
            raise KeyboardInterrupt
        real_write(folder, name, images, meta)

    monkeypatch.setattr(prepare, "_write_shard", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        prepare_celeba(tmp_path, tmp_path / "cache", CONFIG)
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert [s["name"] for s in manifest["shards"]] == ["shard-00000", "shard-00001"] and not manifest["complete"]
    monkeypatch.setattr(prepare, "_write_shard", real_write)
    result = prepare_celeba(tmp_path, tmp_path / "cache", CONFIG)
    assert (result.reused_shards, result.written_shards) == (2, 3)
    fresh = prepare_celeba(tmp_path, tmp_path / "fresh", CONFIG)
    np.testing.assert_array_equal(read_cache(tmp_path / "cache").images[:], read_cache(tmp_path / "fresh").images[:])
    assert fresh.n_images == result.n_images == N_GOOD
    # a third run has nothing left to do
    assert prepare_celeba(tmp_path, tmp_path / "cache", CONFIG).written_shards == 0


def test_a_shard_without_manifest_entry_is_redone(tmp_path):
    make_celeba(tmp_path, n_good=6)
    config = PrepareConfig(size=16, shard_size=4, workers=1, max_bad_fraction=1.0, max_pixels=5_000_000)
    prepare_celeba(tmp_path, tmp_path / "cache", config)
    manifest_path = tmp_path / "cache" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["shards"] = manifest["shards"][:1]
    manifest["complete"] = False
    manifest_path.write_text(json.dumps(manifest))
    np.save(tmp_path / "cache" / "shard-00001.images.npy", np.zeros((1, 16, 16, 3), np.uint8))  # stale
    result = prepare_celeba(tmp_path, tmp_path / "cache", config)
    assert result.reused_shards == 1 and result.written_shards == 2
    assert read_cache(tmp_path / "cache").images.shape[0] == 6


def test_seeded_split_without_partition_file(tmp_path):
    make_celeba(tmp_path, n_good=40)
    (tmp_path / "list_eval_partition.txt").unlink()
    (tmp_path / "list_attr_celeba.txt").unlink()
    a = prepare_celeba(tmp_path, tmp_path / "a", PrepareConfig(size=8, workers=1, max_bad_fraction=1.0))
    b = prepare_celeba(tmp_path, tmp_path / "b", PrepareConfig(size=8, workers=1, max_bad_fraction=1.0))
    split_a, split_b = read_cache(a.folder).split, read_cache(b.folder).split
    np.testing.assert_array_equal(split_a, split_b)
    assert set(split_a.tolist()) >= {0, 1} and read_cache(a.folder).attribute_names == []


def test_image_folder_labels_from_subfolders(tmp_path):
    for label in ("cats", "dogs"):
        (tmp_path / "src" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 30), (i * 40, 0, 0)).save(tmp_path / "src" / label / f"{i}.png")
    result = prepare_images(tmp_path / "src", tmp_path / "cache", PrepareConfig(size=8, workers=1))
    cache = read_cache(result.folder)
    assert cache.label_names == ["cats", "dogs"]
    assert cache.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert cache.files.tolist()[0] == "cats/0.png"


def test_label_names_of_an_image_folder_reach_the_dataset(tmp_path):
    names = ("cats", "dogs", "owls")
    for k, label in enumerate(names):
        (tmp_path / "src" / label).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (20, 20), (30 * k, 25 * i, 0)).save(tmp_path / "src" / label / f"{i}.png")
    config = PrepareConfig(size=8, workers=1, split_fractions=(0.4, 0.0))
    folder = prepare_images(tmp_path / "src", tmp_path / "cache", config).folder
    data = load_dataset(f"cache:{folder}")
    assert data.label_names == names
    cache = read_cache(folder)
    for y, split in ((data.y_train, 0), (data.y_test, 1)):
        # each image's label names the sub-folder it came from
        sub_folders = [f.split("/")[0] for f in cache.files[cache.split == split]]
        assert len(y) and [data.label_names[i] for i in y] == sub_folders


def test_prepare_with_worker_processes(tmp_path):
    make_celeba(tmp_path, n_good=6)
    config = PrepareConfig(size=16, workers=2, max_bad_fraction=1.0, max_pixels=5_000_000)
    result = prepare_celeba(tmp_path, tmp_path / "cache", config)
    assert result.n_images == 6 and len(result.bad) == 5


def test_cli_prepare_and_streaming_training(celeba, tmp_path, capsys):
    root, *_ = celeba
    out = tmp_path / "cache"
    code = main(["prepare", "celeba", "--src", str(root), "--out", str(out), "--size", "32", "--shard-size", "8",
                 "--workers", "1", "--max-bad-fraction", "0.5", "--max-pixels", "5000000"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "wrote 30 images" in captured.out and "5 bad files skipped" in captured.out
    assert "900003.jpg: not an image" in captured.out + captured.err  # said on screen too
    data = load_dataset(f"cache:{out}")
    assert len(data.x_train) == 20 and len(data.x_test) == 5 and data.attribute_names == tuple(ATTRIBUTES)
    assert data.y_train is None and data.label_names == ()
    del data
    from conftest import tiny_run_config

    config = tiny_run_config(tmp_path / "run", epochs=2, batch_size=8, dataset=f"cache:{out}").with_overrides({
        "input_shape": [32, 32, 3], "encoder_filters": [8, 16], "encoder_kernels": [3, 3],
        "encoder_strides": [2, 2], "encoder_padding": ["same", "same"]})
    from zspace.training import train

    history = train(config).history
    assert [r["epoch"] for r in history] == [1, 2] and np.isfinite(history[-1]["val_total_loss"])
    # Keras' TF fit keeps the training batches (and their open shard files) alive after it
    # returns; train closes the dataset it loaded itself.
    assert not open_files_under(out), "shard files left open"


@pytest.mark.parametrize("pairs", [False, True])
def test_the_streamed_pipeline_gives_the_float32_batches_bit_for_bit(celeba, pairs):
    tf = pytest.importorskip("tensorflow")
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the streamed tf.data pipeline is TensorFlow's")
    from zspace.training.tf_pipeline import streamed_dataset

    cache = read_cache(celeba[0] / "cache")
    # a pairs cache's inputs and targets are channel views of the same shards
    images, targets = (cache.images.channel_view(0, 1), cache.images) if pairs else (cache.images, None)
    for seed, start, end in ((3, 1, 3), (None, 0, 1)):
        reference = EpochBatches(images, 8, seed=seed, start_epoch=start, end_epoch=end, targets=targets)
        streamed = list(streamed_dataset(reference))
        assert len(streamed) == len(reference) == 4 * (end - start)  # 30 images: the last batch holds 6
        for i, (inputs, outputs) in enumerate(streamed):
            expected_inputs, expected_outputs = reference[i]
            assert inputs.dtype == outputs.dtype == tf.float32
            np.testing.assert_array_equal(inputs.numpy(), expected_inputs)
            np.testing.assert_array_equal(outputs.numpy(), expected_outputs)


def test_a_streamed_run_resumed_after_an_epoch_has_the_weights_of_an_uninterrupted_one(celeba, tmp_path):
    from conftest import tiny_run_config

    from zspace.training import train

    def config(name, epochs):
        return tiny_run_config(tmp_path / name, epochs=epochs, batch_size=8,
                               dataset=f"cache:{celeba[0] / 'cache'}").with_overrides({
            "input_shape": [32, 32, 3], "encoder_filters": [8, 16], "encoder_kernels": [3, 3],
            "encoder_strides": [2, 2], "encoder_padding": ["same", "same"]})

    straight = train(config("straight", 3))
    train(config("resumed", 1))
    resumed = train(config("resumed", 3))
    assert resumed.start_epoch == 1 and [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert all(np.array_equal(a, b) for a, b in zip(straight.model.get_weights(), resumed.model.get_weights()))


@pytest.mark.parametrize("through", ["streamed", "pydataset"])
def test_a_shard_truncated_during_training_is_the_cache_error_and_the_run_stays_whole(celeba, tmp_path, monkeypatch,
                                                                                    through):
    """tf.data and Keras' PyDataset adapter wrap a reader's error in their own: train raises the original."""
    import shutil

    from conftest import tiny_run_config

    import zspace.training.run as run_module
    from zspace.data.cache import ShardedImages
    from zspace.training import train

    cache = tmp_path / "cache"
    shutil.copytree(celeba[0] / "cache", cache)
    if through == "pydataset":
        monkeypatch.setattr(run_module, "streamed_dataset", lambda batches: batches)
    reads, original = [0], ShardedImages.uint8

    def truncated_later(self, indices):  # as if another process cut the file in the third epoch
        reads[0] += 1
        if reads[0] == 10:
            path = self.shards[0].path
            os.truncate(path, path.stat().st_size // 2)
        return original(self, indices)

    monkeypatch.setattr(ShardedImages, "uint8", truncated_later)
    config = tiny_run_config(tmp_path / "run", epochs=6, batch_size=8, dataset=f"cache:{cache}").with_overrides({
        "input_shape": [32, 32, 3], "encoder_filters": [8, 16], "encoder_kernels": [3, 3],
        "encoder_strides": [2, 2], "encoder_padding": ["same", "same"]})
    with pytest.raises(DataError, match="shard-00000.images.npy: short read"):
        train(config)
    rows = (tmp_path / "run" / "history.csv").read_text().splitlines()[1:]
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("epoch-*.keras"))
    assert len(rows) == len(checkpoints) < 6  # every epoch written is whole


def test_a_cache_streams_through_tf_data_only_without_a_transform(celeba):
    import keras

    from zspace.config import TrainConfig
    from zspace.training.run import input_batches

    cache = read_cache(celeba[0] / "cache")
    plain = input_batches(cache.images, TrainConfig(batch_size=8), seed=0)
    denoise = input_batches(cache.images, TrainConfig(batch_size=8, task="denoise"), seed=0)
    assert isinstance(denoise, EpochBatches) and not denoise.stored_as_uint8
    with pytest.raises(ValueError, match="no transform"):
        denoise.stored(0)
    if keras.backend.backend() == "tensorflow":
        assert type(plain).__module__.startswith("tensorflow")
    else:  # Keras feeds JAX and PyTorch from the PyDataset itself
        assert isinstance(plain, EpochBatches) and plain.stored_as_uint8


def test_cli_prepare_errors(tmp_path, capsys):
    assert main(["prepare", "celeba", "--src", str(tmp_path / "none"), "--out", str(tmp_path / "c")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["prepare", "images", "--src", str(tmp_path / "empty"), "--out", str(tmp_path / "c")]) == 2
    assert "no .jpg/.jpeg/.png files found" in capsys.readouterr().err
    assert main(["prepare", "images", "--src", str(tmp_path / "empty"), "--out", str(tmp_path / "c"),
                 "--crop", "1,2,3"]) == 2
    assert "--crop must be four integers" in capsys.readouterr().err


# --- tasks -------------------------------------------------------------------------------------

def test_denoise_pairs_have_the_stated_noise_and_drops():
    clean = np.full((64, 16, 16, 3), 0.5, np.float32)
    batches = EpochBatches(clean, 64, seed=0, transform=task_transform("denoise", 0.1, 0.2), noise_seed=3)
    inputs, targets = batches[0]
    np.testing.assert_array_equal(targets, clean)
    dropped = np.all(inputs == 0, axis=-1)
    assert abs(dropped.mean() - 0.2) < 0.01
    assert abs((inputs[~dropped] - 0.5).std() - 0.1) < 0.005
    again, _ = EpochBatches(clean, 64, seed=0, transform=task_transform("denoise", 0.1, 0.2), noise_seed=3)[0]
    np.testing.assert_array_equal(inputs, again)  # resumable: the same noise for the same (seed, epoch, step)
    assert corrupt(clean, np.random.default_rng(0), 0.0, 0.0).tolist() == clean.tolist()


def test_recolor_pairs_are_grey_inputs_and_colour_targets():
    colour = np.random.default_rng(0).random((4, 8, 8, 3)).astype(np.float32)
    inputs, targets = EpochBatches(colour, 4, transform=task_transform("recolor"))[0]
    np.testing.assert_array_equal(targets, colour)
    assert np.all(inputs[..., 0] == inputs[..., 1]) and np.all(inputs[..., 1] == inputs[..., 2])
    np.testing.assert_allclose(inputs[..., 0], colour @ np.array([0.299, 0.587, 0.114]), rtol=1e-5)
    with pytest.raises(ValueError, match="colour images"):
        to_grayscale(np.zeros((1, 4, 4, 1), np.float32))


@pytest.mark.parametrize("task", ["denoise", "recolor"])
def test_tasks_train_in_memory(tmp_path, task):
    from zspace.config import ModelConfig, RunConfig, TrainConfig
    from zspace.data.datasets import Dataset
    from zspace.training import train

    rng = np.random.default_rng(0)
    x = rng.random((96, 8, 8, 3)).astype(np.float32)
    data = Dataset("colour", "test", x, None)
    model = ModelConfig(input_shape=(8, 8, 3), z_dim=4, encoder_filters=(8, 8), encoder_kernels=(3, 3),
                        encoder_strides=(2, 2), encoder_padding=("same", "same"))
    config = RunConfig(model, TrainConfig(task=task, epochs=1, batch_size=32, run_dir=str(tmp_path), verbose=0))
    assert np.isfinite(train(config, dataset=data).history[0]["val_total_loss"])


def test_recolor_needs_colour_input():
    from zspace.config import ModelConfig, RunConfig, TrainConfig
    from zspace.errors import ConfigError

    with pytest.raises(ConfigError, match="recolor"):
        RunConfig(ModelConfig(), TrainConfig(task="recolor"))


def test_attribute_vectors_known_answer():
    from zspace.analysis.analyze import attribute_vectors

    codes = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    attributes = np.array([[1, 1], [1, 0], [-1, -1], [-1, 1]], np.int8)
    vectors, counts = attribute_vectors(codes, attributes)
    np.testing.assert_allclose(vectors[0], [2.0 - 0.0, 0.0 - 3.0])
    np.testing.assert_allclose(vectors[1], np.mean(codes[[0, 3]], axis=0) - codes[2])
    assert counts.tolist() == [[2, 2], [2, 1]]
    only_positive = attribute_vectors(codes, np.ones((4, 1), np.int8))[0]
    assert np.all(only_positive == 0)


def test_analysis_colours_by_attribute_and_adds_a_smile(celeba, tmp_path, capsys):
    from conftest import tiny_run_config
    from zspace.training import train

    root, *_ = celeba
    run = tmp_path / "run"
    config = tiny_run_config(run, epochs=1, batch_size=8, dataset=f"cache:{root / 'cache'}").with_overrides({
        "input_shape": [32, 32, 3], "encoder_filters": [8, 16], "encoder_kernels": [3, 3],
        "encoder_strides": [2, 2], "encoder_padding": ["same", "same"]})
    train(config)
    fast = ["--set", "k_max=6", "--set", "tsne_sizes=[20]", "--set", "pca_subset=20", "--set", "perplexity=5"]
    assert main(["analyze", str(run), *fast, "--set", "color_by=Smiling"]) == 0, capsys.readouterr().err
    summary = json.loads((run / "analysis.json").read_text())
    assert summary["attributes"]["names"] == ATTRIBUTES and summary["color_by"] == "Smiling"
    with np.load(run / "analysis.npz", allow_pickle=False) as arrays:
        assert arrays["attribute_vectors"].shape == (3, 3)
        smiling = arrays["attributes"][:, 0] > 0
        np.testing.assert_array_equal(arrays["colors"], smiling.astype(int))
        mu = arrays["mu"]
        np.testing.assert_allclose(arrays["attribute_vectors"][0], mu[smiling].mean(0) - mu[~smiling].mean(0),
                                   rtol=1e-4, atol=1e-6)
    out = tmp_path / "smile.png"
    assert main(["generate", str(run), "--attribute", "Smiling", "--n", "4", "--out", str(out)]) == 0
    with Image.open(out) as img:
        assert img.size[0] > img.size[1] * 0.9  # 4 columns x 4 strengths
    assert main(["generate", str(run), "--attribute", "Frowning", "--out", str(out)]) == 2
    assert "--attribute must be one of the analysed attributes" in capsys.readouterr().err
    assert main(["analyze", str(run), *fast, "--set", "color_by=Bald"]) == 2
    assert "`color_by` must be" in capsys.readouterr().err


def open_files_under(folder):
    """Paths under ``folder`` that this process holds open (from /proc/self/fd)."""
    fd_dir = "/proc/self/fd"
    paths = []
    for fd in os.listdir(fd_dir):
        try:
            paths.append(os.readlink(os.path.join(fd_dir, fd)))
        except OSError:  # the descriptor listdir itself used, closed by now
            pass
    return [p for p in paths if p.startswith(str(folder))]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc/self/fd")
def test_sharded_images_do_not_leak_file_descriptors(celeba, tmp_path):
    import shutil

    root, *_ = celeba
    cache_dir = tmp_path / "cache"  # a copy no other test has opened
    shutil.copytree(root / "cache", cache_dir)
    read_cache(cache_dir).images[:].sum()  # anything opened once and for all (imports, ...) before counting
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(40):
        with read_cache(cache_dir) as cache:
            view = cache.images.select(np.arange(3, 27))  # spans every shard
            view[[0, 8, 16, 23]]
            assert len(open_files_under(cache_dir)) == sum(s.count > 0 for s in cache.images.shards)
        assert not open_files_under(cache_dir)
        view.uint8([0])  # a read after close opens the file again ...
        view.close()  # ... and close releases it again
        images = read_cache(cache_dir).images
        images.select([0, 29])[:]  # dropped without close: released when collected
        del images
        data = load_dataset(f"cache:{cache_dir}")
        data.x_train[:], data.x_test[:]
        del data
    gc.collect()
    assert not open_files_under(cache_dir)
    assert len(os.listdir("/proc/self/fd")) <= before


def test_sharded_reads_in_any_order_and_refuses_truncated_shards(celeba, tmp_path):
    import shutil

    root, *_ = celeba
    images = read_cache(root / "cache").images
    order = [9, 2, 27, 3, 4, 5, 16, 0]  # unsorted, with a run (3, 4, 5) and several shards
    together = images.uint8(order)
    for i, index in enumerate(order):
        np.testing.assert_array_equal(together[i], images.uint8([index])[0])
    np.testing.assert_array_equal(images.select([27, 3]).uint8([1, 0]), together[[3, 2]])
    copy = tmp_path / "copy"
    shutil.copytree(root / "cache", copy)
    shard = copy / "shard-00001.images.npy"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(DataError, match="shard-00001.images.npy: holds"):
        read_cache(copy)


def test_sharded_images_pickle_without_their_descriptors(celeba):
    import pickle

    root, *_ = celeba
    with read_cache(root / "cache") as cache:
        view = cache.images.select([4, 9, 17])
        copy = pickle.loads(pickle.dumps(view))
        np.testing.assert_array_equal(copy[:], view[:])
        assert copy._files is not view._files  # its own descriptors, opened on its first read
