"""Timings of the z-space analysis at the CelebA reference size (170,000 z-points, z_dim 256).

Prints one row per part; t-SNE of openTSNE (zspace's path) and scikit-learn's TSNE run on
the same 20,000 points, side by side. Not a test: timings on shared machines are noisy.

    python benchmarks/analysis.py            # the full size
    python benchmarks/analysis.py --quick    # 20,000 points, k up to 20, t-SNE on 5,000
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from zspace.analysis import axis_stats, inertia_sweep, pca_projection, radius_stats, tsne_projection, vae_internals
from zspace.config import AnalysisConfig


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--points", type=int, default=None)
    parser.add_argument("--skip-sklearn-tsne", action="store_true")
    args = parser.parse_args()
    n = args.points or (20_000 if args.quick else 170_000)
    ks = range(2, 21 if args.quick else 81, 2)
    tsne_n = 5_000 if args.quick else 20_000
    defaults = AnalysisConfig()
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((n, 256)).astype(np.float32)
    logvar = rng.normal(-0.5, 0.3, (n, 256)).astype(np.float32)
    z = mu + np.exp(0.5 * logvar) * rng.standard_normal((n, 256)).astype(np.float32)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{n} z-points x 256, float32")
    rows = [
        ("radius statistics", timed(radius_stats, z)),
        ("per-axis statistics + active units", timed(axis_stats, z, mu)),
        ("VAE internals", timed(vae_internals, z, mu, logvar)),
    ]
    rows.append(("statistics total (target < 10 s)", sum(t for _, t in rows)))
    rows.append((f"inertia sweep k={ks.start}..{ks.stop - 1} step 2, {len(defaults.kmeans_seeds)} seeds "
                 f"(target < 300 s)", timed(inertia_sweep, z, ks, defaults.kmeans_seeds)))
    rows.append(("PCA (all points, full spectrum)", timed(pca_projection, z, 20_000)))
    zspace_tsne = timed(tsne_projection, z, tsne_n, n_jobs=-1)
    rows.append((f"t-SNE {tsne_n} points, openTSNE (zspace; target < 120 s)", zspace_tsne))
    if not args.skip_sklearn_tsne:
        from sklearn.manifold import TSNE

        subset = z[np.sort(rng.choice(n, tsne_n, replace=False))]
        sklearn_tsne = timed(TSNE(perplexity=30, random_state=0, n_jobs=-1).fit_transform, subset)
        rows.append((f"t-SNE {tsne_n} points, scikit-learn TSNE (Barnes-Hut)", sklearn_tsne))
    width = max(len(name) for name, _ in rows)
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:9.2f} s")
    if not args.skip_sklearn_tsne:
        print(f"tsne_speedup_vs_sklearn={sklearn_tsne / zspace_tsne:.2f}")


if __name__ == "__main__":
    main()
