"""Training-speed levers on the Fashion-MNIST VAE, alternated in one process against the
Keras documentation's VAE as the yardstick.

Every variant is a zspace model fed and compiled one way; rounds alternate the variants
(A B C ... A B C ...), so slow drifts of this shared machine hit them alike. Printed: the
median img/s and the median of the per-round ratios to the yardstick. (The peers live in
separate processes in train_throughput.py; here all variants are TensorFlow, and they share
one process fairly.)

    python benchmarks/levers.py [--rounds 5] [--steps 80] [--only default xla ...]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from common import FASHION_VAE, step_timer  # noqa: E402

BATCH = 128
VARIANTS = {
    "default": "zspace.train's path: tf.data gather in-graph, steps_per_execution 8, NonFiniteGuard",
    "python_batches": "EpochBatches (Python generator) instead of the in-graph pipeline",
    "spe_1": "steps_per_execution = 1",
    "python_batches_spe_1": "both of the above (zspace's first version)",
    "no_guard": "without the per-batch NonFiniteGuard callback",
    "train_step": 'kl_method = "train_step" instead of "add_loss"',
    "xla": "compile(jit_compile=True)",
    "bf16": 'precision = "mixed_bfloat16"',
}


def timer():
    return step_timer(BATCH)


def zspace_variant(name, images, steps):
    import dataclasses

    import keras

    from zspace.config import ModelConfig, TrainConfig
    from zspace.models import build_model
    from zspace.training import EpochBatches
    from zspace.training.callbacks import NonFiniteGuard
    from zspace.training.run import input_batches, steps_per_execution

    model_config = ModelConfig(**FASHION_VAE)
    if name == "train_step":
        model_config = dataclasses.replace(model_config, kl_method="train_step")
    train = TrainConfig(batch_size=BATCH, precision="mixed_bfloat16" if name == "bf16" else "float32",
                        steps_per_execution=1 if "spe_1" in name else 8)
    keras.utils.set_random_seed(0)
    model = build_model(model_config, seed=0, precision=train.precision)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=name == "xla",
                  steps_per_execution=steps_per_execution(steps, train.steps_per_execution))

    def run():
        t = timer()
        if "python_batches" in name:
            batches = EpochBatches(images, BATCH, seed=0)
        else:
            batches = input_batches(images, train, seed=0)
        callbacks = [t] if name == "no_guard" else [NonFiniteGuard(), t]
        model.fit(batches, steps_per_epoch=steps, epochs=1, shuffle=False, callbacks=callbacks, verbose=0)
        return t.rate()

    return run


def docs_variant(images, steps):
    from zspace.config import ModelConfig

    from peers import keras_docs_vae

    vae = keras_docs_vae(ModelConfig(**FASHION_VAE))

    def run():
        t = timer()
        vae.fit(images, epochs=1, batch_size=BATCH, callbacks=[t], verbose=0)
        return t.rate()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS))
    args = parser.parse_args()
    images = np.random.default_rng(0).random((args.steps * BATCH, 28, 28, 1), dtype=np.float32)
    runs = {name: zspace_variant(name, images, args.steps) for name in (args.only or VARIANTS)}
    runs["keras-docs"] = docs_variant(images, args.steps)
    for run in runs.values():
        run()  # tracing and first-call costs
    rates = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            rates[name].append(run())
    yardstick = np.array(rates["keras-docs"])
    print(f"Fashion-MNIST VAE, batch {BATCH}, {args.steps} steps per round, {args.rounds} alternated rounds")
    for name, values in rates.items():
        ratio = float(np.median(np.array(values) / yardstick))
        label = VARIANTS.get(name, "the Keras documentation's VAE (yardstick)")
        print(f"{name:<22} {np.median(values):6.0f} img/s  x{ratio:.3f} of keras-docs   {label}")


if __name__ == "__main__":
    main()
