"""Feature spaces for sample-quality distances: domain network (train, cache, reload), random fallback, Inception."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import keras
import numpy as np
import pytest

from zspace.data.datasets import Dataset, load_dataset
from zspace.errors import CacheDirError
from zspace.evaluation import features as features_module
from zspace.evaluation.features import (
    FEATURE_DIM,
    INCEPTION_WEIGHTS,
    FeatureSpace,
    domain_network,
    inception_network,
)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """(cache_dir, extractor) of the digits network trained once for this module."""
    cache_dir = tmp_path_factory.mktemp("features")
    return cache_dir, domain_network(digits, cache_dir=cache_dir, progress=False)


@pytest.fixture
def quick_training(monkeypatch):
    """Few optimizer steps: for tests that need a valid network, not a good one."""
    monkeypatch.setattr(features_module, "_TRAIN_STEPS", 20)
    monkeypatch.setattr(features_module, "_MAX_EPOCHS", 2)


def _count_trainings(monkeypatch) -> list:
    calls = []
    train = features_module._train

    def counted(*args, **kwargs):
        calls.append(1)
        return train(*args, **kwargs)

    monkeypatch.setattr(features_module, "_train", counted)
    return calls


def _no_training(*args, **kwargs):
    raise AssertionError("trained although a valid cache (or no targets) should have been used")


def _attribute_dataset(n: int = 400, seed: int = 0) -> Dataset:
    """8x8 images whose 4 attributes say which quadrants are bright; 20% of entries unknown (0)."""
    rng = np.random.default_rng(seed)
    bright = rng.random((n, 4)) < 0.5
    images = rng.random((n, 8, 8, 1)).astype(np.float32) * 0.3
    for q, (rows, cols) in enumerate([(slice(0, 4), slice(0, 4)), (slice(0, 4), slice(4, 8)),
                                      (slice(4, 8), slice(0, 4)), (slice(4, 8), slice(4, 8))]):
        images[bright[:, q], rows, cols] += 0.7
    attributes = np.where(bright, 1, -1).astype(np.int8)
    attributes[rng.random(attributes.shape) < 0.2] = 0
    return Dataset("quadrants", "synthetic", images, None, attribute_names=("tl", "tr", "bl", "br"),
                   a_train=attributes)


def test_trained_network_beats_chance_on_held_out_digits(trained):
    cache_dir, extractor = trained
    space = extractor.space
    assert space.label == "FD-domain" and space.trained_on == "labels"
    assert space.held_out_accuracy > 0.8  # chance: 0.1
    assert (space.n_train, space.n_test) == (1617, 180)  # digits has no test split: a 10% hold-out
    assert space.path.startswith(str(cache_dir)) and space.path.endswith(".weights.npz")
    assert FeatureSpace.from_json(json.loads(json.dumps(space.to_json()))) == space


def test_features_shape_dtype_and_determinism(trained, digits):
    extractor = trained[1]
    images = digits.x_train[:300]
    first = extractor.features(images, batch_size=64)
    assert first.shape == (300, FEATURE_DIM) and first.dtype == np.float32 and np.isfinite(first).all()
    np.testing.assert_array_equal(extractor.features(images, batch_size=64), first)
    np.testing.assert_allclose(extractor.features(images, batch_size=300), first, rtol=1e-5, atol=1e-6)
    assert first.std(0).max() > 0  # not a dead layer


def test_features_run_every_batch_at_one_length_so_tensorflow_traces_once(trained, digits, monkeypatch):
    """300 images in batches of 64 end with 44: padded to 64, the model sees one batch length (a new length
    retraced TensorFlow's predict function, and logged its "retracing" warning), and the rows are the same."""
    extractor = trained[1]
    images = digits.x_train[:300]
    expected = extractor.features(images, batch_size=300)
    lengths = []
    predict = extractor.model.predict_on_batch

    def recorded(batch):
        lengths.append(len(batch))
        return predict(batch)

    monkeypatch.setattr(extractor.model, "predict_on_batch", recorded)
    np.testing.assert_allclose(extractor.features(images, batch_size=64), expected, rtol=1e-5, atol=1e-6)
    assert lengths == [64] * 5


def test_second_call_loads_the_cache_without_training(trained, digits, monkeypatch):
    cache_dir, extractor = trained
    monkeypatch.setattr(features_module, "_train", _no_training)
    loaded = domain_network(digits, cache_dir=cache_dir, progress=False)
    assert loaded.space.held_out_accuracy == extractor.space.held_out_accuracy
    np.testing.assert_array_equal(loaded.features(digits.x_train[:50]), extractor.features(digits.x_train[:50]))


def _truncate_model(folder):
    path = folder / "domain-network.weights.npz"
    path.write_bytes(path.read_bytes()[:1000])


def _garbage_record(folder):
    (folder / "domain-network.json").write_text("{not json")


def _huge_record(folder):
    (folder / "domain-network.json").write_text(" " * (2**20 + 10) + "{}")


def _other_fingerprint(folder):
    path = folder / "domain-network.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "fingerprint": "0" * 16}))


def _swapped_model(folder):
    # a valid weights file, but not the one the record describes
    np.savez(folder / "domain-network.weights.npz", np.zeros((3, 3, 1, 32), np.float32))


def _bomb_with_a_matching_record(folder):
    """Whoever writes the record can also write the sha256 of a hostile weights file: an array header
    declaring 10^12 floats must be refused from its header, before anything is allocated."""
    path = folder / "domain-network.weights.npz"
    arrays = dict(np.load(path))
    header = np.lib.format.header_data_from_array_1_0(arrays["arr_0"])
    header["shape"] = (10**6, 10**6)
    import io
    import zipfile
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            if name == "arr_0":
                np.lib.format.write_array_header_1_0(buffer, header)
                buffer.write(array.tobytes())
            else:
                np.lib.format.write_array(buffer, array)
            archive.writestr(f"{name}.npy", buffer.getvalue())
    record_path = folder / "domain-network.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "weights_sha256": features_module._sha256(path)}))


def _huge_head(folder):
    record_path = folder / "domain-network.json"
    record_path.write_text(json.dumps({**json.loads(record_path.read_text()), "n_outputs": 4_000_000}))


@pytest.mark.parametrize("damage", [_truncate_model, _garbage_record, _huge_record, _other_fingerprint, _swapped_model,
                                    _bomb_with_a_matching_record, _huge_head])
def test_untrusted_cache_warns_and_retrains(trained, digits, tmp_path, monkeypatch, caplog, quick_training, damage):
    cache_dir = tmp_path / "cache"
    shutil.copytree(trained[0], cache_dir)
    (folder,) = cache_dir.iterdir()
    damage(folder)
    calls = _count_trainings(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="zspace.evaluation.features"):
        extractor = domain_network(digits, cache_dir=cache_dir, progress=False)
    assert len(calls) == 1
    assert "domain-network.json" in caplog.text and "not trusted" in caplog.text
    assert extractor.features(digits.x_train[:5]).shape == (5, FEATURE_DIM)
    # the replacement is trusted next time
    monkeypatch.setattr(features_module, "_train", _no_training)
    domain_network(digits, cache_dir=cache_dir, progress=False)


def test_different_data_gets_a_different_folder(trained, digits, monkeypatch, quick_training):
    cache_dir = trained[0]
    y_train = digits.y_train.copy()
    y_train[0] = (y_train[0] + 1) % 10
    calls = _count_trainings(monkeypatch)
    other = domain_network(dataclasses.replace(digits, y_train=y_train), cache_dir=cache_dir, progress=False)
    assert len(calls) == 1
    assert other.space.path != trained[1].space.path
    assert len(list(cache_dir.iterdir())) == 2


def test_prepared_cache_keeps_its_network_beside_the_images(tmp_path, monkeypatch, quick_training):
    from PIL import Image

    from zspace.data.cache import ShardedImages
    from zspace.data.prepare import PrepareConfig, prepare_images

    for k, label in enumerate(("cats", "dogs", "owls")):
        (tmp_path / "src" / label).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (20, 20), (80 * k, 25 * i, 0)).save(tmp_path / "src" / label / f"{i}.png")
    config = PrepareConfig(size=8, workers=1, split_fractions=(0.4, 0.0))
    folder = prepare_images(tmp_path / "src", tmp_path / "cache", config).folder
    dataset = load_dataset(f"cache:{folder}")
    assert isinstance(dataset.x_train, ShardedImages)
    extractor = domain_network(dataset, progress=False)
    assert extractor.space.path == str(folder / "features" / "domain-network.weights.npz")
    assert extractor.features(dataset.x_test).shape == (len(dataset.x_test), FEATURE_DIM)
    monkeypatch.setattr(features_module, "_train", _no_training)
    domain_network(dataset, progress=False)


def test_training_is_deterministic(tmp_path, quick_training):
    dataset = _attribute_dataset(200)
    first = domain_network(dataset, cache_dir=tmp_path / "a", progress=False)
    second = domain_network(dataset, cache_dir=tmp_path / "b", progress=False)
    for a, b in zip(first.model.get_weights(), second.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_attributes_with_unknown_entries_train_and_report_accuracy(tmp_path):
    extractor = domain_network(_attribute_dataset(), cache_dir=tmp_path, progress=False)
    space = extractor.space
    assert space.label == "FD-domain" and space.trained_on == "attributes"
    assert space.held_out_accuracy > 0.7  # chance: 0.5 (bright quadrants are easy to see)
    assert space.n_train + space.n_test == 400


def test_masked_attribute_loss_ignores_unknown_entries():
    logits = np.array([[2.0, -1.0, 5.0]], np.float32)
    with_unknown = features_module._masked_attribute_loss(np.array([[1.0, -1.0, 0.0]], np.float32), logits)
    known_only = features_module._masked_attribute_loss(np.array([[1.0, -1.0]], np.float32), logits[:, :2])
    expected = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / 2
    np.testing.assert_allclose(keras.ops.convert_to_numpy(with_unknown), [expected], rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(known_only), [expected], rtol=1e-6)


def test_unlabelled_data_gets_deterministic_random_features(tmp_path, monkeypatch, images):
    monkeypatch.setattr(features_module, "_train", _no_training)
    dataset = Dataset("unlabelled", "synthetic", images, None)
    first = domain_network(dataset, cache_dir=tmp_path, progress=False)
    second = domain_network(dataset, cache_dir=tmp_path, progress=False)
    assert first.space.label == "FD-random" and first.space.trained_on == "none"
    assert first.space.held_out_accuracy is None and first.space.path == ""
    np.testing.assert_array_equal(first.features(images), second.features(images))
    assert first.features(images).shape == (16, FEATURE_DIM)
    assert not any(tmp_path.iterdir())  # nothing stored


def test_unwritable_cache_dir_names_the_folder(digits, tmp_path, monkeypatch):
    monkeypatch.setattr(features_module, "_train", _no_training)  # the check comes before training
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(CacheDirError, match="a-file") as info:
        domain_network(digits, cache_dir=blocker, progress=False)
    assert "cache_dir" in str(info.value) and "\n" not in str(info.value)


def test_images_of_another_shape_are_refused(tmp_path, images):
    extractor = domain_network(Dataset("unlabelled", "synthetic", images, None), cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"\(2, 9, 9, 1\).*\(n, 8, 8, 1\)"):
        extractor.features(np.zeros((2, 9, 9, 1), np.float32))


# === Inception ===

@pytest.fixture
def no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to download")

    from keras.src.utils import file_utils

    monkeypatch.setattr(file_utils, "get_file", refuse)
    monkeypatch.setattr(keras.utils, "get_file", refuse)


def test_missing_inception_weights_give_a_note_and_no_download(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    extractor, note = inception_network(progress=False)
    assert extractor is None
    assert INCEPTION_WEIGHTS in note and str(tmp_path) in note and "never downloads" in note


@pytest.mark.slow
def test_cached_inception_weights_give_2048_features(tmp_path, monkeypatch, no_download):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    reference = keras.applications.InceptionV3(weights=None, include_top=False, pooling="avg",
                                               input_shape=(299, 299, 3))
    (tmp_path / "models").mkdir()
    # the legacy h5 layout of Keras' published weights files (save_weights writes only .weights.h5)
    with h5py.File(tmp_path / "models" / INCEPTION_WEIGHTS, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    extractor, note = inception_network(progress=False)
    assert extractor is not None and extractor.space.label == "FID" and "299" in note
    images = np.random.default_rng(0).random((2, 8, 8, 1)).astype(np.float32)
    features = extractor.features(images)
    assert features.shape == (2, 2048) and features.dtype == np.float32
    # the weights were loaded, and the protocol applied: grey -> RGB, bilinear 299x299, [-1, 1]
    rgb = keras.ops.image.resize(np.repeat(images, 3, axis=-1), (299, 299), interpolation="bilinear")
    expected = reference.predict_on_batch(keras.ops.convert_to_numpy(rgb) * 2.0 - 1.0)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)
