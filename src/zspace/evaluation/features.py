"""Feature spaces for the sample-quality distances (FD, KID, precision / recall): images -> (n, D) features.

Three spaces, in order of preference for a dataset's own evaluation:

- **FD-domain** (:func:`domain_network`): a small conv classifier trained once per dataset on its
  labels (or CelebA-style +1 / -1 attributes, unknown entries masked out), cached beside the data
  with its held-out accuracy; features are its 128-d penultimate layer (``"features"``). It knows
  what separates this dataset's images, which Inception, trained on 224-px ImageNet photographs,
  does not for 28-px greyscale clothes.
- **FD-random**: the same architecture with seeded random weights, for data with neither labels nor
  attributes. Random conv features still preserve much of the images' local structure: Naeem et
  al. (2020, "Reliable fidelity and diversity metrics") found embeddings of a randomly initialised
  network usable for density / coverage, and such embeddings rank distributions sensibly. They
  are weaker: nothing told them which differences matter, so a blur may move them as much as a
  wrong class.
- **FID** (:func:`inception_network`): Inception-v3 pool features (2048-d) with the standard
  protocol (bilinear resize to 299x299, greyscale repeated to RGB, pixels in [-1, 1]), only when
  the ImageNet weights are already in the Keras cache: zspace never downloads them.

Numbers from different feature spaces (or from two domain networks of different data or seeds)
are not comparable: a distance means something only beside another one measured in the same space.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import keras
import numpy as np

from zspace.data.cache import MANIFEST
from zspace.data.datasets import Dataset, keras_cache_dir, train_validation_split
from zspace.errors import CacheDirError, DataError
from zspace.records import Record
from zspace.storage import atomic_path, atomic_write_text

__all__ = ["FeatureSpace", "FeatureExtractor", "domain_network", "inception_network", "INCEPTION_WEIGHTS"]

logger = logging.getLogger(__name__)

ARCHITECTURE_VERSION = 2  # part of every fingerprint: a changed network never reuses an old cache
FEATURE_DIM = 128
NETWORK_DESCRIPTION = "conv 32/64/128 (3x3, stride 2), global average pool, dense 128 'features'"
# The file keras.applications.InceptionV3(include_top=False) looks for in <KERAS_HOME>/models.
INCEPTION_WEIGHTS = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_SIZE = 299
# Only the weights are cached (arrays in an .npz): the architecture always comes from this code, so a
# tampered file cannot declare layers (and allocations) of its choosing.
_NETWORK_FILE, _RECORD_FILE = "domain-network.weights.npz", "domain-network.json"
_MAX_OUTPUTS = 10_000  # classes or attributes a cached head may declare
_MAX_RECORD_BYTES = 2**20
_HOLD_OUT = 0.1  # fraction of the training split held out when the dataset has no test split
_BATCH_SIZE = 128
_TRAIN_STEPS = 3500  # optimizer steps aimed at (whole epochs): 8 epochs of Fashion-MNIST, 0.89 in < 2 min
_LEARNING_RATE = 2e-3
_MAX_EPOCHS = 30


@dataclass(frozen=True)
class FeatureSpace(Record):
    """What a feature extractor's features are; numbers are comparable only within one space.

    Attributes:
        label: "FD-domain" (trained on the dataset), "FD-random" (seeded random weights) or "FID".
        network: short description of the network.
        trained_on: "labels", "attributes" or "none".
        held_out_accuracy: accuracy on held-out images (multi-label: over known attribute
            entries), or None when not trained here.
        n_train, n_test: images trained on and held out (0 when not trained here).
        dim: feature dimension D.
        path: the cached network file, or "" when nothing is stored.
        note: why this space was chosen or what was skipped.
    """

    label: Literal["FD-domain", "FD-random", "FID"]
    network: str
    trained_on: Literal["labels", "attributes", "none"]
    held_out_accuracy: float | None
    n_train: int
    n_test: int
    dim: int
    path: str
    note: str = ""


@dataclass(frozen=True)
class _CachedNetwork(Record):
    """The JSON written beside a trained network; ``weights_sha256`` ties it to that exact file."""

    fingerprint: str
    input_shape: tuple[int, int, int]
    trained_on: Literal["labels", "attributes"]
    n_outputs: int
    held_out_accuracy: float
    n_train: int
    n_test: int
    dim: int
    seconds: float
    weights_sha256: str


class FeatureExtractor:
    """Maps float32 images (n, H, W, C) in [0, 1] to float32 features (n, D), batch by batch.

    Args:
        model: Keras model from (batch, H, W, C) images to (batch, D) features.
        space: the :class:`FeatureSpace` the features live in.
        input_shape: (H, W, C) the images must have, or None for any height and width with 1 or
            3 channels (Inception: greyscale is repeated to RGB here, the model resizes).
        progress: show a tqdm bar over the images.
    """

    def __init__(self, model: keras.Model, space: FeatureSpace, input_shape: tuple[int, ...] | None,
                 progress: bool = True):
        self.model, self.space, self.progress = model, space, progress
        self.input_shape = None if input_shape is None else tuple(input_shape)

    def _check(self, images) -> None:
        shape = tuple(images.shape)
        if self.input_shape is None:
            fits, expected = len(shape) == 4 and shape[-1] in (1, 3), "(n, H, W, 1 or 3)"
        else:
            fits, expected = shape[1:] == self.input_shape, f"(n, {', '.join(map(str, self.input_shape))})"
        if not fits:
            raise ValueError(f"images of shape {shape} do not fit the {self.space.label} network. "
                             f"Expected: {expected} float32 in [0, 1].")

    def features(self, images, batch_size: int = 256) -> np.ndarray:
        """(n, D) float32 features of (n, H, W, C) float32 images in [0, 1] (an array or ShardedImages)."""
        from tqdm import tqdm

        self._check(images)
        out = np.empty((len(images), self.space.dim), dtype=np.float32)
        with tqdm(total=len(images), desc=f"{self.space.label} features", unit="img",
                  disable=not self.progress or len(images) <= batch_size) as bar:
            for start in range(0, len(images), batch_size):
                batch = np.asarray(images[start:start + batch_size], dtype=np.float32)
                if self.input_shape is None and batch.shape[-1] == 1:
                    batch = np.repeat(batch, 3, axis=-1)
                out[start:start + len(batch)] = predict_padded(self.model, batch, batch_size)
                bar.update(len(batch))
        return out


def predict_padded(model: keras.Model, batch: np.ndarray, rows: int) -> np.ndarray:
    """``model.predict_on_batch`` of ``batch`` (at most ``rows`` images), zero-padded to ``rows``: TensorFlow
    traces the predict function again for every new batch length (a slow step, and its "retracing" warning)."""
    n = len(batch)
    if n < rows:
        batch = np.concatenate([batch, np.zeros((rows - n, *batch.shape[1:]), dtype=batch.dtype)])
    return model.predict_on_batch(batch)[:n]


# === The domain network ===

def _build_network(image_shape: tuple[int, ...], n_outputs: int, seed: int) -> keras.Model:
    """(batch, H, W, C) images -> (batch, n_outputs) logits; standard layers, seeded initializers."""
    seeds = np.random.default_rng(seed).integers(2**31 - 1, size=5).tolist()
    inputs = keras.Input(tuple(image_shape), name="images")
    x = inputs
    for filters, layer_seed in zip((32, 64, 128), seeds):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu",
                                kernel_initializer=keras.initializers.GlorotUniform(layer_seed))(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    features = keras.layers.Dense(FEATURE_DIM, activation="relu", name="features",
                                  kernel_initializer=keras.initializers.GlorotUniform(seeds[3]))(x)
    logits = keras.layers.Dense(n_outputs, name="head",
                                kernel_initializer=keras.initializers.GlorotUniform(seeds[4]))(features)
    return keras.Model(inputs, logits, name="zspace_feature_network")


def _feature_model(network: keras.Model) -> keras.Model:
    return keras.Model(network.inputs, network.get_layer("features").output)


def _masked_attribute_loss(targets, logits):
    """Sigmoid cross-entropy over the known entries of +1 / -1 targets (0 = unknown), per image."""
    known = keras.ops.cast(keras.ops.not_equal(targets, 0), logits.dtype)
    positive = keras.ops.cast(keras.ops.greater(targets, 0), logits.dtype)
    # softplus(l) - y l is the sigmoid cross-entropy of logit l for y in {0, 1}, stable for large |l|
    entries = keras.ops.softplus(logits) - positive * logits
    return keras.ops.sum(known * entries, axis=-1) / keras.ops.maximum(keras.ops.sum(known, axis=-1), 1.0)


class _TargetBatches(keras.utils.PyDataset):
    """(images, targets) batches of ``epochs`` seeded permutations of the rows ``rows`` of ``images``."""

    def __init__(self, images, targets: np.ndarray, rows: np.ndarray, batch_size: int, epochs: int, seed: int):
        super().__init__(workers=1, use_multiprocessing=False)
        self.images, self.targets, self.rows, self.batch_size = images, targets, rows, batch_size
        self.steps_per_epoch = math.ceil(len(rows) / batch_size)
        self.orders = [np.random.default_rng([seed, epoch]).permutation(rows) for epoch in range(epochs)]

    def __len__(self) -> int:
        return self.steps_per_epoch * len(self.orders)

    def __getitem__(self, index: int):
        order = self.orders[index // self.steps_per_epoch]
        step = index % self.steps_per_epoch
        # sorted rows read memory (or shard files) in order; a batch's mean loss ignores its order
        batch = np.sort(order[step * self.batch_size:(step + 1) * self.batch_size])
        return np.asarray(self.images[batch], dtype=np.float32), self.targets[batch]


def _logits(network: keras.Model, images, rows: np.ndarray) -> np.ndarray:
    """(len(rows), outputs) logits of ``images[rows]``, batch by batch (images may live on disk)."""
    return np.concatenate([predict_padded(network, np.asarray(images[rows[start:start + 1024]], np.float32), 1024)
                           for start in range(0, len(rows), 1024)])


def _train(dataset: Dataset, fingerprint: str, seed: int, progress: bool) -> tuple[keras.Model, _CachedNetwork]:
    """Trains the classifier on labels (softmax) or attributes (masked sigmoid); the untrained-on
    held-out split (test split, else a seeded 10% of train) gives its accuracy."""
    start_time = time.perf_counter()
    by_labels = dataset.y_train is not None
    held_out_targets = dataset.y_test if by_labels else dataset.a_test
    if dataset.x_test is not None and held_out_targets is None:  # test images without targets: hold out train
        dataset = dataclasses.replace(dataset, x_test=None, y_test=None, a_test=None)
    split = train_validation_split(dataset, _HOLD_OUT, subset=0, seed=seed)
    if by_labels:
        train_targets, held_out = split.y_train, split.y_val
        train_rows, test_rows = np.flatnonzero(train_targets >= 0), np.flatnonzero(held_out >= 0)  # -1: unlabelled
        n_outputs = max(len(dataset.label_names), int(np.concatenate([train_targets, held_out]).max()) + 1)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        train_targets, held_out = split.a_train.astype(np.float32), split.a_val
        train_rows, test_rows = np.flatnonzero((train_targets != 0).any(1)), np.flatnonzero((held_out != 0).any(1))
        n_outputs, loss = train_targets.shape[1], _masked_attribute_loss
    if len(train_rows) == 0 or len(test_rows) == 0:
        raise DataError(f"dataset {dataset.name!r} has {len(train_rows)} training and {len(test_rows)} held-out "
                         f"images with known targets; the domain network needs some of each.")
    steps_per_epoch = math.ceil(len(train_rows) / _BATCH_SIZE)
    epochs = min(_MAX_EPOCHS, max(1, math.ceil(_TRAIN_STEPS / steps_per_epoch)))
    batches = _TargetBatches(split.x_train, train_targets, train_rows, _BATCH_SIZE, epochs, seed)
    network = _build_network(dataset.image_shape, n_outputs, seed)
    # cosine decay to 0: +1% held-out accuracy on Fashion-MNIST over a constant 1e-3 in the same 8 epochs
    learning_rate = keras.optimizers.schedules.CosineDecay(_LEARNING_RATE, decay_steps=len(batches))
    network.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    # all epochs in one pass of `batches`; Keras' own shuffle (unseeded) would mix the batch order
    # a live bar on a terminal; in a log file one line at the end, not one per refresh
    network.fit(batches, epochs=1, shuffle=False, verbose=(1 if sys.stdout.isatty() else 2) if progress else 0)
    logits = _logits(network, split.x_val, test_rows)
    if by_labels:
        accuracy = float(np.mean(logits.argmax(1) == held_out[test_rows]))
    else:
        targets = held_out[test_rows]
        accuracy = float(np.mean(((logits > 0) == (targets > 0))[targets != 0]))
    record = _CachedNetwork(fingerprint, tuple(dataset.image_shape), "labels" if by_labels else "attributes",
                            n_outputs, accuracy, len(train_rows), len(test_rows), FEATURE_DIM,
                            time.perf_counter() - start_time, weights_sha256="")
    return network, record


# === The cache ===

def dataset_fingerprint(dataset: Dataset, seed: int) -> str:
    """16 hex digits of sha256 over the name, shape, split sizes, 64 images a split, all labels and
    attributes, the seed and :data:`ARCHITECTURE_VERSION`: different data never share a network."""
    digest = hashlib.sha256()
    sizes = [0 if x is None else len(x) for x in (dataset.x_train, dataset.x_test)]
    digest.update(json.dumps([ARCHITECTURE_VERSION, dataset.name, list(dataset.image_shape), sizes, seed]).encode())
    for images in (dataset.x_train, dataset.x_test):
        if images is not None and len(images):
            picks = np.unique(np.linspace(0, len(images) - 1, 64).astype(np.int64))
            digest.update(np.ascontiguousarray(images[picks], dtype=np.float32).tobytes())
    for targets, dtype in ((dataset.y_train, np.int64), (dataset.y_test, np.int64),
                           (dataset.a_train, np.int8), (dataset.a_test, np.int8)):
        digest.update(b"none" if targets is None else np.ascontiguousarray(targets, dtype=dtype).tobytes())
    return digest.hexdigest()[:16]


def _cache_folder(dataset: Dataset, fingerprint: str, cache_dir: str | Path | None) -> Path:
    """``cache_dir/<name>-<fingerprint>``; else ``<prepared cache>/features``; else the Keras cache's."""
    if cache_dir is not None:
        return Path(cache_dir) / f"{dataset.name}-{fingerprint}"
    source = Path(dataset.source)
    if (source / MANIFEST).is_file():  # a cache written by `zspace prepare`: the network lives beside it
        return source / "features"
    return keras_cache_dir() / "zspace-features" / f"{dataset.name}-{fingerprint}"


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:  # streamed: a planted huge file costs time, not memory
        return hashlib.file_digest(f, "sha256").hexdigest()


def _read_weights(path: Path, expected: list[tuple[int, ...]]) -> list[np.ndarray]:
    """The arrays of a weights .npz, each header checked against the expected float32 shapes before
    any array is read: a hostile file cannot make us allocate more than the network's own size."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        names = [f"arr_{i}.npy" for i in range(len(expected))]
        if sorted(archive.namelist()) != sorted(names):
            raise ValueError(f"{path.name} holds {len(archive.namelist())} members; expected {len(expected)} arrays")
        arrays = []
        for name, shape in zip(names, expected):
            with archive.open(name) as member:
                major, _ = np.lib.format.read_magic(member)
                if major not in (1, 2):
                    raise ValueError(f"{path.name}: {name} has .npy format version {major}; expected 1 or 2")
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                header_shape, fortran, dtype = read_header(member)
                if tuple(header_shape) != shape or dtype != np.float32 or fortran:
                    raise ValueError(f"{path.name}: {name} is {dtype} {header_shape}; expected float32 {shape}")
                data = member.read(4 * math.prod(shape) + 1)
                if len(data) != 4 * math.prod(shape):
                    raise ValueError(f"{path.name}: {name} has {len(data)} bytes; expected {4 * math.prod(shape)}")
                arrays.append(np.frombuffer(data, np.float32).reshape(shape))
    return arrays


def _load_cached(folder: Path, fingerprint: str,
                 image_shape: tuple[int, ...], seed: int) -> tuple[keras.Model, _CachedNetwork] | None:
    """The cached network and its record, or None (with a warning naming the file) unless every check passes."""
    record_path, weights_path = folder / _RECORD_FILE, folder / _NETWORK_FILE
    if not record_path.exists():
        return None
    try:
        if record_path.stat().st_size > _MAX_RECORD_BYTES:
            raise ValueError(f"larger than {_MAX_RECORD_BYTES} bytes")
        record = _CachedNetwork.from_json(json.loads(record_path.read_bytes()[:_MAX_RECORD_BYTES]))
        if record.fingerprint != fingerprint or record.input_shape != tuple(image_shape):
            raise ValueError(f"made for other data (fingerprint {record.fingerprint}, input {record.input_shape}; "
                             f"expected {fingerprint}, {tuple(image_shape)})")
        if not 0.0 <= record.held_out_accuracy <= 1.0 or record.dim != FEATURE_DIM:
            raise ValueError(f"accuracy {record.held_out_accuracy} or dim {record.dim} out of range")
        if not 1 <= record.n_outputs <= _MAX_OUTPUTS:
            raise ValueError(f"n_outputs {record.n_outputs} outside [1, {_MAX_OUTPUTS}]")
        if _sha256(weights_path) != record.weights_sha256:
            raise ValueError(f"{weights_path.name} is not the file this record describes (changed or truncated)")
        network = _build_network(image_shape, record.n_outputs, seed)
        network.set_weights(_read_weights(weights_path, [tuple(w.shape) for w in network.weights]))
    except (OSError, ValueError, TypeError, KeyError, ArithmeticError, RecursionError, EOFError) as exc:
        logger.warning("%s: feature-network cache not trusted (%s); retraining it.", record_path, str(exc)[:300])
        return None
    return network, record


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CacheDirError(f"cannot write the feature-network cache folder {folder} ({exc.strerror or exc}); "
                            f"choose another with --set features_dir=DIR (Python: cache_dir=).") from None


def _save(folder: Path, network: keras.Model, record: _CachedNetwork) -> _CachedNetwork:
    """Model first, JSON last (with the model's sha256): a crash in between leaves no valid pair."""
    (folder / _RECORD_FILE).unlink(missing_ok=True)
    with atomic_path(folder / _NETWORK_FILE) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, *[np.asarray(w, np.float32) for w in network.get_weights()])
    record = dataclasses.replace(record, weights_sha256=_sha256(folder / _NETWORK_FILE))
    atomic_write_text(folder / _RECORD_FILE, json.dumps(record.to_json(), indent=2, allow_nan=False))
    return record


# === Public API ===

def domain_network(dataset: Dataset, cache_dir: str | Path | None = None, seed: int = 0,
                   progress: bool = True) -> FeatureExtractor:
    """The dataset's feature network: trained on its labels or attributes once, then loaded from the cache.

    Data with neither gives the "FD-random" space (seeded random weights, nothing trained or stored).

    Args:
        dataset: images (N, H, W, C) float32 in [0, 1] with labels and / or attributes.
        cache_dir: folder to keep networks in (one sub-folder per data fingerprint); default: the
            prepared cache's ``features/`` folder, else ``<KERAS_HOME>/datasets/zspace-features``.
        seed: initial weights, batch order and hold-out choice; part of the fingerprint.
        progress: Keras' training progress and a tqdm bar over extracted images.

    Raises:
        CacheDirError: the cache folder cannot be written (the message names it).
        DataError: no training or no held-out image has a known label / attribute.
    """
    image_shape = tuple(dataset.image_shape)
    if dataset.y_train is None and dataset.a_train is None:
        network = _build_network(image_shape, 1, seed)
        space = FeatureSpace("FD-random", f"{NETWORK_DESCRIPTION}; seeded random weights (seed {seed})", "none",
                             None, 0, 0, FEATURE_DIM, "",
                             note="no labels or attributes: random-weight features, weaker than a trained network's")
        return FeatureExtractor(_feature_model(network), space, image_shape, progress)
    fingerprint = dataset_fingerprint(dataset, seed)
    folder = _cache_folder(dataset, fingerprint, cache_dir)
    cached = _load_cached(folder, fingerprint, image_shape, seed)
    if cached is None:
        _check_writable(folder)  # before training, not after minutes of it
        network, record = _train(dataset, fingerprint, seed, progress)
        record = _save(folder, network, record)
    else:
        network, record = cached
    space = FeatureSpace("FD-domain", NETWORK_DESCRIPTION, record.trained_on, record.held_out_accuracy,
                         record.n_train, record.n_test, record.dim, str(folder / _NETWORK_FILE),
                         note=f"trained on the {record.trained_on} of {dataset.name} in {record.seconds:.0f} s")
    return FeatureExtractor(_feature_model(network), space, image_shape, progress)


def inception_weights_path() -> Path:
    """Where Keras keeps the notop Inception-v3 ImageNet weights: ``<KERAS_HOME or ~/.keras>/models``."""
    return keras_cache_dir().parent / "models" / INCEPTION_WEIGHTS


def inception_network(progress: bool = True) -> tuple[FeatureExtractor | None, str]:
    """Inception-v3 pool features (2048-d) for FID, or (None, why not) when its weights are not cached.

    Never downloads: the weights file must already be at :func:`inception_weights_path`. Images
    of any (H, W) with 1 or 3 channels are resized bilinearly to 299x299 and scaled to [-1, 1].
    """
    path = inception_weights_path()
    if not path.is_file():
        return None, (f"FID skipped: the Inception-v3 ImageNet weights are not at {path} (zspace never "
                      f"downloads them; put {INCEPTION_WEIGHTS} there for FID).")
    try:
        base = keras.applications.InceptionV3(weights=str(path), include_top=False, pooling="avg",
                                              input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3))
    except (OSError, ValueError, KeyError) as exc:
        return None, f"FID skipped: {path} could not be loaded ({type(exc).__name__}: {exc})."
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Resizing(INCEPTION_SIZE, INCEPTION_SIZE, interpolation="bilinear")(inputs)
    x = keras.layers.Rescaling(2.0, offset=-1.0)(x)  # Inception's preprocessing: [0, 1] -> [-1, 1]
    space = FeatureSpace("FID", "Inception-v3 (ImageNet), 2048-d pool features", "none", None, 0, 0, 2048, str(path),
                         note="standard FID protocol: bilinear resize to 299x299, greyscale to RGB, [-1, 1]")
    return FeatureExtractor(keras.Model(inputs, base(x)), space, None, progress), space.note
