"""Time of the importance-sampled NLL at the issue's size: K = 1,000 samples on 1,000 Fashion-MNIST-sized
images (28x28x1, the reference VAE of ModelConfig's defaults): about 10^6 decoder passes. Target: under 3 minutes
on 2 cores. The weights are untrained: the time does not depend on them.

    python benchmarks/likelihood.py           # 1,000 images x K = 1,000
    python benchmarks/likelihood.py --quick   # 100 images x K = 1,000

Prints ``nll_seconds=S``, ``decodes_per_second=R``, ``under_target_ratio=S/180`` (scaled to 1,000 images
with --quick) and ``gemm_fraction``: the decoder's multiply-adds per second over numpy's float32 GEMM rate
measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from peers import gemm_gflops

from zspace.config import ModelConfig
from zspace.evaluation.likelihood import decoder_log_likelihood, importance_log_likelihood
from zspace.models import build_model


def decoder_flops_per_image(config: ModelConfig) -> float:
    """2 x multiply-adds of one decoder pass (dense layer and transposed convolutions), from the layer shapes."""
    config = config.resolved()
    h, w, c = config.input_shape
    for k, s, p in zip(config.encoder_kernels, config.encoder_strides, config.encoder_padding):
        h, w = (-(-h // s), -(-w // s)) if p == "same" else ((h - k) // s + 1, (w - k) // s + 1)
    c = config.encoder_filters[-1]
    flops = 2.0 * config.z_dim * h * w * c
    for f, k, s in zip(config.decoder_filters, config.decoder_kernels, config.decoder_strides):
        flops += 2 * k * k * c * f * h * w  # one k x k x f scatter per input pixel
        h, w, c = h * s, w * s, f
    return flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch-size", type=int, default=None, help="decoder batch (default: the library's)")
    args = parser.parse_args()
    n, k = (100 if args.quick else 1000), 1000
    model = build_model(ModelConfig(), seed=0)
    images = np.random.default_rng(0).random((n, 28, 28, 1)).astype(np.float32)
    codes = model.encode(images)
    batch = {} if args.batch_size is None else {"batch_size": args.batch_size}
    log_p_x_given_z = decoder_log_likelihood(model.decoder, "bernoulli", **batch)
    log_p_x_given_z(images[:1], np.zeros((1, model.model_config.z_dim), np.float32))  # trace once

    start = time.perf_counter()
    importance_log_likelihood(images, codes["mu"], codes["logvar"], log_p_x_given_z, k=k)
    seconds = time.perf_counter() - start
    scaled = seconds * 1000 / n
    print(f"{n} images x K = {k} ({n * k} decodes) on {os.cpu_count()} cores: {seconds:.1f} s")
    print(f"nll_seconds={scaled:.1f}" + (" (scaled to 1,000 images)" if n != 1000 else ""))
    print(f"decodes_per_second={n * k / seconds:.0f}")
    print(f"under_target_ratio={scaled / 180:.2f}")
    decoder_gflops = n * k * decoder_flops_per_image(model.model_config) / seconds / 1e9
    gemm = gemm_gflops()
    print(f"decoder {decoder_gflops:.0f} GFLOP/s, numpy float32 GEMM {gemm:.0f} GFLOP/s: gemm_fraction="
          f"{decoder_gflops / gemm:.2f}")


if __name__ == "__main__":
    main()
