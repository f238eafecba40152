"""Where a training step's time goes: each convolution layer of a reference VAE alone.

Every conv / transposed-conv layer of the net, with its bias and activation, runs forward and
backward (gradients of kernel and bias, and of the input except for the first layer, whose
input needs none) in a ``tf.function`` on a batch of 128; layers alternate round by round and
the median is printed with the achieved GFLOP/s (training FLOPs as in train_throughput.py).
The sum beside a whole zspace training step shows what the Dense heads, losses and optimizer
add; the spread of GFLOP/s across layers shows which shapes the CPU kernels handle badly.

    python benchmarks/layer_profile.py [--arch celeba|fashion] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from common import CELEBA_VAE, FASHION_VAE, step_timer  # noqa: E402

BATCH = 128


def conv_layers(config):
    """[(kind, input (h, w, c), filters, kernel, stride)] of the encoder and decoder convolutions."""
    config = config.resolved()  # the decoder fields left at None mirror the encoder
    h, w, c = config.input_shape
    layers = []
    for f, k, s in zip(config.encoder_filters, config.encoder_kernels, config.encoder_strides):
        layers.append(("conv", (h, w, c), f, k, s))
        h, w, c = -(-h // s), -(-w // s), f
    h, w, c = config.encoded_shape
    for f, k, s in zip(config.decoder_filters, config.decoder_kernels, config.decoder_strides):
        layers.append(("conv_transpose", (h, w, c), f, k, s))
        h, w, c = h * s, w * s, f
    return layers


def layer_step(kind, shape, filters, kernel, stride, first, last):
    """A tf.function running one layer forward and backward; returns (function, input, FLOPs)."""
    import tensorflow as tf

    h, w, c = shape
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((BATCH, h, w, c), dtype=np.float32))
    if kind == "conv":
        out_h, out_w = -(-h // stride), -(-w // stride)
        kernel_var = tf.Variable(rng.normal(0, 0.1, (kernel, kernel, c, filters)).astype(np.float32))

        def forward(x):
            return tf.nn.conv2d(x, kernel_var, stride, "SAME")

        macs = BATCH * out_h * out_w * kernel * kernel * c * filters
    else:
        out_h, out_w = h * stride, w * stride
        kernel_var = tf.Variable(rng.normal(0, 0.1, (kernel, kernel, filters, c)).astype(np.float32))

        def forward(x):
            return tf.nn.conv2d_transpose(x, kernel_var, (BATCH, out_h, out_w, filters), stride, "SAME")

        macs = BATCH * h * w * kernel * kernel * c * filters
    bias = tf.Variable(np.zeros(filters, np.float32))

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.bias_add(forward(x), bias)
            y = tf.sigmoid(y) if last else tf.nn.leaky_relu(y, 0.3)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [kernel_var, bias] if first else [kernel_var, bias, x])

    return step, x, 2 * macs * (2 if first else 3)


def whole_step_ms(spec, steps=16):
    """Median ms of one zspace training step (default path) of the same net, for comparison."""
    from zspace.config import ModelConfig, RunConfig, TrainConfig
    from zspace.training.run import input_batches, new_model

    run_config = RunConfig(ModelConfig(**spec), TrainConfig(batch_size=BATCH))
    model = new_model(run_config, steps)
    images = np.random.default_rng(0).random((steps * BATCH, *spec["input_shape"]), dtype=np.float32)
    rates = []
    for epoch in range(3):
        timer = step_timer(BATCH)
        batches = input_batches(images, run_config.train, seed=0, start_epoch=epoch, end_epoch=epoch + 1)
        model.fit(batches, steps_per_epoch=steps, epochs=epoch + 1, initial_epoch=epoch, shuffle=False,
                  callbacks=[timer], verbose=0)
        rates.append(timer.rate())
    return 1000 * BATCH / float(np.median(rates[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["celeba", "fashion"], default="celeba")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from zspace.config import ModelConfig

    spec = {"celeba": CELEBA_VAE, "fashion": FASHION_VAE}[args.arch]
    layers = conv_layers(ModelConfig(**spec))
    steps = [layer_step(*layer, first=i == 0, last=i == len(layers) - 1) for i, layer in enumerate(layers)]
    for step, x, _ in steps:
        step(x)  # tracing
    times = [[] for _ in steps]
    for _ in range(args.rounds):
        for i, (step, x, _) in enumerate(steps):
            start = time.perf_counter()
            for _ in range(3):
                [g.numpy() for g in step(x)]
            times[i].append((time.perf_counter() - start) / 3 * 1000)
    print(f"{args.arch} VAE, batch {BATCH}, forward + backward per layer (bias and activation included), "
          f"median of {args.rounds} alternated rounds")
    total = 0.0
    for (kind, (h, w, c), f, k, s), (_, _, flops), values in zip(layers, steps, times):
        ms = float(np.median(values))
        total += ms
        print(f"  {kind:<15} {h:>3}x{w:<3}x{c:<4} -> {f:<4} k{k} s{s}  {ms:7.1f} ms  {flops / ms / 1e6:6.0f} GFLOP/s")
    whole = whole_step_ms(spec)
    print(f"  sum of the convolution layers {total:.1f} ms; whole zspace training step {whole:.1f} ms "
          f"({100 * total / whole:.0f}% in the convolution layers)")


if __name__ == "__main__":
    main()
