"""A run directory written by zspace 0.1 before the architecture change (tests/data/run_v0_1: a 2-epoch
digits VAE with its analysis, made by commit 023bc4a) still loads, reports and resumes."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from zspace import Run
from zspace.cli import main
from zspace.config import load_config
from zspace.training import train

OLD_RUN = Path(__file__).parent / "data" / "run_v0_1"


@pytest.fixture
def old_run(tmp_path):
    root = tmp_path / "old"
    shutil.copytree(OLD_RUN, root)
    return root


def test_old_analysis_reads_as_typed_records(old_run):
    raw = json.loads((old_run / "analysis.json").read_text())
    analysis = Run(old_run).load_analysis()
    assert analysis.n_points == raw["n_points"] == 445 and analysis.is_vae
    assert analysis.radius.mean == raw["radius"]["mean"] and isinstance(analysis.radius.shell_95, tuple)
    assert set(analysis.axes.histograms) == {0, 1}  # int keys, where the JSON has "0" and "1"
    assert analysis.internals.logvar_edges[0] == -math.inf  # "-inf" in the JSON
    assert analysis.inertia.ks.tolist() == [2, 4, 6] and analysis.tsne[0].size == 60
    assert analysis.z_train.shape == (400, 3) and analysis.label_names == ()


def test_old_run_reports_and_generates(old_run, tmp_path, capsys):
    assert main(["report", str(old_run), "-o", str(tmp_path / "report.html")]) == 0, capsys.readouterr().err
    assert "<h2>VAE internals</h2>" in (tmp_path / "report.html").read_text()
    assert main(["generate", str(old_run), "--reconstruct", "--n", "4", "-o", str(tmp_path / "r.png")]) == 0


def test_old_run_resumes_where_it_stopped(old_run):
    config = load_config(old_run / "config.toml").with_overrides({"epochs": 3, "run_dir": str(old_run)})
    result = train(config)
    assert result.start_epoch == 2 and [r["epoch"] for r in result.history] == [1, 2, 3]
    assert np.isfinite(result.history[-1]["val_total_loss"])
