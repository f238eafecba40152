"""Streaming input pipeline versus the CelebA VAE's training step (images per second).

1. `prepare` throughput: synthetic 178x218 JPEGs -> 96x96 cache, all cores.
2. Pipeline alone: batches of 128 read from a memory-mapped cache (shuffled order, uint8 -> float32).
3. Training step alone: the reference CelebA VAE (96x96x3, Conv2D 32/64/128/256, stride 2,
   z_dim 256, batch 128) on an in-memory batch, after warm-up.
4. End to end: Keras fit on the streamed cache.
Prints `pipeline_over_step=R` (target >= 3).

    python benchmarks/pipeline.py            # 20,000 cached images
    python benchmarks/pipeline.py --quick    # 4,000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from common import CELEBA_VAE, median_rate, write_synthetic_cache  # noqa: E402
from PIL import Image  # noqa: E402


def prepare_rate(folder: Path, n: int) -> float:
    from zspace.data.prepare import PrepareConfig, prepare_celeba

    src = folder / "jpegs"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 256, (14, 11, 3), dtype=np.uint8)
        Image.fromarray(small).resize((178, 218), Image.Resampling.BILINEAR).save(src / f"{i:06d}.jpg", quality=90)
    start = time.perf_counter()
    prepare_celeba(src, folder / "prepared", PrepareConfig(size=96, shard_size=1000))
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 4_000 if args.quick else 20_000
    import keras

    from zspace.config import ModelConfig
    from zspace.data import load_dataset
    from zspace.models import build_model
    from zspace.training import EpochBatches

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = [("prepare celeba (JPEG 178x218 -> 96x96, all cores)", prepare_rate(tmp, 1000 if args.quick else 3000))]
        cache = write_synthetic_cache(tmp / "cache", n)
        data = load_dataset(f"cache:{cache}")
        batches = EpochBatches(data.x_train, 128, seed=0, end_epoch=1)
        steps = min(len(batches), 60)
        order = iter(range(10**9))

        def read_batches():
            for _ in range(steps):
                batches[next(order) % len(batches)]

        pipeline = median_rate(read_batches, steps * 128, repeats=3)
        rows.append((f"pipeline alone: {steps} batches of 128 read from the cache", pipeline))

        keras.utils.set_random_seed(0)
        model = build_model(ModelConfig(**CELEBA_VAE), seed=0)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        x = np.asarray(data.x_train[:128])
        for _ in range(3):
            model.train_on_batch(x, x)

        def train_steps():
            for _ in range(5):
                model.train_on_batch(x, x)

        step = median_rate(train_steps, 5 * 128, repeats=3)
        rows.append(("training step alone: CelebA VAE, batch 128 (in memory)", step))

        fit_batches = EpochBatches(data.x_train, 128, seed=0, end_epoch=1)
        fit_steps = min(len(fit_batches), 30)
        start = time.perf_counter()
        model.fit(fit_batches, steps_per_epoch=fit_steps, epochs=1, shuffle=False, verbose=0)
        rows.append((f"fit on the streamed cache ({fit_steps} steps, incl. tf.data start-up)",
                     fit_steps * 128 / (time.perf_counter() - start)))
    print(f"machine: {os.cpu_count()} cores; keras {keras.__version__} ({keras.backend.backend()}); {n} cached images")
    width = max(len(name) for name, _ in rows)
    for name, rate in rows:
        print(f"{name:<{width}}  {rate:10.0f} img/s")
    print(f"pipeline_over_step={pipeline / step:.1f}")


if __name__ == "__main__":
    main()
