"""The whole CelebA workflow, timed end to end through the CLI, as a user runs it.

Each stage is one `python -m zspace.cli ...` process (what a user types and feels; every stage pays the
interpreter's start-up and its imports, TensorFlow's included, which the line before the table measures apart):

  fixture   N synthetic CelebA-like JPEGs 178x218 (img_align_celeba/000001.jpg, ...) and a list_attr_celeba.txt with
            CelebA's 40 attribute names, seeded random +1 / -1 (so `evaluate` trains its FD-domain feature network
            on attributes, as it does for real CelebA); no partition file (prepare's seeded 80/10/10 split).
            Timed apart, not part of the total.
  prepare   zspace prepare celeba --src DATA/celeba --out DATA/celeba-96 --size 96   (all cores)
  train     zspace train --config configs/celeba-vae-kl5.toml --set epochs=1 --set dataset=cache:DATA/celeba-96
            --set run_dir=RUN   (the reference CelebA VAE: 96x96x3, z_dim 256, Conv2D 32/64/128/256, batch 128)
  analyze   zspace analyze RUN --set tsne_sizes=[20000]   (otherwise the defaults: radius / axis / VAE statistics,
            MiniBatchKMeans inertia sweep k = 2..80 step 2 x 3 seeds, PCA, one openTSNE fit; all N images encoded)
  evaluate  zspace evaluate RUN --config configs/evaluate-demo.toml --set features=["domain"]
  report    zspace report RUN --out RUN/report.html

N: 22,300 by default, so that analyze has 20,000 points for its t-SNE: it encodes the train and validation
images only, and prepare's seeded split (no partition file) keeps about 10% as test (N = 20,000 gives 18,074
points; 22,300 gives 20,143). The line after the table says how many points the t-SNE had.

Evaluate's settings: its defaults are K = 1,000 importance samples for the NLL of 1,000 validation images, i.e.
10^6 passes of the 96x96x3 decoder (0.28 GFLOP each: about half an hour on 2 cores, estimated), so a user picks
lighter ones; the project's own are configs/evaluate-demo.toml (K = 200, 2,000 hole samples, uniform half-widths
0.5/1/2/3/5/8, 500 second-stage steps, samplers fitted to 5,000 training z-points), used here. features =
["domain"] leaves out FID: Inception-v3 (about 6 GFLOP per 299x299 image) on the real images and every
sampler's (20,000+ images here) would add a quarter of an hour or more on 2 cores, estimated (zspace only
computes it when the weights are already in the Keras cache; this pins the choice so that machines with and
without them time the same work). With attributes the domain network trains about 3,500 steps of batch 128 once
per cache (cached beside it: a second evaluate of the same data does not pay it). --evaluate-set adds overrides.

--quick: 2,250 JPEGs (2,016 analysed points), t-SNE of 2,000 points, evaluate with K = 20 on 100 images, 1,000
hole samples, half-widths 1 and 3, 100 second-stage steps, samplers fitted to 1,000 z-points (the inertia sweep
stays the default; the domain network still trains: 30 epochs, its cap, of its few steps each).

Columns: wall seconds and share of the total; CPU seconds (user + system, the stage and its child processes)
and CPU / wall (about 2 = both cores busy); the stage process's peak RSS (wait4's ru_maxrss: the largest of the
process and its waited-for children). Indented rows split a stage with what zspace records itself: the epoch's
seconds in history.csv, analysis.json's and evaluation.json's "seconds"; "rest" is start-up, imports, loading and
writing.

    python benchmarks/workflow.py                  # 22,300 JPEGs, t-SNE of 20,000 points
    python benchmarks/workflow.py --quick          # 2,250 JPEGs (~3 min)
    python benchmarks/workflow.py --images 50000 --keep /tmp/zspace-workflow

Last line: workflow_seconds=S (prepare + train + analyze + evaluate + report, the fixture left out).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from common import machine_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "celeba-vae-kl5.toml"
EVALUATE_CONFIG = ROOT / "configs" / "evaluate-demo.toml"
QUICK_EVALUATE = ["k=20", "nll_images=100", "hole_samples=1000", "limits=[1, 3]", "second_stage_steps=100",
                  "fit_images=1000"]
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones "
    "Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
    "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young").split()


def write_fixture(folder: Path, n: int, attributes: bool, seed: int = 0) -> Path:
    """CelebA's layout: folder/img_align_celeba/NNNNNN.jpg (178x218) and folder/list_attr_celeba.txt."""
    from PIL import Image

    images = folder / "img_align_celeba"
    images.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    for name in names:  # smooth random colour fields, as benchmarks/pipeline.py makes them
        small = rng.integers(0, 256, (14, 11, 3), dtype=np.uint8)
        Image.fromarray(small).resize((178, 218), Image.Resampling.BILINEAR).save(images / name, quality=90)
    if attributes:
        prevalence = rng.uniform(0.05, 0.6, len(CELEBA_ATTRIBUTES))
        values = np.where(rng.random((n, len(CELEBA_ATTRIBUTES))) < prevalence, 1, -1)
        lines = [str(n), " ".join(CELEBA_ATTRIBUTES)]
        lines += [name + " " + " ".join(f"{v:2d}" for v in row) for name, row in zip(names, values)]
        (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    return folder


def run_stage(name: str, args: list[str], logs: Path, env: dict) -> dict:
    """Runs ``python -m zspace.cli ARGS``; wall and CPU seconds, peak RSS; output into logs/NAME.log."""
    command = [sys.executable, "-m", "zspace.cli", *args]
    print(f"[{name}] {shlex.join(['zspace', *args])}", flush=True)
    with open(logs / f"{name}.log", "w") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        tail = (logs / f"{name}.log").read_text(errors="replace").strip().splitlines()[-15:]
        raise SystemExit(f"[{name}] failed with exit status {process.returncode}; the end of its log:\n"
                         + "\n".join(tail))
    return {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024}


def startup_seconds(env: dict, code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT, capture_output=True)
    return time.perf_counter() - start


def parts(stage: str, run: Path) -> list[tuple[str, float]]:
    """What zspace records of a stage's time: [(part, seconds)]."""
    try:
        if stage == "train":
            with open(run / "history.csv", newline="") as f:
                return [(f"epoch {row['epoch']} (fit, incl. validation)", float(row["seconds"]))
                        for row in csv.DictReader(f)]
        if stage in ("analyze", "evaluate"):
            seconds = json.loads((run / f"{'analysis' if stage == 'analyze' else 'evaluation'}.json").read_text())
            seconds = seconds.get("seconds", {})
            return [(part, float(s)) for part, s in seconds.items()]
    except (OSError, KeyError, ValueError):
        pass
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,250 JPEGs, t-SNE of 2,000, light evaluate")
    parser.add_argument("--images", type=int, default=None, help="JPEGs (default 22,300; quick 2,250)")
    parser.add_argument("--tsne-size", type=int, default=None, help="t-SNE points (default 20,000; quick 2,000)")
    parser.add_argument("--config", type=Path, default=CONFIG, help="run config (default the CelebA VAE, kl 5)")
    parser.add_argument("--evaluate-set", action="append", default=[], help="more evaluate --set overrides")
    parser.add_argument("--no-attributes", action="store_true", help="no list_attr_celeba.txt (FD-random, "
                        "no feature network to train)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder (absent or empty) and keep it")
    args = parser.parse_args()
    n = args.images or (2_250 if args.quick else 22_300)
    tsne_size = args.tsne_size or (2_000 if args.quick else 20_000)
    env = {**os.environ}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.keep:
        if args.keep.exists() and any(args.keep.iterdir()):
            raise SystemExit(f"--keep {args.keep}: not empty")
        args.keep.mkdir(parents=True, exist_ok=True)
        work, cleanup = args.keep.resolve(), None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="zspace-workflow-")
        work = Path(cleanup.name)
    try:
        print(machine_line(("numpy", "tensorflow|tensorflow-cpu", "keras", "scikit-learn", "openTSNE", "Pillow",
                            "zspace")))
        cli_start = startup_seconds(env, "import zspace.cli")
        keras_start = startup_seconds(env, "import zspace.cli, keras")
        print(f"start-up of one stage: interpreter + zspace.cli {cli_start:.1f} s, + import keras (TensorFlow) "
              f"{keras_start:.1f} s; work folder {work}")
        data, run, logs = work / "data", work / "run", work / "logs"
        logs.mkdir()
        start = time.perf_counter()
        write_fixture(data / "celeba", n, not args.no_attributes)
        fixture = time.perf_counter() - start
        print(f"[fixture] {n:,} JPEGs 178x218{'' if args.no_attributes else ' + list_attr_celeba.txt'}: "
              f"{fixture:.1f} s", flush=True)
        cache = data / "celeba-96"
        evaluate = ["--config", str(EVALUATE_CONFIG)] if not args.quick else [
            a for s in QUICK_EVALUATE for a in ("--set", s)]
        evaluate += ["--set", 'features=["domain"]'] + [a for s in args.evaluate_set for a in ("--set", s)]
        stages = {
            "prepare": ["prepare", "celeba", "--src", str(data / "celeba"), "--out", str(cache), "--size", "96"],
            "train": ["train", "--config", str(args.config), "--set", "epochs=1", "--set", f"dataset=cache:{cache}",
                      "--set", f"run_dir={run}"],
            "analyze": ["analyze", str(run), "--set", f"tsne_sizes=[{tsne_size}]"],
            "evaluate": ["evaluate", str(run), *evaluate],
            "report": ["report", str(run), "--out", str(run / "report.html")],
        }
        results = {}
        for name, stage_args in stages.items():
            results[name] = run_stage(name, stage_args, logs, env)
            print(f"[{name}] {results[name]['seconds']:.1f} s", flush=True)
        total = sum(r["seconds"] for r in results.values())
        rows = [("fixture (not in the total)", fixture, None, None, None)]
        for name, r in results.items():
            rows.append((name, r["seconds"], r["seconds"] / total, r["cpu"], r["peak_mib"]))
            recorded = parts(name, run)
            for part, seconds in recorded:
                rows.append((f"  {part}", seconds, None, None, None))
            if recorded:
                rows.append(("  rest (start-up, imports, loading, writing)",
                             r["seconds"] - sum(s for _, s in recorded), None, None, None))
        rows.append(("total", total, 1.0, sum(r["cpu"] for r in results.values()),
                     max(r["peak_mib"] for r in results.values())))
        width = max(len(r[0]) for r in rows)
        print()
        print(f"{'stage':<{width}}  {'seconds':>8}  {'share':>6}  {'CPU s':>7}  {'CPU/wall':>8}  {'peak RSS MiB':>12}")
        for label, seconds, share, cpu, peak in rows:
            print(f"{label:<{width}}  {seconds:8.1f}  " + (f"{share:6.1%}  {cpu:7.1f}  {cpu / seconds:8.2f}  "
                                                          f"{peak:12,.0f}" if share is not None else ""))
        try:
            analysis = json.loads((run / "analysis.json").read_text())
            points = f"{analysis['n_points']:,} analysed points, t-SNE of {analysis['tsne'][-1]['size']:,}"
        except (OSError, KeyError, IndexError, ValueError):
            points = "analysis.json unreadable"
        print(f"{n:,} images, {points}; logs in {logs}"
              + ("" if args.keep else " (removed with the work folder; --keep DIR keeps them)"))
        print(f"workflow_seconds={total:.1f}")
    finally:
        if cleanup is not None:
            cleanup.cleanup()


if __name__ == "__main__":
    main()
