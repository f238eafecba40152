"""Training time and held-out accuracy of the FD-domain feature network on real Fashion-MNIST
(60,000 training images 28x28, accuracy on the 10,000 test images). Targets on 2 cores: under
2 minutes, accuracy >= 0.88.

    python benchmarks/feature_network.py                       # ../shared/data/fashion-mnist
    python benchmarks/feature_network.py --data-dir FOLDER     # a folder with the four IDX files

Trains into a temporary cache folder (nothing is kept), then loads it back from that cache and
extracts the features of the test images. Prints ``train_seconds=S``, ``held_out_accuracy=A``,
``load_seconds=S`` and ``features_per_second=R``. Not a test: timings on shared machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from zspace.data.datasets import load_dataset
from zspace.evaluation.features import domain_network

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fashion-mnist"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true", help="show Keras' training progress")
    args = parser.parse_args()
    dataset = load_dataset("fashion_mnist", args.data_dir)
    print(f"fashion_mnist from {dataset.source}: {len(dataset.x_train)} train, {len(dataset.x_test)} test; "
          f"{os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        extractor = domain_network(dataset, cache_dir=cache_dir, seed=args.seed, progress=args.progress)
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        loaded = domain_network(dataset, cache_dir=cache_dir, seed=args.seed, progress=False)
        load_seconds = time.perf_counter() - start
        start = time.perf_counter()
        features = loaded.features(dataset.x_test)
        rate = len(features) / (time.perf_counter() - start)
    space = extractor.space
    print(f"trained on {space.n_train} {space.trained_on}, held out {space.n_test}; feature dim {space.dim}")
    print(f"train_seconds={train_seconds:.1f}")
    print(f"held_out_accuracy={space.held_out_accuracy:.4f}")
    print(f"load_seconds={load_seconds:.2f}")
    print(f"features_per_second={rate:.0f}")
    print(f"under_target_ratio={train_seconds / 120:.2f}")


if __name__ == "__main__":
    main()
