"""Peak memory of training from a streamed cache as the dataset grows (it must stay flat).

For each size (default 10k, 50k, 170k images of 96x96x3) a synthetic cache is written, then a
fresh process loads it as ``zspace.train`` does (``cache:`` dataset, train/validation split,
zspace's streamed pipeline shuffling the whole training set) and trains the CelebA VAE for the same number
of steps. It reports its peak RSS (VmHWM) and its anonymous resident memory (RssAnon: memory
that is not file-backed page cache).

    python benchmarks/memory.py [--sizes 10000 50000 170000] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

CHILD = r"""
import json, os, sys
sys.path.insert(0, sys.argv[4])
import keras
from common import CELEBA_VAE
from zspace.config import ModelConfig, TrainConfig
from zspace.data import load_dataset, train_validation_split
from zspace.models import build_model
from zspace.training.run import input_batches
cache, steps = sys.argv[1], int(sys.argv[3])
split = train_validation_split(load_dataset(f"cache:{cache}"), 0.1, 0, seed=0)  # the path zspace.train takes
model = build_model(ModelConfig(**CELEBA_VAE), seed=0)
model.compile(optimizer=keras.optimizers.Adam(1e-3))
train = TrainConfig(batch_size=128)
batches = input_batches(split.x_train, train, seed=0)  # zspace's streamed pipeline: a shuffled epoch of the cache
model.fit(batches, steps_per_epoch=steps, shuffle=False, verbose=0,
          validation_data=input_batches(split.x_val.select(range(256)), train, seed=None))
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({k: int(status[k].split()[0]) for k in ("VmHWM", "RssAnon", "RssFile")}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 170_000])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    from common import write_synthetic_cache

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            cache = write_synthetic_cache(Path(tmp) / f"cache-{size}", size)
            out = subprocess.run([sys.executable, "-c", CHILD, str(cache), str(Path(tmp) / f"run-{size}"),
                                  str(args.steps), str(Path(__file__).parent)],
                                 capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            if out.returncode:
                sys.exit(out.stderr[-3000:])
            stats = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((size, stats))
            print(f"{size:>7} images ({size * 96 * 96 * 3 / 2**30:.2f} GiB uint8): peak RSS "
                  f"{stats['VmHWM'] / 1024:7.0f} MiB, anonymous {stats['RssAnon'] / 1024:7.0f} MiB, "
                  f"file-backed {stats['RssFile'] / 1024:6.0f} MiB", flush=True)
            for shard in cache.glob("*.npy"):
                shard.unlink()
    base, top = rows[0][1]["VmHWM"], rows[-1][1]["VmHWM"]
    print(f"peak_rss_growth={top / base:.2f}  ({rows[0][0]} -> {rows[-1][0]} images)")


if __name__ == "__main__":
    main()
