"""``zspace prepare``: folders of JPEG / PNG files -> a sharded uint8 cache (see :mod:`zspace.data.cache`).

Images are cropped (centre square by default, or a fixed box), resized with area averaging,
and written in shards of ``shard_size`` images using all cores. Bad files (zero bytes,
truncated or corrupt, not an image, decompression bombs, too small for the crop box) are
reported by path and reason and skipped; the user's files are only ever read.

An interrupted preparation resumes: the shard plan is a pure function of the sorted file
list and the parameters, every shard is committed atomically and recorded in the manifest
after it, so a rerun keeps the finished shards and does only the rest.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import warnings
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from zspace.config_fields import Config, at_least, check, config_field, in_range, positive
from zspace.data.cache import CACHE_FORMAT, MANIFEST, SPLITS
from zspace.errors import DataError
from zspace.storage import atomic_path, atomic_write_text

__all__ = ["PrepareConfig", "PrepareResult", "prepare_celeba", "prepare_images", "load_image",
           "read_celeba_attributes", "read_celeba_partition", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
BAD_REPORT = "bad_files.tsv"


@dataclass(frozen=True)
class PrepareConfig(Config):
    """Parameters of a preparation; a bad value raises ConfigError naming it."""

    size: int = config_field("Side of the square output images, pixels.", 96, positive("a positive number of pixels"))
    crop: tuple[int, int, int, int] | None = config_field(
        "(left, top, right, bottom) box in source pixels; None = the centre square.", None,
        check(lambda b: 0 <= b[0] < b[2] and 0 <= b[1] < b[3],
              "(left, top, right, bottom) with 0 <= left < right and 0 <= top < bottom"),
    )
    shard_size: int = config_field("Images per shard file.", 10_000, positive())
    workers: int = config_field("Processes decoding images (0 = all cores).", 0, at_least(0, ">= 0 (0 = all cores)"))
    max_bad_fraction: float = config_field(
        "Stop when more than this fraction of the files seen so far is bad.", 0.01, in_range(0, 1)
    )
    max_pixels: int = config_field("Larger source images are refused as decompression bombs.", 40_000_000, positive())
    split_seed: int = config_field("Seed of the train/valid/test split when no partition file exists.", 0,
                                   at_least(0, "a non-negative integer"))
    split_fractions: tuple[float, float] = config_field(
        "(valid, test) fractions of that seeded split.", (0.1, 0.1),
        check(lambda f: min(f) >= 0 and sum(f) < 1, "two fractions >= 0 whose sum is below 1"),
    )


@dataclass(frozen=True)
class PrepareResult:
    """Attributes: cache folder, number of images written, bad files [(path, reason)], shards reused."""

    folder: Path
    n_images: int
    bad: list[tuple[str, str]]
    reused_shards: int
    written_shards: int


# --- one image (runs in worker processes) -----------------------------------------------


def load_image(path: str, size: int, crop, max_pixels: int):
    """Returns (uint8 (size, size, 3) array, "") or (None, reason) for one file."""
    try:
        if os.path.getsize(path) == 0:
            return None, "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > max_pixels:
                    return None, f"decompression bomb: {width}x{height} pixels is above max_pixels={max_pixels}"
                img.load()  # decodes everything: a truncated file fails here
                rgb = img.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return None, f"decompression bomb: {exc}"
    except Image.UnidentifiedImageError:
        return None, "not an image (unknown format)"
    except (OSError, SyntaxError, ValueError) as exc:  # PIL reports corrupt data as these
        return None, f"corrupt or truncated image: {exc}"
    if crop is None:
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        box = (left, top, left + side, top + side)
    else:
        box = tuple(crop)
        if box[2] > width or box[3] > height:
            return None, f"crop box {box} lies outside the {width}x{height} image"
    resized = rgb.crop(box).resize((size, size), resample=Image.Resampling.BOX)  # area averaging
    return np.asarray(resized, dtype=np.uint8), ""


def _load_star(args):
    return load_image(*args)


# --- annotations ---------------------------------------------------------------------------


def read_celeba_attributes(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """list_attr_celeba.txt -> (40 attribute names, {file name: int8 (40,) of +1 / -1})."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and a header line of attribute names.")
    names = lines[1].split()
    table = {}
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise DataError(f"{path}:{number}: expected a file name and {len(names)} values, got {len(parts)} fields.")
        try:
            table[parts[0]] = np.array([int(v) for v in parts[1:]], dtype=np.int8)
        except ValueError:
            raise DataError(f"{path}:{number}: attribute values must be 1 or -1.") from None
    return names, table


def read_celeba_partition(path: Path) -> dict[str, int]:
    """list_eval_partition.txt -> {file name: 0 train / 1 valid / 2 test}."""
    table = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{path}:{number}: expected '<file> <0|1|2>'. Received: {line!r}")
        table[parts[0]] = int(parts[1])
    return table


def _seeded_split(n: int, config: PrepareConfig) -> np.ndarray:
    valid, test = config.split_fractions
    u = np.random.default_rng(config.split_seed).random(n)
    return np.where(u < valid, 1, np.where(u < valid + test, 2, 0)).astype(np.int8)


# --- the cache writer ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    paths: list[Path]
    names: list[str]          # what the metadata records (relative to --src)
    split: np.ndarray         # (N,) int8
    labels: np.ndarray        # (N,) int64, -1 = none
    attributes: np.ndarray    # (N, A) int8
    attribute_names: list[str]
    label_names: list[str]
    kind: str


def _plan_hash(names: Iterable[str], config: PrepareConfig, kind: str) -> str:
    digest = hashlib.sha256(f"{kind}|{config.size}|{config.crop}|{config.max_pixels}\n".encode())
    for name in names:
        digest.update(name.encode() + b"\n")
    return digest.hexdigest()[:16]


def _read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def _write_shard(folder: Path, name: str, images: np.ndarray, meta: dict[str, np.ndarray]) -> None:
    with atomic_path(folder / f"{name}.images.npy") as tmp:
        np.save(tmp, images, allow_pickle=False)
    with atomic_path(folder / f"{name}.meta.npz") as tmp:
        np.savez(tmp, **meta)


def _progress(total: int, initial: int, description: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=description, unit="img", dynamic_ncols=True)


def _prepare(source: _Source, out: Path, config: PrepareConfig, src: Path) -> PrepareResult:
    if not source.paths:
        raise DataError(f"{src}: no {'/'.join(IMAGE_SUFFIXES)} files found.")
    out.mkdir(parents=True, exist_ok=True)
    n = len(source.paths)
    chunks = [range(i, min(i + config.shard_size, n)) for i in range(0, n, config.shard_size)]
    plans = [_plan_hash((source.names[i] for i in chunk), config, source.kind) for chunk in chunks]
    manifest = {
        "format": CACHE_FORMAT, "version": 1, "kind": source.kind, "source": str(src),
        "size": config.size, "channels": 3, "crop": list(config.crop) if config.crop else "center",
        "shard_size": config.shard_size, "split_names": list(SPLITS),
        "attribute_names": source.attribute_names, "label_names": source.label_names,
        "shards": [], "complete": False,
    }
    previous = _read_manifest(out)
    done = {}
    if previous and previous.get("format") == CACHE_FORMAT:
        for entry in previous.get("shards", []):
            files_exist = all((out / f"{entry['name']}{s}").is_file() for s in (".images.npy", ".meta.npz"))
            if files_exist:
                done[entry["plan"]] = entry
    seen = sum(done[p]["count"] + len(done[p]["bad"]) for p in plans if p in done)
    workers = config.workers or os.cpu_count() or 1
    # "spawn": forking a process that already runs TensorFlow's threads can deadlock.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else None
    run = (lambda jobs: pool.map(_load_star, jobs, chunksize=32)) if pool else (lambda jobs: map(_load_star, jobs))
    try:
        return _write_shards(source, out, config, src, chunks, plans, manifest, done, seen, run)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _write_shards(source, out, config, src, chunks, plans, manifest, done, seen, run) -> PrepareResult:
    bad: list[tuple[str, str]] = []
    written = reused = 0
    with _progress(len(source.paths), seen, f"prepare {source.kind}") as bar:
        for index, (chunk, plan) in enumerate(zip(chunks, plans)):
            name = f"shard-{index:05d}"
            if plan in done and done[plan]["name"] == name:
                manifest["shards"].append(done[plan])
                bad += [tuple(b) for b in done[plan]["bad"]]
                reused += 1
                continue
            jobs = [(str(source.paths[i]), config.size, config.crop, config.max_pixels) for i in chunk]
            good, shard_bad, arrays = [], [], []
            for i, (array, reason) in zip(chunk, run(jobs)):
                if array is None:
                    shard_bad.append((str(source.paths[i]), reason))
                    bar.write(f"[zspace prepare] skipped {source.paths[i]}: {reason}")
                else:
                    good.append(i)
                    arrays.append(array)
                bar.update(1)
            idx = np.asarray(good, dtype=np.int64)
            images = np.stack(arrays) if arrays else np.zeros((0, config.size, config.size, 3), np.uint8)
            _write_shard(out, name, images, {
                "files": np.asarray([source.names[i] for i in good], dtype=str),
                "split": source.split[idx], "labels": source.labels[idx],
                "attributes": source.attributes[idx].reshape(len(idx), source.attributes.shape[1]),
            })
            split_counts = np.bincount(source.split[idx], minlength=len(SPLITS)).tolist()
            manifest["shards"].append({"name": name, "plan": plan, "count": len(good), "split_counts": split_counts,
                                       "bad": shard_bad})
            atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
            bad += shard_bad
            written += 1
            seen_now = sum(e["count"] + len(e["bad"]) for e in manifest["shards"])
            if len(bad) > config.max_bad_fraction * seen_now:
                _write_bad_report(out, bad)
                raise DataError(
                    f"{src}: {len(bad)} of the {seen_now} files read so far are bad "
                    f"({100 * len(bad) / seen_now:.1f}% > max_bad_fraction={config.max_bad_fraction:g}); "
                    f"stopped. The list is in {out / BAD_REPORT}; the finished shards are kept."
                )
    manifest["complete"] = True
    manifest["n_images"] = sum(e["count"] for e in manifest["shards"])
    manifest["n_bad"] = len(bad)
    totals = np.sum([e["split_counts"] for e in manifest["shards"]], axis=0)
    manifest["split_counts"] = {s: int(c) for s, c in zip(SPLITS, totals)}
    _write_bad_report(out, bad)
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    return PrepareResult(out, manifest["n_images"], bad, reused, written)


def _write_bad_report(out: Path, bad: list[tuple[str, str]]) -> None:
    atomic_write_text(out / BAD_REPORT, "path\treason\n" + "".join(f"{p}\t{r}\n" for p, r in bad))


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in pattern if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def prepare_celeba(src: str | Path, out: str | Path, config: PrepareConfig = PrepareConfig()) -> PrepareResult:
    """Prepares CelebA: ``src`` is img_align_celeba/ or its parent (with the annotation files).

    ``list_attr_celeba.txt`` (40 attributes) and ``list_eval_partition.txt`` (train / valid /
    test) are read from ``src`` or its parent when present; otherwise a seeded split is made.
    """
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder not found: {src}")
    image_dir = src / "img_align_celeba" if (src / "img_align_celeba").is_dir() else src
    paths = _image_files(image_dir, recursive=False)
    names = [p.name for p in paths]

    def annotation(name: str) -> Path | None:
        for folder in (src, image_dir, image_dir.parent):
            if (folder / name).is_file():
                return folder / name
        return None

    attr_path, part_path = annotation("list_attr_celeba.txt"), annotation("list_eval_partition.txt")
    attribute_names, attributes = [], np.zeros((len(paths), 0), np.int8)
    if attr_path:
        attribute_names, table = read_celeba_attributes(attr_path)
        missing = np.zeros(len(attribute_names), np.int8)
        attributes = np.stack([table.get(n, missing) for n in names]) if names else attributes
    split = _seeded_split(len(paths), config)
    if part_path:
        partition = read_celeba_partition(part_path)
        split = np.array([partition.get(n, s) for n, s in zip(names, split)], dtype=np.int8)
    source = _Source(paths, names, split, np.full(len(paths), -1, np.int64), attributes, attribute_names, [], "celeba")
    return _prepare(source, Path(out), config, src)


def prepare_images(src: str | Path, out: str | Path, config: PrepareConfig = PrepareConfig()) -> PrepareResult:
    """Prepares any folder of JPEG / PNG files; sub-folder names become labels when there are sub-folders."""
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder not found: {src}")
    paths = _image_files(src, recursive=True)
    relative = [p.relative_to(src) for p in paths]
    label_names = sorted({r.parts[0] for r in relative if len(r.parts) > 1})
    label_of = {name: i for i, name in enumerate(label_names)}
    labels = np.array([label_of.get(r.parts[0], -1) if len(r.parts) > 1 else -1 for r in relative], np.int64)
    source = _Source(paths, [str(r) for r in relative], _seeded_split(len(paths), config), labels,
                     np.zeros((len(paths), 0), np.int8), [], label_names, "images")
    return _prepare(source, Path(out), config, src)
