"""Latency of one `zspace explore` decode request at 96x96 (the CelebA VAE of configs/celeba-vae-kl5.toml).

Makes a real run directory: a synthetic 96x96x3 cache in zspace's format (no CelebA download), the CelebA
VAE trained on it for ``--steps`` steps (the weights do not change the decode's cost), ``zspace analyze``'s
arrays (no t-SNE). Then, for each decode path of :class:`zspace.explore.Decoder` ("jit": tf.function /
jax.jit; "predict_on_batch"; "call": the eager Keras call), it times ``POST /api/runs/0/decode`` with a new
z ~ N(0, I) each time, after ``--warmup`` untimed requests:

* over real HTTP: the app on uvicorn on 127.0.0.1 (a free port), one keep-alive connection (http.client,
  TCP_NODELAY as browsers set it);
* in process: Starlette's TestClient (no sockets; the ASGI app, threadpool, decode and PNG encoding).

Prints median / p90 ms per path and transport; the last line is ``decode_ms_median=X``: the "jit" path
over real HTTP (what `zspace explore` serves). Target: < 50 ms on 2 cores.

    python benchmarks/explore_latency.py [--requests 200] [--warmup 20] [--steps 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from common import write_synthetic_cache  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def make_run(folder: Path, steps: int, batch_size: int = 32) -> Path:
    """A trained (``steps`` steps) and analysed CelebA-sized VAE run in ``folder/run``."""
    from zspace.analysis import analyze_run
    from zspace.config import AnalysisConfig
    from zspace.rundir import Run, training_config
    from zspace.training import train

    n = steps * batch_size * 10 // 9 + 1  # 90% train: `steps` batches in one epoch
    cache = write_synthetic_cache(folder / "cache", n=max(n, 64))
    config = training_config(ROOT / "configs" / "celeba-vae-kl5.toml").with_overrides({
        "dataset": f"cache:{cache}", "epochs": 1, "batch_size": batch_size, "run_dir": str(folder / "run"),
        "verbose": 0, "keep_checkpoints": 1})
    train(config)
    analyze_run(Run(folder / "run"), AnalysisConfig().with_overrides({"tsne_sizes": [], "k_min": 2, "k_max": 4}))
    return folder / "run"


def stats(ms: list[float]) -> tuple[float, float]:
    return float(np.median(ms)), float(np.percentile(ms, 90))


def over_http(app, z_dim: int, requests: int, warmup: int) -> list[float]:
    """Milliseconds of each timed decode request over one keep-alive HTTP connection to uvicorn."""
    from zspace.explore import serving

    rng = np.random.default_rng(0)
    times = []
    with serving(app) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.connect()
        # http.client writes the headers and the body in two sends: without TCP_NODELAY, Nagle's algorithm
        # holds the body until the server's delayed ACK (40 ms on Linux). Browsers set TCP_NODELAY.
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        headers = {"Content-Type": "application/json", "Host": f"127.0.0.1:{port}"}
        try:
            for i in range(warmup + requests):
                body = json.dumps({"z": rng.standard_normal(z_dim).tolist()})
                start = time.perf_counter()
                connection.request("POST", "/api/runs/0/decode", body, headers)
                response = connection.getresponse()
                data = response.read()
                elapsed = (time.perf_counter() - start) * 1000
                assert response.status == 200 and data[:4] == b"\x89PNG", (response.status, data[:200])
                if i >= warmup:
                    times.append(elapsed)
        finally:
            connection.close()
    return times


def in_process(app, z_dim: int, requests: int, warmup: int) -> list[float]:
    from starlette.testclient import TestClient

    rng = np.random.default_rng(1)
    times = []
    with TestClient(app, base_url="http://127.0.0.1:8050") as client:
        for i in range(warmup + requests):
            z = rng.standard_normal(z_dim).tolist()
            start = time.perf_counter()
            response = client.post("/api/runs/0/decode", json={"z": z})
            elapsed = (time.perf_counter() - start) * 1000
            assert response.status_code == 200
            if i >= warmup:
                times.append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20, help="Training steps of the benchmark's VAE.")
    parser.add_argument("--run", type=Path, help="An existing run directory to serve instead of a new one.")
    args = parser.parse_args()
    import keras

    from zspace.explore.server import Decoder, build_app, open_runs

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = args.run or make_run(Path(tmp), args.steps)
        print(f"run {run} ready in {time.perf_counter() - start:.0f} s")
        results = {}
        for method in Decoder.METHODS:
            explored = open_runs([run], decode_method=method)
            app = build_app(explored)
            z_dim = explored[0].z_dim
            for transport, measure in (("http", over_http), ("testclient", in_process)):
                results[(method, transport)] = stats(measure(app, z_dim, args.requests, args.warmup))
                median, p90 = results[(method, transport)]
                print(f"decode {explored[0].image_shape} z_dim {z_dim} {method:<17} {transport:<10} "
                      f"median {median:6.1f} ms  p90 {p90:6.1f} ms  ({args.requests} requests)")
    print(f"keras {keras.__version__} on {keras.backend.backend()}, {os.cpu_count()} cores")
    print(f"decode_ms_median={results[('jit', 'http')][0]:.1f}")


if __name__ == "__main__":
    main()
