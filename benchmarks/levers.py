"""Training-speed levers on the reference VAEs, alternated in one process against the
Keras documentation's VAE as the yardstick.

Every variant is a zspace model fed and compiled one way; rounds alternate the variants
(A B C ... A B C ...), so slow drifts of this shared machine hit them alike. Printed: the
median img/s and the median of the per-round ratios to the yardstick. (The peers live in
separate processes in train_throughput.py; here all variants are TensorFlow, and they share
one process fairly.)

    python benchmarks/levers.py [--arch fashion|celeba] [--rounds 5] [--steps 80] [--only default xla ...]

Variants that undo a kept lever ("keras_leaky_relu", "metric_recompute") patch zspace while
their model is built and first traced; the patch is undone before the next variant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import contextlib  # noqa: E402

import numpy as np  # noqa: E402
from common import CELEBA_VAE, FASHION_VAE, step_timer  # noqa: E402

BATCH = 128
VARIANTS = {
    "default": "zspace.train's path: tf.data gather in-graph, steps_per_execution 8, NonFiniteGuard",
    "python_batches": "EpochBatches (Python generator) instead of the in-graph pipeline",
    "spe_1": "steps_per_execution = 1",
    "python_batches_spe_1": "both of the above (zspace's first version)",
    "no_guard": "without the per-batch NonFiniteGuard callback",
    "keras_leaky_relu": "keras.layers.LeakyReLU instead of FusibleLeakyReLU (remapper fails)",
    "metric_recompute": "compute_metrics recomputes the reconstruction loss (zspace before)",
    "both_undone": "both of the above",
    "train_step": 'kl_method = "train_step" instead of "add_loss"',
    "xla": "compile(jit_compile=True)",
    "bf16": 'precision = "mixed_bfloat16"',
}


def timer():
    return step_timer(BATCH)


@contextlib.contextmanager
def undone_levers(name):
    """Patches zspace back to its state before a kept lever, for the variants that ask."""
    import keras
    from keras import ops

    import zspace.models.networks as networks
    from zspace.models.autoencoder import Autoencoder
    from zspace.models.losses import reconstruction_per_image

    def recomputing_metrics(self, x, y, y_pred, sample_weight=None):
        reco = ops.mean(reconstruction_per_image(y, y_pred["reconstruction"], self.model_config.reconstruction_loss))
        self.kl_loss_tracker.update_state(reco, sample_weight=ops.shape(y)[0])  # stands in for the reco tracker
        return original_metrics(self, x, y, y_pred, sample_weight)

    original_layer, original_metrics = networks.FusibleLeakyReLU, Autoencoder.compute_metrics
    if name in ("keras_leaky_relu", "both_undone"):
        networks.FusibleLeakyReLU = keras.layers.LeakyReLU
    if name in ("metric_recompute", "both_undone"):
        Autoencoder.compute_metrics = recomputing_metrics
    try:
        yield
    finally:
        networks.FusibleLeakyReLU, Autoencoder.compute_metrics = original_layer, original_metrics


def zspace_variant(name, spec, images, steps):
    import dataclasses

    import keras

    from zspace.config import ModelConfig, TrainConfig
    from zspace.models import build_model
    from zspace.training import EpochBatches
    from zspace.training.callbacks import NonFiniteGuard
    from zspace.training.run import input_batches, steps_per_execution

    model_config = ModelConfig(**spec)
    if name == "train_step":
        model_config = dataclasses.replace(model_config, kl_method="train_step")
    train = TrainConfig(batch_size=BATCH, precision="mixed_bfloat16" if name == "bf16" else "float32",
                        steps_per_execution=1 if "spe_1" in name else 8)
    keras.utils.set_random_seed(0)
    with undone_levers(name):
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
        with undone_levers(name):  # the first call traces the training step
            model.fit(batches, steps_per_epoch=steps, epochs=1, shuffle=False, callbacks=callbacks, verbose=0)
        return t.rate()

    return run


def docs_variant(spec, images, steps):
    from zspace.config import ModelConfig

    from peers import keras_docs_vae

    vae = keras_docs_vae(ModelConfig(**spec))

    def run():
        t = timer()
        vae.fit(images, epochs=1, batch_size=BATCH, callbacks=[t], verbose=0)
        return t.rate()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["fashion", "celeba"], default="fashion")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, help="steps per round (default 80 Fashion-MNIST, 24 CelebA)")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS))
    args = parser.parse_args()
    spec = {"fashion": FASHION_VAE, "celeba": CELEBA_VAE}[args.arch]
    steps = args.steps or {"fashion": 80, "celeba": 24}[args.arch]
    images = np.random.default_rng(0).random((steps * BATCH, *spec["input_shape"]), dtype=np.float32)
    runs = {name: zspace_variant(name, spec, images, steps) for name in (args.only or VARIANTS)}
    runs["keras-docs"] = docs_variant(spec, images, steps)
    for run in runs.values():
        run()  # tracing and first-call costs
    rates = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            rates[name].append(run())
    yardstick = np.array(rates["keras-docs"])
    print(f"{args.arch} VAE, batch {BATCH}, {steps} steps per round, {args.rounds} alternated rounds")
    for name, values in rates.items():
        ratio = float(np.median(np.array(values) / yardstick))
        label = VARIANTS.get(name, "the Keras documentation's VAE (yardstick)")
        print(f"{name:<22} {np.median(values):6.0f} img/s  x{ratio:.3f} of keras-docs   {label}")


if __name__ == "__main__":
    main()
