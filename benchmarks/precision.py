"""float32 against mixed_bfloat16: how far apart the final numbers are, next to the seed-to-seed spread.

Trains one run per (precision, seed) of a config (each in a fresh process, so that one run's
threads and caches do not touch the next) and compares, at the last epoch: the validation
total, reconstruction and KL losses (nats per image), and the z-space monitor's statistics on
``monitor_images`` validation images (mean L2 radius of z and of mu, mean logvar). For each
quantity it prints the mean and standard deviation over seeds per precision, the difference of
the means, that difference over the larger of the two standard deviations, and the paired differences (the
same seed in both precisions: a shift hidden by the spread shows as one sign throughout); the last line is
the largest such ratio, ``diff_over_spread=R`` (below 1: inside the seed-to-seed spread).

    python benchmarks/precision.py configs/fashion-vae.toml --set subset=20000 --set epochs=10
    python benchmarks/precision.py configs/celeba-vae-kl5.toml --set dataset=cache:PATH --set epochs=5

``--seeds 0,1,2`` (default). Runs go to ``--out`` (a temporary folder unless given), with a precision.json
that ``--report OUT/precision.json`` prints again.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine_line  # noqa: E402

PRECISIONS = ("float32", "mixed_bfloat16")
QUANTITIES = ("val_total_loss", "val_reco_loss", "val_kl_divergence", "z_radius_mean", "mu_radius_mean",
              "logvar_mean")


def train_one(config: str, overrides: list[str], run_dir: Path) -> tuple[dict[str, float], float]:
    """Trains through the CLI in a fresh process; (last history row, seconds)."""
    command = [sys.executable, "-m", "zspace.cli", "train", "-c", config, "--set", f"run_dir={run_dir}",
               "--set", "verbose=0", *[a for o in overrides for a in ("--set", o)]]
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seconds = time.perf_counter() - start
    with open(run_dir / "history.csv", newline="") as f:
        last = list(csv.DictReader(f))[-1]
    return {k: float(v) for k, v in last.items() if v not in ("", None)}, seconds


def report(rows: dict[str, list[dict[str, float]]], seconds: dict[str, list[float]]) -> dict[str, float]:
    """Prints the table; returns |difference of the means| / larger sd per quantity."""
    print(f"{'quantity':<18} {'float32':>20} {'mixed_bfloat16':>20} {'difference':>11} {'diff / sd':>9}"
          f"  {'paired by seed: bf16 - float32':>34}")
    ratios = {}
    for q in QUANTITIES:
        if not all(q in r for p in PRECISIONS for r in rows[p]):
            continue
        a, b = (np.array([r[q] for r in rows[p]]) for p in PRECISIONS)
        spread = max(a.std(ddof=1), b.std(ddof=1)) if len(a) > 1 else float("nan")
        ratios[q] = abs(b.mean() - a.mean()) / spread
        paired = " ".join(f"{d:+.4g}" for d in b - a)
        print(f"{q:<18} {a.mean():11.4f} ± {a.std(ddof=1):6.4f} {b.mean():11.4f} ± {b.std(ddof=1):6.4f} "
              f"{b.mean() - a.mean():+11.4f} {ratios[q]:9.2f}  {paired:>34}")
    speed = np.mean(seconds["float32"]) / np.mean(seconds["mixed_bfloat16"])
    print(f"seconds per run (whole CLI run): float32 {np.mean(seconds['float32']):.1f}, "
          f"mixed_bfloat16 {np.mean(seconds['mixed_bfloat16']):.1f} ({speed:.2f}x)")
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--monitor-images", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--report", type=Path, default=None, help="print the table of a saved precision.json")
    args = parser.parse_args()
    if args.report is not None:
        saved = json.loads(args.report.read_text())
        ratios = report(saved["rows"], saved["seconds"])
        print(f"diff_over_spread={max(ratios.values()):.2f}")
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    out = args.out or Path(tempfile.mkdtemp(prefix="zspace-precision-"))
    rows: dict[str, list[dict[str, float]]] = {p: [] for p in PRECISIONS}
    seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for seed in seeds:  # alternate the precisions so that a slow spell of the machine hits both
        for precision in PRECISIONS:
            overrides = [*args.overrides, f"seed={seed}", f"precision={precision}",
                         f"monitor_images={args.monitor_images}"]
            row, took = train_one(args.config, overrides, out / f"{precision}-seed{seed}")
            rows[precision].append(row)
            seconds[precision].append(took)
            print(f"{precision:>15} seed {seed}: {took:7.1f} s  "
                  + "  ".join(f"{q}={row[q]:.4f}" for q in QUANTITIES if q in row), flush=True)
    (out / "precision.json").write_text(json.dumps({"rows": rows, "seconds": seconds}, indent=1))
    print(f"\nmachine: {machine_line(('tensorflow|tensorflow-cpu', 'keras'))}")
    print(f"config {args.config} {' '.join(args.overrides)}; seeds {seeds}; runs in {out}")
    ratios = report(rows, seconds)
    print(f"diff_over_spread={max(ratios.values()):.2f}")


if __name__ == "__main__":
    main()
