"""--epsilon-scale at inference: z = mu + sigma * eps * F in encode, analyze, evaluate and generate, recorded."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import train_ae_and_vae
from zspace import Run
from zspace.analysis import analyze_run, encode_run_images
from zspace.cli import app
from zspace.config import AnalysisConfig
from zspace.errors import ConfigError
from zspace.evaluation.evaluate import EvaluationConfig, evaluate
from zspace.generation import labelled_grid
from zspace.report.build import RunReport, comparison_tables

runner = CliRunner()
QUICK_ANALYSIS = AnalysisConfig(tsne_sizes=(), k_min=2, k_max=4, kmeans_seeds=(0,), pca_subset=200)
QUICK_EVALUATION = EvaluationConfig(k=10, nll_images=40, hole_samples=200, samplers=(), features=(), progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_ae_and_vae(tmp_path_factory.mktemp("epsilon"), epochs=1)


def test_scale_zero_gives_mu_and_two_doubles_the_noise(runs):
    run = Run(runs[1])
    codes = {f: encode_run_images(run, "validation", epsilon_scale=f) for f in (None, 0.0, 2.0)}
    default, zero, double = (codes[f].codes for f in (None, 0.0, 2.0))
    assert codes[None].epsilon_scale == 1.0 and codes[0.0].epsilon_scale == 0.0
    np.testing.assert_array_equal(default["mu"], zero["mu"])
    np.testing.assert_array_equal(zero["z"], zero["mu"])  # exactly: mu + sigma * eps * 0
    noise = default["z"] - default["mu"]
    assert np.abs(noise).max() > 1e-3  # the default does draw noise, so doubling it is a real check
    np.testing.assert_allclose(double["z"] - double["mu"], 2 * noise, rtol=1e-5, atol=1e-6)
    # the run's model is back at its own scale afterwards
    np.testing.assert_array_equal(encode_run_images(run, "validation").codes["z"], default["z"])


@pytest.mark.parametrize("value", [-0.5, float("nan"), float("inf"), 1000.5])
def test_a_scale_outside_the_model_configs_range_is_refused(runs, value):
    with pytest.raises(ConfigError, match=r"epsilon_scale must be a number in \[0, 1000\]"):
        encode_run_images(Run(runs[1]), "validation", epsilon_scale=value)


def test_an_ae_refuses_a_scale_in_the_api_and_the_cli(runs, tmp_path):
    with pytest.raises(ConfigError, match="is an AE"):
        encode_run_images(Run(runs[0]), "validation", epsilon_scale=1.0)
    for command in (["encode", str(runs[0]), "--out", str(tmp_path / "ae.npz")], ["analyze", str(runs[0])],
                    ["evaluate", str(runs[0])], ["generate", str(runs[0]), "--reconstruct", "--out",
                                                 str(tmp_path / "ae.png")]):
        result = runner.invoke(app, [*command, "--epsilon-scale", "0"])
        assert result.exit_code == 2, result.output
        assert "--epsilon-scale" in result.output and "is an AE" in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_encode_records_the_scale_in_the_npz(runs, tmp_path):
    for flag, expected in ((["--epsilon-scale", "0"], 0.0), ([], 1.0)):
        out = tmp_path / f"codes{expected:g}.npz"
        result = runner.invoke(app, ["encode", str(runs[1]), "--out", str(out), "--split", "validation", *flag])
        assert result.exit_code == 0, result.output
        with np.load(out, allow_pickle=False) as arrays:
            assert float(arrays["epsilon_scale"]) == expected
            assert np.array_equal(arrays["z"], arrays["mu"]) == (expected == 0.0)
    out = tmp_path / "ae.npz"
    assert runner.invoke(app, ["encode", str(runs[0]), "--out", str(out)]).exit_code == 0
    with np.load(out, allow_pickle=False) as arrays:
        assert "epsilon_scale" not in arrays  # an AE has no noise to scale


def test_analysis_records_its_scale_and_says_when_it_replaces_the_default(runs, tmp_path):
    vae = runs[1]
    analysis = analyze_run(vae, QUICK_ANALYSIS, epsilon_scale=0.0)
    assert analysis.run.epsilon_scale == 0.0
    np.testing.assert_array_equal(analysis.arrays["z"], analysis.arrays["mu"])
    assert Run(vae).load_analysis().run.epsilon_scale == 0.0  # saved, and read back
    assert analysis.internals.abs_z_minus_mu_max == 0.0

    result = runner.invoke(app, ["analyze", str(vae), "--set", "tsne_sizes=[]", "--set", "k_max=4",
                                 "--epsilon-scale", "0.5"])
    assert result.exit_code == 0, result.output
    assert f"note: {vae / 'analysis.json'} now holds results at epsilon_scale 0.5, not the run's own 1" in result.output
    assert json.loads((vae / "analysis.json").read_text())["run"]["epsilon_scale"] == 0.5
    result = runner.invoke(app, ["analyze", str(vae), "--set", "tsne_sizes=[]", "--set", "k_max=4"])
    assert result.exit_code == 0 and "note:" not in result.output
    assert Run(vae).load_analysis().run.epsilon_scale == 1.0


def test_an_analysis_from_before_the_field_reads_as_the_runs_own_scale(runs):
    vae = Run(runs[1])
    analysis = analyze_run(vae, QUICK_ANALYSIS, epsilon_scale=0.25)
    data = json.loads(vae.analysis_json.read_text())
    del data["run"]["epsilon_scale"]
    vae.analysis_json.write_text(json.dumps(data))
    old = Run(runs[1]).load_analysis()
    assert old.run.epsilon_scale is None
    report = RunReport(Run(runs[1]), [], old, {}, None)
    assert comparison_tables([report])["Radius of the z-points"][1][0][-1] == "1"  # the run's own, not "0.25"
    rescaled = RunReport(Run(runs[1]), [], analysis, {}, None)
    headers, rows = comparison_tables([rescaled])["Radius of the z-points"]
    assert headers[-1] == "eps scale" and rows[0][-1] == "0.25"


def test_evaluation_records_its_scale_and_only_z_based_numbers_move(runs):
    vae = runs[1]
    default = evaluate(vae, QUICK_EVALUATION)
    zero = evaluate(vae, QUICK_EVALUATION, epsilon_scale=0.0)
    assert (default.epsilon_scale, zero.epsilon_scale) == (1.0, 0.0)
    assert Run(vae).load_evaluation().epsilon_scale == 0.0
    assert zero.reconstruction.loss_per_image != default.reconstruction.loss_per_image
    assert zero.likelihood == default.likelihood  # mu and logvar only
    assert zero.prior == default.prior
    assert any("epsilon_scale" in note and "run's own scale is 1" in note for note in zero.notes)
    assert not any("epsilon_scale" in note for note in default.notes)
    assert evaluate(runs[0], QUICK_EVALUATION).epsilon_scale is None


def test_generate_reconstructs_through_mu_at_scale_zero_and_tags_the_png(runs, tmp_path):
    vae = Run(runs[1])
    out = tmp_path / "rec.png"
    result = runner.invoke(app, ["generate", str(runs[1]), "--reconstruct", "--n", "5", "--epsilon-scale", "0",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    targets = vae.validation_images(5)
    expected = np.concatenate([targets, vae.model.decode(vae.model.encode(targets)["mu"])])
    with Image.open(out) as png:
        assert png.text["zspace:epsilon_scale"] == "0"
        np.testing.assert_array_equal(np.asarray(png), labelled_grid(
            expected, cols=5, row_labels=["original", "reconstruction"])[..., 0])


def test_generate_refuses_a_scale_where_it_changes_nothing(runs, tmp_path):
    for mode in (["--dist", "normal"], ["--interpolate", "0", "1"], ["--dist", "uniform"]):
        result = runner.invoke(app, ["generate", str(runs[1]), *mode, "--epsilon-scale", "2",
                                     "--out", str(tmp_path / "g.png")])
        assert result.exit_code == 2 and "--epsilon-scale changes only" in result.output
    assert list(tmp_path.iterdir()) == []
