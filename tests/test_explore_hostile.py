"""`zspace explore` against hostile requests and crafted run folders (an adversarial pass over the server).

Each test names the input that used to get a 500, a traceback in the server's output, a hang or a wrong
answer, and checks the one-line refusal (or the correct answer) that replaced it.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from zspace.errors import RunError
from zspace.explore import server as srv
from zspace.explore import space
from zspace.explore.server import build_app, prepare_run
from zspace.rundir import Run

from conftest import tiny_run_config

BASE = "http://127.0.0.1:8050"


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    """A tiny digits VAE, analysed without t-SNE (its map is the PCA scatter)."""
    from zspace.analysis import analyze_run
    from zspace.config import AnalysisConfig
    from zspace.training import train

    root = tmp_path_factory.mktemp("hostile")
    train(tiny_run_config(root / "vae", epochs=1))
    analyze_run(Run(root / "vae"), AnalysisConfig().with_overrides({"k_min": 2, "k_max": 3, "kmeans_seeds": [0],
                                                                    "tsne_sizes": []}))
    return root / "vae"


@pytest.fixture(scope="module")
def explored(vae_dir):
    return [prepare_run(Run(vae_dir), warm=False)]


@pytest.fixture(scope="module")
def client(explored):
    with TestClient(build_app(explored), base_url=BASE) as c:
        yield c


def crafted(run: Path, tmp_path: Path, change_arrays=None, change_json=None) -> Path:
    """A copy of ``run`` whose analysis arrays (dict -> None) or analysis.json (dict -> None) were changed,
    saved the way zspace saves them (so only the change is hostile)."""
    copy = tmp_path / "crafted"
    shutil.copytree(run, copy)
    if change_arrays:
        analysis = Run(copy).load_analysis()
        arrays = dict(analysis.arrays)
        change_arrays(arrays)
        Run(copy).save_analysis(replace(analysis, arrays=arrays))
    if change_json:
        path = copy / "analysis.json"
        record = json.loads(path.read_text())
        change_json(record)
        path.write_text(json.dumps(record))
    return copy


# --- map clicks at the ends of the float range ------------------------------------------------------------------
@pytest.mark.parametrize("at", [(1.7e308, 1.7e308), (-1.7e308, 1.7e308), (1e300, -1e300), (5e-324, 0.0)])
def test_a_blend_at_extreme_positions_is_finite_and_normalised(at):
    """A click at x = y = 1.7e308 overflowed the map distances to infinity and the weights to NaN (a 500)."""
    rng = np.random.default_rng(0)
    xy, codes = rng.normal(size=(50, 2)) * 30, rng.normal(size=(50, 4)).astype(np.float32)
    z, rows, weights = space.blend_nearest(xy, codes, at, 8)
    assert np.isfinite(z).all() and np.isfinite(weights).all() and math.isclose(weights.sum(), 1.0)
    assert len(set(rows.tolist())) == 8


def test_a_blend_on_a_map_of_huge_coordinates_still_picks_the_nearest():
    xy = np.array([[1e308, 0.0], [-1e308, 0.0], [0.0, 1.5e308]])
    codes = np.eye(3, dtype=np.float32)
    z, rows, weights = space.blend_nearest(xy, codes, (1e308, 0.0), 3)
    assert rows[0] == 0 and weights[0] == 1.0 and z.tolist() == [1.0, 0.0, 0.0]


def test_locate_far_off_the_map_is_answered_not_a_500(client):
    response = client.post("/api/runs/0/locate", json={"x": 1.7e308, "y": 1.7e308})
    assert response.status_code == 200, response.text
    assert all(math.isfinite(v) for v in response.json()["z"])


# --- Host headers of an IPv6 bind -------------------------------------------------------------------------------
@pytest.mark.parametrize("host, status", [("[::1]:8050", 200), ("[::1]", 200), ("localhost:8050", 200),
                                          ("[::2]:8050", 400), ("::1", 400), ("[::ffff:7f00:1]", 400)])
def test_an_ipv6_loopback_bind_answers_the_url_it_prints(explored, host, status):
    """Bound to ::1, the server printed http://[::1]:P/ and refused the browser's "Host: [::1]:P" with 400."""
    with TestClient(build_app(explored, host="::1"), base_url=BASE) as c:
        assert c.get("/api/runs", headers={"Host": host}).status_code == status


# --- crafted analyses -------------------------------------------------------------------------------------------
def test_an_analysis_with_astronomic_z_is_refused_at_start_up(vae_dir, tmp_path):
    """mu[3, 0] = 1e30 (finite, so analysis.npz passed its checks) made max_norm infinite: /api/runs was a 500."""
    def huge(arrays):
        arrays["mu"] = arrays["mu"].copy()
        arrays["mu"][3, 0] = 1e30
    with pytest.raises(RunError, match=r"z components up to 1e\+30"):
        prepare_run(Run(crafted(vae_dir, tmp_path, huge)), warm=False)


def test_an_analysis_whose_map_ids_and_positions_differ_is_refused(vae_dir, tmp_path):
    """pca_embedding with fewer rows than pca_indices passed the analysis checks (each was "any length")."""
    def shorter(arrays):
        arrays["pca_embedding"] = arrays["pca_embedding"][:10]
    with pytest.raises(RunError, match="`pca_indices` and `pca_embedding` must have one row per point"):
        prepare_run(Run(crafted(vae_dir, tmp_path, shorter)), warm=False)


def test_an_analysis_of_another_dataset_is_refused(vae_dir, tmp_path):
    """An analysis recorded as of another dataset with as many points was served with the wrong images."""
    def other(record):
        record["run"]["dataset"] = "idx:/somewhere/else"
    with pytest.raises(RunError, match="an analysis of dataset 'idx:/somewhere/else'"):
        prepare_run(Run(crafted(vae_dir, tmp_path, change_json=other)), warm=False)


def test_labels_beyond_the_class_names_and_negative_ones_are_served(vae_dir, tmp_path):
    def odd_labels(arrays):
        arrays["labels"] = arrays["labels"].copy()
        arrays["labels"][:2] = [2**62, -5]
    explored = prepare_run(Run(crafted(vae_dir, tmp_path, odd_labels)), warm=False)
    with TestClient(build_app([explored]), base_url=BASE) as c:
        assert c.get("/api/runs/0/point/0").json()["label"] == str(2**62)
        assert c.get("/api/runs/0/point/1").json()["label"] is None
        assert c.get("/api/runs/0/map").status_code == 200


# --- bodies that never finish -----------------------------------------------------------------------------------
def asgi_post(app, receive) -> tuple[int, bytes]:
    """POST /api/runs/0/decode straight through ASGI with the given ``receive``: (status, body)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/runs/0/decode", "raw_path": b"/api/runs/0/decode", "root_path": "", "query_string": b"",
             "headers": [(b"host", b"127.0.0.1:8050"), (b"content-type", b"application/json")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8050)}
    sent = []

    async def send(message):
        sent.append(message)

    async def call():
        await asyncio.wait_for(app(scope, receive, send), timeout=30)
    asyncio.run(call())
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_a_body_that_trickles_in_forever_gets_408(explored, monkeypatch):
    """A client that sent part of a body and then nothing held its request (and connection) open for good."""
    monkeypatch.setenv("ZSPACE_EXPLORE_BODY_TIMEOUT_S", "1")
    app = build_app(explored)
    parts = [b'{"z": [0']

    async def receive():
        if parts:
            return {"type": "http.request", "body": parts.pop(), "more_body": True}
        await asyncio.sleep(3600)
    status, body = asgi_post(app, receive)
    assert status == 408 and "1 s" in json.loads(body)["error"]


def test_a_client_that_leaves_mid_body_is_no_server_error(explored):
    """A disconnect mid-body raised ClientDisconnect: a 500 and a traceback in the server's output."""
    app = build_app(explored)
    messages = [{"type": "http.disconnect"}, {"type": "http.request", "body": b'{"z": [', "more_body": True}]

    async def receive():
        return messages.pop()
    status, body = asgi_post(app, receive)
    assert status == 400 and "went away" in json.loads(body)["error"]


# --- a sweep of odd requests: each a 4xx with one line, none writes ----------------------------------------------
ODD_REQUESTS = [
    ("POST", "/api/runs/0/locate", '{"x": 1, "y": 0, "x": "a"}', 422),  # duplicate key: the last wins
    ("POST", "/api/runs/0/locate", '{"x": 1e999, "y": 0}', 422),
    ("POST", "/api/runs/0/locate", '{"x": true, "y": 0}', 422),
    ("POST", "/api/runs/0/locate", '{"x": "1", "y": 0}', 422),
    ("POST", "/api/runs/0/locate", '{"x": 1, "y": 0, "k": 8.0}', 422),
    ("POST", "/api/runs/0/decode", "[" * 30_000 + "]" * 30_000, 400),
    ("POST", "/api/runs/0/decode", '{"z": ' + "[" * 20_000 + "]" * 20_000 + "}", 400),
    ("POST", "/api/runs/0/decode", '{"z": null}', 422),
    ("POST", "/api/runs/0/decode", b'{"z": "\xff"}', 400),
    ("POST", "/api/runs/0/prior", '{"seed": 1e20}', 422),
    ("POST", "/api/runs/0/prior", '{"n": ' + "9" * 5000 + "}", 400),
    ("PUT", "/api/runs/0/decode", "{}", 405),
    ("OPTIONS", "/api/runs", "", 405),
    ("GET", "/api/runs/0/point/-1", "", 404),
    ("GET", "/api/runs/0/point/1e3", "", 404),
    ("GET", "/api/runs/0/point/99999999999999999999", "", 404),
    ("GET", "/api/runs/99999999999999999999/map", "", 404),
    ("GET", "/api/runs/0/neighbours/1?k=%D9%A1", "", 422),
]


@pytest.mark.parametrize("method, url, body, status", ODD_REQUESTS)
def test_odd_requests_get_a_one_line_4xx(client, method, url, body, status):
    response = client.request(method, url, content=body)
    assert response.status_code == status, response.text
    reason = response.json()["error"]
    assert reason and "\n" not in reason and "Traceback" not in reason


def test_hostile_requests_leave_the_run_folder_untouched(vae_dir, explored):
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(vae_dir.rglob("*")) if p.is_file()}
    with TestClient(build_app(explored), base_url=BASE) as c:
        for method, url, body, _ in ODD_REQUESTS:
            c.request(method, url, content=body)
        c.post("/api/runs/0/locate", json={"x": 1.7e308, "y": -1.7e308})
        c.post("/api/runs/0/prior", json={"dist": "uniform", "r": 3, "n": 64})
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(vae_dir.rglob("*")) if p.is_file()}
    assert after == before


# --- connections that never finish their headers ----------------------------------------------------------------
def test_a_connection_that_never_finishes_its_headers_is_closed(explored, monkeypatch):
    """uvicorn starts no timer before a connection's first response: half a request line held it for good."""
    import socket
    import time

    monkeypatch.setenv("ZSPACE_EXPLORE_HEADER_TIMEOUT_S", "1")
    with srv.serving(build_app(explored)) as port, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as slow, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as kept:
        slow.sendall(b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: never complete
        kept.sendall(b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = kept.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        kept.sendall(b"GET /api/ru")  # the next request on a kept-alive connection, never finished
        started = time.monotonic()
        assert slow.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < 5
        while kept.recv(65536):  # the rest of the first response, if any, then the close
            pass
        assert time.monotonic() - started < 5
