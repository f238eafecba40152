"""zspace sweep: one run per swept value, every config checked first, resumable, one report."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from conftest import tiny_run_config
from zspace.cli import app
from zspace.config import AnalysisConfig
from zspace.errors import ConfigError, RunError
from zspace.rundir import Run
from zspace.sweep import MAX_RUN_NAME, check_set_values, parse_sweep, plan_sweep, run_name, run_sweep

QUICK_ANALYSIS = AnalysisConfig(tsne_sizes=(), k_min=2, k_max=4, kmeans_seeds=(0,))


def test_sweep_values_are_comma_lists_or_toml_arrays():
    assert parse_sweep(["z_dim=2,4,12"]) == {"z_dim": (2, 4, 12)}
    assert parse_sweep(["z_dim=[2, 4]", "kind=ae,vae"]) == {"z_dim": (2, 4), "kind": ("ae", "vae")}
    assert parse_sweep(["kl_factor=0.5,1e-3"]) == {"kl_factor": (0.5, 0.001)}
    # a list-valued field: each element of the outer array is one run's list
    assert parse_sweep(["encoder_filters=[[32,64],[16,32]]"]) == {"encoder_filters": ((32, 64), (16, 32))}


@pytest.mark.parametrize("pairs, message", [
    (["z_dim"], "expects field=value1,value2"),
    (["zdim=2,4"], "unknown config field `zdim`"),
    (["run_dir=a,b"], "run_dir cannot be set or swept"),
    (["z_dim=2", "z_dim=4"], "given twice"),
    (["z_dim=2,2"], "the value 2 is given twice"),
    (["z_dim="], "no values"),
    (["z_dim=[2,4"], "not a TOML array"),
])
def test_bad_sweep_options_are_one_clear_error(pairs, message):
    with pytest.raises(ConfigError, match=message):
        parse_sweep(pairs)


def test_a_list_given_to_set_points_to_sweep_and_list_fields_stay_settable():
    with pytest.raises(ConfigError, match=r"--sweep z_dim=2,4"):
        check_set_values({"z_dim": [2, 4]})
    check_set_values({"encoder_filters": [32, 64], "epochs": 1})  # an ordinary override


def test_several_sweeps_run_their_product_each_in_a_folder_named_by_its_values(tmp_path):
    runs = plan_sweep(tiny_run_config(tmp_path / "ignored"), parse_sweep(["kind=ae,vae", "z_dim=2,5"]), tmp_path)
    assert [r.name for r in runs] == ["kind=ae,z_dim=2", "kind=ae,z_dim=5", "kind=vae,z_dim=2", "kind=vae,z_dim=5"]
    assert [(r.config.model.kind, r.config.model.z_dim) for r in runs] == [("ae", 2), ("ae", 5), ("vae", 2),
                                                                            ("vae", 5)]
    assert {r.config.train.run_dir for r in runs} == {str(tmp_path / r.name) for r in runs}
    assert not any(tmp_path.iterdir())  # planning writes nothing


def test_every_config_is_checked_before_anything_is_trained(tmp_path):
    out = tmp_path / "sweep"
    with pytest.raises(ConfigError, match=r"sweep run z_dim=0: `z_dim` must be a positive integer"):
        run_sweep(tiny_run_config(tmp_path), {"z_dim": (2, 0)}, out)
    assert not out.exists()  # the valid first run was not trained either
    with pytest.raises(ConfigError, match=r"encoder_filters is a list field: sweep lists as"):
        plan_sweep(tiny_run_config(tmp_path), parse_sweep(["encoder_filters=4,8"]), out)


def test_run_names_are_file_names_and_stay_distinct_when_cut():
    assert run_name({"dataset": "idx:/data/fashion mnist"}) == "dataset=idx_data_fashion_mnist"
    long_a, long_b = run_name({"dataset": "x" * 300 + "a"}), run_name({"dataset": "x" * 300 + "b"})
    assert len(long_a) <= MAX_RUN_NAME and long_a != long_b
    with pytest.raises(ConfigError, match="would share the folder"):
        plan_sweep(tiny_run_config("r"), {"data_dir": ("a/b", "a b")}, "out")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A tiny digits sweep over z_dim = 2, 3 (1 epoch) through the CLI."""
    root = tmp_path_factory.mktemp("sweep")
    config = root / "base.toml"
    config.write_text(tiny_run_config(root / "unused", epochs=1, subset=300).to_toml())
    analysis = root / "analysis.toml"
    analysis.write_text(QUICK_ANALYSIS.to_toml())
    out = root / "out"
    result = CliRunner().invoke(app, ["sweep", "--config", str(config), "--sweep", "z_dim=2,3", "--set", "kind=ae",
                                      "--analysis-config", str(analysis), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return config, out, result.output


def test_sweep_trains_analyses_and_reports_every_run(swept):
    _, out, output = swept
    assert "z_dim=2 trained" in output and "z_dim=3 trained" in output
    for z_dim in (2, 3):
        run = Run.open(out / f"z_dim={z_dim}")
        assert run.config.model.z_dim == z_dim and run.config.model.kind == "ae"  # swept and --set
        assert run.has_analysis() and run.load_analysis().z_dim == z_dim
        assert len(run.history) == 1
    report = (out / "report.html").read_text()
    assert "z_dim=2" in report and "z_dim=3" in report  # one report of both runs
    assert not (out / "unused").exists()


def test_sweep_again_skips_finished_runs_and_resumes_with_more_epochs(swept, tmp_path):
    config, out, _ = swept
    from zspace.rundir import training_config

    base = training_config(config).with_overrides({"kind": "ae"})
    first = Run.open(out / "z_dim=2").history
    saved = (out / "z_dim=2" / "model.keras").stat().st_mtime_ns
    again = run_sweep(base, {"z_dim": (2, 3)}, out, QUICK_ANALYSIS, report=False)
    assert again.status == {"z_dim=2": "finished", "z_dim=3": "finished"}
    assert (out / "z_dim=2" / "model.keras").stat().st_mtime_ns == saved  # not trained (or saved) again
    more = run_sweep(base.with_overrides({"epochs": 2}), {"z_dim": (2,)}, out, QUICK_ANALYSIS, report=False)
    assert more.status == {"z_dim=2": "resumed"}
    history = Run.open(out / "z_dim=2").history
    assert len(history) == 2 and history[0]["total_loss"] == first[0]["total_loss"]  # continued, not started over


def test_sweep_refuses_an_existing_run_with_another_config_before_training(swept):
    config, out, _ = swept
    from zspace.rundir import training_config

    base = training_config(config).with_overrides({"kind": "ae", "learning_rate": 0.5})
    mtime = (out / "z_dim=3" / "model.keras").stat().st_mtime_ns
    with pytest.raises(RunError, match=r"z_dim=2 holds a run with a different config.*learning_rate"):
        run_sweep(base, {"z_dim": (4, 2, 3)}, out, QUICK_ANALYSIS)
    assert not (out / "z_dim=4").exists()  # checked before the first (new) run was trained
    assert (out / "z_dim=3" / "model.keras").stat().st_mtime_ns == mtime
