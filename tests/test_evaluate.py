"""``zspace evaluate`` on tiny trained runs: evaluation.json, its records, and the AE's missing likelihood."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import tiny_run_config, train_ae_and_vae
from zspace import Run
from zspace.cli import app
from zspace.evaluation.evaluate import reconstruction_quality
from zspace.training import train

runner = CliRunner()
FAST = ["--set", "k=20", "--set", "nll_images=50", "--set", "hole_samples=500", "--set", "limits=[1, 8]",
        "--set", "sample_images=60", "--set", "second_stage_steps=200", "--set", 'features=["domain"]']


def fast(*extra: str) -> list[str]:
    """FAST with the fields ``extra`` sets replaced by them (a field given twice is an error)."""
    changed = {e.partition("=")[0] for e in extra if "=" in e}
    pairs = [(flag, value) for flag, value in zip(FAST[::2], FAST[1::2]) if value.partition("=")[0] not in changed]
    return [item for pair in pairs for item in pair] + list(extra)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_ae_and_vae(tmp_path_factory.mktemp("evaluate"), epochs=2)


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
    assert set(evaluation.prior.hole_fraction) == {"normal", "uniform_1", "uniform_8", "gmm", "second_stage"}
    assert evaluation.prior.hole_fraction["uniform_8"] >= evaluation.prior.hole_fraction["uniform_1"]
    assert evaluation.reconstruction.n_images == 180 and 0 < evaluation.reconstruction.ssim <= 1
    # the per-image loss is the run's own validation reconstruction loss, up to sampling noise
    assert evaluation.reconstruction.loss_per_image == pytest.approx(Run(vae).history[-1]["val_reco_loss"], rel=0.03)


def test_sample_quality_of_every_sampler_in_the_domain_feature_space(runs):
    _, vae = runs
    evaluation = Run(vae).load_evaluation() if (vae / "evaluation.json").is_file() else None
    if evaluation is None or not evaluation.samples:
        assert runner.invoke(app, ["evaluate", str(vae), *FAST]).exit_code == 0
        evaluation = Run(vae).load_evaluation()
    expected = {"normal", "uniform_1", "uniform_8", "gmm", "second_stage"}
    assert {q.sampler for q in evaluation.samples} == expected and set(evaluation.samplers) == expected
    assert {q.features for q in evaluation.samples} == {"FD-domain"}
    space = evaluation.features["FD-domain"]
    assert space.trained_on == "labels" and space.held_out_accuracy > 0.5  # 10 digit classes: chance is 0.1
    for q in evaluation.samples:
        assert q.n_real == q.n_fake == 60 and q.fd >= 0 and 0 <= q.precision <= 1 and 0 <= q.coverage <= 1
    assert "components (chosen by BIC)" in evaluation.samplers["gmm"]


def test_the_same_seed_gives_the_same_numbers(runs):
    """Same settings: the same evaluation; more hole samples: the same sample distances (own streams)."""
    ae, _ = runs
    def evaluated(*extra):
        settings = fast("--set", 'samplers=["uniform", "gmm"]', *extra)
        assert runner.invoke(app, ["evaluate", str(ae), *settings]).exit_code == 0
        return {k: v for k, v in Run(ae).load_evaluation().to_json().items() if k not in ("seconds", "config")}

    first, more_holes, again = evaluated(), evaluated("--set", "hole_samples=1000"), evaluated()
    assert first == again and len(first["samples"]) == 3
    assert more_holes["samples"] == first["samples"] and more_holes["prior"] != first["prior"]


@pytest.mark.slow
def test_the_numbers_tell_the_story_of_the_demo_runs(tmp_path):
    """The seed's claims as numbers, on the demo's digits AE and VAE (40 epochs): random z decode to
    images far from real ones for the AE, not for the VAE; the GMM fitted afterwards lets the AE generate."""
    from zspace.config import load_config
    from zspace.evaluation.evaluate import EvaluationConfig, evaluate

    config = load_config("configs/demo.toml")
    settings = EvaluationConfig(k=50, nll_images=50, hole_samples=2000, limits=(1.0, 8.0), second_stage_steps=500,
                                features=("domain",), progress=False)
    e = {}
    for kind in ("ae", "vae"):
        train(config.with_overrides({"kind": kind, "run_dir": str(tmp_path / kind), "verbose": 0}))
        e[kind] = evaluate(tmp_path / kind, settings)
    ae, vae = e["ae"], e["vae"]
    # measured when written: AE / VAE marginal KL 108 / 0.38 nats, holes under N(0, I) 0.46 / 0.04,
    # FD-domain of N(0, I) images 292 / 19 (precision 0.01 / 0.81); the AE's GMM 6.5 (holes 0.02)
    assert ae.prior.surgery.marginal_kl > 10 * vae.prior.surgery.marginal_kl
    assert ae.prior.hole_fraction["normal"] > 2 * vae.prior.hole_fraction["normal"]
    assert ae.sample("normal").fd > 5 * vae.sample("normal").fd
    assert vae.sample("normal").precision > ae.sample("normal").precision + 0.5
    # a density fitted afterwards lets the AE generate: few holes, images near the real ones
    for fitted in ("gmm", "second_stage"):
        assert ae.sample(fitted).fd < 0.2 * ae.sample("normal").fd
        assert ae.prior.hole_fraction[fitted] < 0.5 * ae.prior.hole_fraction["normal"]
    assert vae.prior.hole_fraction["uniform_8"] > 0.9  # far outside N(0, I): the VAE's holes again


def test_too_few_images_and_missing_inception_weights(runs):
    ae, _ = runs
    result = runner.invoke(app, ["evaluate", str(ae), *fast("--set", "sample_images=5000")])
    assert result.exit_code == 2
    assert "sample_images=5000 asks for more validation images than the run has (180)" in result.output
    result = runner.invoke(app, ["evaluate", str(ae), *fast("--set", "sample_images=4")])
    assert result.exit_code == 2 and "`sample_images` must be an integer in [10, 1,000,000] or 0" in result.output
    result = runner.invoke(app, ["evaluate", str(ae), *fast("--set", "gmm_components=900", "--set", "fit_images=500")])
    assert result.exit_code == 2
    assert "need at least 900 training z-points (gmm_components=900); fit_images gives 500 of 1617" in result.output
    # no Inception weights in this session's KERAS_HOME: said once, the rest is evaluated
    result = runner.invoke(app, ["evaluate", str(ae), *fast("--set", 'features=["domain", "inception"]',
                                                              "--set", 'samplers=["normal"]')])
    assert result.exit_code == 0, result.output
    evaluation = Run(ae).load_evaluation()
    assert [n for n in evaluation.notes if "Inception" in n] and result.output.count("Inception") == 1
    assert {q.sampler for q in evaluation.samples} == {"normal"} and "FID" not in evaluation.features


def test_a_run_with_too_few_validation_images_is_refused(tmp_path):
    train(tiny_run_config(tmp_path / "small", epochs=1, validation_split=0.03))  # 54 of 1797 digits
    result = runner.invoke(app, ["evaluate", str(tmp_path / "small"), *FAST])
    assert result.exit_code == 2
    assert "evaluate needs at least 100 validation images (the hole fraction's 1% density quantile); the run has 54" \
        in result.output


def test_an_ae_has_no_likelihood_but_the_rest(runs):
    ae, _ = runs
    result = runner.invoke(app, ["evaluate", str(ae), *FAST])
    assert result.exit_code == 0, result.output
    assert "no likelihood (an AE has none)" in result.output
    evaluation = Run(ae).load_evaluation()
    assert evaluation.likelihood is None and evaluation.prior.surgery.bandwidth > 0


@pytest.mark.parametrize("setting, message", [
    ("k=0", "`k` must be an integer in [1, 1,000,000]. Received: k=0"),
    ("k=1000000000000", "`k` must be an integer in [1, 1,000,000]"),
    ("second_stage_steps=1000000000000", "`second_stage_steps` must be an integer in [1, 100,000]"),
    ("images=1", "`images` must be an integer in [100, 10,000,000] or 0 (all)"),
    ("limits=[1e300]", "`limits` must be half-widths in (0, 10000]"),
    ("limits=[1, 1.0000001]", "`limits` must be distinct half-widths"),
])
def test_bad_settings_are_one_line_errors(runs, setting, message):
    result = runner.invoke(app, ["evaluate", str(runs[1]), "--set", setting])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_bad_evaluation_settings_and_files(runs, tmp_path):
    _, vae = runs
    bad_toml = tmp_path / "eval.toml"
    bad_toml.write_text("k = 5\nholes = 3\n")
    result = runner.invoke(app, ["evaluate", str(vae), "--config", str(bad_toml)])
    assert result.exit_code == 2 and "unknown field `holes`" in result.output
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "evaluation.json").write_text('{"kind": "vae"}')
    with pytest.raises(Exception, match="not an evaluation written by zspace"):
        Run(tmp_path / "run").load_evaluation()


def _huge_number(e):
    e["reconstruction"]["loss_per_image"] = int("9" * 400)


def _no_normal_holes(e):
    del e["prior"]["hole_fraction"]["normal"]


def _bad_sampler_name(e):
    e["samples"][0]["sampler"] = "uniform_x"


def _share_above_one(e):
    e["prior"]["hole_fraction"]["normal"] = 7.0


@pytest.mark.parametrize("damage, reason", [(_huge_number, "out of the float range"),
                                            (_no_normal_holes, 'needs "normal"'),
                                            (_bad_sampler_name, "`sampler` must be normal, gmm"),
                                            (_share_above_one, "shares in [0, 1]")])
def test_a_damaged_evaluation_is_one_error_in_report(runs, tmp_path, damage, reason):
    _, vae = runs
    if not (vae / "evaluation.json").is_file() or not Run(vae).load_evaluation().samples:
        assert runner.invoke(app, ["evaluate", str(vae), *FAST]).exit_code == 0
    copy = tmp_path / "vae"
    shutil.copytree(vae, copy)
    data = json.loads((copy / "evaluation.json").read_text())
    damage(data)
    (copy / "evaluation.json").write_text(json.dumps(data))
    result = runner.invoke(app, ["report", str(copy), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and reason in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_reconstruction_quality_of_perfect_and_flipped_images():
    x = np.random.default_rng(0).random((4, 12, 12, 1)).astype(np.float32)
    perfect = reconstruction_quality(x, x, "mse")
    assert perfect.loss_per_image == pytest.approx(0.0, abs=1e-9) and perfect.ssim == pytest.approx(1.0, abs=1e-5)
    flipped = reconstruction_quality(x, 1.0 - x, "mse")
    mse = ((2 * x - 1.0) ** 2).reshape(4, -1).mean(1)
    assert flipped.psnr == pytest.approx(float(np.mean(10 * np.log10(1 / mse))), rel=1e-6) and flipped.ssim < 0.5
    assert flipped.loss_per_pixel == pytest.approx(float(mse.mean()), rel=1e-6)
