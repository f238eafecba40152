"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from zspace.data.cache import CACHE_FORMAT, MANIFEST, SPLITS

CELEBA_VAE = dict(kind="vae", input_shape=(96, 96, 3), z_dim=256, encoder_filters=(32, 64, 128, 256),
                  encoder_kernels=(3, 3, 3, 3), encoder_strides=(2, 2, 2, 2), encoder_padding=("same",) * 4)
FASHION_VAE = dict(kind="vae", input_shape=(28, 28, 1), z_dim=16, encoder_filters=(32, 64, 64, 64),
                   encoder_kernels=(3, 3, 3, 3), encoder_strides=(1, 2, 2, 1), encoder_padding=("same",) * 4)


def write_synthetic_cache(folder: Path, n: int, size: int = 96, shard_size: int = 10_000, seed: int = 0) -> Path:
    """A cache in zspace's format with smooth random uint8 images (no JPEG decoding), 90% train."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shards = []
    for index, start in enumerate(range(0, n, shard_size)):
        count = min(shard_size, n - start)
        name = f"shard-{index:05d}"
        images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
        np.save(folder / f"{name}.images.npy", images)
        split = (rng.random(count) < 0.1).astype(np.int8)  # 1 = valid
        np.savez(folder / f"{name}.meta.npz", files=np.array([f"{start + i}.jpg" for i in range(count)]),
                 split=split, labels=np.full(count, -1), attributes=np.zeros((count, 0), np.int8))
        shards.append({"name": name, "plan": name, "count": count, "bad": [],
                       "split_counts": np.bincount(split, minlength=3).tolist()})
    manifest = {"format": CACHE_FORMAT, "version": 1, "kind": "synthetic", "source": "benchmark", "size": size,
                "channels": 3, "crop": "center", "shard_size": shard_size, "split_names": list(SPLITS),
                "attribute_names": [], "label_names": [], "shards": shards, "complete": True, "n_images": n}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


def median_rate(fn, items_per_call: int, repeats: int) -> float:
    """Median items/s of ``repeats`` timed calls of ``fn``."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        rates.append(items_per_call / (time.perf_counter() - start))
    return float(np.median(rates))


def step_timer(batch_size: int):
    """A Keras callback timing the steps after its first batch-end call (with steps_per_execution
    = k, batch-end calls come every k steps); ``rate()`` gives images per second."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.marks = []

        def on_train_batch_end(self, batch, logs=None):
            self.marks.append((batch, time.perf_counter()))

        def rate(self):
            (b0, t0), (b1, t1) = self.marks[0], self.marks[-1]
            return (b1 - b0) * batch_size / (t1 - t0)

    return StepTimer()


def machine_line(packages: tuple[str, ...] = ("numpy",)) -> str:
    """One line saying where a benchmark ran: CPU model, usable cores, the CPU flags that change kernel speed
    (avx2, avx512f, avx512_bf16, from /proc/cpuinfo), the load average and the versions of ``packages``
    ("a|b": the first of these distributions that is installed)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16") if f in flags]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    versions = []
    for names in packages:  # "tensorflow|tensorflow-cpu": the first distribution installed
        for name in names.split("|"):
            try:
                versions.append(f"{name} {metadata.version(name)}")
                break
            except metadata.PackageNotFoundError:
                continue
        else:
            versions.append(f"{names} (not installed)")
    flag_text = ", ".join(wanted) or "none of avx2/avx512"
    return (f"machine: {model}, {cores} cores (of {os.cpu_count()}), flags {flag_text}; "
            f"load average {load}; python {platform.python_version()}, {', '.join(versions)}")
