"""TensorBoard Embedding Projector data of an analysis (``zspace analyze --tensorboard``).

Layout under ``RUN/tensorboard`` (the folder ``[train] tensorboard = true`` writes its logs into, so one
``tensorboard --logdir RUN/tensorboard`` shows both)::

    projector_config.pbtxt     ProjectorConfig (text proto): the commit point, pointing at one folder
    projector/<id>/mu.tsv      a VAE's mu of the chosen points, one row per point (tab-separated floats)
    projector/<id>/z.tsv       z of the same points (an AE has only this one)
    projector/<id>/metadata.tsv  point id, split, label, class name, attributes; row i = tensor row i
    projector/<id>/sprite.png  the points' images, square RGB thumbnails row by row (cell i = point i)

The projector plugin reads a config in the log directory itself (run "."), whether or not event files are
there. Each write fills a fresh ``projector/.tmp-*`` folder, renames it to a new ``<id>`` and only then
replaces the config: a kill at any moment leaves the previous config pointing at its complete folder (the
orphaned folder is removed by the next write). TensorBoard reads the config once per process: restart it
after a new analysis.

Why both mu and z: mu is the encoder's deterministic mean, the cleaner picture of the learned structure; z =
mu + sigma * eps is what the decoder sees and what ``zspace analyze`` computes its statistics and 2-D
embeddings on. The projector lists them as two tensors of one dropdown (mu first) with one metadata file and
one sprite.

Tensors are written as text (``tensor_path`` to a TSV file), not as a TF checkpoint or raw float32 bytes:
the plugin reads a TSV file first and falls back to bytes only on a UnicodeDecodeError, so a bytes file
that happens to be valid UTF-8 fails; a checkpoint would need TensorFlow whatever the Keras backend. Nine
significant digits give every float32 back exactly.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zspace.analysis.projection import random_subset
from zspace.analysis.records import Analysis
from zspace.config import MAX_PROJECTOR_POINTS
from zspace.errors import ConfigError, DiskFullError, RunError
from zspace.rundir import tensorboard_dir
from zspace.storage import TEMP_PREFIX, fsync_path, is_disk_full, process_umask

__all__ = ["MAX_SPRITE_PX", "MIN_THUMBNAIL_PX", "ProjectorData", "projector_data", "write_projector",
           "write_run_projector", "tensorboard_dir", "projector_config_path", "escape_tsv_field", "metadata_tsv",
           "metadata_columns", "thumbnail_side", "sprite_image", "as_rgb", "tensor_tsv", "point_images",
           "check_projector_z_dim", "check_projector_target"]

MAX_SPRITE_PX = 8192
"""Largest sprite side TensorBoard's projector accepts (its frontend refuses a wider or taller image)."""

MIN_THUMBNAIL_PX = 28
"""Smallest thumbnail side: a smaller image is enlarged by the smallest whole factor that reaches it (digits'
8x8 by 4 to 32 px, each pixel a sharp 4x4 block) to be seen on hover; the sprite's limit wins when the
points are too many for it."""

PROJECTOR_FOLDER = "projector"
CONFIG_NAME = "projector_config.pbtxt"  # tensorboard.plugins.projector.metadata.PROJECTOR_FILENAME
METADATA_NAME = "metadata.tsv"
SPRITE_NAME = "sprite.png"
SPLIT_NAMES = ("train", "validation")


def projector_config_path(run_root: str | Path) -> Path:
    """``RUN/tensorboard/projector_config.pbtxt``."""
    return tensorboard_dir(run_root) / CONFIG_NAME


def check_projector_z_dim(z_dim: int) -> None:
    """ConfigError unless the points have at least 2 dimensions (the projector refuses 1-D vectors)."""
    if z_dim < 2:
        raise ConfigError(f"tensorboard: the Embedding Projector shows points of at least 2 dimensions; this run's "
                          f"z_dim is {z_dim}. Analyse it without --tensorboard (tensorboard = false).")


# --- pure pieces ----------------------------------------------------------------------------------

def escape_tsv_field(text: str) -> str:
    r"""``text`` as one TSV field: tab, newline and carriage return become the two characters \t, \n, \r.

    The projector splits rows on newlines and fields on tabs and has no quoting; a field that is empty or
    blank becomes "-" (an all-blank row would be skipped, shifting every later row onto the wrong point).
    """
    text = str(text).replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text if text.strip() else "-"


def _unique_names(names: Sequence[str]) -> list[str]:
    """Names made distinct by " (2)", " (3)" ...: the projector keys each row's values by column name."""
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, k = name, 1
        while candidate in seen:
            k += 1
            candidate = f"{name} ({k})"
        seen.add(candidate)
        out.append(candidate)
    return out


def metadata_tsv(columns: Sequence[tuple[str, Sequence[str]]]) -> str:
    """The text of a projector metadata file: one line per point, fields escaped.

    The plugin and its frontend take the first line as a header exactly when it holds a tab: a header row
    is written when there is more than one column, and a single column has none (its name is lost; the
    projector calls it "label").

    Args:
        columns: (name, values) pairs, each with one value per point.
    """
    if not columns:
        raise ValueError("metadata needs at least one column")
    lengths = {len(values) for _, values in columns}
    if len(lengths) != 1:
        raise ValueError(f"metadata columns of different lengths: {sorted(lengths)}")
    rows = zip(*(values for _, values in columns))
    lines = ["\t".join(escape_tsv_field(v) for v in row) for row in rows]
    if len(columns) > 1:
        lines.insert(0, "\t".join(escape_tsv_field(n) for n in _unique_names([n for n, _ in columns])))
    return "".join(f"{line}\n" for line in lines)


def metadata_columns(analysis: Analysis, indices: np.ndarray) -> list[tuple[str, list[str]]]:
    """Metadata of the analysis points ``indices``: "point" (the point id, the row of analysis.npz), when known
    "label" and "class" (its name), "split", and one column per attribute (1 / -1, 0 = unknown).

    The projector labels the points by its first column that is not all numbers: the class name when it
    is a word (Fashion-MNIST's "Sneaker"), else the split.
    """
    arrays = analysis.arrays
    columns = [("point", [str(int(i)) for i in indices])]
    labels = arrays.get("labels")
    if labels is not None:
        chosen = labels[indices].astype(np.int64)
        columns.append(("label", [str(int(y)) for y in chosen]))
        names = analysis.label_names
        if names:
            columns.append(("class", [names[y] if 0 <= y < len(names) else "" for y in chosen.tolist()]))
    if "split" in arrays:
        columns.append(("split", [SPLIT_NAMES[int(s)] if 0 <= s < 2 else str(int(s))
                                  for s in arrays["split"][indices]]))
    attributes = arrays.get("attributes")
    if attributes is not None and analysis.attributes is not None:
        chosen = attributes[indices]
        for a, name in enumerate(analysis.attributes.names):
            columns.append((name, [str(int(v)) for v in chosen[:, a]]))
    return columns


def tensor_tsv(codes: np.ndarray) -> str:
    """(n, d) float32 points as the projector's tensor TSV: one line per point, 9 significant digits
    (every float32 reads back exactly)."""
    codes = np.asarray(codes, dtype=np.float32)
    if codes.ndim != 2:
        raise ValueError(f"points must be (n, d). Received shape {codes.shape}")
    return "".join("\t".join(f"{v:.9g}" for v in row) + "\n" for row in codes.tolist())


def thumbnail_side(n_images: int, height: int, width: int) -> int:
    """Side in px of each square sprite thumbnail: the image's larger side, enlarged by a whole factor to at
    least MIN_THUMBNAIL_PX, at most MAX_SPRITE_PX // ceil(sqrt(n)) (the sprite's row of thumbnails fits)."""
    per_row = math.ceil(math.sqrt(max(n_images, 1)))
    largest = MAX_SPRITE_PX // per_row
    if largest < 1:
        raise ValueError(f"{n_images} thumbnails do not fit in a {MAX_SPRITE_PX} px sprite")
    native = max(height, width)
    return min(native * math.ceil(MIN_THUMBNAIL_PX / native), largest)


def as_rgb(images: np.ndarray) -> np.ndarray:
    """(n, H, W, C) images in [0, 1] as uint8 (n, H, W, 3): one channel (grey) is repeated into three; three
    or more channels show the first three; two show the first as grey."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be (n, H, W, C). Received shape {images.shape}")
    rgb = images[..., :3] if images.shape[-1] >= 3 else np.repeat(images[..., :1], 3, axis=-1)
    return np.round(np.clip(np.nan_to_num(rgb), 0.0, 1.0) * 255.0).astype(np.uint8)


def _square_thumbnail(image: np.ndarray, side: int):
    """One uint8 (H, W, 3) image as a ``side`` x ``side`` PIL image: padded with black to a square (the
    aspect ratio kept), then enlarged pixel for pixel (nearest) or reduced with box filtering."""
    from PIL import Image

    h, w = image.shape[:2]
    square = max(h, w)
    canvas = np.zeros((square, square, 3), dtype=np.uint8)
    top, left = (square - h) // 2, (square - w) // 2
    canvas[top:top + h, left:left + w] = image
    picture = Image.fromarray(canvas)  # uint8 (H, W, 3): RGB
    if square == side:
        return picture
    return picture.resize((side, side), Image.NEAREST if side > square else Image.BOX)


def sprite_image(images: np.ndarray, side: int) -> np.ndarray:
    """The projector's sprite: uint8 (S, S, 3), S = ceil(sqrt(n)) * side, thumbnail i at row i // cols,
    column i % cols (the order the projector reads), the rest black.

    Args:
        images: (n, H, W, C) float images in [0, 1] (see :func:`as_rgb` for C).
        side: thumbnail side in px (:func:`thumbnail_side`).
    """
    rgb = as_rgb(images)
    per_row = math.ceil(math.sqrt(max(len(rgb), 1)))
    size = per_row * side
    if size > MAX_SPRITE_PX:
        raise ValueError(f"a sprite of {size} px exceeds TensorBoard's {MAX_SPRITE_PX} px")
    sprite = np.zeros((size, size, 3), dtype=np.uint8)
    for i, image in enumerate(rgb):
        r, c = divmod(i, per_row)
        sprite[r * side:(r + 1) * side, c * side:(c + 1) * side] = np.asarray(_square_thumbnail(image, side))
    return sprite


def point_images(split_data, point_split: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The images of analysis points ``indices``: float32 (k, H, W, C).

    An analysis encodes its split's training images, then its validation images, in order (split "all":
    point p < n_train is x_train[p], else x_val[p - n_train]); ``point_split`` (the analysis' "split"
    array, 0 = train, 1 = validation) says which.
    """
    n_train_points = int(np.count_nonzero(point_split == 0))
    sources = {0: (split_data.x_train, 0), 1: (split_data.x_val, n_train_points)}
    images = None
    for code, (x, offset) in sources.items():
        chosen = np.flatnonzero(point_split[indices] == code)
        if not len(chosen):
            continue
        positions = indices[chosen] - offset
        if positions.max() >= len(x):
            raise RunError(f"the analysis has more {SPLIT_NAMES[code]} points ({positions.max() + 1}) than the run "
                           f"has {SPLIT_NAMES[code]} images ({len(x)}); run `zspace analyze` again.")
        part = np.asarray(x[positions], dtype=np.float32)
        if images is None:
            images = np.zeros((len(indices), *part.shape[1:]), dtype=np.float32)
        images[chosen] = part
    if images is None:
        raise RunError("the analysis has no points to show in the projector.")
    return images


# --- the projector's data of an analysis ----------------------------------------------------------

@dataclass(frozen=True)
class ProjectorData:
    """Everything the projector folder holds, in memory.

    Attributes:
        indices: (n,) analysis point ids of the rows, increasing.
        tensors: name ("mu", "z") -> (n, z_dim) float32, row i = point ``indices[i]``.
        metadata: metadata.tsv text; sprite: uint8 (S, S, 3); thumbnail: its cell side in px.
    """

    indices: np.ndarray
    tensors: dict[str, np.ndarray]
    metadata: str
    sprite: np.ndarray
    thumbnail: int


def projector_data(analysis: Analysis, images_of, limit: int = 10_000, seed: int = 0) -> ProjectorData:
    """The projector's data of ``analysis``: a seeded random subset of at most ``limit`` points.

    Args:
        images_of: called with the sorted point ids, returns their images (n, H, W, C) in [0, 1]
            (:func:`point_images` of the run's split).
        limit: at most :data:`zspace.config.MAX_PROJECTOR_POINTS`.
    """
    if not 0 < limit <= MAX_PROJECTOR_POINTS:
        raise ConfigError(f"projector_points must be in [1, {MAX_PROJECTOR_POINTS:,}]. Received: {limit}")
    arrays = analysis.arrays
    check_projector_z_dim(int(arrays["z"].shape[1]))
    indices = random_subset(len(arrays["z"]), limit, seed)
    tensors = {name: np.asarray(arrays[name][indices], dtype=np.float32) for name in ("mu", "z") if name in arrays}
    for name, points in tensors.items():
        if not np.isfinite(points).all():
            raise RunError(f"the analysis' {name} holds non-finite values (a diverged model?); the Embedding "
                           f"Projector needs finite points.")
    images = images_of(indices)
    side = thumbnail_side(len(indices), images.shape[1], images.shape[2])
    return ProjectorData(indices, tensors, metadata_tsv(metadata_columns(analysis, indices)),
                         sprite_image(images, side), side)


def _projector_config(data: ProjectorData, folder: str):
    """The ProjectorConfig proto of ``data`` whose files are in ``folder`` (relative to the config)."""
    from tensorboard.plugins.projector import EmbeddingInfo, ProjectorConfig

    config = ProjectorConfig()
    for name, points in data.tensors.items():
        embedding: EmbeddingInfo = config.embeddings.add()
        embedding.tensor_name = name
        embedding.tensor_path = f"{folder}/{name}.tsv"
        embedding.tensor_shape.extend(points.shape)
        embedding.metadata_path = f"{folder}/{METADATA_NAME}"
        embedding.sprite.image_path = f"{folder}/{SPRITE_NAME}"
        embedding.sprite.single_image_dim.extend([data.thumbnail, data.thumbnail])
    return config


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_sprite(path: Path, sprite: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(sprite).save(path, format="PNG")
    fsync_path(path)


def _check_own_folder(path: Path) -> None:
    """RunError if ``path`` is a symlink or not a folder: the projector data is never written through one."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise RunError(f"{path}: not a folder (a symlink or a file); zspace writes the projector data into a "
                       f"folder of its own there. Move it away and run the command again.")


def _own_folder(path: Path) -> Path:
    """``path`` created if missing (:func:`_check_own_folder`)."""
    _check_own_folder(path)
    path.mkdir(exist_ok=True)
    return path


def check_projector_target(run_root: str | Path) -> None:
    """RunError if ``RUN/tensorboard`` or its ``projector`` folder is a symlink or a file (checked before an
    analysis, which takes a while)."""
    log_dir = tensorboard_dir(run_root)
    _check_own_folder(log_dir)
    _check_own_folder(log_dir / PROJECTOR_FOLDER)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_projector(log_dir: str | Path, data: ProjectorData) -> Path:
    """Writes ``data`` for the projector into TensorBoard log directory ``log_dir``; returns the config's path.

    All files go to a fresh ``projector/.tmp-*`` folder (fsynced), which is renamed to ``projector/<id>``;
    then the config is written beside it (by the plugin's own ``visualize_embeddings``) and moved over
    ``log_dir/projector_config.pbtxt`` in one rename. Every other entry of ``projector/`` (the previous
    data, a killed writer's leftovers) is removed afterwards.

    Raises:
        RunError: ``log_dir`` or its ``projector`` folder is a symlink or a file.
        DiskFullError: the disk filled up; the previous projector data is intact.
    """
    from tensorboard.plugins.projector import visualize_embeddings

    log_dir = _own_folder(Path(log_dir))
    assets = _own_folder(log_dir / PROJECTOR_FOLDER)
    folder_id = uuid.uuid4().hex[:16]
    staging = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{folder_id}-", dir=assets))
    final = assets / folder_id
    config_path = log_dir / CONFIG_NAME
    try:
        os.chmod(staging, 0o777 & ~process_umask())  # mkdtemp's 0700 would hide the data from other users of the run
        for name, points in data.tensors.items():
            _write_synced(staging / f"{name}.tsv", tensor_tsv(points).encode("ascii"))
        _write_synced(staging / METADATA_NAME, data.metadata.encode("utf-8"))
        _write_sprite(staging / SPRITE_NAME, data.sprite)
        visualize_embeddings(str(staging), _projector_config(data, f"{PROJECTOR_FOLDER}/{folder_id}"))
        fsync_path(staging / CONFIG_NAME)
        fsync_path(staging)
        os.rename(staging, final)
        fsync_path(assets)
        os.replace(final / CONFIG_NAME, config_path)  # the commit: TensorBoard now reads the new folder
        fsync_path(log_dir)
        fsync_path(final)
    except Exception as exc:
        _remove(staging)
        if not _points_at(config_path, folder_id):
            _remove(final)
        if is_disk_full(exc):
            raise DiskFullError(f"disk full while writing the projector data into {assets}; the previous "
                                f"projector data is intact. Free some space and run the command again.") from None
        raise
    for entry in assets.iterdir():
        if entry.name != folder_id:
            _remove(entry)
    return config_path


def _points_at(config_path: Path, folder_id: str) -> bool:
    try:
        return f"{PROJECTOR_FOLDER}/{folder_id}/" in config_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def write_run_projector(run, analysis: Analysis | None = None, limit: int = 10_000, seed: int = 0) -> Path:
    """Writes the projector data of a run's analysis into ``RUN/tensorboard`` under the run's lock; returns
    the config's path. ``zspace analyze --tensorboard`` does this as part of an analysis; this function
    does it for an analysis already saved.

    Args:
        run: a :class:`zspace.Run` or its directory.
        analysis: the analysis (of the run's own dataset, or of the dataset ``run`` was opened with);
            None = the run's saved analysis.

    Raises:
        RunError: the analysis is of another dataset than the run's images, or the lock is held.
    """
    from zspace.rundir import Run

    run = Run.of(run)
    check_projector_z_dim(run.config.model.z_dim)
    check_projector_target(run.root)
    with run.lock("analyze --tensorboard"):
        analysis = run.load_analysis() if analysis is None else analysis
        if analysis.run is not None and analysis.run.dataset != run.data.name:
            raise RunError(f"the analysis is of dataset {analysis.run.dataset!r} and {run.root} shows {run.data.name!r}"
                           f"; open the run with that dataset (zspace.Run.open(root, dataset)).")
        data = projector_data(analysis, lambda ids: point_images(run.split, analysis.arrays["split"], ids), limit,
                              seed)
        return write_projector(tensorboard_dir(run.root), data)
