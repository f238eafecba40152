"""Dataset loaders. Every loader returns float32 images (N, H, W, C) in [0, 1] plus labels."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from zspace.data.cache import SPLITS, ShardedImages, read_cache
from zspace.data.idx import read_idx
from zspace.errors import DataError

__all__ = [
    "Dataset",
    "load_dataset",
    "find_local_dataset",
    "keras_cache_dir",
    "check_input_shape",
    "train_validation_split",
    "SplitData",
    "check_task_data",
]

# File names Keras caches under ~/.keras/datasets/<name>/ (and the original distribution's).
_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_KERAS_CACHE_NAMES = {"mnist": "mnist", "fashion_mnist": "fashion-mnist"}
_SYSTEM_DIRS = {"fashion_mnist": [Path("/usr/share/datasets/fashion-mnist")], "mnist": [Path("/usr/share/datasets/mnist")]}
_DIGITS = tuple(str(d) for d in range(10))
# The class of label value i, as the datasets' authors name them.
LABEL_NAMES = {
    "digits": _DIGITS,
    "mnist": _DIGITS,
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}


@dataclass(frozen=True)
class Dataset:
    """Images and labels of one dataset.

    Attributes:
        name: dataset name ("digits", "fashion_mnist", ...).
        source: where it was read from (a path, or "scikit-learn").
        x_train: float32 (N, H, W, C) in [0, 1]: an array, or :class:`ShardedImages` streamed
            from a prepared cache.
        y_train: int64 (N,) labels, or None.
        x_test, y_test: the official test (validation) split, or None when the dataset has none.
        attribute_names: names of binary attributes (CelebA's 40), or ().
        a_train, a_test: int8 (N, A) attributes (+1 / -1, 0 unknown), or None.
        label_names: the name of each label value (``label_names[y]``), or () when unknown.
        t_train, t_test: the target images of an input/target pairs dataset (``zspace prepare
            pairs``), aligned with ``x_train`` / ``x_test``, which then hold the inputs; None
            otherwise (the target of an image is the image, or derived from it by the task).

    Raises:
        DataError: float images holding NaN or inf (they would stop training at its first step).
    """

    name: str
    source: str
    x_train: np.ndarray | ShardedImages
    y_train: np.ndarray | None
    x_test: np.ndarray | ShardedImages | None = None
    y_test: np.ndarray | None = None
    attribute_names: tuple[str, ...] = ()
    a_train: np.ndarray | None = None
    a_test: np.ndarray | None = None
    label_names: tuple[str, ...] = ()
    t_train: np.ndarray | ShardedImages | None = None
    t_test: np.ndarray | ShardedImages | None = None

    def __post_init__(self):
        for split, images in (("x_train", self.x_train), ("x_test", self.x_test), ("t_train", self.t_train),
                              ("t_test", self.t_test)):
            if isinstance(images, np.ndarray):  # a cache's ShardedImages are uint8 on disk: always finite
                check_finite(images, f"dataset {self.name!r} ({self.source}) {split}")
        pairs = self.t_train is not None
        for inputs, targets, split in ((self.x_train, self.t_train, "train"), (self.x_test, self.t_test, "test")):
            inputs_shape = None if inputs is None else tuple(inputs.shape)
            targets_shape = None if targets is None else tuple(targets.shape)
            if (pairs and inputs is not None) != (targets is not None) or (targets is not None
                                                                          and targets_shape != inputs_shape):
                raise DataError(f"dataset {self.name!r} ({self.source}): the {split} targets must match the inputs "
                                f"image for image (inputs {inputs_shape}); found targets {targets_shape}.")

    @property
    def is_pairs(self) -> bool:
        """Whether the dataset holds input/target pairs (``x_*`` inputs, ``t_*`` targets)."""
        return self.t_train is not None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def close(self) -> None:
        """Closes the shard files of images streamed from a cache (and of the views made
        from them); a later read opens them again. Nothing to do for in-memory arrays.

        Call it when done with a cache dataset whose images something else may keep alive:
        Keras' TensorFlow ``fit`` keeps its :class:`~zspace.training.EpochBatches` (and so
        the images) referenced after it returns.
        """
        for images in (self.x_train, self.x_test, self.t_train, self.t_test):
            if isinstance(images, ShardedImages):
                images.close()


def keras_cache_dir() -> Path:
    """Keras' dataset cache: ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


# Values per block of the finiteness and range checks: 16 MiB of float32 at a time, so a check
# of a large array needs no full-size temporary.
_CHECK_BLOCK = 2**22


def _blocks(images: np.ndarray) -> Iterator[np.ndarray]:
    """``images`` in blocks of whole rows (along axis 0) of about _CHECK_BLOCK values."""
    row = max(1, int(np.prod(images.shape[1:])))
    step = max(1, _CHECK_BLOCK // row)
    for start in range(0, len(images), step):
        yield images[start:start + step]


def count_nonfinite(images: np.ndarray) -> int:
    """How many values of a float array are NaN or +-inf (0 for integer arrays), block by block."""
    if images.dtype.kind != "f":
        return 0
    return sum(int(block.size - np.count_nonzero(np.isfinite(block))) for block in _blocks(images))


def check_finite(images: np.ndarray, source: str) -> None:
    """Raises DataError naming ``source`` when a float image array holds NaN or inf."""
    bad = count_nonfinite(images)
    if bad:
        raise DataError(f"{source}: {bad} of {images.size} pixel values are not finite (NaN or inf); "
                        f"images must hold numbers in [0, 1].")


def _value_range(images: np.ndarray) -> tuple[float, float]:
    """(min, max) of a non-empty array, block by block."""
    lows, highs = zip(*((block.min(), block.max()) for block in _blocks(images)))
    return float(min(lows)), float(max(highs))


def _to_images(raw: np.ndarray, source: str) -> np.ndarray:
    """Images as their file stores them -> float32 (N, H, W, C) in [0, 1].

    uint8 is 0..255 by its type; other integer types must hold 0..255 too (both are divided by
    255); float types must already lie in [0, 1]. Raises DataError naming ``source``, the range
    found and the range expected (a float image out of [0, 1] trains to a negative loss).
    """
    if raw.ndim == 3:
        raw = raw[..., None]
    if raw.ndim != 4:
        raise DataError(f"{source}: expected images of shape (N, H, W) or (N, H, W, C); got {raw.shape}.")
    kind = raw.dtype.kind
    if kind not in "uif":
        raise DataError(f"{source}: images of type {raw.dtype}; expected integers 0..255 or floats in [0, 1].")
    if kind == "f":
        check_finite(raw, source)
    if raw.dtype != np.uint8 and raw.size:
        low, high = _value_range(raw)
        expected = (0.0, 1.0) if kind == "f" else (0.0, 255.0)
        if low < expected[0] or high > expected[1]:
            raise DataError(f"{source}: pixel values span [{low:g}, {high:g}]; {raw.dtype} images must lie in "
                            f"[{expected[0]:g}, {expected[1]:g}].")
    if kind == "f":
        return raw.astype(np.float32)
    return raw.astype(np.float32) / 255.0


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _has_idx(folder: Path) -> bool:
    return all(_find_idx(folder, stem) for stem in _IDX_FILES.values())


def _from_uint8(name: str, source: str, x_train, y_train, x_test, y_test,
                label_names: tuple[str, ...] = ()) -> Dataset:
    """A Dataset of uint8 (N, H, W[, C]) images and (N,) labels."""
    return _from_arrays(name, source, _to_images(x_train, source), y_train, _to_images(x_test, source), y_test,
                        label_names)


def _from_arrays(name: str, source: str, x_train, y_train, x_test, y_test,
                 label_names: tuple[str, ...] = ()) -> Dataset:
    """A Dataset of float32 (N, H, W, C) images in [0, 1] and (N,) labels."""
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise DataError(f"{source}: {split} split has {len(x)} images but {len(y)} labels.")
        if np.asarray(y).dtype.kind not in "iu":
            raise DataError(f"{source}: {split} labels of type {np.asarray(y).dtype}; expected integers.")
    return Dataset(name, source, x_train, np.asarray(y_train, dtype=np.int64), x_test,
                   np.asarray(y_test, dtype=np.int64), label_names=label_names)


def _load_idx_folder(name: str, folder: Path, label_names: tuple[str, ...] = ()) -> Dataset:
    arrays = {}
    for key, stem in _IDX_FILES.items():
        path = _find_idx(folder, stem)
        if path is None:
            raise FileNotFoundError(f"{folder}: missing IDX file {stem}(.gz) for dataset {name!r}")
        raw = read_idx(path)
        arrays[key] = _to_images(raw, str(path)) if key.startswith("x_") else raw
    return _from_arrays(name, str(folder), arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                        label_names)


def _load_mnist_npz(path: Path) -> Dataset:
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in getattr(data, "files", ())]
            if missing:
                raise DataError(f"{path}: no array {', '.join(missing)}; expected MNIST's {', '.join(keys)}.")
            arrays = {k: data[k] for k in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # damaged, or object arrays (pickles)
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: not a readable MNIST .npz ({str(exc)[:200]}).") from None
    return _from_arrays("mnist", str(path), _to_images(arrays["x_train"], f"{path}[x_train]"), arrays["y_train"],
                        _to_images(arrays["x_test"], f"{path}[x_test]"), arrays["y_test"], LABEL_NAMES["mnist"])


def find_local_dataset(name: str, data_dir: str | Path = "") -> Path | None:
    """Where ``name`` ("mnist", "fashion_mnist") already is on this machine, or None.

    Looks in ``data_dir`` (if given), the Keras cache, then system folders such as
    ``/usr/share/datasets/fashion-mnist``.
    """
    candidates = [Path(data_dir)] if data_dir else []
    cache_name = _KERAS_CACHE_NAMES.get(name)
    if cache_name:
        candidates.append(keras_cache_dir() / cache_name)
        if name == "mnist":
            candidates.append(keras_cache_dir() / "mnist.npz")
    candidates += _SYSTEM_DIRS.get(name, [])
    for candidate in candidates:
        if candidate.is_file() and candidate.suffix == ".npz":
            return candidate
        if candidate.is_dir() and _has_idx(candidate):
            return candidate
    return None


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    return Dataset("digits", "scikit-learn", images, digits.target.astype(np.int64), label_names=LABEL_NAMES["digits"])


def _download(name: str):
    """Downloads ``name`` into the Keras cache: ((x_train, y_train), (x_test, y_test)), uint8.

    Keras reads the files it downloaded; these arrays are used, not read a second time.
    """
    import keras

    loader = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist}[name]
    return loader.load_data()


def _load_cache(folder: Path) -> Dataset:
    cache = read_cache(folder)
    train, valid = cache.split == SPLITS.index("train"), cache.split == SPLITS.index("valid")
    if not train.any() or not valid.any():
        raise DataError(f"{folder}: the cache needs images in both the train and the valid split "
                        f"(it has {int(train.sum())} and {int(valid.sum())}).")
    has_labels = bool((cache.labels >= 0).any())
    has_attributes = cache.attributes.shape[1] > 0
    channels = cache.channels
    # a pairs cache stores input channels then target channels: two views of the same shards
    inputs = cache.images.channel_view(0, channels) if cache.is_pairs else cache.images
    targets = cache.images.channel_view(channels, 2 * channels) if cache.is_pairs else None
    train_idx, valid_idx = np.flatnonzero(train), np.flatnonzero(valid)
    return Dataset(
        name=folder.name, source=str(folder),
        x_train=inputs.select(train_idx), y_train=cache.labels[train] if has_labels else None,
        x_test=inputs.select(valid_idx), y_test=cache.labels[valid] if has_labels else None,
        attribute_names=tuple(cache.attribute_names),
        a_train=cache.attributes[train] if has_attributes else None,
        a_test=cache.attributes[valid] if has_attributes else None,
        label_names=tuple(cache.label_names) if has_labels else (),
        t_train=None if targets is None else targets.select(train_idx),
        t_test=None if targets is None else targets.select(valid_idx),
    )


def _read_cifar_bin(folder: Path) -> Dataset:
    """CIFAR-10 binary version (cifar-10-batches-bin): records of 1 label byte + 3072 pixel bytes."""
    def read(names):
        raw = []
        for name in names:
            path = folder / name
            if not path.is_file():
                raise FileNotFoundError(f"{folder}: missing CIFAR-10 file {name}")
            data = np.fromfile(path, dtype=np.uint8)
            if data.size % 3073:
                raise DataError(f"{path}: size {data.size} is not a multiple of 3073-byte records.")
            raw.append(data.reshape(-1, 3073))
        records = np.concatenate(raw)
        images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return images, records[:, 0]

    x_train, y_train = read([f"data_batch_{i}.bin" for i in range(1, 6)])
    x_test, y_test = read(["test_batch.bin"])
    return _from_uint8("cifar10", str(folder), x_train, y_train, x_test, y_test, LABEL_NAMES["cifar10"])


def _find_cifar(data_dir: str | Path) -> Path:
    candidates = ([Path(data_dir), Path(data_dir) / "cifar-10-batches-bin"] if data_dir else []) + [
        keras_cache_dir() / "cifar-10-batches-bin"]
    for folder in candidates:
        if (folder / "data_batch_1.bin").is_file():
            return folder
    raise DataError(
        "CIFAR-10 not found: zspace reads the binary version (cifar-10-batches-bin, from "
        "cifar-10-binary.tar.gz), not the Python version, whose files are pickles. Looked in "
        f"{', '.join(str(c) for c in candidates)}; pass data_dir = the extracted folder."
    )


def load_dataset(name: str, data_dir: str | Path = "") -> Dataset:
    """Loads a dataset by name.

    Args:
        name: "digits" (scikit-learn's 8x8 digits, no download), "mnist", "fashion_mnist",
            "cifar10" (binary version, from data_dir or the Keras cache), "idx:FOLDER" (the
            four standard IDX files in FOLDER), or "cache:FOLDER" (a cache written by
            ``zspace prepare``, streamed from disk; its valid split is the validation set).
        data_dir: folder to look in first for mnist / fashion_mnist.

    Raises:
        FileNotFoundError, DataError: with the path or name and what was expected.
    """
    key = name.partition(":")[0] + ":" if ":" in name else name
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; expected one of "
                        f"{', '.join(repr(k + 'FOLDER' if k.endswith(':') else k) for k in DATASETS)}.")
    return DATASETS[key](name[len(key):] if key.endswith(":") else name, data_dir)


def _load_idx_prefix(folder: str, data_dir) -> Dataset:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {folder}")
    return _load_idx_folder(folder.name, folder)


def _load_keras_dataset(name: str, data_dir) -> Dataset:
    """MNIST / Fashion-MNIST: data_dir, the Keras cache or a system folder, else Keras' download."""
    if data_dir and not Path(data_dir).exists():
        raise FileNotFoundError(f"data_dir not found: {data_dir}")
    found = find_local_dataset(name, data_dir)
    if found is None:
        try:
            (x_train, y_train), (x_test, y_test) = _download(name)
        except Exception as exc:  # offline, proxy, ...: say where we looked
            raise DataError(
                f"dataset {name!r} is not on this machine (looked in "
                f"{data_dir or '<no data_dir>'}, {keras_cache_dir()}) and the download failed "
                f"({type(exc).__name__}: {exc}). Pass data_dir = a folder with the IDX files."
            ) from None
        source = find_local_dataset(name) or keras_cache_dir()
        return _from_uint8(name, str(source), x_train, y_train, x_test, y_test, LABEL_NAMES[name])
    if found.suffix == ".npz":
        return _load_mnist_npz(found)
    return _load_idx_folder(name, found, LABEL_NAMES[name])


# Every name load_dataset accepts ("NAME:" entries take a folder after the colon) and its loader
# (rest of the name, data_dir) -> Dataset. The `dataset` config doc must name each (a test checks).
DATASETS = {
    "digits": lambda _name, _data_dir: _load_digits(),
    "mnist": _load_keras_dataset,
    "fashion_mnist": _load_keras_dataset,
    "cifar10": lambda _name, data_dir: _read_cifar_bin(_find_cifar(data_dir)),
    "idx:": _load_idx_prefix,
    "cache:": lambda folder, _data_dir: _load_cache(Path(folder)),
}


def check_input_shape(dataset: Dataset, input_shape: tuple[int, ...]) -> None:
    """Raises DataError unless the dataset's images have the model's ``input_shape``."""
    if len(dataset.x_train) == 0:
        raise DataError(f"dataset {dataset.name!r} ({dataset.source}) has no images.")
    if tuple(dataset.image_shape) != tuple(input_shape):
        h, w, c = dataset.image_shape
        raise DataError(
            f"dataset {dataset.name!r} has images of shape {dataset.image_shape} but the "
            f"model's input_shape is {tuple(input_shape)}; set input_shape = [{h}, {w}, {c}] "
            f"(and strides that fit it)."
        )


class SplitData(NamedTuple):
    """Training and validation images with their labels and attributes (None where absent).

    ``t_train`` / ``t_val``: the targets of an input/target pairs dataset (``x_*`` are then the
    inputs), None otherwise.
    """

    x_train: np.ndarray | ShardedImages
    y_train: np.ndarray | None
    x_val: np.ndarray | ShardedImages
    y_val: np.ndarray | None
    a_train: np.ndarray | None = None
    a_val: np.ndarray | None = None
    t_train: np.ndarray | ShardedImages | None = None
    t_val: np.ndarray | ShardedImages | None = None


def _take(x, idx):
    """Rows ``idx`` of an array, or a view of them for images streamed from a cache."""
    if x is None:
        return None
    return x.select(idx) if isinstance(x, ShardedImages) else x[idx]


def train_validation_split(dataset: Dataset, validation_split: float, subset: int, seed: int) -> SplitData:
    """Training and validation data.

    The official test split is the validation set when the dataset has one; otherwise a
    seeded ``validation_split`` fraction is held out. ``subset`` > 0 keeps a seeded random
    choice of that many training images (and proportionally many validation images).
    Images streamed from a cache stay on disk (views, not copies).
    """
    rng = np.random.default_rng(seed)
    x, y, a, t = dataset.x_train, dataset.y_train, dataset.a_train, dataset.t_train
    if dataset.x_test is not None:
        x_val, y_val, a_val, t_val = dataset.x_test, dataset.y_test, dataset.a_test, dataset.t_test
    else:
        order = rng.permutation(len(x))
        n_val = max(1, int(round(validation_split * len(x))))
        if len(x) - n_val < 1:
            raise DataError(f"dataset {dataset.name!r} has too few images ({len(x)}) to split.")
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        x_val, y_val, a_val, t_val = (_take(v, val_idx) for v in (x, y, a, t))
        x, y, a, t = (_take(v, train_idx) for v in (x, y, a, t))
    if subset and subset < len(x):
        n_val = max(1, min(len(x_val), int(round(subset * len(x_val) / len(x)))))
        train_idx = np.sort(rng.choice(len(x), subset, replace=False))
        val_idx = np.sort(rng.choice(len(x_val), n_val, replace=False))
        x, y, a, t = (_take(v, train_idx) for v in (x, y, a, t))
        x_val, y_val, a_val, t_val = (_take(v, val_idx) for v in (x_val, y_val, a_val, t_val))
    return SplitData(x, y, x_val, y_val, a, a_val, t, t_val)


def check_task_data(dataset: Dataset, task: str) -> None:
    """Raises DataError unless ``task`` and the dataset agree: ``task = "pairs"`` trains on an
    input/target pairs dataset (``zspace prepare pairs``), and such a dataset only with it."""
    if task == "pairs" and not dataset.is_pairs:
        raise DataError(f'`task` = "pairs" needs a dataset of input/target pairs (a cache written by `zspace '
                        f'prepare pairs`, dataset = "cache:DIR"); dataset {dataset.name!r} ({dataset.source}) '
                        f'holds single images.')
    if task != "pairs" and dataset.is_pairs:
        raise DataError(f'dataset {dataset.name!r} ({dataset.source}) holds input/target pairs; set task = '
                        f'"pairs" to train the model to map each input to its target (task = {task!r} has no '
                        f'use for the targets).')
