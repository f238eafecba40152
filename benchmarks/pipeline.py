"""Streaming input pipeline versus the CelebA VAE's training step (images per second).

1. `prepare` throughput: synthetic 178x218 JPEGs -> 96x96 cache, all cores.
2. Pipeline alone: batches of 128 read from a memory-mapped cache (shuffled order, uint8 -> float32).
3. Each input path's delivery rate into TensorFlow tensors, nothing consuming them (what a faster,
   GPU, training step could draw).
3b. Training step alone: the reference CelebA VAE (96x96x3, Conv2D 32/64/128/256, stride 2,
   z_dim 256, batch 128) on an in-memory batch, after warm-up.
4. Steady state of Keras fit, side by side in one process, in alternating rounds: the same
   training images in memory (zspace's in-graph gather) against streamed from the cache, through
   zspace's streamed pipeline (uint8 read ahead, cast in the graph) and, for comparison, through
   the PyDataset it replaced (float32 batches from a Python generator). Each round is one epoch;
   its first `--skip` marks (every `steps_per_execution` steps) are start-up, timed apart.
Prints `pipeline_over_step=R` (target >= 3), then `streamed_over_memory=R` (steady state, median
over the rounds; target >= 0.95).

    python benchmarks/pipeline.py            # 20,000 cached images; 6,144 of them trained on
    python benchmarks/pipeline.py --quick    # 4,000; 3,072
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from common import CELEBA_VAE, machine_line, median_rate, write_synthetic_cache  # noqa: E402
from PIL import Image  # noqa: E402


class Marks:
    """Wall-clock marks at Keras' batch ends (every ``steps_per_execution`` steps)."""

    def __new__(cls):
        import keras

        class _Marks(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.marks = []

            def on_train_batch_end(self, batch, logs=None):
                self.marks.append((batch, time.perf_counter()))

            def steady(self, start: float, skip: int, batch_size: int) -> tuple[float, float]:
                """(img/s after the first ``skip`` marks, s from ``start`` to the first mark beyond a steady one)."""
                (b0, t0), (b1, t1) = self.marks[skip], self.marks[-1]
                per_mark = (t1 - t0) / (len(self.marks) - 1 - skip)
                return (b1 - b0) * batch_size / (t1 - t0), self.marks[0][1] - start - per_mark

        return _Marks()


def delivery_rates(paths: dict, repeats: int) -> list[tuple[str, float]]:
    """Images per second each input path hands to TensorFlow as tensors, with nothing consuming them: the
    rate a faster training step (a GPU's) could draw. A PyDataset goes through Keras' own adapter, as in fit."""
    import tensorflow as tf
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    rows = []
    for name, batches in paths.items():
        def deliver(batches=batches):
            dataset = batches if isinstance(batches, tf.data.Dataset) else PyDatasetAdapter(batches).get_tf_dataset()
            return sum(len(x) for x, _ in dataset)

        count = deliver()  # warm: builds the pipeline, fills the page cache
        rows.append((f"delivered to TensorFlow, nothing consuming: {name}", median_rate(deliver, count, repeats)))
    return rows


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
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (one epoch per path each)")
    parser.add_argument("--skip", type=int, default=1, help="marks per round counted as start-up")
    parser.add_argument("--train-images", type=int, default=None)
    args = parser.parse_args()
    n = 4_000 if args.quick else 20_000
    import keras

    from zspace.config import ModelConfig, RunConfig, TrainConfig
    from zspace.data import load_dataset
    from zspace.models import build_model
    from zspace.training import EpochBatches
    from zspace.training.run import input_batches, new_model

    config = RunConfig(model=ModelConfig(**CELEBA_VAE), train=TrainConfig(batch_size=128))

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

        train = data.x_train.select(np.arange(args.train_images or (3072 if args.quick else 6144)))
        paths = {
            "in memory (in-graph gather)": input_batches(train[:], config.train, seed=0),
            "streamed (uint8 read ahead, cast in graph)": input_batches(train, config.train, seed=0),
            "streamed via PyDataset (float32, before)": EpochBatches(train, 128, seed=0),
        }
        rows.extend(delivery_rates(paths, repeats=2))
        steady, startup = {name: [] for name in paths}, {name: [] for name in paths}
        traced = {}
        steps = math.ceil(len(train) / 128)
        models = {name: new_model(config, steps) for name in paths}
        for round_ in range(args.rounds + 1):  # round 0 traces the functions: not counted
            for name, batches in paths.items():
                timer = Marks()
                start = time.perf_counter()
                models[name].fit(batches, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0,
                                 callbacks=[timer])
                if round_:
                    rate, first = timer.steady(start, args.skip, 128)
                    steady[name].append(rate)
                    startup[name].append(first)
                else:
                    traced[name] = timer.marks[0][1] - start
        for name in paths:
            rows.append((f"fit, steady state: {name}", float(np.median(steady[name]))))
    memory, streamed = (np.array(steady[name]) for name in list(paths)[:2])
    print(f"machine: {machine_line(('tensorflow|tensorflow-cpu', 'keras'))}")
    print(f"{keras.backend.backend()} backend; {n} cached images, {len(train)} trained on, {args.rounds} rounds")
    width = max(len(name) for name, _ in rows)
    for name, rate in rows:
        print(f"{name:<{width}}  {rate:10.0f} img/s")
    for name in paths:
        print(f"start-up of an epoch, {name}: {np.median(startup[name]):.2f} s (first mark minus a steady one); "
              f"first fit, to its first mark (tracing included): {traced[name]:.1f} s")
    print("per round, streamed / in memory:", " ".join(f"{r:.3f}" for r in streamed / memory))
    print(f"pipeline_over_step={pipeline / step:.1f}")
    print(f"streamed_over_memory={np.median(streamed / memory):.3f}")


if __name__ == "__main__":
    main()
