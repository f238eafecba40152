"""Shared fixtures: tiny configs and data, the real Fashion-MNIST files beside the checkout."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from zspace.config import ModelConfig, RunConfig, TrainConfig  # noqa: E402

SHARED_FASHION = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"


def write_idx(path, array, gz=False):
    """Writes ``array`` as a uint8 IDX file (gzipped with ``gz``)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.fixture(scope="session", autouse=True)
def private_keras_home(tmp_path_factory):
    """Tests never write into the user's ~/.keras: caches zspace keeps there (the domain feature
    networks) go to one temporary KERAS_HOME for the session, so each is trained once per session."""
    previous = os.environ.get("KERAS_HOME")
    os.environ["KERAS_HOME"] = str(tmp_path_factory.mktemp("keras-home"))
    yield Path(os.environ["KERAS_HOME"])
    if previous is None:
        del os.environ["KERAS_HOME"]
    else:
        os.environ["KERAS_HOME"] = previous


def tiny_model_config(**changes) -> ModelConfig:
    """A 8x8x1 VAE with two conv layers: builds and trains in milliseconds."""
    base = dict(
        input_shape=(8, 8, 1), z_dim=3, encoder_filters=(4, 8), encoder_kernels=(3, 3),
        encoder_strides=(2, 2), encoder_padding=("same", "same"),
    )
    return ModelConfig(**{**base, **changes})


def tiny_run_config(run_dir: Path, **train_changes) -> RunConfig:
    train = dict(dataset="digits", epochs=2, batch_size=64, run_dir=str(run_dir), verbose=0)
    return RunConfig(tiny_model_config(), TrainConfig(**{**train, **train_changes}))


def train_ae_and_vae(root: Path, epochs: int) -> tuple[Path, Path]:
    """Trains the tiny AE and VAE on digits into ``root/ae`` and ``root/vae``; returns the two run folders."""
    from zspace.training import train

    for kind in ("ae", "vae"):
        train(tiny_run_config(root / kind, epochs=epochs).with_overrides({"kind": kind}))
    return root / "ae", root / "vae"


@pytest.fixture
def images() -> np.ndarray:
    """16 seeded random 8x8x1 images in [0, 1]."""
    return np.random.default_rng(0).random((16, 8, 8, 1)).astype(np.float32)


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """The real Fashion-MNIST IDX files in ../shared/data, checked against SHA256SUMS."""
    if not SHARED_FASHION.is_dir():
        pytest.skip(f"real Fashion-MNIST not found at {SHARED_FASHION}")
    for line in (SHARED_FASHION / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        actual = hashlib.sha256((SHARED_FASHION / name.lstrip("*")).read_bytes()).hexdigest()
        assert actual == digest, f"{name} does not match SHA256SUMS"
    return SHARED_FASHION
