"""The demo: train an AE and a VAE, write image grids and print a short summary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zspace.analysis import analyze_run, encode_images
from zspace.config import AnalysisConfig, load_config
from zspace.evaluation.evaluate import EvaluationConfig, evaluate
from zspace.data import find_local_dataset, load_dataset
from zspace.generation import save_gallery
from zspace.report import collect_run, write_html_report
from zspace.training import train

__all__ = ["run_demo", "format_summary", "DemoRow"]


@dataclass(frozen=True)
class DemoRow:
    """Summary of one demo run (losses are validation means per image, in nats for BCE)."""

    kind: str
    epochs: int
    val_total_loss: float
    val_reco_loss: float
    val_kl_loss: float
    mean_radius: float
    files: tuple[Path, ...]


def run_demo(config_path: str | Path, fashion_config_path: str | Path | None, out_dir: str | Path,
             analysis_config: AnalysisConfig = AnalysisConfig(),
             evaluation_config: EvaluationConfig = EvaluationConfig()) -> tuple[list[DemoRow], Path]:
    """Trains the demo AE and VAE into ``out_dir/ae`` and ``out_dir/vae`` and reports on both.

    Uses ``fashion_config_path`` when Fashion-MNIST is already on this machine (Keras cache
    or /usr/share/datasets/fashion-mnist), otherwise ``config_path`` (scikit-learn digits).

    Returns:
        The summary rows and the path of ``out_dir/report.html``.
    """
    use_fashion = fashion_config_path is not None and find_local_dataset("fashion_mnist") is not None
    config = load_config(fashion_config_path if use_fashion else config_path)
    print(f"[zspace demo] dataset: {config.train.dataset}"
          + ("" if use_fashion else " (Fashion-MNIST is not on this machine; using the embedded digits)"),
          flush=True)
    data = load_dataset(config.train.dataset, config.train.data_dir)
    results, radii = [], []
    for kind in ("ae", "vae"):
        run_config = config.with_overrides({"kind": kind, "run_dir": str(Path(out_dir) / kind)})
        print(f"[zspace demo] training the {kind.upper()} into {run_config.train.run_dir}", flush=True)
        result = train(run_config, dataset=data)
        # Encoded before anything else draws sampling noise from the model, so the radius is reproducible.
        radii.append(float(np.linalg.norm(encode_images(result.model, result.run.split.x_val)["z"], axis=1).mean()))
        results.append(result)
    print("[zspace demo] analysing and evaluating both runs, writing the report", flush=True)
    rows, reports = [], []
    for result, mean_radius in zip(results, radii):
        analyze_run(result.run, analysis_config)
        evaluate(result.run, evaluation_config)
        report = collect_run(result.run)
        reports.append(report)
        gallery = save_gallery(report.gallery, result.run.gallery_dir)  # the demo's own runs: grids kept beside them
        last = result.history[-1]
        rows.append(DemoRow(
            kind=result.config.model.kind, epochs=int(last["epoch"]), val_total_loss=last["val_total_loss"],
            val_reco_loss=last["val_reco_loss"], val_kl_loss=last["val_kl_loss"], mean_radius=mean_radius,
            files=(gallery["reconstructions"], gallery["normal"]),
        ))
    return rows, write_html_report(reports, Path(out_dir) / "report.html")


def format_summary(rows: list[DemoRow]) -> str:
    lines = [f"{'run':<5}{'epochs':>7}{'val total':>11}{'val reco':>10}{'val KL':>9}{'mean |z|':>10}"]
    for r in rows:
        lines.append(f"{r.kind:<5}{r.epochs:>7}{r.val_total_loss:>11.3f}{r.val_reco_loss:>10.3f}"
                     f"{r.val_kl_loss:>9.3f}{r.mean_radius:>10.3f}")
    for r in rows:
        lines += [f"{r.kind}: {p}" for p in r.files]
    return "\n".join(lines)
