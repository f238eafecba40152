"""Timings of the sample-quality distances at the issue's size: 10,000 real vs 10,000 generated
feature vectors of dimension 2,048 (the Inception pool size). Target: all of them under 60 s on 2 cores.

    python benchmarks/sample_quality.py            # 10,000 x 10,000 x 2,048
    python benchmarks/sample_quality.py --quick    # 2,000 x 2,000 x 512

Prints one row per distance and ``sample_quality_seconds=S`` and ``under_target_ratio=S/60``.
Not a test: timings on shared machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from zspace.evaluation import density_coverage, frechet_distance, kernel_distance, precision_recall, sample_quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, dim = (2_000, 512) if args.quick else (10_000, 2_048)
    rng = np.random.default_rng(0)
    real = rng.standard_normal((n, dim)).astype(np.float32)
    fake = (0.9 * rng.standard_normal((n, dim)) + 0.1).astype(np.float32)
    print(f"{n} real vs {n} fake features of dimension {dim}; {os.cpu_count()} cores")
    separate = 0.0
    for name, fn in (("frechet_distance", frechet_distance), ("kernel_distance (100 x 1000)", kernel_distance),
                     ("precision_recall (k=3)", precision_recall), ("density_coverage (k=5)", density_coverage)):
        start = time.perf_counter()
        value = fn(real, fake)
        seconds = time.perf_counter() - start
        separate += seconds
        print(f"{name:<30} {seconds:7.2f} s   {value}")
    print(f"{'the four called separately':<30} {separate:7.2f} s")
    start = time.perf_counter()
    sample_quality(real, fake, "bench", "random")
    together = time.perf_counter() - start
    print(f"{'sample_quality (all, fused)':<30} {together:7.2f} s")
    print(f"sample_quality_seconds={together:.1f}")
    print(f"under_target_ratio={together / 60:.2f}")


if __name__ == "__main__":
    main()
