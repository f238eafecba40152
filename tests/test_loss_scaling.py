"""reconstruction_reduction = "mean" (the seed's per-pixel scale_fact) and the per-pixel loss columns (issue 13).

With H*W*C pixel values per image, "mean" with kl_factor f trains on exactly 1 / (H*W*C) times the loss
of "sum" with kl_factor f * H*W*C: the tests check that relation on fixed weights, the gradients'
proportionality for every KL method, and Adam's near-equal trajectories (Adam is scale-invariant).
"""

import csv

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import tiny_model_config, tiny_run_config
from zspace.cli import app
from zspace.config import ModelConfig
from zspace.errors import ConfigError
from zspace.models import build_model, reconstruction_per_image
from zspace.report.build import _reco_scales
from zspace.training import train

pytestmark = pytest.mark.backend

KL_METHODS = ["layer", "outputs", "add_loss", "train_step"]
PIXELS = 8 * 8 * 1  # tiny_model_config's images
KL_MEAN = 0.7  # the "mean" run's kl_factor; the "sum" run's is KL_MEAN * PIXELS


def pair(kind="vae", method="add_loss"):
    """(sum model, mean model) with equal weights and noise: kl_factor f * H*W*C vs f."""
    keras.utils.set_random_seed(3)
    models = []
    for reduction, factor in (("sum", KL_MEAN * PIXELS), ("mean", KL_MEAN)):
        config = tiny_model_config(kind=kind, kl_method=method, kl_factor=factor, reconstruction_reduction=reduction)
        models.append(build_model(config, seed=11))
    models[1].set_weights(models[0].get_weights())
    return models


def test_reduction_mean_is_the_sum_over_pixels_divided_by_their_count(images):
    out = np.random.default_rng(1).uniform(0.05, 0.95, images.shape).astype("float32")
    for kind in ("bce", "mse"):
        total = keras.ops.convert_to_numpy(reconstruction_per_image(images, out, kind))
        mean = keras.ops.convert_to_numpy(reconstruction_per_image(images, out, kind, "mean"))
        np.testing.assert_allclose(mean, total / PIXELS, rtol=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        reconstruction_per_image(images, out, "bce", "median")


@pytest.mark.parametrize("method", KL_METHODS)
def test_mean_loss_is_the_sum_loss_with_a_rescaled_kl_factor_over_pixel_count(images, method):
    """Fixed weights: mean-total(f) == sum-total(f * HWC) / HWC; the per-pixel / per-image columns agree."""
    total, mean = pair(method=method)
    logs = {}
    for name, model in (("sum", total), ("mean", mean)):
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))
        logs[name] = model.test_on_batch(images, images, return_dict=True)
    s, m = logs["sum"], logs["mean"]
    assert m["total_loss"] == pytest.approx(s["total_loss"] / PIXELS, rel=1e-5)
    assert m["reco_loss"] == pytest.approx(s["reco_loss"] / PIXELS, rel=1e-4)
    assert m["kl_loss"] == pytest.approx(s["kl_loss"] / PIXELS, rel=1e-5)
    assert m["kl_divergence"] == pytest.approx(s["kl_divergence"], rel=1e-5)  # the same KL, weighted differently
    for key in ("reco_loss_per_pixel", "reco_loss_per_image"):
        assert m[key] == pytest.approx(s[key], rel=1e-4), key
    assert s["reco_loss_per_image"] == pytest.approx(s["reco_loss"], rel=1e-6)
    assert s["reco_loss_per_pixel"] == pytest.approx(s["reco_loss"] / PIXELS, rel=1e-6)
    assert m["reco_loss_per_pixel"] == pytest.approx(m["reco_loss"], rel=1e-6)


@pytest.mark.parametrize("kind, method", [("ae", "add_loss")] + [("vae", m) for m in KL_METHODS])
def test_mean_loss_gradients_are_the_sum_loss_gradients_over_pixel_count(images, kind, method):
    """One SGD(lr=1) step moves each weight by -gradient: the mean run's steps are the sum run's / HWC."""
    total, mean = pair(kind, method)
    initial = total.get_weights()
    steps = {}
    for name, model in (("sum", total), ("mean", mean)):
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
        model.train_on_batch(images, images)
        steps[name] = [w0 - w1 for w0, w1 in zip(initial, model.get_weights())]
    largest = max(float(np.abs(s).max()) for s in steps["sum"])
    assert largest > 1e-3  # the step did something
    for a, b in zip(steps["sum"], steps["mean"]):
        np.testing.assert_allclose(b, a / PIXELS, atol=1e-5 * largest / PIXELS, rtol=1e-3)


def test_adam_trains_mean_and_rescaled_sum_along_the_same_path(images):
    """Adam divides by the gradients' own scale: 10 steps of the two runs end at the same weights.

    Only Adam's epsilon breaks the invariance (it weighs HWC times more against the mean run's
    smaller gradients); with Keras' default 1e-7 these random images' tiny gradients already drift
    by 2% of the distance moved, so the check uses 1e-12.
    """
    total, mean = pair()
    initial = total.get_weights()
    finals = []
    for model in (total, mean):
        model.compile(optimizer=keras.optimizers.Adam(1e-2, epsilon=1e-12))
        model.fit(images, images, batch_size=8, epochs=5, shuffle=False, verbose=0)
        finals.append(model.get_weights())
    moved = max(float(np.abs(w - w0).max()) for w, w0 in zip(finals[0], initial))
    differs = max(float(np.abs(a - b).max()) for a, b in zip(*finals))
    assert moved > 1e-2
    assert differs < 1e-3 * moved  # float32 round-off over 10 steps; epsilon 1e-7 gives 2e-2


def test_reduction_is_a_checked_model_field():
    assert ModelConfig().reconstruction_reduction == "sum"  # old runs keep their meaning
    with pytest.raises(ConfigError, match="reconstruction_reduction"):
        ModelConfig(reconstruction_reduction="per_pixel")


def test_report_scales_derive_from_old_rows_and_the_runs_reduction():
    model = tiny_model_config()
    old_row = {"reco_loss": 32.0, "val_reco_loss": 16.0}  # a history written before the new columns
    assert _reco_scales(old_row, model, "") == {"reco_loss_per_image": 32.0, "reco_loss_per_pixel": 0.5}
    assert _reco_scales(old_row, model, "val_") == {"val_reco_loss_per_image": 16.0, "val_reco_loss_per_pixel": 0.25}
    mean = tiny_model_config(reconstruction_reduction="mean")
    assert _reco_scales({"reco_loss": 0.5}, mean, "") == {"reco_loss_per_image": 32.0, "reco_loss_per_pixel": 0.5}
    new_row = {"reco_loss": 1.0, "reco_loss_per_image": 64.0, "reco_loss_per_pixel": 1.0}
    assert _reco_scales(new_row, mean, "")["reco_loss_per_image"] == 64.0


def test_history_and_comparison_show_per_pixel_beside_per_image(tmp_path):
    """A "mean" run on digits (8x8x1): history columns in both units, and the compare table's."""
    config = tiny_run_config(tmp_path / "mean", epochs=1).with_overrides(
        {"reconstruction_reduction": "mean", "kl_factor": 0.05})
    history = train(config).history
    last = history[-1]
    for prefix in ("", "val_"):
        assert last[f"{prefix}reco_loss_per_pixel"] == pytest.approx(last[f"{prefix}reco_loss"], rel=1e-6)
        assert last[f"{prefix}reco_loss_per_image"] == pytest.approx(64 * last[f"{prefix}reco_loss"], rel=1e-5)
    assert 0.1 < last["val_reco_loss_per_pixel"] < 1.0  # BCE per pixel value of half-trained digits
    with open(tmp_path / "mean" / "history.csv") as f:
        header = next(csv.reader(f))
    assert {"reco_loss_per_pixel", "val_reco_loss_per_pixel", "reco_loss_per_image",
            "val_reco_loss_per_image"} <= set(header)
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "mean"), "-o", str(tmp_path / "cmp"), "--set",
                                      "k_max=4", "--set", "tsne_sizes=[]", "--set", "pca_subset=300"])
    assert result.exit_code == 0, result.output
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    header_line = next(line for line in table.splitlines() if "reco / pixel" in line)
    cells = [c.strip() for c in header_line.strip("|").split("|")]
    row = next(line for line in table.splitlines() if line.startswith("| mean |"))
    values = dict(zip(cells, (c.strip() for c in row.strip("|").split("|"))))
    assert values["reco reduction"] == "mean"
    assert float(values["val reco / pixel"]) == pytest.approx(last["val_reco_loss_per_pixel"], rel=1e-3)
    assert float(values["val reco / image"]) == pytest.approx(last["val_reco_loss_per_image"], rel=1e-3)
