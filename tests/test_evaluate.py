"""``zspace evaluate`` on tiny trained runs: evaluation.json, its records, and the AE's missing likelihood."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import tiny_run_config
from zspace import Run
from zspace.cli import app
from zspace.evaluation.evaluate import reconstruction_quality
from zspace.training import train

runner = CliRunner()
FAST = ["--set", "k=20", "--set", "nll_images=50", "--set", "hole_samples=500", "--set", "limits=[1, 8]"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    for kind in ("ae", "vae"):
        train(tiny_run_config(root / kind, epochs=2).with_overrides({"kind": kind}))
    return root / "ae", root / "vae"


def test_evaluate_writes_strict_json_that_reads_back_as_records(runs):
    ae, vae = runs
    result = runner.invoke(app, ["evaluate", str(vae), *FAST])
    assert result.exit_code == 0, result.output
    assert "NLL" in result.output and "wrote" in result.output
    data = json.loads((vae / "evaluation.json").read_text(), parse_constant=lambda c: pytest.fail(c))  # strict
    assert set(data) >= {"reconstruction", "likelihood", "prior", "samples", "seconds"}
    evaluation = Run(vae).load_evaluation()
    lik = evaluation.likelihood
    assert lik.k == 20 and lik.n_images == 50 and lik.nll <= -lik.elbo + 1e-6
    assert set(evaluation.prior.hole_fraction) == {"normal", "uniform_1", "uniform_8"}
    assert evaluation.prior.hole_fraction["uniform_8"] >= evaluation.prior.hole_fraction["uniform_1"]
    assert evaluation.reconstruction.n_images == 180 and 0 < evaluation.reconstruction.ssim <= 1
    # the per-image loss is the run's own validation reconstruction loss, up to sampling noise
    assert evaluation.reconstruction.loss_per_image == pytest.approx(Run(vae).history[-1]["val_reco_loss"], rel=0.03)


def test_an_ae_has_no_likelihood_but_the_rest(runs):
    ae, _ = runs
    result = runner.invoke(app, ["evaluate", str(ae), *FAST])
    assert result.exit_code == 0, result.output
    assert "no likelihood (an AE has none)" in result.output
    evaluation = Run(ae).load_evaluation()
    assert evaluation.likelihood is None and evaluation.prior.surgery.bandwidth > 0


def test_bad_evaluation_settings_and_files(runs, tmp_path):
    _, vae = runs
    result = runner.invoke(app, ["evaluate", str(vae), "--set", "k=0"])
    assert result.exit_code == 2 and "`k` must be a positive integer. Received: k=0" in result.output
    bad_toml = tmp_path / "eval.toml"
    bad_toml.write_text("k = 5\nholes = 3\n")
    result = runner.invoke(app, ["evaluate", str(vae), "--config", str(bad_toml)])
    assert result.exit_code == 2 and "unknown field `holes`" in result.output
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "evaluation.json").write_text('{"kind": "vae"}')
    with pytest.raises(Exception, match="not an evaluation written by zspace"):
        Run(tmp_path / "run").load_evaluation()


def test_reconstruction_quality_of_perfect_and_flipped_images():
    x = np.random.default_rng(0).random((4, 12, 12, 1)).astype(np.float32)
    perfect = reconstruction_quality(x, x, "mse")
    assert perfect.loss_per_image == pytest.approx(0.0, abs=1e-9) and perfect.ssim == pytest.approx(1.0, abs=1e-5)
    flipped = reconstruction_quality(x, 1.0 - x, "mse")
    mse = ((2 * x - 1.0) ** 2).reshape(4, -1).mean(1)
    assert flipped.psnr == pytest.approx(float(np.mean(10 * np.log10(1 / mse))), rel=1e-6) and flipped.ssim < 0.5
    assert flipped.loss_per_pixel == pytest.approx(float(mse.mean()), rel=1e-6)
