"""``zspace prepare``: folders of JPEG / PNG files -> a sharded uint8 cache (see :mod:`zspace.data.cache`).

Images are cropped (centre square by default, or a fixed box), resized with area averaging,
and written in shards of ``shard_size`` images using all cores. Bad files (zero bytes,
truncated or corrupt, not a JPEG / PNG, decompression bombs, too small for the crop box) are
reported by path and reason and skipped; the user's files are only ever read. Pixels are
converted by their real bit depth: 16-bit grey is scaled to 8 bits (not clipped), 1-bit and
palette images are expanded, and transparent pixels are composited onto :data:`ALPHA_BACKGROUND`.

An interrupted preparation resumes: the shard plan is a pure function of the sorted file
list and the parameters, every shard is committed atomically and recorded in the manifest
after it, so a rerun keeps the finished shards and does only the rest, and removes the
temporaries a killed run left. The worker processes end with the preparing process, however
it ends (SIGKILL included). One preparation at a time writes a cache folder (a lock file).
A full disk stops the preparation with one line naming the folder; the finished shards stay.

``prepare pairs`` reads ``input/`` and ``target/`` folders holding the same relative file names;
each pair becomes one stored image of 6 channels (input RGB, then target RGB), both halves
cropped and resized alike, so a pair is written, skipped as bad or resumed as one.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from zspace.config_fields import Config, at_least, check, config_field, in_range, positive
from zspace.data.cache import CACHE_FORMAT, CACHE_VERSION, MANIFEST, SPLITS, read_manifest
from zspace.data.idx import env_bytes
from zspace.errors import CacheDirError, DataError, DiskFullError, ZspaceError
from zspace.storage import TEMP_PREFIX, atomic_path, atomic_write_text

__all__ = ["PrepareConfig", "PrepareResult", "prepare_celeba", "prepare_images", "prepare_pairs", "load_image",
           "read_celeba_attributes", "read_celeba_partition", "IMAGE_SUFFIXES", "ALPHA_BACKGROUND",
           "MAX_ANNOTATION_BYTES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# The decoders a file may choose by its content (Pillow's JPEG one also opens cameras' MPO files).
_FORMATS = ("JPEG", "PNG")
BAD_REPORT = "bad_files.tsv"
LOCK_FILE = ".prepare.lock"
# Transparent pixels (PNG alpha, a palette's or a colour key's transparency) are composited onto
# this RGB colour: black, what premultiplied alpha gives.
ALPHA_BACKGROUND = (0, 0, 0)
# list_attr_celeba.txt is 26 MB for CelebA's 202,599 images; larger annotation files are refused
# unread. Environment variable ZSPACE_MAX_ANNOTATION_BYTES, read at each call, overrides it.
MAX_ANNOTATION_BYTES = 512 * 2**20
# The temporaries of a killed preparation (the atomic writes of shards, manifest, bad-file list).
_OWN_TEMPORARIES = tuple(f"{TEMP_PREFIX}{stem}-" for stem in ("shard", Path(MANIFEST).stem, Path(BAD_REPORT).stem))
_PARENT_POLL_SECONDS = 0.5  # how often a worker checks that the preparing process still lives
_PR_SET_PDEATHSIG = 1       # from <linux/prctl.h>
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))  # no space; over the disk quota


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


def _to_eight_bits(values: np.ndarray) -> np.ndarray:
    """16-bit samples (any integer dtype, 0..65535) -> uint8, rounded: v * 255 / 65535 = v / 257."""
    wide = np.clip(values, 0, 65535).astype(np.uint32)
    return ((wide + 128) // 257).astype(np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any decoded JPEG / PNG -> 8-bit RGB, by the image's real bit depth.

    16-bit grey (modes I;16, I;16B, I;16L, and I of older Pillow) is scaled to 8 bits, not
    clipped; 1-bit, grey, palette, CMYK expand to RGB; alpha and transparency keys are
    composited onto :data:`ALPHA_BACKGROUND`. (Pillow itself scales 16-bit RGB(A) to 8 bits.)
    """
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        img = Image.fromarray(_to_eight_bits(np.asarray(img)), "L")  # its transparency key no longer applies
    elif img.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")  # applies a palette's or a colour key's transparency
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def load_image(path: str, size: int, crop, max_pixels: int):
    """Returns (uint8 (size, size, 3) array, "") or (None, reason) for one file."""
    try:
        if os.path.getsize(path) == 0:
            return None, "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=_FORMATS) as img:
                width, height = img.size
                if width * height > max_pixels:
                    return None, f"decompression bomb: {width}x{height} pixels is above max_pixels={max_pixels}"
                img.load()  # decodes everything: a truncated file fails here
                rgb = _to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return None, f"decompression bomb: {exc}"
    except Image.UnidentifiedImageError:
        return None, "not an image (no JPEG or PNG data)"
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


def load_pair(input_path: str, target_path: str, size: int, crop, max_pixels: int):
    """Returns (uint8 (size, size, 6) array: input RGB then target RGB, "", "") or (None, reason, bad path).

    Both images are cropped and resized alike, so sources of different sizes still give a pair.
    """
    halves = []
    for role, path in (("input", input_path), ("target", target_path)):
        array, reason = load_image(path, size, crop, max_pixels)
        if array is None:
            return None, f"{role} of a pair: {reason}", path
        halves.append(array)
    return np.concatenate(halves, axis=-1), "", ""


def _load_star(args):
    """A worker's job: ``(path, size, crop, max_pixels)`` of one image, or ``(input, target, ...)`` of a
    pair -> (array, reason, path of the bad file)."""
    if len(args) == 5:
        return load_pair(*args)
    array, reason = load_image(*args)
    return array, reason, args[0]


def _set_parent_death_signal(signum: int) -> bool:
    """Linux: the kernel sends ``signum`` to this process when its parent ends. False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):  # no libc with prctl: the watch thread alone
        return False


def _watch_parent(parent_pid: int) -> None:
    """Ends this process once its parent is gone (it is then adopted: the parent pid changes)."""
    while os.getppid() == parent_pid:
        time.sleep(_PARENT_POLL_SECONDS)
    os._exit(1)


def _die_with_parent(parent_pid: int) -> None:
    """Pool initializer: the worker ends with the preparing process, however that ends.

    A worker blocks on the task queue, whose pipe it holds both ends of, so it would never see
    the parent go: without this, a SIGKILLed ``zspace prepare`` left its workers running forever.
    The parent-death signal covers Linux, a thread that polls the parent pid everything else.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the parent stops the pool
    _set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before the signal was set up
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="zspace-watch-parent").start()


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises SystemExit(143) in the main thread while inside, so ``finally`` blocks run:
    the pool is shut down and temporaries are removed. A second SIGTERM kills as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def unwind(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- annotations ---------------------------------------------------------------------------


def max_annotation_bytes() -> int:
    """:data:`MAX_ANNOTATION_BYTES`, or the environment variable ``ZSPACE_MAX_ANNOTATION_BYTES`` when set."""
    return env_bytes("ZSPACE_MAX_ANNOTATION_BYTES", MAX_ANNOTATION_BYTES)


def _read_annotation_lines(path: Path, what: str) -> list[str]:
    """The lines of a UTF-8 annotation file of at most :func:`max_annotation_bytes` bytes; DataError otherwise."""
    limit = max_annotation_bytes()
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise DataError(f"{path}: larger than {limit} bytes (ZSPACE_MAX_ANNOTATION_BYTES); not {what}.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}); "
                        f"expected {what}.") from None
    if "\x00" in text:
        raise DataError(f"{path}: a binary file (it holds NUL bytes); expected {what}.")
    return text.splitlines()


_ATTRIBUTE_VALUES = {"1": 1, "-1": -1, "0": 0, "+1": 1}


def read_celeba_attributes(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """list_attr_celeba.txt -> (attribute names, {file name: int8 (A,) of +1 / -1, 0 = unknown}).

    Raises:
        DataError: not UTF-8 text, too large, duplicate names, a row of the wrong length or a
            value other than 1, -1 or 0 (unknown); names the file, line and value.
    """
    what = "CelebA's list_attr_celeba.txt (a count line, a line of attribute names, then '<file> 1 -1 ...' rows)"
    lines = _read_annotation_lines(path, what)
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and a header line of attribute names.")
    names = lines[1].split()
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"{path}:2: attribute names must be unique; {', '.join(duplicates[:5])} repeated.")
    table = {}
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise DataError(f"{path}:{number}: expected a file name and {len(names)} values, got {len(parts)} fields.")
        values = [_ATTRIBUTE_VALUES.get(v) for v in parts[1:]]
        if None in values:
            column = values.index(None)
            raise DataError(f"{path}:{number}: {names[column]} of {parts[0]} is {parts[1 + column][:40]!r}; "
                            f"attribute values must be 1 or -1 (0 = unknown).")
        table[parts[0]] = np.array(values, dtype=np.int8)
    return names, table


def read_celeba_partition(path: Path) -> dict[str, int]:
    """list_eval_partition.txt -> {file name: 0 train / 1 valid / 2 test}."""
    table = {}
    lines = _read_annotation_lines(path, "CelebA's list_eval_partition.txt ('<file> <0|1|2>' rows)")
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{path}:{number}: expected '<file> <0|1|2>'. Received: {line[:200]!r}")
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
    target_paths: list[Path] | None = None  # prepare pairs: the target of paths[i] is target_paths[i]

    @property
    def stored_channels(self) -> int:
        """Channels of one stored image: RGB, or input RGB + target RGB for pairs."""
        return 3 if self.target_paths is None else 6


# Part of every shard plan: a change of how pixels are decoded (2: 16-bit grey scaled, alpha
# composited) must not let a rerun mix shards of two conventions in one cache.
_DECODE_VERSION = 2


def _plan_hash(names: Iterable[str], config: PrepareConfig, kind: str) -> str:
    digest = hashlib.sha256(f"{kind}|{config.size}|{config.crop}|{config.max_pixels}|d{_DECODE_VERSION}\n".encode())
    for name in names:
        digest.update(name.encode() + b"\n")
    return digest.hexdigest()[:16]


def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f} MiB"


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


@contextlib.contextmanager
def _writing(out: Path, what: str) -> Iterator[None]:
    """Turns an OSError of writing ``what`` into one CacheDirError line naming the folder (and the
    free space when the disk is full). The atomic writes leave the previous files and no temporary."""
    try:
        yield
    except OSError as exc:
        disk_full = isinstance(exc, DiskFullError) or exc.errno in _DISK_FULL  # the former from zspace.storage
        if isinstance(exc, ZspaceError) and not disk_full:
            raise
        try:
            free = f"{_mib(_free_bytes(out))} free"
        except OSError:
            free = "free space unknown"
        if disk_full:
            raise CacheDirError(
                f"{out}: no space left on the device while writing {what} ({free}); the finished shards "
                f"are kept: free some space or choose another --out, and rerun the same command."
            ) from None
        raise CacheDirError(f"{out}: cannot write {what}: {exc.strerror or exc} ({free}).") from None


def _open_cache_folder(out: Path) -> dict | None:
    """Creates ``out`` if needed; returns the manifest of an earlier preparation there, or None.

    Raises:
        CacheDirError: ``out`` is a file or cannot be created.
        DataError: ``out`` holds a manifest.json that is not a zspace cache's (it is not overwritten).
    """
    if out.exists() and not out.is_dir():
        raise CacheDirError(f"{out}: exists and is not a folder; --out must be a folder for the cache "
                            f"(a new or an empty one, or an earlier cache to resume).")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheDirError(f"{out}: the cache folder cannot be created: {exc.strerror or exc}.") from None
    manifest_path = out / MANIFEST
    if not manifest_path.exists():
        return None
    try:
        return read_manifest(manifest_path)
    except DataError as exc:
        raise DataError(f"{exc} Refusing to write into {out}: choose a new or empty folder for --out.") from None


@contextlib.contextmanager
def _only_writer(out: Path) -> Iterator[None]:
    """Holds an exclusive lock on ``out`` (``.prepare.lock``): a second preparation of the same
    folder stops with one line instead of writing the same shards (and removing the other's
    temporaries). The kernel releases the lock when the process ends, however it ends."""
    try:
        import fcntl
    except ImportError:  # Windows: no locking
        yield
        return
    with _writing(out, LOCK_FILE), open(out / LOCK_FILE, "a") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"{out}: another `zspace prepare` is writing this cache; wait for it to finish "
                            f"or choose another --out.") from None
        yield


def _remove_own_temporaries(out: Path) -> list[Path]:
    """Deletes the temporaries a killed preparation left in ``out`` (shards, manifest, bad-file
    list: up to a shard's size each); nothing else. Call only for a zspace cache folder."""
    stale = sorted(p for p in out.iterdir() if p.name.startswith(_OWN_TEMPORARIES) and p.is_file()
                   and not p.is_symlink())
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _check_free_space(out: Path, source: _Source, config: PrepareConfig, chunks: list[range],
                      to_write: list[int]) -> None:
    """Refuses to start when the shards still to write cannot fit on the disk of ``out``.

    Counts each image as written (bad files are not known yet), minus the files of those shards
    that an earlier run left (they are replaced), plus room for one shard's temporary.
    """
    longest_name = max(len(n) for n in source.names)
    per_image = config.size * config.size * source.stored_channels + 4 * longest_name + 17 + source.attributes.shape[1]
    shard_bytes = [len(chunks[i]) * per_image + 4096 for i in to_write]  # + npy header, zip directory
    replaced = sum((out / f"shard-{i:05d}{suffix}").stat().st_size for i in to_write
                   for suffix in (".images.npy", ".meta.npz") if (out / f"shard-{i:05d}{suffix}").is_file())
    needed = sum(shard_bytes) + max(shard_bytes) - replaced
    free = _free_bytes(out)
    if free < needed:
        n_images = sum(len(chunks[i]) for i in to_write)
        raise CacheDirError(
            f"{out}: not enough free disk space: {n_images} images of {config.size}x{config.size}x3 need "
            f"about {_mib(needed)}, {_mib(free)} free. Free some space or choose another --out."
        )


def _save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` with the data written by Python's file object: a full disk then raises
    OSError(ENOSPC), where numpy's own writer raises an errno-less "N requested and M written"."""
    array = np.ascontiguousarray(array)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(array))
        f.write(memoryview(array.reshape(-1).view(np.uint8)))  # a view: no copy of the shard


def _write_shard(folder: Path, name: str, images: np.ndarray, meta: dict[str, np.ndarray]) -> None:
    images_path = folder / f"{name}.images.npy"
    with _writing(folder, images_path.name), atomic_path(images_path) as tmp:
        _save_npy(tmp, images)
    try:
        with _writing(folder, f"{name}.meta.npz"), atomic_path(folder / f"{name}.meta.npz") as tmp:
            np.savez(tmp, **meta)
    except BaseException:
        images_path.unlink(missing_ok=True)  # no half shard; on a full disk, its space back
        raise


def _write_manifest(out: Path, manifest: dict) -> None:
    with _writing(out, MANIFEST):
        atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))


def _progress(total: int, initial: int, description: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=description, unit="img", dynamic_ncols=True)


def _prepare(source: _Source, out: Path, config: PrepareConfig, src: Path) -> PrepareResult:
    if not source.paths:
        raise DataError(f"{src}: no {'/'.join(IMAGE_SUFFIXES)} files found.")
    if out.resolve() == src.resolve():
        raise DataError(f"--out {out} is the source folder itself; give the cache a folder of its own.")
    with _sigterm_unwinds():
        previous = _open_cache_folder(out)
        with _only_writer(out):
            if previous is not None:  # a zspace cache folder: what a killed run left is ours to remove
                _remove_own_temporaries(out)
            return _prepare_locked(source, out, config, src, previous)


def _prepare_locked(source: _Source, out: Path, config: PrepareConfig, src: Path,
                    previous: dict | None) -> PrepareResult:
    n = len(source.paths)
    chunks = [range(i, min(i + config.shard_size, n)) for i in range(0, n, config.shard_size)]
    plans = [_plan_hash((source.names[i] for i in chunk), config, source.kind) for chunk in chunks]
    manifest = {
        "format": CACHE_FORMAT, "version": CACHE_VERSION, "kind": source.kind, "source": str(src),
        "size": config.size, "channels": 3, "crop": list(config.crop) if config.crop else "center",
        "shard_size": config.shard_size, "split_names": list(SPLITS), "pairs": source.target_paths is not None,
        "attribute_names": source.attribute_names, "label_names": source.label_names,
        "shards": [], "complete": False,
    }
    done = {}
    for entry in (previous or {}).get("shards", []):
        if all((out / f"{entry['name']}{s}").is_file() for s in (".images.npy", ".meta.npz")):
            done[entry["plan"]] = entry
    to_write = [i for i, plan in enumerate(plans) if done.get(plan, {}).get("name") != f"shard-{i:05d}"]
    if to_write:
        _check_free_space(out, source, config, chunks, to_write)
        # On disk from now on: a manifest saying "unfinished" (an earlier one keeps its shards to
        # resume from), so neither a half-replaced cache is read nor this folder's temporaries orphaned.
        _write_manifest(out, {**(previous or manifest), "complete": False})
    seen = sum(done[p]["count"] + len(done[p]["bad"]) for p in plans if p in done)
    workers = (config.workers or os.cpu_count() or 1) if to_write else 1
    # "spawn": forking a process that already runs TensorFlow's threads can deadlock.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_die_with_parent, initargs=(os.getpid(),)) if workers > 1 else None
    run = (lambda jobs: pool.map(_load_star, jobs, chunksize=32)) if pool else (lambda jobs: map(_load_star, jobs))
    try:
        return _write_shards(source, out, config, src, chunks, plans, manifest, done, seen, run)
    except BrokenProcessPool:
        raise DataError(f"{src}: a decoding worker process died (killed, or out of memory); the finished shards "
                        f"in {out} are kept. Run the same command again to resume (--workers 1 uses less "
                        f"memory).") from None
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
            good, shard_bad, arrays = [], [], []
            for i, (array, reason, bad_path) in zip(chunk, run(_jobs(source, chunk, config))):
                if array is None:
                    shard_bad.append((bad_path, reason))
                    bar.write(f"[zspace prepare] skipped {bad_path}: {reason}")
                else:
                    good.append(i)
                    arrays.append(array)
                bar.update(1)
            idx = np.asarray(good, dtype=np.int64)
            images = (np.stack(arrays) if arrays
                      else np.zeros((0, config.size, config.size, source.stored_channels), np.uint8))
            _write_shard(out, name, images, {
                "files": np.asarray([source.names[i] for i in good], dtype=str),
                "split": source.split[idx], "labels": source.labels[idx],
                "attributes": source.attributes[idx].reshape(len(idx), source.attributes.shape[1]),
            })
            split_counts = np.bincount(source.split[idx], minlength=len(SPLITS)).tolist()
            manifest["shards"].append({"name": name, "plan": plan, "count": len(good), "split_counts": split_counts,
                                       "bad": shard_bad})
            try:
                _write_manifest(out, manifest)
            except BaseException:  # a shard the manifest does not list is not kept (on a full disk: its space)
                for suffix in (".images.npy", ".meta.npz"):
                    (out / f"{name}{suffix}").unlink(missing_ok=True)
                raise
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
    _write_manifest(out, manifest)
    return PrepareResult(out, manifest["n_images"], bad, reused, written)


def _jobs(source: _Source, chunk: range, config: PrepareConfig) -> list[tuple]:
    """The worker jobs of one shard (see :func:`_load_star`)."""
    rest = (config.size, config.crop, config.max_pixels)
    if source.target_paths is None:
        return [(str(source.paths[i]), *rest) for i in chunk]
    return [(str(source.paths[i]), str(source.target_paths[i]), *rest) for i in chunk]


def _write_bad_report(out: Path, bad: list[tuple[str, str]]) -> None:
    with _writing(out, BAD_REPORT):
        atomic_write_text(out / BAD_REPORT, "path\treason\n" + "".join(f"{_tsv(p)}\t{_tsv(r)}\n" for p, r in bad))


def _tsv(cell: str) -> str:
    """A TSV cell: backslash, tab and line breaks escaped, so a file name cannot add rows or columns."""
    return cell.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


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


PAIR_FOLDERS = ("input", "target")
_LISTED_NAMES = 3  # file names quoted in the one-line error about unmatched pairs


def _unmatched(names: list[str], others: set[str], here: str, there: str) -> str:
    """"2 files of input/ are missing from target/ (a.png, b.png)": the first few names only."""
    missing = [n for n in names if n not in others]
    listed = ", ".join(repr(n)[1:-1][:100] for n in missing[:_LISTED_NAMES])  # repr: no line breaks in names
    more = f" and {len(missing) - _LISTED_NAMES} more" if len(missing) > _LISTED_NAMES else ""
    return f"{len(missing)} file(s) of {here}/ are missing from {there}/ ({listed}{more})"


def prepare_pairs(src: str | Path, out: str | Path, config: PrepareConfig = PrepareConfig()) -> PrepareResult:
    """Prepares input/target pairs: ``src/input/NAME`` is the model's input for the target ``src/target/NAME``.

    Both folders must hold the same relative file names (sub-folders allowed; the first sub-folder
    names become labels, as :func:`prepare_images`). Each half is cropped and resized like
    ``prepare images``; a pair with a bad half is skipped and listed (path of that half, reason).
    Train with ``dataset = "cache:OUT"`` and ``task = "pairs"``.

    Raises:
        FileNotFoundError: no ``src``, or no ``input/`` or ``target/`` in it.
        DataError: a name in one folder missing from the other (one line naming a few).
    """
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder not found: {src}")
    folders = [src / name for name in PAIR_FOLDERS]
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"{src}: no {folder.name}/ folder; `prepare pairs` reads {src}/input/NAME "
                                    f"(what the model sees) and {src}/target/NAME (what it must give back).")
    inputs, targets = ([str(p.relative_to(f)) for p in _image_files(f, recursive=True)] for f in folders)
    input_set, target_set = set(inputs), set(targets)
    if input_set != target_set:
        problems = []
        if input_set - target_set:
            problems.append(_unmatched(inputs, target_set, "input", "target"))
        if target_set - input_set:
            problems.append(_unmatched(targets, input_set, "target", "input"))
        raise DataError(f"{src}: input/ and target/ must hold the same file names; "
                        f"{'; '.join(problems)}.")
    relative = [Path(name) for name in inputs]
    label_names = sorted({r.parts[0] for r in relative if len(r.parts) > 1})
    label_of = {name: i for i, name in enumerate(label_names)}
    labels = np.array([label_of.get(r.parts[0], -1) if len(r.parts) > 1 else -1 for r in relative], np.int64)
    source = _Source([folders[0] / r for r in relative], inputs, _seeded_split(len(relative), config), labels,
                     np.zeros((len(relative), 0), np.int8), [], label_names, "pairs",
                     target_paths=[folders[1] / r for r in relative])
    return _prepare(source, Path(out), config, src)
