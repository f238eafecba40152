"""Comparison tables and figures of several runs, the `compare` folder and the self-contained HTML report.

Reports only read their runs: analyses missing from a run are computed in memory, and the
generated grids are written beside the report (``<report stem>_files/``), never into a run.
Runs are named by the shortest trailing part of their paths that tells them apart
(:func:`distinct_labels`), in tables, legends and file names alike.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from zspace.analysis import Analysis, analyze_run
from zspace.analysis.tables import interval_labels, radius_extents
from zspace.config import AnalysisConfig, RunConfig
from zspace.errors import ConfigError
from zspace.evaluation.evaluate import Evaluation
from zspace.generation import GalleryConfig, gallery_pngs
from zspace.generation.grid import label_font
from zspace.report import plots
from zspace.rundir import Run
from zspace.storage import atomic_write_bytes, atomic_write_text

__all__ = ["RunReport", "collect_run", "distinct_labels", "label_runs", "comparison_tables", "comparison_figures",
           "write_comparison", "write_html_report", "check_report_path", "report_files_dir"]

REPORT_SUFFIXES = (".html", ".htm")

Table = tuple[list[str], list[list[str]]]


@dataclass
class RunReport:
    """What the report shows of one run.

    Attributes:
        run: the run directory; history: its history.csv rows; analysis: its analysis.
        gallery: {grid name: PNG bytes} drawn by :func:`zspace.generation.gallery_pngs`.
        evaluation: the run's ``zspace evaluate`` records, None when it has not been evaluated.
        label: its name among the runs of a report (:func:`label_runs`; empty: the folder's name);
        file_stem: that name as a file-name prefix.
    """

    run: Run
    history: list[dict[str, float]]
    analysis: Analysis
    gallery: dict[str, bytes] = field(default_factory=dict)
    evaluation: Evaluation | None = None
    label: str = ""
    file_stem: str = ""

    @property
    def name(self) -> str:
        return self.label or self.run.name

    @property
    def config(self) -> RunConfig:
        return self.run.config

    @property
    def is_vae(self) -> bool:
        return self.analysis.is_vae


def collect_run(run: Run | str | Path, analysis_config: AnalysisConfig | None = None,
                gallery_config: GalleryConfig = GalleryConfig()) -> RunReport:
    """A run's history, analysis (computed in memory when the run has none) and gallery; reads the run only.

    Args:
        run: a :class:`zspace.Run` (model and dataset are loaded once for all parts) or its directory.
        analysis_config: settings for the analysis when it has to run; None = defaults.
    """
    run = Run.of(run)
    run.model  # noqa: B018  (a run without a model fails here, before any analysis work)
    analysis = (run.load_analysis() if run.has_analysis()
                else analyze_run(run, analysis_config or AnalysisConfig(), save=False))
    gallery = gallery_pngs(run, gallery_config, analysis.z_train)
    evaluation = run.load_evaluation() if run.evaluation_json.is_file() else None
    return RunReport(run, run.history, analysis, gallery, evaluation)


def distinct_labels(paths: list[str | Path]) -> list[str]:
    """Names telling the runs at ``paths`` apart: the shortest trailing parts of each absolute path that no
    other path shares ("p1/run", "p2/run"; "run" alone when unique); the same path twice is numbered ("run (2)")."""
    parts = [Path(os.path.abspath(p)).parts for p in paths]
    depth = [1] * len(parts)

    def tails() -> list[str]:
        return [str(Path(*p[-d:])) for p, d in zip(parts, depth)]

    while True:
        labels = tails()
        paths_of: dict[str, set] = {}
        for label, p in zip(labels, parts):
            paths_of.setdefault(label, set()).add(p)
        # a label shared by different paths grows by one part (the same path twice cannot be told apart)
        clashing = [i for i, label in enumerate(labels) if len(paths_of[label]) > 1 and depth[i] < len(parts[i])]
        if not clashing:
            break
        for i in clashing:
            depth[i] += 1
    counts = Counter(labels)
    seen: Counter = Counter()
    numbered = []
    for label in labels:
        seen[label] += 1
        numbered.append(f"{label} ({seen[label]})" if counts[label] > 1 else label)
    return numbered


MAX_FILE_STEM = 100
"""Most characters of a run's part in the report's asset names (``<stem>_grid_<grid>.png``)."""


def _file_stems(labels: list[str]) -> list[str]:
    """File-name prefixes of the labels (other characters as "_"), made distinct by a number where needed."""
    stems, taken = [], set()
    for label in labels:
        # cut: a run folder's name may take the whole 255 bytes a file name has; the asset adds its own part
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._")[:MAX_FILE_STEM].strip("._") or "run"
        stem, n = base, 1
        while stem in taken:
            n += 1
            stem = f"{base}-{n}"
        taken.add(stem)
        stems.append(stem)
    return stems


def label_runs(runs: list[RunReport]) -> list[RunReport]:
    """Copies of the reports, each with its :func:`distinct_labels` label and file stem."""
    labels = distinct_labels([r.run.root for r in runs])
    return [dataclasses.replace(r, label=label, file_stem=stem)
            for r, label, stem in zip(runs, labels, _file_stems(labels))]


def _f(value, digits: int = 3) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_f(v, digits) for v in value) + "]"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


LOSSES_TABLE = "Final losses (BCE in nats; total = reco in the run's reco reduction + kl per image)"


def _reco_scales(last: dict[str, float], model, prefix: str) -> dict[str, float]:
    """``{prefix}reco_loss_per_image`` / ``_per_pixel`` of a history row; derived from its ``reco_loss``
    and the run's reconstruction_reduction where the row predates those columns (older runs)."""
    per_image, per_pixel = f"{prefix}reco_loss_per_image", f"{prefix}reco_loss_per_pixel"
    if per_image in last and per_pixel in last:
        return {per_image: last[per_image], per_pixel: last[per_pixel]}
    reco, n = last.get(f"{prefix}reco_loss", float("nan")), model.pixel_values
    if model.reconstruction_reduction == "mean":
        return {per_image: reco * n, per_pixel: reco}
    return {per_image: reco, per_pixel: reco / n}


def _epsilon_scale(run: RunReport, recorded: float | None) -> str:
    """The scale of eps in z = mu + sigma * eps * scale behind an analysis / evaluation: "-" for an AE; a VAE's
    files from before zspace recorded it used the run's own."""
    if not run.is_vae:
        return "-"
    return _f(recorded if recorded is not None else run.config.model.epsilon_scale)


def comparison_tables(runs: list[RunReport]) -> dict[str, Table]:
    """{title: (headers, rows)} of final losses, radius, axes, clustering and VAE internals."""
    runs = label_runs(runs)
    tables: dict[str, Table] = {}
    rows = []
    for r in runs:
        last = r.history[-1] if r.history else {}
        m = r.config.model
        losses = {**last, **_reco_scales(last, m, ""), **_reco_scales(last, m, "val_")}
        rows.append([r.name, m.kind, str(m.z_dim), _f(m.kl_factor) if m.kind == "vae" else "-",
                     r.config.train.dataset, str(int(last.get("epoch", 0))), m.reconstruction_reduction]
                    + [_f(losses.get(k, float("nan")), 5) for k in
                       ("total_loss", "reco_loss_per_image", "reco_loss_per_pixel", "kl_loss", "val_total_loss",
                        "val_reco_loss_per_image", "val_reco_loss_per_pixel", "val_kl_loss")])
    tables[LOSSES_TABLE] = (
        ["run", "kind", "z_dim", "kl_factor", "dataset", "epochs", "reco reduction", "total", "reco / image",
         "reco / pixel", "kl", "val total", "val reco / image", "val reco / pixel", "val kl"], rows)
    rows = []
    for r in runs:
        rad = r.analysis.radius
        rows.append([r.name, _f(rad.mean), _f(rad.median), _f(rad.mode), _f(rad.std),
                     _f(rad.shell_50), _f(rad.shell_95), _f(rad.expected_normal), str(rad.above),
                     _epsilon_scale(r, r.analysis.run.epsilon_scale if r.analysis.run else None)])
    tables["Radius of the z-points"] = (
        ["run", "mean", "median", "mode", "std", "50% shell", "95% shell", "E‖N(0,I)‖", "beyond range",
         "eps scale"], rows)
    tables.update(radius_extent_tables(runs))
    rows = []
    for r in runs:
        ax = r.analysis.axes
        rows.append([r.name, f"{ax.active_units} / {r.analysis.z_dim}", _f(float(np.mean(np.abs(ax.mean)))),
                     _f(float(np.mean(ax.std))), _f(float(np.min(ax.std))), _f(float(np.max(ax.std)))])
    tables["Per-axis statistics"] = (["run", "active units", "mean |axis mean|", "mean axis std", "min std",
                                      "max std"], rows)
    rows = []
    for r in runs:
        inertia = r.analysis.inertia
        if inertia:
            spread = float(np.max(inertia.std / inertia.mean))
            rows.append([r.name, str(inertia.elbow_k), _f(float(inertia.mean[0])), _f(float(inertia.mean[-1])),
                         f"{100 * spread:.2f}%", str(len(inertia.seeds))])
    tables["Clustering (MiniBatchKMeans)"] = (["run", "elbow k", "inertia at k min", "inertia at k max",
                                               "max std/mean over seeds", "seeds"], rows)
    rows = []
    for r in runs:
        if r.is_vae:
            i = r.analysis.internals
            rows.append([r.name, _f(i.logvar_min), _f(i.logvar_max), _f(i.logvar_mean), _f(i.abs_z_minus_mu_max),
                         str(i.n_z_minus_mu_above), _f(i.radius_abs_diff_max), _f(i.radius_abs_diff_mean),
                         _f(i.radius_rel_diff_mean), _f(i.kl_total)])
    if rows:
        tables["VAE internals"] = (["run", "logvar min", "logvar max", "logvar mean", "max |z-mu|",
                                    "components |z-mu|>thr", "max |r(z)-r(mu)|", "mean |r(z)-r(mu)|",
                                    "mean rel. diff", "KL / image"], rows)
    rows = []
    for r in runs:
        e = r.evaluation
        if e is not None:
            lik, surgery, reco, holes = e.likelihood, e.prior.surgery, e.reconstruction, e.prior.hole_fraction
            rows.append([r.name, _f(lik.nll) if lik else "-", _f(lik.elbo) if lik else "-",
                         _f(lik.bits_per_dim) if lik else "-", _f(surgery.mutual_information),
                         _f(surgery.marginal_kl), _f(holes["normal"]), _f(holes["gmm"]) if "gmm" in holes else "-",
                         _f(reco.loss_per_image), _f(reco.psnr), _f(reco.ssim), _epsilon_scale(r, e.epsilon_scale)])
    if rows:
        tables["Evaluation"] = (["run", "NLL (nats)", "ELBO", "bits/dim", "I(x;z)", "marginal KL",
                                 "holes under N(0,I)", "holes under GMM", "reco loss / image", "PSNR (dB)", "SSIM",
                                 "eps scale"],
                                rows)
    for label in dict.fromkeys(q.features for r in runs if r.evaluation for q in r.evaluation.samples):
        rows = [[r.name, q.sampler, _f(q.fd), f"{_f(q.kid)} ± {_f(q.kid_std)}", _f(q.precision), _f(q.recall),
                 _f(q.density), _f(q.coverage), _f(r.evaluation.prior.hole_fraction.get(q.sampler, math.nan)),
                 str(q.n_fake), _network_name(r.evaluation, q.features)]
                for r in runs if r.evaluation for q in sorted(r.evaluation.samples, key=_sampler_order)
                if q.features == label]
        # runs of other data (or seeds) have other domain networks: the column shows which numbers compare
        tables[f"Sample quality ({label})"] = (["run", "sampler", label, "KID", "precision", "recall", "density",
                                               "coverage", "hole fraction", "images", "feature network"], rows)
    return tables


RADIUS_EXTENT_TABLE = "Radius of z and mu: min / max / mean"
LOGVAR_TABLE = "logvar components per interval"


def radius_extent_tables(runs: list[RunReport]) -> dict[str, Table]:
    """Blog part XIII's table: min / max / mean radius of z (and mu), and logvar components per interval (VAEs).

    Runs whose analyses count logvar on other intervals get their own rows of intervals.
    """
    rows = []
    for r in runs:
        extents = radius_extents(r.analysis)
        rows.append([r.name, *(_f(v, 4) for v in extents["z"]),
                     *((_f(v, 4) for v in extents["mu"]) if "mu" in extents else ["-"] * 3)])
    tables = {RADIUS_EXTENT_TABLE: (["run", "min r(z)", "max r(z)", "mean r(z)", "min r(mu)", "max r(mu)",
                                     "mean r(mu)"], rows)}
    vaes = [r for r in runs if r.analysis.internals is not None]
    edges = {tuple(r.analysis.internals.logvar_edges.tolist()) for r in vaes}
    if len(edges) == 1:
        labels = interval_labels(next(iter(edges)))
        tables[LOGVAR_TABLE] = (["run", *labels], [[r.name, *map(str, r.analysis.internals.logvar_counts.tolist())]
                                                   for r in vaes])
    elif edges:
        tables[LOGVAR_TABLE] = (["run", "components per interval"], [
            [r.name, ", ".join(f"{label}: {count}" for label, count in zip(
                interval_labels(r.analysis.internals.logvar_edges), r.analysis.internals.logvar_counts.tolist()))]
            for r in vaes])
    return tables


def _network_name(evaluation, label: str) -> str:
    """The feature network's cache folder ("fashion_mnist-1f2e..."): equal names, comparable numbers."""
    space = evaluation.features.get(label)
    return Path(space.path).parent.name if space is not None and space.path else label


def _sampler_order(q) -> tuple:
    """normal, gmm, second_stage, then the uniform series by r."""
    fixed = ("normal", "gmm", "second_stage")
    if q.sampler in fixed:
        return (fixed.index(q.sampler), 0.0)
    return (len(fixed), float(q.sampler.partition("_")[2]) if q.sampler.startswith("uniform_") else math.inf)


def comparison_figures(runs: list[RunReport]) -> dict[str, bytes]:
    """{name: PNG bytes} of the overlaid plots of all runs."""
    runs = label_runs(runs)
    s = [(r.name, r.analysis) for r in runs]
    figures = {
        "losses": plots.plot_loss_curves([(r.name, r.history) for r in runs if r.history]),
        "radius": plots.plot_radius_histograms(
            [(n, a.radius.counts, a.radius.edges, a.radius.expected_normal) for n, a in s]),
        "axes": plots.plot_axis_histograms([(n, a.axes.histograms) for n, a in s]),
        "explained_variance": plots.plot_explained_variance([(n, a.pca.explained_variance_ratio) for n, a in s]),
    }
    inertia = [(n, a.inertia.ks, a.inertia.mean, a.inertia.std, a.inertia.elbow_k) for n, a in s if a.inertia]
    if inertia:
        figures["inertia"] = plots.plot_inertia_curves(inertia)
    evaluated = [r for r in runs if r.evaluation is not None]
    if evaluated:
        figures["holes"] = plots.plot_holes_and_distances(
            [(r.name, r.evaluation.prior.hole_fraction, _distances(r.evaluation)) for r in evaluated],
            _distances_label(evaluated))
    vaes = [(n, a.internals) for n, a in s if a.internals is not None]
    if vaes:
        figures["logvar"] = plots.plot_logvar_counts([(n, i.logvar_counts, i.logvar_edges) for n, i in vaes])
        figures["kl_per_dim"] = plots.plot_kl_per_dim([(n, i.kl_per_dim) for n, i in vaes])
    return {name: plots.figure_png(fig) for name, fig in figures.items()}


def _distances_label(runs: list[RunReport]) -> str:
    """The feature space of the FD-vs-r panel: the first one any evaluated run has."""
    return next((q.features for r in runs for q in r.evaluation.samples), "")


def _distances(evaluation) -> dict[str, float]:
    """{sampler: FD} in the evaluation's first feature space."""
    first = evaluation.samples[0].features if evaluation.samples else None
    return {q.sampler: q.fd for q in evaluation.samples if q.features == first}


def projection_figures(run: RunReport) -> dict[str, bytes]:
    """{name: PNG bytes}: PCA and t-SNE scatters of one run, coloured by label (named when known) or attribute."""
    a = run.analysis
    colors = a.colors
    names = a.label_names if a.color_by == "label" else (f"not {a.color_by}", a.color_by) if a.color_by else ()

    def scatter(name: str, title: str):
        indices, embedding = a.embedding(name)
        return plots.plot_embedding(embedding, None if colors is None else colors[indices], title, names)

    figures = {"pca": scatter("pca", f"{run.name}: PCA")}
    figures.update(tsne_figures(run.name, a))
    return {name: plots.figure_png(fig) for name, fig in figures.items()}


def tsne_figures(title: str, a: Analysis) -> dict:
    """{"tsne_<size>": Figure}: per subset size, every t-SNE setting of the analysis side by side."""
    colors = a.colors
    names = a.label_names if a.color_by == "label" else (f"not {a.color_by}", a.color_by) if a.color_by else ()
    figures = {}
    for size in dict.fromkeys(t.size for t in a.tsne):
        panels = []
        for t in (t for t in a.tsne if t.size == size):
            indices, embedding = a.embedding(t.name)
            panels.append((embedding, None if colors is None else colors[indices],
                           f"{t.settings}\nKL {t.kl_divergence:.3f}"))
        figures[f"tsne_{size}"] = plots.plot_embeddings(panels, names, f"{title}: t-SNE of {size} points")
    return figures


def side_by_side(pngs: list[bytes], gap: int = 12, titles: list[str] | None = None) -> bytes:
    """PNG bytes of PNG images placed left to right (top-aligned, white gaps), each under its title (if given)."""
    pictures = [Image.open(io.BytesIO(png)).convert("RGB") for png in pngs]
    font = label_font(16) if titles else None
    top = 24 if titles else 0
    width = sum(p.width for p in pictures) + gap * (len(pictures) - 1)
    canvas = Image.new("RGB", (width, top + max(p.height for p in pictures)), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for i, picture in enumerate(pictures):
        canvas.paste(picture, (x, top))
        if titles:
            draw.text((x + 4, 2), titles[i], fill=(0, 0, 0), font=font)
        x += picture.width + gap
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def _markdown(tables: dict[str, Table]) -> str:
    out = []
    for title, (headers, rows) in tables.items():
        out += [f"## {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        out.append("")
    return "\n".join(out)


def write_comparison(runs: list[RunReport], out_dir: str | Path) -> dict[str, Path]:
    """Writes overlaid plots, side-by-side generation grids and ``comparison.md`` into ``out_dir``."""
    runs = label_runs(runs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, png in comparison_figures(runs).items():
        written[name] = out_dir / f"{name}.png"
        atomic_write_bytes(written[name], png)
    for grid in sorted(set.intersection(*(set(r.gallery) for r in runs))):
        written[f"grid_{grid}"] = out_dir / f"grids_{grid}.png"
        atomic_write_bytes(written[f"grid_{grid}"], side_by_side([r.gallery[grid] for r in runs],
                                                                   titles=[r.name for r in runs]))
    written["tables"] = out_dir / "comparison.md"
    atomic_write_text(written["tables"], _markdown(comparison_tables(runs)))
    return written


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table_html(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%;margin:4px}
section{margin-bottom:2em}h2{border-bottom:1px solid #ddd}figure{display:inline-block;margin:0 1em 1em 0}
figcaption{font-size:12px;color:#555}.side{display:flex;gap:1em;align-items:flex-start}
.side figure{flex:1 1 0;min-width:0;margin:0 0 1em}.side img{width:auto;max-width:100%;margin:0}"""

GRID_CAPTIONS = {
    "normal": "decodes of z ~ N(0, I)",
    "uniform_sweep": "decodes of z ~ U[-r, r]^d, one row per half-width r (a column keeps its direction)",
    "gmm": "decodes of z drawn from a Gaussian mixture fitted to the training z-points",
    "reconstructions": "validation images above their reconstructions",
    "interpolation": "decodes of the line between the codes of validation images #0 and #1",
    "latent_grid": "a regular grid on the plane of z0 and z1 (z_dim 2) or of the first two principal directions "
                   "of the training z-points (labels: the coordinates)",
}
"""What each gallery grid shows (the report's heading of a row of grids, one per run)."""

SECTIONS = ("Runs", "Training curves", "Evaluation", "Radius", "Per-axis distributions", "Clustering", "Projections",
            "VAE internals", "Generation")


def check_report_path(path: str | Path) -> Path:
    """``path`` as a Path; ConfigError unless it names an .html (or .htm) file."""
    path = Path(path)
    if path.suffix.lower() not in REPORT_SUFFIXES:
        raise ConfigError(f"--out must name an .html file. Received: {path}")
    return path


def report_files_dir(path: str | Path) -> Path:
    """The folder of a report's PNGs: ``<stem>_files/`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}_files")


def _run_list(runs: list[RunReport]) -> str:
    items = "".join(f"<li><b>{html.escape(r.name)}</b>: <code>{html.escape(os.path.abspath(r.run.root))}</code></li>"
                    for r in runs)
    return f"<ul class='runs'>{items}</ul>"


def _grid_caption(grid: str) -> str:
    """The heading of one kind of gallery grid ("uniform_sweep_sharp": its caption, sharpened)."""
    base, sharp = (grid[:-len("_sharp")], True) if grid.endswith("_sharp") else (grid, False)
    text = GRID_CAPTIONS.get(base, base.replace("_", " "))
    return f"{base.replace('_', ' ')}{' sharpened (PIL ImageEnhance.Sharpness)' if sharp else ''}: {text}"


def _generation_html(runs: list[RunReport], saved: dict[str, bytes], figure) -> str:
    """One row per kind of grid, the runs' grids of that kind side by side (AE beside VAE); fills ``saved``."""
    kinds = list(dict.fromkeys(grid for r in runs for grid in r.gallery))
    rows = []
    for grid in kinds:
        cells = []
        for r in runs:
            if grid in r.gallery:
                key = f"{r.file_stem}_grid_{grid}"
                saved[key] = r.gallery[grid]
                cells.append(figure(key, r.name))
        rows.append(f"<h3>{html.escape(_grid_caption(grid))}</h3><div class='side'>{''.join(cells)}</div>")
    return "".join(rows)


def write_html_report(runs: list[RunReport], path: str | Path) -> Path:
    """One self-contained HTML file (images embedded); the PNGs are also saved in ``<stem>_files/``.

    Writes nothing into the runs' directories.
    """
    path = check_report_path(path)
    runs = label_runs(runs)
    files = report_files_dir(path)
    figures = comparison_figures(runs)
    tables = comparison_tables(runs)
    saved: dict[str, bytes] = dict(figures)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>zspace report</title>"
             f"<style>{_CSS}</style></head><body><h1>zspace report: {html.escape(', '.join(r.name for r in runs))}</h1>"]

    def section(title: str, body: str) -> None:
        parts.append(f"<section id='{title.lower().replace(' ', '-')}'><h2>{html.escape(title)}</h2>{body}</section>")

    def figure(name: str, caption: str) -> str:
        return f"<figure>{_img(saved[name], caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"

    table = lambda title: _table_html(*tables[title]) if title in tables else ""  # noqa: E731
    section("Runs", _run_list(runs) + table(LOSSES_TABLE))
    section("Training curves", figure("losses", "total, reconstruction and KL loss per epoch (dashed: validation)")
            if "losses" in saved else "<p>No history.</p>")
    quality = "".join(f"<h3>{html.escape(t)}</h3>" + table(t) for t in tables if t.startswith("Sample quality"))
    section("Evaluation", table("Evaluation") + quality
            + figure("holes", "uniform samplers U[-r, r]: share of z in holes of q(z) and distance of the decoded "
                              "images to real ones, against r (dotted: N(0, I), dashed: GMM)")
            if "Evaluation" in tables else "<p>No run has been evaluated (<code>zspace evaluate RUN</code>).</p>")
    extents = "".join(f"<h3>{html.escape(t)}</h3>" + table(t)
                      for t in (RADIUS_EXTENT_TABLE, LOGVAR_TABLE) if t in tables)
    section("Radius", table("Radius of the z-points") + extents + figure("radius", "radius histogram of the z-points"))
    section("Per-axis distributions", table("Per-axis statistics") + figure("axes", "distribution of selected axes"))
    section("Clustering", table("Clustering (MiniBatchKMeans)")
            + (figure("inertia", "inertia vs k: mean over seeds, band = 1 std, dot = elbow") if "inertia" in saved else ""))
    projections = [figure("explained_variance", "PCA: cumulative explained variance")]
    for r in runs:
        for name, png in projection_figures(r).items():
            saved[f"{r.file_stem}_{name}"] = png
            projections.append(figure(f"{r.file_stem}_{name}", f"{r.name}: {name.replace('_', ' ')}"))
    section("Projections", "".join(projections))
    if "VAE internals" in tables:
        section("VAE internals", table("VAE internals") + figure("logvar", "logvar components per interval")
                + figure("kl_per_dim", "KL per latent dimension"))
    else:
        section("VAE internals", "<p>No VAE among these runs.</p>")
    section("Generation", _generation_html(runs, saved, figure))
    parts.append("</body></html>")
    for name, png in saved.items():
        atomic_write_bytes(files / f"{name}.png", png)
    atomic_write_text(path, "\n".join(parts))
    return path
