"""Matplotlib figures of analysis records. Each function takes plain arrays and returns a Figure.

``series`` arguments are lists of ``(label, ...)`` tuples, one per run, so the same
function draws one run or overlays several.
"""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = [
    "figure_png",
    "plot_loss_curves",
    "plot_radius_histograms",
    "plot_axis_histograms",
    "plot_inertia_curves",
    "plot_explained_variance",
    "plot_embedding",
    "plot_embeddings",
    "plot_logvar_counts",
    "plot_kl_per_dim",
]


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """PNG bytes of a figure (which is then closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def plot_loss_curves(series) -> Figure:
    """series: [(label, history rows)] with total/reco/kl (+ val_) losses per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for label, rows in series:
        epochs = [r["epoch"] for r in rows]
        for ax, metric in zip(axes, ("total_loss", "reco_loss", "kl_loss")):
            line, = ax.plot(epochs, [r[metric] for r in rows], label=f"{label} train")
            ax.plot(epochs, [r[f"val_{metric}"] for r in rows], "--", color=line.get_color(), label=f"{label} val")
            ax.set_title(metric)
            ax.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    return fig


def plot_radius_histograms(series) -> Figure:
    """series: [(label, counts, edges, expected_normal_radius)]; fractions of points per bin."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for label, counts, edges, expected in series:
        counts = np.asarray(counts, dtype=float)
        fraction = counts / max(counts.sum(), 1)
        step = ax.stairs(fraction, edges, label=label)
        ax.axvline(expected, ls=":", color=step.get_edgecolor())
    ax.set_xlabel("L2 radius of z (dotted: E||z|| of N(0, I))")
    ax.set_ylabel("fraction of points")
    ax.legend(fontsize=8)
    return fig


def plot_axis_histograms(series) -> Figure:
    """series: [(label, {axis: (counts, edges)})]; one panel per axis."""
    axes_ids = sorted({int(a) for _, hists in series for a in hists})
    fig, axes = plt.subplots(1, max(len(axes_ids), 1), figsize=(4 * max(len(axes_ids), 1), 3), squeeze=False)
    for ax, axis in zip(axes[0], axes_ids):
        for label, hists in series:
            hist = hists.get(axis)
            if hist is not None:
                counts, edges = np.asarray(hist[0], float), hist[1]
                ax.stairs(counts / max(counts.sum(), 1), edges, label=label)
        ax.set_title(f"z[{axis}]")
    axes[0][0].legend(fontsize=7)
    return fig


def plot_inertia_curves(series) -> Figure:
    """series: [(label, ks, mean, std, elbow_k)]; band = +-1 std over seeds, marker = elbow."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for label, ks, mean, std, elbow_k in series:
        ks, mean, std = np.asarray(ks), np.asarray(mean), np.asarray(std)
        line, = ax.plot(ks, mean, label=f"{label} (elbow k={elbow_k})")
        ax.fill_between(ks, mean - std, mean + std, color=line.get_color(), alpha=0.25)
        at = int(np.searchsorted(ks, elbow_k))
        if at < len(ks):
            ax.plot([ks[at]], [mean[at]], "o", color=line.get_color())
    ax.set_xlabel("number of clusters k")
    ax.set_ylabel("MiniBatchKMeans inertia")
    ax.legend(fontsize=8)
    return fig


def plot_explained_variance(series) -> Figure:
    """series: [(label, explained_variance_ratio)]; cumulative curves."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for label, ratio in series:
        ratio = np.asarray(ratio)
        ax.plot(np.arange(1, len(ratio) + 1), np.cumsum(ratio), label=label)
    ax.set_xlabel("principal components")
    ax.set_ylabel("cumulative explained variance")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    return fig


def plot_embedding(embedding, labels=None, title: str = "", label_names=()) -> Figure:
    """2-D scatter of (n, 2) points coloured by integer labels (n,) when given.

    With ``label_names`` (name of label i at position i) a legend names the classes.
    """
    embedding = np.asarray(embedding)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    size = max(0.5, min(8.0, 4000 / max(len(embedding), 1)))
    if _scatter_classes(ax, embedding, labels, label_names, size):
        ax.legend(fontsize=6, markerscale=max(1.0, 6 / size), loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  frameon=False)
    elif labels is not None:  # unnamed classes: a colour scale
        fig.colorbar(ax.collections[-1], ax=ax, fraction=0.04)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def _scatter_classes(ax, embedding, labels, label_names, size) -> bool:
    """Points coloured by class on ``ax``; True when the classes are named (a legend is due)."""
    if labels is None:
        ax.scatter(embedding[:, 0], embedding[:, 1], s=size, lw=0, alpha=0.6)
        return False
    if label_names and len(label_names) <= 20:
        cmap = plt.get_cmap("tab10" if len(label_names) <= 10 else "tab20")
        for i, name in enumerate(label_names):
            chosen = labels == i
            if chosen.any():
                ax.scatter(embedding[chosen, 0], embedding[chosen, 1], s=size, lw=0, alpha=0.7, color=cmap(i),
                           label=name)
        return True
    ax.scatter(embedding[:, 0], embedding[:, 1], c=labels, s=size, lw=0, alpha=0.7, cmap="tab10",
               vmin=0, vmax=max(9, int(np.max(labels)) if len(labels) else 9))
    return False


def plot_embeddings(panels, label_names=(), title: str = "", columns: int = 4) -> Figure:
    """Several 2-D embeddings side by side (rows of ``columns``), one panel each, coloured alike.

    panels: [(embedding (n, 2), integer labels (n,) or None, panel title)]; ``label_names`` name
    the labels (one legend for all panels).
    """
    columns = max(1, min(columns, len(panels)))
    rows = max(1, math.ceil(len(panels) / columns))
    largest = max((int(np.max(labels)) for _, labels, _ in panels if labels is not None and len(labels)), default=-1)
    if not label_names and 0 <= largest < 20:  # unnamed classes (an IDX dataset): a legend of their numbers
        label_names = tuple(str(i) for i in range(largest + 1))
    fig, axes = plt.subplots(rows, columns, figsize=(4.0 * columns, 3.9 * rows), squeeze=False)
    named = False
    for ax, (embedding, labels, panel_title) in zip(axes.flat, panels):
        embedding = np.asarray(embedding)
        size = max(1.5, min(8.0, 6000 / max(len(embedding), 1)))
        named = _scatter_classes(ax, embedding, labels, label_names, size) or named
        ax.set_title(panel_title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if named:
        legend = {}
        for ax in axes.flat:  # a panel's subset may miss a class
            for handle, text in zip(*ax.get_legend_handles_labels()):
                legend.setdefault(text, handle)
        order = [n for n in label_names if n in legend]
        fig.legend([legend[n] for n in order], order, fontsize=7, markerscale=3, loc="center left", bbox_to_anchor=(1.0, 0.5),
                   frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_logvar_counts(series) -> Figure:
    """series: [(label, counts, edges)]: components per logvar interval, grouped bars."""
    fig, ax = plt.subplots(figsize=(8, 3.4))
    width = 0.8 / max(len(series), 1)
    for i, (label, counts, edges) in enumerate(series):
        counts = np.asarray(counts, dtype=float)
        ax.bar(np.arange(len(counts)) + i * width, counts / max(counts.sum(), 1), width, label=label)
    edges = series[0][2] if series else []
    ax.set_xticks(np.arange(len(edges) - 1) + 0.4 - width / 2)
    ax.set_xticklabels([f"[{a:g}, {b:g})" for a, b in zip(edges[:-1], edges[1:])],
                       rotation=40, fontsize=7)
    ax.set_ylabel("fraction of logvar components")
    ax.legend(fontsize=8)
    return fig


def plot_kl_per_dim(series) -> Figure:
    """series: [(label, kl_per_dim)]: KL per latent dimension, sorted, nats."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for label, kl in series:
        ax.plot(np.sort(np.asarray(kl))[::-1], ".-", label=label, ms=3)
    ax.set_xlabel("latent dimension (sorted)")
    ax.set_ylabel("mean KL (nats)")
    ax.legend(fontsize=8)
    return fig



def plot_holes_and_distances(series, distance_label: str = "") -> Figure:
    """Hole fraction and (right panel, when any run has one) sample distance against r of the uniform series.

    series: [(label, {"normal": f, "uniform_<r>": f, "gmm": f, ...} hole fractions, {sampler: distance})];
    N(0, I) dotted and the GMM dashed at their own values.
    """
    with_distances = any(distances for _, _, distances in series)
    fig, axes = plt.subplots(1, 2 if with_distances else 1, figsize=(11 if with_distances else 7, 3.4), squeeze=False)
    panels = [(axes[0, 0], 1, "share of z in holes of q(z)")]
    if with_distances:
        panels.append((axes[0, 1], 2, f"{distance_label} of decoded images"))
    for ax, column, ylabel in panels:
        for item in series:
            label, values = item[0], item[column]
            uniform = sorted((float(k.partition("_")[2]), v) for k, v in values.items()
                             if k.startswith("uniform_") and math.isfinite(v))
            line, = ax.plot([r for r, _ in uniform], [v for _, v in uniform], "o-", ms=3, label=label)
            for sampler, style in (("normal", ":"), ("gmm", "--")):
                if math.isfinite(values.get(sampler, math.nan)):
                    ax.axhline(values[sampler], ls=style, lw=1, color=line.get_color())
        ax.set_xlabel("half-width r of U[-r, r]^z_dim")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylim(-0.02, 1.02)
    if with_distances and any(v > 0 for _, _, d in series for v in d.values() if math.isfinite(v)):
        axes[0, 1].set_yscale("log")
    fig.tight_layout()
    return fig
