"""TensorFlow's graph optimiser can fuse zspace's convolutions with their activation.

Checked on the log line grappler writes when its remapper gives up on a training graph,
with Keras' own LeakyReLU as the control (if that stops failing, TensorFlow fixed it).
"""

import os
import subprocess
import sys

import keras
import pytest

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="grappler is TensorFlow's")

SCRIPT = """
import sys
import keras
import numpy as np
from zspace.models.layers import FusibleLeakyReLU

activation = FusibleLeakyReLU if sys.argv[1] == "fusible" else keras.layers.LeakyReLU
inputs = keras.Input((16, 16, 3))
x = activation()(keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs))
x = activation()(keras.layers.Conv2D(8, 3, strides=2, padding="same")(x))
model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(x)))
model.compile(optimizer="adam", loss="mse")
model.fit(np.ones((8, 16, 16, 3), "float32"), np.ones((8, 1), "float32"), epochs=1, verbose=0)
print("trained")
"""


def training_log(activation: str) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", SCRIPT, activation], env=env, capture_output=True,
                          text=True, timeout=120)
    assert "trained" in done.stdout, done.stderr[-2000:]
    return done.stderr


def test_remapper_keeps_the_conv_bias_leaky_relu_fusion():
    if "remapper failed" not in training_log("keras"):
        pytest.skip("this TensorFlow's remapper no longer fails on Keras' LeakyReLU")
    log = training_log("fusible")
    assert "remapper failed" not in log, [line for line in log.splitlines() if "remapper" in line]
