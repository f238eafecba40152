"""Time of the importance-sampled NLL at the issue's size: K = 1,000 samples on 1,000 Fashion-MNIST-sized
images (28x28x1, the reference VAE of ModelConfig's defaults): about 10^6 decoder passes. Target: under 3 minutes
on 2 cores. The weights are untrained: the time does not depend on them.

    python benchmarks/likelihood.py           # 1,000 images x K = 1,000
    python benchmarks/likelihood.py --quick   # 100 images x K = 1,000

Prints ``nll_seconds=S``, ``decodes_per_second=R`` and ``under_target_ratio=S/180`` (scaled to 1,000 images
with --quick).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from zspace.config import ModelConfig
from zspace.evaluation.likelihood import bernoulli_log_likelihood, importance_log_likelihood
from zspace.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, k = (100 if args.quick else 1000), 1000
    model = build_model(ModelConfig(), seed=0)
    images = np.random.default_rng(0).random((n, 28, 28, 1)).astype(np.float32)
    codes = model.encode(images)
    model.decode(np.zeros((4096, model.model_config.z_dim), np.float32), batch_size=4096)  # trace once

    def log_p_x_given_z(targets, z):
        return bernoulli_log_likelihood(targets, model.decode(z.astype(np.float32), batch_size=4096))

    start = time.perf_counter()
    importance_log_likelihood(images, codes["mu"], codes["logvar"], log_p_x_given_z, k=k)
    seconds = time.perf_counter() - start
    scaled = seconds * 1000 / n
    print(f"{n} images x K = {k} ({n * k} decodes) on {os.cpu_count()} cores: {seconds:.1f} s")
    print(f"nll_seconds={scaled:.1f}" + (" (scaled to 1,000 images)" if n != 1000 else ""))
    print(f"decodes_per_second={n * k / seconds:.0f}")
    print(f"under_target_ratio={scaled / 180:.2f}")


if __name__ == "__main__":
    main()
