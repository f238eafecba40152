"""Images/s of the CelebA VAE on one device: the plain path against keras.distribution.DataParallel.

Run where there is one accelerator (JAX backend): it shows what Keras' distributed input path costs
when there is nothing to split. That is why zspace trains one device on the plain path.

    KERAS_BACKEND=jax python benchmarks/data_parallel_one_device.py
"""

import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

from zspace.rundir import training_config  # noqa: E402
from zspace.training.distribute import Replicas  # noqa: E402
from zspace.training.run import new_model  # noqa: E402

IMAGES, BATCH, ROUNDS = 16_384, 256, 5


def replicas(kind: str) -> Replicas:
    """The plain path, or DataParallel on the first device (what zspace does for several devices)."""
    if kind == "plain":
        return Replicas()
    import jax
    import keras

    previous = keras.distribution.distribution()
    distribution = keras.distribution.DataParallel(devices=jax.devices()[:1], auto_shard_dataset=False)
    keras.distribution.set_distribution(distribution)
    return Replicas(count=1, distribution=distribution, _previous_distribution=previous)


def main() -> None:
    import jax

    print("devices", jax.devices(), flush=True)
    config = training_config("configs/celeba-vae-kl5.toml").with_overrides({"batch_size": BATCH})
    x = np.random.default_rng(0).random((IMAGES, 96, 96, 3), dtype=np.float32)
    out = {}
    for kind in ("plain", "data_parallel"):
        placed = replicas(kind)
        model = new_model(config, IMAGES // BATCH, placed)
        model.fit(x, x, batch_size=BATCH, epochs=1, verbose=0)  # compile + warm-up
        rates = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            model.fit(x, x, batch_size=BATCH, epochs=1, verbose=0)
            rates.append(IMAGES / (time.perf_counter() - start))
        placed.close()
        out[kind] = round(float(np.median(rates)))
        print(kind, out[kind], "img/s", [round(r) for r in rates], flush=True)
    print(json.dumps(out))
    print(f"data_parallel_over_plain={out['data_parallel'] / out['plain']:.2f}")


if __name__ == "__main__":
    main()
