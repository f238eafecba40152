"""Batch-encoding throughput (z, mu, logvar) of zspace for the two reference VAEs.

Times ``Autoencoder.encode`` (the path of ``zspace encode`` / ``analyze``) on synthetic images
after a warm-up call, for several batch sizes; prints the best and `encode_28x28_img_per_s=R`
(target >= 10,000).

    python benchmarks/encode_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from common import CELEBA_VAE, FASHION_VAE, median_rate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    import keras

    from zspace.config import ModelConfig
    from zspace.models import build_model

    results = {}
    for arch, spec, n in (("fashion", FASHION_VAE, 20_000 if args.quick else 60_000),
                          ("celeba", CELEBA_VAE, 2_000 if args.quick else 6_000)):
        config = ModelConfig(**spec)
        model = build_model(config, seed=0)
        images = np.random.default_rng(0).random((n, *config.input_shape), dtype=np.float32)
        for batch_size in (256, 1024):
            model.encode(images[: 2 * batch_size], batch_size)  # trace
            rate = median_rate(lambda: model.encode(images, batch_size), n, repeats=3)
            results[(arch, batch_size)] = rate
            print(f"{arch:<8} {str(config.input_shape):<12} batch {batch_size:>5}: {rate:9.0f} img/s")
    print(f"keras {keras.__version__} on {keras.backend.backend()}, {os.cpu_count()} cores")
    print(f"encode_28x28_img_per_s={max(v for (a, _), v in results.items() if a == 'fashion'):.0f}")


if __name__ == "__main__":
    main()
