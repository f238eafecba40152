"""Issue 13, items 3 and 5 from the command line: t-SNE settings side by side, kept across analyses,
the radius table printed by `zspace analyze` and shown by `zspace compare` / `zspace report`."""

import functools
import io

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import tiny_run_config
from zspace import Run
from zspace.analysis.projection import tsne_projection
from zspace.cli import app
from zspace.training import train

runner = CliRunner()
FAST = ["--set", "k_max=6", "--set", "pca_subset=200", "--set", "tsne_sizes=[120]", "--set", "kmeans_seeds=[0]"]


@pytest.fixture(autouse=True)
def one_thread_tsne(monkeypatch):
    """All-core t-SNE threads wait on each other on a busy 2-core test machine; one thread fits 120 points fast."""
    import zspace.analysis.analyze as analyze

    monkeypatch.setattr(analyze, "tsne_projection", functools.partial(tsne_projection, n_jobs=1))


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    root = tmp_path_factory.mktemp("tsne") / "vae"
    train(tiny_run_config(root, epochs=1))
    return root


def _analyze(run, *sets):
    result = runner.invoke(app, ["analyze", str(run), *FAST, *(a for s in sets for a in ("--set", s))])
    assert result.exit_code == 0, result.output
    return result.output


def test_analyze_prints_the_radius_table_and_keeps_earlier_tsne_settings(vae):
    out = _analyze(vae, "perplexity=[30, 10]", "early_exaggeration=[12, 16]", "logvar_edges=[-3, 5]")
    lines = out.splitlines()
    z_row = next(line for line in lines if line.startswith("z "))
    mu_row = next(line for line in lines if line.startswith("mu "))
    a = Run(vae).load_analysis()
    r_z = np.linalg.norm(a.arrays["z"].astype(np.float64), axis=1)
    assert [float(v) for v in z_row.split()[1:]] == pytest.approx([r_z.min(), r_z.max(), r_z.mean()], rel=1e-3)
    assert len(mu_row.split()) == 4
    assert "(-inf, -3)" in out and "[5, inf)" in out and a.internals.logvar_counts.sum() == a.n_points * a.z_dim
    assert [(t.perplexity, t.early_exaggeration) for t in a.tsne] == [(30, 12), (10, 16)]

    out = _analyze(vae, "perplexity=5", "tsne_backend=sklearn", "tsne_n_iter=300")
    assert "note: kept 2 t-SNE embedding(s) of the previous analysis" in out
    a = Run(vae).load_analysis()
    assert [(t.perplexity, t.backend, t.n_iter) for t in a.tsne] == [(30, "opentsne", 750), (10, "opentsne", 750),
                                                                      (5, "sklearn", 300)]

    out = _analyze(vae, "perplexity=5", "tsne_keep_previous=false")
    assert "kept" not in out and [t.perplexity for t in Run(vae).load_analysis().tsne] == [5]


def test_report_and_compare_show_settings_side_by_side_and_the_radius_table(vae, tmp_path):
    _analyze(vae, "perplexity=[30, 10]", "early_exaggeration=[12, 16]", "tsne_keep_previous=false")
    report = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(vae), "--out", str(report)])
    assert result.exit_code == 0, result.output
    html = report.read_text()
    assert "Radius of z and mu: min / max / mean" in html and "logvar components per interval" in html
    png = (tmp_path / "report_files" / "vae_tsne_120.png").read_bytes()
    single = runner.invoke(app, ["analyze", str(vae), *FAST, "--set", "tsne_keep_previous=false"])
    assert single.exit_code == 0
    result = runner.invoke(app, ["report", str(vae), "--out", str(tmp_path / "one.html")])
    one = (tmp_path / "one_files" / "vae_tsne_120.png").read_bytes()
    # two settings: two panels side by side, about twice as wide as one
    assert Image.open(io.BytesIO(png)).width > 1.7 * Image.open(io.BytesIO(one)).width

    result = runner.invoke(app, ["compare", str(vae), "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    assert "## Radius of z and mu: min / max / mean" in result.output and "min r(mu)" in result.output


def test_radius_tables_keep_their_columns_in_markdown(vae, tmp_path):
    """A "|" inside a cell would split a markdown table's column (comparison.md)."""
    result = runner.invoke(app, ["compare", str(vae), "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "cmp" / "comparison.md").read_text().splitlines()
    for title in ("## Radius of the z-points", "## Radius of z and mu: min / max / mean"):
        table = lines[lines.index(title) + 2:lines.index(title) + 5]
        assert len({line.count("|") for line in table}) == 1, table
