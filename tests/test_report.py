"""Analysis, comparison and report on a tiny trained AE and VAE (in-process CLI)."""

import json
import os
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import train_ae_and_vae
from zspace.cli import app
from zspace.report.build import SECTIONS

runner = CliRunner()
FAST = ["--set", "k_max=12", "--set", "tsne_sizes=[300]", "--set", "pca_subset=300"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_ae_and_vae(tmp_path_factory.mktemp("report"), epochs=2)


def test_analyze_writes_json_and_arrays(runs):
    _, vae = runs
    result = runner.invoke(app, ["analyze", str(vae), *FAST])
    assert result.exit_code == 0, result.output
    summary = json.loads((vae / "analysis.json").read_text())
    assert summary["n_points"] == 1797 and summary["z_dim"] == 3 and summary["kind"] == "vae"
    assert summary["config"]["k_max"] == 12
    assert summary["inertia"]["ks"] == list(range(2, 13, 2))
    tsne = "tsne_300_p30_ee12_opentsne_it750_seed0"  # size, perplexity, exaggeration, backend, iterations, seed
    assert set(summary["seconds"]) >= {"encode", "radius", "inertia", "pca", tsne}
    with np.load(vae / "analysis.npz", allow_pickle=False) as data:
        assert data["z"].shape == (1797, 3) and data[f"{tsne}_embedding"].shape == (300, 2)
        radii = np.linalg.norm(data["z"], axis=1)
    assert summary["radius"]["mean"] == pytest.approx(radii.mean(), rel=1e-5)
    assert summary["label_names"] == [str(d) for d in range(10)]  # digits: the plots name the classes


def test_projection_legend_names_the_classes():
    from zspace.report import plots

    points = np.random.default_rng(0).normal(size=(30, 2))
    labels = np.repeat([0, 2], 15)  # class 1 absent: no legend entry for it
    fig = plots.plot_embedding(points, labels, "t", ("T-shirt", "Trouser", "Pullover"))
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["T-shirt", "Pullover"]
    fig = plots.plot_embedding(points, labels, "t")
    assert fig.axes[0].get_legend() is None and len(fig.axes) == 2  # no names: a colour bar


def test_analyze_rejects_bad_settings(runs):
    result = runner.invoke(app, ["analyze", str(runs[0]), "--set", "k_max=1"])
    assert result.exit_code == 2
    assert "`k_max` must be >= k_min (2). Received: k_max=1" in result.output


def test_report_has_every_section_and_embeds_images(runs, tmp_path):
    evaluated = runner.invoke(app, ["evaluate", str(runs[1]), "--set", "k=10", "--set", "nll_images=20",
                                    "--set", "hole_samples=300"])
    assert evaluated.exit_code == 0, evaluated.output
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", *map(str, runs), "-o", str(out), "--sharpen", "7", *FAST])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in page, section
    assert "src=\"http" not in page and "<img" in page  # self-contained
    images = re.findall(r'src="data:image/png;base64,', page)
    files = sorted(p.name for p in (tmp_path / "report_files").iterdir())
    assert len(images) == len(files) >= 20
    assert "vae_grid_normal_sharp.png" in files and "ae_tsne_300.png" in files
    assert "<td>vae</td>" in page and "logvar min" in page  # VAE internals table
    assert "NLL (nats)" in page and "holes.png" in files  # the evaluated VAE: its table row and hole plot
    assert "<h3>Sample quality (FD-domain)</h3>" in page and "<td>second_stage</td>" in page
    generation = page[page.index("<section id='generation'>"):]
    for grid in ("normal", "uniform_sweep", "reconstructions", "interpolation", "latent_grid", "gmm_sharp"):
        # the AE's and the VAE's grid of one kind side by side, in one row under the kind's heading
        heading = grid.replace('_sharp', ' sharpened').replace('_', ' ')
        row = re.search(rf"<h3>{heading}[^<]*</h3><div class='side'>(.*?)</div>",
                        generation)
        assert row and re.findall(r"<figcaption>(\w+)</figcaption>", row.group(1)) == ["ae", "vae"], grid
    from PIL import Image

    with Image.open(tmp_path / "report_files" / "vae_grid_latent_grid.png") as latent, \
            Image.open(tmp_path / "report_files" / "vae_grid_uniform_sweep.png") as sweep:
        assert latent.height > 10 * 64 and sweep.width > 10 * 66  # 8x8 digits drawn at least 64 px, labels beside


def test_compare_writes_overlays_tables_and_side_by_side_grids(runs, tmp_path):
    result = runner.invoke(app, ["compare", *map(str, runs), "-o", str(tmp_path / "cmp"), *FAST])
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "cmp").iterdir()}
    assert {"radius.png", "inertia.png", "comparison.md", "grids_normal.png", "grids_gmm.png"} <= names
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "## Final losses" in table and "## VAE internals" in table
    assert "| ae | ae |" in table and "| vae | vae |" in table


# --- issue 12: same-named runs (item 14), runs only read (item 20) ---------------------------------

def test_distinct_labels_are_the_shortest_distinguishing_suffixes(tmp_path):
    from zspace.report import distinct_labels

    assert distinct_labels([tmp_path / "p1" / "run", tmp_path / "p2" / "run"]) == ["p1/run", "p2/run"]
    assert distinct_labels([tmp_path / "ae", tmp_path / "x" / "vae"]) == ["ae", "vae"]
    assert distinct_labels([tmp_path / "a" / "x" / "run", tmp_path / "b" / "x" / "run", tmp_path / "c" / "run"]) == [
        "a/x/run", "b/x/run", "c/run"]
    assert distinct_labels([tmp_path / "run", tmp_path / "run"]) == ["run (1)", "run (2)"]


def snapshot(folder):
    """{relative path: (size, mtime_ns)} of everything under ``folder``: equal snapshots, nothing written."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def same_named(runs, tmp_path_factory):
    """The AE as p1/run and the VAE as p2/run, neither analysed: a report has to analyse them itself."""
    import shutil

    root = tmp_path_factory.mktemp("same-named")
    for source, parent in zip(runs, ("p1", "p2")):
        shutil.copytree(source, root / parent / "run", ignore=shutil.ignore_patterns("analysis.*", "gallery",
                                                                                    "evaluation.json"))
    return root / "p1" / "run", root / "p2" / "run"


def test_report_of_same_named_runs_keeps_both_and_writes_nothing_into_them(same_named, tmp_path):
    before = [snapshot(run) for run in same_named]
    out = tmp_path / "out" / "report.html"
    result = runner.invoke(app, ["report", *map(str, same_named), "-o", str(out), *FAST])
    assert result.exit_code == 0, result.output
    assert [snapshot(run) for run in same_named] == before  # no analysis.*, no gallery/ written into the runs
    page = out.read_text()
    assert page.count("<td>p1/run</td>") >= 4 and page.count("<td>p2/run</td>") >= 4  # one row per table each
    assert "<td>run</td>" not in page
    files = {p.name for p in (tmp_path / "out" / "report_files").iterdir()}
    for stem in ("p1_run", "p2_run"):
        assert {f"{stem}_pca.png", f"{stem}_tsne_300.png", f"{stem}_grid_normal.png", f"{stem}_grid_gmm.png"} <= files
    assert files.isdisjoint({"run_pca.png", "run_grid_normal.png"})
    assert len(re.findall(r'src="data:image/png;base64,', page)) == len(files)
    from PIL import Image

    with Image.open(tmp_path / "out" / "report_files" / "p1_run_grid_reconstructions.png") as first, \
            Image.open(tmp_path / "out" / "report_files" / "p2_run_grid_reconstructions.png") as second:
        assert first.tobytes() != second.tobytes()  # the AE's and the VAE's own grids, not one copied twice


def test_compare_of_same_named_runs_keeps_both_and_writes_nothing_into_them(same_named, tmp_path):
    before = [snapshot(run) for run in same_named]
    result = runner.invoke(app, ["compare", *map(str, same_named), "-o", str(tmp_path / "cmp"), *FAST])
    assert result.exit_code == 0, result.output
    assert [snapshot(run) for run in same_named] == before
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| p1/run | ae |" in table and "| p2/run | vae |" in table and "| run | ae |" not in table


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_report_of_a_read_only_run(same_named, tmp_path):
    run = same_named[0]
    modes = {p: p.stat().st_mode for p in [run, *run.rglob("*")]}
    for p in modes:
        p.chmod(p.stat().st_mode & ~0o222)
    try:
        result = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "r.html"), *FAST])
        assert result.exit_code == 0, result.output
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_asset_names_of_runs_with_long_folder_names_stay_legal_and_distinct():
    """A 250-character run folder made asset names past 255 bytes (ENAMETOOLONG at the report's write)."""
    from zspace.report.build import MAX_FILE_STEM, _file_stems

    stems = _file_stems(["x" * 250, "x" * 250 + "y", "p/" + "é" * 200])
    assert all(len(stem) <= MAX_FILE_STEM + 3 for stem in stems) and len(set(stems)) == 3
