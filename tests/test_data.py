import gzip
from pathlib import Path

import numpy as np
import pytest
from conftest import write_idx

from zspace.cli import main
from zspace.config import ModelConfig
from zspace.data import check_input_shape, find_local_dataset, load_dataset, read_idx, train_validation_split
from zspace.data.datasets import Dataset
from zspace.errors import DataError


def fake_idx_folder(folder, n_train=12, n_test=4, gz=True):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    x_train = rng.integers(0, 256, (n_train, 5, 5), dtype=np.uint8)
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", x_train, gz)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", np.arange(n_train) % 10, gz)
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n_test, 5, 5)), gz)
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", np.arange(n_test) % 10, gz)
    return x_train


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    array = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    path = tmp_path / ("a.gz" if gz else "a")
    write_idx(path, array, gz)
    np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize("content, message", [
    (b"\x01\x00\x08\x01", "magic number"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX type code 0x07"),
    (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", r"declares shape \(5,\)"),
])
def test_bad_idx_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert "bad-idx" in str(info.value)


def test_idx_folder_loader_scales_to_unit_float32(tmp_path):
    raw = fake_idx_folder(tmp_path, gz=False)
    data = load_dataset(f"idx:{tmp_path}")
    assert data.x_train.dtype == np.float32 and data.x_train.shape == (12, 5, 5, 1)
    np.testing.assert_allclose(data.x_train[..., 0], raw / 255.0, rtol=1e-6)
    assert data.y_test.shape == (4,)


def test_digits_is_the_embedded_default():
    data = load_dataset("digits")
    assert data.x_train.shape == (1797, 8, 8, 1) and data.x_train.dtype == np.float32
    assert 0.0 == data.x_train.min() and data.x_train.max() == 1.0
    assert set(np.unique(data.y_train)) == set(range(10))


def test_real_fashion_mnist_from_a_named_folder(fashion_dir):
    data = load_dataset("fashion_mnist", data_dir=fashion_dir)
    assert data.x_train.shape == (60000, 28, 28, 1) and data.x_test.shape == (10000, 28, 28, 1)
    assert data.x_train.dtype == np.float32 and 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert np.bincount(data.y_train).tolist() == [6000] * 10


def test_keras_cache_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    folder = tmp_path / "datasets" / "fashion-mnist"
    folder.mkdir(parents=True)
    fake_idx_folder(folder)
    assert find_local_dataset("fashion_mnist") == folder
    assert load_dataset("fashion_mnist").x_train.shape == (12, 5, 5, 1)


def test_missing_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset(f"idx:{tmp_path / 'nowhere'}")
    with pytest.raises(FileNotFoundError, match="missing IDX file train-images-idx3-ubyte"):
        load_dataset(f"idx:{tmp_path}")
    with pytest.raises(DataError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")


def test_shape_mismatch_is_refused_with_the_fix():
    data = load_dataset("digits")
    with pytest.raises(DataError, match=r"shape \(8, 8, 1\) but the model's input_shape is \(28, 28, 1\); "
                                         r"set input_shape = \[8, 8, 1\]"):
        check_input_shape(data, ModelConfig().input_shape)


def test_empty_dataset_is_refused():
    empty = Dataset("empty", "test", np.zeros((0, 8, 8, 1), np.float32), None)
    with pytest.raises(DataError, match="has no images"):
        check_input_shape(empty, (8, 8, 1))


def test_split_is_seeded_disjoint_and_uses_test_split_when_present(tmp_path):
    n = 200
    ids = np.arange(n, dtype=np.float32)
    data = Dataset("ids", "test", np.broadcast_to(ids[:, None, None, None], (n, 2, 2, 1)).copy(), np.arange(n))
    x, y, xv, yv, *_ = train_validation_split(data, 0.25, 0, seed=1)
    assert len(xv) == 50 and len(x) == 150
    train_ids, val_ids = set(x[:, 0, 0, 0].tolist()), set(xv[:, 0, 0, 0].tolist())
    assert not train_ids & val_ids and len(train_ids | val_ids) == n
    np.testing.assert_array_equal(y, x[:, 0, 0, 0].astype(int))  # labels follow their images
    np.testing.assert_array_equal(train_validation_split(data, 0.25, 0, seed=1)[0], x)
    assert not np.array_equal(train_validation_split(data, 0.25, 0, seed=2)[0], x)
    x, _, xv, *_ = train_validation_split(data, 0.25, subset=30, seed=1)
    assert len(x) == 30 and len(xv) == 10
    fake_idx_folder(tmp_path)
    idx = load_dataset(f"idx:{tmp_path}")
    x, _, xv, *_ = train_validation_split(idx, 0.5, 0, seed=0)
    assert len(x) == 12 and len(xv) == 4  # the official test split, not a fraction


def test_label_names_of_the_built_in_datasets(tmp_path, monkeypatch, fashion_dir):
    assert load_dataset("digits").label_names == tuple("0123456789")
    fashion = load_dataset("fashion_mnist", data_dir=fashion_dir).label_names
    assert len(fashion) == 10 and (fashion[0], fashion[9]) == ("T-shirt/top", "Ankle boot")
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = rng.integers(0, 256, (3, 3073), dtype=np.uint8)
        records[:, 0] %= 10
        records.tofile(tmp_path / name)
    cifar = load_dataset("cifar10", data_dir=tmp_path)
    assert cifar.x_train.shape == (15, 32, 32, 3) and cifar.label_names[0] == "airplane"
    assert cifar.label_names[9] == "truck" and len(cifar.label_names) == 10
    fake_idx_folder(tmp_path)
    assert load_dataset(f"idx:{tmp_path}").label_names == ()  # any IDX folder: names unknown
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    (tmp_path / "keras" / "datasets" / "mnist").mkdir(parents=True)
    fake_idx_folder(tmp_path / "keras" / "datasets" / "mnist")
    assert load_dataset("mnist").label_names == tuple("0123456789")


def test_download_uses_the_arrays_keras_read(tmp_path, monkeypatch):
    import keras

    import zspace.data.datasets as datasets

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(datasets, "_SYSTEM_DIRS", {})
    calls = []
    rng = np.random.default_rng(0)
    arrays = ((rng.integers(0, 256, (6, 4, 4), dtype=np.uint8), np.arange(6, dtype=np.uint8)),
              (rng.integers(0, 256, (2, 4, 4), dtype=np.uint8), np.arange(2, dtype=np.uint8)))

    def load_data():  # as Keras': writes the files, then reads them
        calls.append(1)
        (datasets.keras_cache_dir() / "fashion-mnist").mkdir(parents=True)
        fake_idx_folder(datasets.keras_cache_dir() / "fashion-mnist")
        return arrays

    def read_idx(path):
        raise AssertionError(f"{path} read a second time")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", load_data)
    monkeypatch.setattr(datasets, "read_idx", read_idx)
    data = load_dataset("fashion_mnist")
    assert calls == [1] and data.source == str(tmp_path / "datasets" / "fashion-mnist")
    np.testing.assert_array_equal(data.x_train[..., 0], arrays[0][0] / np.float32(255.0))
    assert data.y_test.dtype == np.int64 and data.y_test.tolist() == [0, 1]
    assert data.label_names[1] == "Trouser"

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(DataError, match=r"download failed \(OSError: no network\)"):
        load_dataset("mnist")


# --- the range and finiteness of images (issue 12, items 12 and 15) --------------------------------------------------------

_IDX_TYPES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
              np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def write_typed_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, _IDX_TYPES[array.dtype], array.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                                          for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def typed_idx_folder(folder: Path, x_train: np.ndarray, x_test: np.ndarray | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    x_test = x_train[:2] if x_test is None else x_test
    write_typed_idx(folder / "train-images-idx3-ubyte.gz", x_train)
    write_typed_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(len(x_train), dtype=np.uint8) % 10)
    write_typed_idx(folder / "t10k-images-idx3-ubyte.gz", x_test)
    write_typed_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(len(x_test), dtype=np.uint8) % 10)
    return folder


def test_float_idx_images_in_unit_range_are_taken_as_they_are(tmp_path):
    x = np.random.default_rng(0).random((6, 5, 5)).astype(">f4")
    data = load_dataset(f"idx:{typed_idx_folder(tmp_path / 'f', x)}")
    np.testing.assert_array_equal(data.x_train[..., 0], x.astype(np.float32))  # not divided by 255 again
    assert data.x_train.dtype == np.float32


@pytest.mark.parametrize("dtype, values, message", [
    (">f4", [0.0, 2.0], r"pixel values span \[0, 2\]; >f4 images must lie in \[0, 1\]"),
    (">f8", [-0.5, 1.0], r"pixel values span \[-0.5, 1\]; >f8 images must lie in \[0, 1\]"),
    (">f4", [0.0, 255.0], r"pixel values span \[0, 255\]; >f4 images must lie in \[0, 1\]"),
    (">i2", [0, 300], r"pixel values span \[0, 300\]; >i2 images must lie in \[0, 255\]"),
    ("i1", [-3, 100], r"pixel values span \[-3, 100\]; int8 images must lie in \[0, 255\]"),
])
def test_idx_images_out_of_their_range_are_refused(tmp_path, dtype, values, message):
    x = np.zeros((4, 3, 3), dtype)
    x[1, 0, 0], x[2, 1, 1] = values
    folder = typed_idx_folder(tmp_path / "bad", x, np.zeros((2, 3, 3), dtype))
    with pytest.raises(DataError, match=rf"bad/train-images-idx3-ubyte.gz: {message}"):
        load_dataset(f"idx:{folder}")


def test_idx_integer_images_within_0_255_are_scaled(tmp_path):
    x = np.array([[[0, 255], [51, 102]]] * 3, ">i2")
    data = load_dataset(f"idx:{typed_idx_folder(tmp_path / 'i', x)}")
    np.testing.assert_allclose(data.x_train[0, ..., 0], [[0, 1], [0.2, 0.4]], rtol=1e-6)


def test_non_finite_idx_images_are_refused_with_their_count(tmp_path):
    x = np.full((5, 4, 4), 0.5, ">f4")
    x[0, 0, 0], x[3, 2, 1], x[4, 3, 3] = np.nan, np.inf, -np.inf
    folder = typed_idx_folder(tmp_path / "nan", x, np.zeros((2, 4, 4), ">f4"))
    with pytest.raises(DataError, match=r"nan/train-images-idx3-ubyte.gz: 3 of 80 pixel values are not finite "
                                        r"\(NaN or inf\)"):
        load_dataset(f"idx:{folder}")


def test_non_finite_in_memory_images_are_refused_in_blocks(monkeypatch):
    import zspace.data.datasets as datasets

    monkeypatch.setattr(datasets, "_CHECK_BLOCK", 50)  # many blocks: the count spans them all
    x = np.zeros((40, 4, 4, 1), np.float32)
    x[0, 0, 0, 0] = x[17, 1, 2, 0] = x[39, 3, 3, 0] = np.nan
    x[20, 0, 0, 0] = np.inf
    with pytest.raises(DataError, match=r"dataset 'poisoned' \(memory\) x_train: 4 of 640 pixel values are not finite"):
        Dataset("poisoned", "memory", x, None)
    with pytest.raises(DataError, match=r"x_test: 1 of 640"):
        Dataset("poisoned", "memory", np.zeros_like(x), None, x_test=np.where(np.isinf(x), x, 0))
    Dataset("clean", "memory", np.zeros_like(x), None, x_test=np.ones((3, 4, 4, 1), np.uint8))  # uint8: not looked at


def test_mnist_npz_is_checked_like_the_idx_files(tmp_path):
    good = np.zeros((3, 4, 4), np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=np.full((3, 4, 4), np.nan), y_train=np.arange(3), x_test=good,
             y_test=np.arange(3))
    with pytest.raises(DataError, match=r"mnist.npz\[x_train\]: 48 of 48 pixel values are not finite"):
        load_dataset("mnist", data_dir=tmp_path / "mnist.npz")
    np.savez(tmp_path / "mnist.npz", x_train=good, y_train=np.arange(3))
    with pytest.raises(DataError, match=r"mnist.npz: no array x_test, y_test"):
        load_dataset("mnist", data_dir=tmp_path / "mnist.npz")
    np.savez(tmp_path / "mnist.npz", x_train=np.array([object()] * 3), y_train=np.arange(3), x_test=good,
             y_test=np.arange(3))
    with pytest.raises(DataError, match=r"mnist.npz: not a readable MNIST .npz"):
        load_dataset("mnist", data_dir=tmp_path / "mnist.npz")


def test_idx_range_error_is_one_cli_line(tmp_path, capsys):
    from conftest import tiny_run_config

    x = np.full((20, 8, 8), 3.0, ">f4")
    folder = typed_idx_folder(tmp_path / "too-bright", x)
    config = tmp_path / "run.toml"
    config.write_text(tiny_run_config(tmp_path / "run", dataset=f"idx:{folder}").to_toml())
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pixel values span [3, 3]; >f4 images must lie in [0, 1]" in err[0], err
    assert not (tmp_path / "run").exists()
