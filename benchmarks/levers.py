"""One-at-a-time checks of training-speed levers on the Fashion-MNIST VAE (zspace path).

Each lever runs in a fresh process: 4 fits of 60 steps, the first discarded, the steady-state
rate (from the second batch-end callback to the last) of the others reported; the machine is noisy (+-10% between runs), so
only large effects count.

    python benchmarks/levers.py                 # all levers
    python benchmarks/levers.py xla bf16        # some
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LEVERS = {
    "default": "zspace default path (float32, EpochBatches, NonFiniteGuard)",
    "xla": "compile(jit_compile=True)",
    "inter_op_1": "tf.config.threading.set_inter_op_parallelism_threads(1)",
    "no_remapper": "grappler remapping (op fusion) off",
    "arrays": "Keras' numpy-array adapter instead of EpochBatches",
    "no_guard": "without the per-batch NonFiniteGuard callback",
    "train_step": 'kl_method = "train_step" (custom step) instead of "add_loss"',
    "bf16": 'precision = "mixed_bfloat16"',
    "spe_8": "compile(steps_per_execution=8)",
}

CHILD = r"""
import os, sys, time, dataclasses
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, sys.argv[2])
import numpy as np, keras, tensorflow as tf
from common import FASHION_VAE
class Timer(keras.callbacks.Callback):
    # (batch, time) of every batch-end call; with steps_per_execution > 1 they come every k steps
    def on_train_begin(self, logs=None):
        self.marks = []
    def on_train_batch_end(self, batch, logs=None):
        self.marks.append((batch, time.perf_counter()))
    def rate(self):
        (b0, t0), (b1, t1) = self.marks[1], self.marks[-1]
        return (b1 - b0) * 128 / (t1 - t0)
from zspace.config import ModelConfig
from zspace.models import build_model
from zspace.training import EpochBatches
from zspace.training.callbacks import NonFiniteGuard
lever, steps = sys.argv[1], 60
if lever == "inter_op_1":
    tf.config.threading.set_inter_op_parallelism_threads(1)
if lever == "no_remapper":
    tf.config.optimizer.set_experimental_options({"remapping": False})
config = ModelConfig(**FASHION_VAE)
if lever == "train_step":
    config = dataclasses.replace(config, kl_method="train_step")
x = np.random.default_rng(0).random((steps * 128, 28, 28, 1), dtype=np.float32)
model = build_model(config, seed=0, precision="mixed_bfloat16" if lever == "bf16" else "float32")
model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=lever == "xla",
              steps_per_execution=8 if lever == "spe_8" else 1)
rates = []
for r in range(4):
    timer = Timer()
    callbacks = [timer] if lever == "no_guard" else [NonFiniteGuard(), timer]
    if lever == "arrays":
        model.fit(x, x, batch_size=128, epochs=1, callbacks=callbacks, verbose=0)
    else:
        batches = EpochBatches(x, 128, seed=0, start_epoch=r, end_epoch=r + 1)
        model.fit(batches, steps_per_epoch=steps, epochs=r + 1, initial_epoch=r, shuffle=False,
                  callbacks=callbacks, verbose=0)
    if r:
        rates.append(timer.rate())
print(round(float(np.median(rates))), [round(v) for v in rates])
"""


def main() -> None:
    chosen = sys.argv[1:] or list(LEVERS)
    unknown = [c for c in chosen if c not in LEVERS]
    if unknown:
        sys.exit(f"unknown lever(s) {unknown}; choose from {list(LEVERS)}")
    here = str(Path(__file__).parent)
    for lever in chosen:
        out = subprocess.run([sys.executable, "-c", CHILD, lever, here], capture_output=True, text=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        result = out.stdout.strip().splitlines()[-1] if out.returncode == 0 else f"failed: {out.stderr[-300:]}"
        print(f"{lever:<12} {result:<32} {LEVERS[lever]}", flush=True)


if __name__ == "__main__":
    main()
