"""t-SNE at the seed's sizes: openTSNE (zspace's path) on 20,000, 80,000 and 140,000 z-points of dimension 256,
scikit-learn's TSNE (zspace's tsne_backend = "sklearn") at the sizes it finishes within a time budget.

Every fit runs in a fresh worker process (this script with --worker), so its peak memory is its own: the worker
makes its points, resets its high-water mark (/proc/self/clear_refs), fits, and reports VmHWM ("peak RSS", the
points and the interpreter included) beside its RSS just before the fit.

openTSNE runs with zspace's parameters (`zspace.analysis.projection.tsne_projection`: perplexity 30, early
exaggeration 12 for 250 iterations then 500 more, negative_gradient_method "auto" = Barnes-Hut below 10,000 points,
FFT from 10,000, n_jobs -1, random_state = seed, float64 points), but phase by phase through openTSNE's API, which
is what `openTSNE.TSNE.fit` does: the k = 90 nearest neighbours (`affinity.get_knn_index`, Annoy, 50 trees), the
affinities (`affinity.PerplexityBasedNN`), the PCA initialisation (`TSNE.prepare_initial`), the early-exaggeration
and the main optimisation (`TSNEEmbedding.optimize`). Before the table a check fits 2,000 points (quick: 1,000)
both ways (this path and zspace's `tsne_projection`) and prints the largest coordinate difference (--check-size 0:
no check).
scikit-learn runs through `tsne_projection(backend="sklearn")` itself (1,000 iterations, Barnes-Hut); its phases
are timed by wrapping scikit-learn's private `_joint_probabilities_nn` and `_gradient_descent` (kNN = the time
before the affinities, exact brute-force search in 256 dims; init = PCA). It may stop before 1,000 iterations
(no progress for 300); the iterations column says how many it ran.

scikit-learn's sizes go up until one fit runs past --budget-s (it is killed at the budget plus 60 s) or until the
next size, extrapolated from the last two fits (t ~ n^b, b fitted, at least 1; n log n from a single fit), would;
the line after the table says which stopped it. zspace itself refuses tsne_backend = "sklearn" above 100,000
points (MAX_SKLEARN_TSNE_POINTS).

Points: not uniform noise but a seeded stand-in for a VAE's z-points: a mixture of 40 Gaussian clusters in 256
dimensions, cluster weights Dirichlet(2) (unequal sizes), centres N(0, 0.8^2 I) on 192 "active" axes and 0 on
the other 64 (collapsed axes, where z ~ N(0, 1) as under the prior), cluster std log-uniform in [0.3, 1.0] on
the active axes; the radius is about 16, like z ~ N(0, I) in 256 dims. --codes FILE.npy uses real encoded
z-points instead (an (N, D) array, or a .npz of `zspace encode` / analysis.npz: its "z"): each size is a seeded
subset (zspace's `random_subset`), sizes above N are skipped.

--levers adds rows for openTSNE's speed levers at the largest openTSNE size (--lever-size): n_jobs 1, Barnes-Hut
instead of FFT, 500 iterations in all instead of 750, Annoy with 10 trees instead of 50, exact neighbours
(scikit-learn brute force), and pynndescent / hnswlib neighbours when installed; each is killed past the budget
like scikit-learn's fits (Barnes-Hut at 140,000 points may be). The KL column shows what a lever costs in quality
(lower is better; comparable only at equal size and iterations).

    python benchmarks/tsne.py                       # openTSNE 20k/80k/140k, scikit-learn 5k.. within 600 s
    python benchmarks/tsne.py --levers              # and the levers at 140,000
    python benchmarks/tsne.py --quick               # openTSNE 5,000 + 10,000, scikit-learn 2,000 (~2 min)
    python benchmarks/tsne.py --codes z.npy --sizes 20000,80000 --sklearn-sizes 5000

Last line: tsne_<n/1000>k_seconds=S of the largest openTSNE size (tsne_140k_seconds at the full sizes).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from common import machine_line  # noqa: E402

PERPLEXITY, EARLY_EXAGGERATION, SEED = 30.0, 12.0, 0
KILL_SLACK_S = 60  # a scikit-learn worker is killed this long after the budget (start-up and making the points)
LEVERS = {  # label: openTSNE settings that differ from zspace's
    "n_jobs=1": {"n_jobs": 1},
    "Barnes-Hut gradients (bh)": {"negative_gradient_method": "bh"},
    "500 iterations (250 + 250)": {"n_iter": 500},
    "Annoy 10 trees": {"knn_kwargs": {"n_trees": 10}},
    "exact neighbours (brute force)": {"neighbors": "exact"},
    "pynndescent neighbours": {"neighbors": "pynndescent", "needs": "pynndescent"},
    "hnsw neighbours": {"neighbors": "hnsw", "needs": "hnswlib"},
}


# --- points --------------------------------------------------------------------------------------

def z_like_points(n: int, dim: int = 256, clusters: int = 40, seed: int = SEED) -> np.ndarray:
    """A seeded mixture of Gaussian clusters shaped like a VAE's z-points (see the module docstring)."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(clusters, 2.0))
    active = dim - dim // 4
    centres = np.zeros((clusters, dim))
    centres[:, :active] = 0.8 * rng.standard_normal((clusters, active))
    scales = np.exp(rng.uniform(np.log(0.3), np.log(1.0), clusters))
    labels = rng.choice(clusters, n, p=weights)
    z = rng.standard_normal((n, dim), dtype=np.float32)
    z[:, :active] *= scales[labels, None].astype(np.float32)
    z += centres[labels].astype(np.float32)
    return z


def load_codes(path: str) -> np.ndarray:
    data = np.load(path, mmap_mode="r")
    if isinstance(data, np.lib.npyio.NpzFile):
        if "z" not in data.files:
            raise SystemExit(f"{path}: a .npz without a 'z' array (it has {data.files})")
        data = data["z"]
    if data.ndim != 2:
        raise SystemExit(f"{path}: expected an (N, D) array of z-points, got shape {data.shape}")
    return data


def points_for(n: int, codes: str | None) -> np.ndarray:
    if codes is None:
        return z_like_points(n)
    from zspace.analysis.projection import random_subset

    data = load_codes(codes)
    return np.asarray(data[random_subset(len(data), n, SEED)], dtype=np.float32)


# --- worker side: one fit ------------------------------------------------------------------------

def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _reset_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def fit_opentsne(points: np.ndarray, n_jobs: int, lever: dict) -> dict:
    """zspace's openTSNE fit, phase by phase; ``lever`` changes one of its settings."""
    from openTSNE import TSNE, affinity

    from zspace.analysis.projection import (
        DEFAULT_TSNE_ITERATIONS,
        EXAGGERATION_ITERATIONS,
    )

    n_iter = lever.get("n_iter", DEFAULT_TSNE_ITERATIONS["opentsne"])
    points = points.astype(np.float64)  # as tsne_projection does
    tsne = TSNE(perplexity=PERPLEXITY, early_exaggeration=EARLY_EXAGGERATION,
                negative_gradient_method=lever.get("negative_gradient_method", "auto"),
                early_exaggeration_iter=EXAGGERATION_ITERATIONS, n_iter=n_iter - EXAGGERATION_ITERATIONS,
                n_jobs=lever.get("n_jobs", n_jobs), random_state=SEED, neighbors=lever.get("neighbors", "auto"),
                knn_kwargs=lever.get("knn_kwargs"))
    phases = {}
    start = time.perf_counter()
    k = min(len(points) - 1, int(3 * PERPLEXITY))  # what TSNE.prepare_initial's affinities ask for
    knn_index = affinity.get_knn_index(points, tsne.neighbors, k, tsne.metric, tsne.metric_params, n_jobs=tsne.n_jobs,
                                       random_state=tsne.random_state, knn_kwargs=tsne.knn_kwargs)
    build = knn_index.build

    def timed_build():
        begin = time.perf_counter()
        out = build()
        phases["knn"] = time.perf_counter() - begin
        return out

    knn_index.build = timed_build
    affinities = affinity.PerplexityBasedNN(perplexity=tsne.perplexity, knn_index=knn_index, n_jobs=tsne.n_jobs,
                                            random_state=tsne.random_state)
    phases["affinities"] = time.perf_counter() - start - phases["knn"]
    mark = time.perf_counter()
    embedding = tsne.prepare_initial(points, affinities=affinities)
    phases["init"] = time.perf_counter() - mark
    mark = time.perf_counter()
    embedding.optimize(n_iter=tsne.early_exaggeration_iter, exaggeration=tsne.early_exaggeration,
                       momentum=tsne.initial_momentum, inplace=True, propagate_exception=True)
    phases["exaggeration"] = time.perf_counter() - mark
    mark = time.perf_counter()
    embedding.optimize(n_iter=tsne.n_iter, exaggeration=tsne.exaggeration, momentum=tsne.final_momentum,
                       inplace=True, propagate_exception=True)
    phases["main"] = time.perf_counter() - mark
    seconds = time.perf_counter() - start
    gradient = lever.get("negative_gradient_method", "auto")
    if gradient == "auto":  # openTSNE's own rule (tsne._handle_nice_params)
        gradient = "bh" if len(points) < 10_000 else "fft"
    return {"seconds": seconds, "phases": phases, "iterations": n_iter, "kl": float(embedding.kl_divergence),
            "gradient": gradient, "embedding": np.asarray(embedding)}


def fit_sklearn(points: np.ndarray, n_jobs: int) -> dict:
    """zspace's tsne_projection(backend="sklearn"), its phases timed around scikit-learn's private functions."""
    from sklearn.manifold import _t_sne

    from zspace.analysis.projection import tsne_projection

    marks = {"affinities": [], "descent": []}

    def wrap(name, fn):
        def timed(*args, **kwargs):
            begin = time.perf_counter()
            out = fn(*args, **kwargs)
            marks[name].append((begin, time.perf_counter(), out))
            return out
        return timed

    _t_sne._joint_probabilities_nn = wrap("affinities", _t_sne._joint_probabilities_nn)
    _t_sne._gradient_descent = wrap("descent", _t_sne._gradient_descent)
    start = time.perf_counter()
    fit = tsne_projection(points, None, PERPLEXITY, EARLY_EXAGGERATION, SEED, n_jobs=n_jobs, backend="sklearn")
    end = time.perf_counter()
    phases = {}
    iterations = None
    if len(marks["affinities"]) == 1 and len(marks["descent"]) in (1, 2):
        (a0, a1, _), descents = marks["affinities"][0], marks["descent"]
        phases = {"knn": a0 - start, "affinities": a1 - a0, "init": descents[0][0] - a1,
                  "exaggeration": descents[0][1] - descents[0][0],
                  "main": descents[1][1] - descents[1][0] if len(descents) == 2 else 0.0}
        iterations = int(descents[-1][2][2]) + 1  # _gradient_descent returns (params, kl, last iteration)
    return {"seconds": end - start, "phases": phases, "iterations": iterations, "kl": fit.kl_divergence,
            "gradient": "bh"}


def worker(spec: dict) -> None:
    points = points_for(spec["n"], spec.get("codes"))
    if spec["lib"] == "check":
        from zspace.analysis.projection import tsne_projection

        ours = fit_opentsne(points, spec["n_jobs"], {})
        theirs = tsne_projection(points, None, PERPLEXITY, EARLY_EXAGGERATION, SEED, n_jobs=spec["n_jobs"])
        diff = float(np.abs(ours["embedding"] - theirs.embedding).max())
        print("RESULT " + json.dumps({"max_abs_diff": diff, "kl": ours["kl"], "kl_zspace": theirs.kl_divergence,
                                      "spread": float(np.abs(theirs.embedding).max())}), flush=True)
        return
    reset = _reset_peak()
    before = _status_kib("VmRSS")
    if spec["lib"] == "opentsne":
        result = fit_opentsne(points, spec["n_jobs"], spec.get("lever", {}))
        result.pop("embedding")
    else:
        result = fit_sklearn(points, spec["n_jobs"])
    result.update({"rss_before_mib": before / 1024, "peak_mib": _status_kib("VmHWM") / 1024, "peak_reset": reset})
    print("RESULT " + json.dumps(result), flush=True)


# --- parent side ---------------------------------------------------------------------------------

def run_worker(spec: dict, timeout: float | None = None) -> dict:
    """Runs one fit in a fresh process; {"error": ...} when it failed or was killed."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"killed after {time.perf_counter() - start:.0f} s (budget)", "killed": True}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {done.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1][len("RESULT "):])


def extrapolate(fits: list[tuple[int, float]], n: int) -> float:
    """Seconds at ``n`` points from the last two (n, seconds) fits: t ~ n^b with b >= 1; n log n from one."""
    n1, t1 = fits[-1]
    if len(fits) >= 2:
        n0, t0 = fits[-2]
        b = max(1.0, math.log(t1 / t0) / math.log(n1 / n0)) if t0 > 0 and n1 != n0 else 1.0
        return t1 * (n / n1) ** b
    return t1 * (n / n1) * math.log(n) / math.log(n1)


def sizes(text: str) -> list[int]:
    return [int(s.replace("_", "")) for s in text.split(",") if s.strip()]


COLUMNS = ("library", "points", "grad", "seconds", "kNN", "affin.", "init", "exagg.", "main", "iter", "KL",
           "peak MiB", "before MiB")


def row(label: str, n: int, r: dict) -> list[str]:
    if "error" in r:
        return [label, f"{n:,}", "", r["error"]] + [""] * (len(COLUMNS) - 4)
    p = r["phases"]
    phase = [f"{p[k]:.1f}" if k in p else "?" for k in ("knn", "affinities", "init", "exaggeration", "main")]
    return [label, f"{n:,}", r["gradient"], f"{r['seconds']:.1f}", *phase, str(r["iterations"] or "?"),
            f"{r['kl']:.3f}", f"{r['peak_mib']:,.0f}", f"{r['rss_before_mib']:,.0f}"]


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(COLUMNS[i]), *(len(r[i]) for r in rows)) for i in range(len(COLUMNS))]
    print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(COLUMNS, widths))))
    for r in rows:
        if r[3].startswith(("killed", "exit", "not installed")):
            print("  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2]), r[3]]))
        else:
            print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="openTSNE 5,000 + 10,000, scikit-learn 2,000")
    parser.add_argument("--sizes", type=sizes, default=None, help="openTSNE sizes (default 20000,80000,140000)")
    parser.add_argument("--sklearn-sizes", type=sizes, default=None,
                        help="scikit-learn sizes tried in order (default 5000,10000,20000,40000,80000,140000); "
                             "'' = none")
    parser.add_argument("--budget-s", type=float, default=600.0,
                        help="time budget per scikit-learn fit and per lever row (killed 60 s after it)")
    parser.add_argument("--n-jobs", type=int, default=-1, help="threads of both (zspace's default: -1, all cores)")
    parser.add_argument("--codes", default=None, help="real z-points: an (N, D) .npy, or a .npz with 'z'")
    parser.add_argument("--levers", action="store_true", help="also openTSNE's speed levers (extra rows)")
    parser.add_argument("--lever-size", type=int, default=None, help="size of the lever rows (default: largest)")
    parser.add_argument("--check-size", type=int, default=None,
                        help="points of the check against zspace's tsne_projection (default 2,000, quick 1,000; "
                             "0 = no check)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    open_sizes = args.sizes or ([5_000, 10_000] if args.quick else [20_000, 80_000, 140_000])
    sk_sizes = args.sklearn_sizes if args.sklearn_sizes is not None else (
        [2_000] if args.quick else [5_000, 10_000, 20_000, 40_000, 80_000, 140_000])
    if args.check_size is None:
        args.check_size = 1_000 if args.quick else 2_000
    if args.codes:
        available = len(load_codes(args.codes))
        skipped = [n for n in open_sizes + sk_sizes + [args.check_size] if n > available]
        if skipped:
            print(f"{args.codes} holds {available:,} z-points: sizes {sorted(set(skipped))} skipped")
        open_sizes = [n for n in open_sizes if n <= available]
        sk_sizes = [n for n in sk_sizes if n <= available]
    data = (f"{args.codes} (seeded subsets)" if args.codes
            else "mixture of 40 Gaussian clusters in 256 dims (192 active axes)")
    print(machine_line(("numpy", "scikit-learn", "openTSNE", "zspace")))
    print(f"points: {data}; perplexity {PERPLEXITY:g}, early exaggeration {EARLY_EXAGGERATION:g}, "
          f"n_jobs {args.n_jobs}; each fit in a fresh process")
    base = {"codes": args.codes, "n_jobs": args.n_jobs}
    if args.check_size and (not args.codes or args.check_size <= available):
        check = run_worker({**base, "lib": "check", "n": args.check_size})
        if "error" in check:
            print(f"check ({args.check_size:,} points): {check['error']}")
        else:
            print(f"check: {args.check_size:,} points, this script's phased openTSNE fit against zspace's "
                  f"tsne_projection: largest coordinate difference {check['max_abs_diff']:.3g} (embedding spread "
                  f"{check['spread']:.1f}), KL {check['kl']:.4f} vs {check['kl_zspace']:.4f}")
    rows, fits = [], {}
    for n in open_sizes:
        r = run_worker({**base, "lib": "opentsne", "n": n})
        fits[n] = r
        rows.append(row("openTSNE (zspace)", n, r))
        print(f"  ... openTSNE {n:,}: {r.get('seconds', float('nan')):.1f} s", flush=True)
    stopped, sk_fits = "every size asked for ran", []
    for i, n in enumerate(sk_sizes):
        if sk_fits:
            guess = extrapolate(sk_fits, n)
            if guess > args.budget_s:
                stopped = (f"stopped before {n:,} points: extrapolated {guess:.0f} s > budget {args.budget_s:.0f} s "
                           f"(from the fits at {', '.join(f'{m:,}' for m, _ in sk_fits[-2:])})")
                break
        r = run_worker({**base, "lib": "sklearn", "n": n}, timeout=args.budget_s + KILL_SLACK_S)
        rows.append(row("scikit-learn TSNE", n, r))
        print(f"  ... scikit-learn {n:,}: {r.get('seconds', float('nan')):.1f} s", flush=True)
        if "error" in r:
            stopped = f"stopped at {n:,} points: {r['error']}"
            break
        sk_fits.append((n, r["seconds"]))
        if r["seconds"] > args.budget_s:
            rest = sk_sizes[i + 1:]
            stopped = (f"stopped after {n:,} points: {r['seconds']:.0f} s > budget {args.budget_s:.0f} s"
                       + (f" ({', '.join(f'{m:,}' for m in rest)} not run)" if rest else ""))
            break
    if args.levers and open_sizes:
        n = args.lever_size or max(open_sizes)
        for label, lever in LEVERS.items():
            needs = lever.get("needs")
            lever = {key: value for key, value in lever.items() if key != "needs"}
            if needs and importlib.util.find_spec(needs) is None:
                rows.append([f"lever: {label}", f"{n:,}", "", f"not installed ({needs})"] + [""] * (len(COLUMNS) - 4))
                continue
            r = run_worker({**base, "lib": "opentsne", "n": n, "lever": lever}, timeout=args.budget_s + KILL_SLACK_S)
            rows.append(row(f"lever: {label}", n, r))
            print(f"  ... lever {label}: {r.get('seconds', float('nan')):.1f} s", flush=True)
    print()
    print_table(rows)
    print("seconds: wall time of the fit; kNN / affin. / init / exagg. / main: its phases (kNN search, affinities P, "
          "PCA initialisation, 250 early-exaggeration iterations, the rest); peak MiB: the worker's VmHWM from just "
          "before the fit (points included); before MiB: its RSS then")
    if sk_sizes:
        print(f"scikit-learn: {stopped}")
    ran = [n for n in open_sizes if "error" not in fits[n]]
    if ran:
        largest = max(ran)
        print(f"tsne_{largest / 1000:g}k_seconds={fits[largest]['seconds']:.1f}")


if __name__ == "__main__":
    main()
