"""`zspace explore`'s server: the page's endpoints, start-up checks and its defences, on real tiny runs.

In process through Starlette's TestClient (and raw ASGI calls for paths an HTTP client would normalise),
plus one real uvicorn server started by the CLI in a subprocess.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from zspace.cli import main
from zspace.errors import ModelFileError, RunError
from zspace.explore import server as srv
from zspace.explore.server import build_app, comparable, open_runs, prepare_run
from zspace.rundir import Run

from conftest import train_ae_and_vae

BASE = "http://127.0.0.1:8050"
SRC = Path(__file__).resolve().parents[1] / "src"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> content)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    """A tiny AE (PCA map) and VAE (t-SNE map of 150 points) on digits, analysed; plus an unanalysed copy."""
    from zspace.analysis import analyze_run
    from zspace.config import AnalysisConfig

    root = tmp_path_factory.mktemp("explore")
    ae, vae = train_ae_and_vae(root, epochs=1)
    quick = {"k_min": 2, "k_max": 4, "kmeans_seeds": [0]}
    analyze_run(Run(ae), AnalysisConfig().with_overrides({**quick, "tsne_sizes": []}))
    analyze_run(Run(vae), AnalysisConfig().with_overrides({**quick, "tsne_sizes": [150]}))
    bare = root / "bare"
    shutil.copytree(ae, bare, ignore=shutil.ignore_patterns("analysis.*"))
    return {"ae": ae, "vae": vae, "bare": bare}


@pytest.fixture(scope="module")
def explored(run_dirs):
    return open_runs([run_dirs["ae"], run_dirs["vae"]])


@pytest.fixture(scope="module")
def client(explored):
    with TestClient(build_app(explored), base_url=BASE) as c:
        yield c


def png_of(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    reason = response.json()["error"]
    assert isinstance(reason, str) and reason and "\n" not in reason
    return reason


def zeros(run) -> list[float]:
    return [0.0] * run.z_dim


# --- the contract ---------------------------------------------------------------------------------------------
def test_runs_describe_each_run_and_an_ae_and_vae_of_one_split_are_comparable(client, explored):
    data = client.get("/api/runs").json()
    assert data["comparable"] is True
    ae, vae = data["runs"]
    assert (ae["id"], ae["kind"], vae["id"], vae["kind"]) == (0, "ae", 1, "vae")
    assert ae["projection"] == "pca" and vae["projection"].startswith("tsne_p")
    for r, run in zip(data["runs"], explored):
        assert r["z_dim"] == 3 and r["image_shape"] == [8, 8, 1] and r["n_points"] == 1797
        assert r["class_names"] == [str(i) for i in range(10)] and r["color_by"] == "label"
        assert r["n_directions"] == 3 and r["max_norm"] >= np.linalg.norm(run.codes, axis=1).max()
        assert r["prior_radius"] >= 3 and r["attribute_names"] == []


def test_map_lists_points_with_colours_that_index_their_names(client, explored):
    for r, run in enumerate(explored):
        m = client.get(f"/api/runs/{r}/map").json()
        n = len(m["index"])
        assert len(m["x"]) == len(m["y"]) == len(m["color"]) == n == (1797 if r == 0 else 150)
        assert len(set(m["index"])) == n and 0 <= min(m["index"]) and max(m["index"]) < 1797
        assert max(m["color"]) < len(m["color_names"]) and set(m["color_names"]) <= {str(i) for i in range(10)}
        labels = [run.label_of(p) for p in m["index"]]
        assert [m["color_names"][c] for c in m["color"]] == labels


def test_point_image_and_reconstruction(client, explored):
    run = explored[1]
    on_map = int(run.map_index[3])
    point = client.get(f"/api/runs/1/point/{on_map}").json()
    assert point["id"] == on_map and point["label"] == run.label_of(on_map)
    np.testing.assert_allclose(point["z"], run.codes[on_map], rtol=1e-6)  # mu of a VAE
    assert (point["x"], point["y"]) == pytest.approx(tuple(run.map_xy[3]))
    off_map = next(p for p in range(1797) if p not in run.map_row)
    assert client.get(f"/api/runs/1/point/{off_map}").json()["x"] is None
    real = png_of(client.get(f"/api/runs/1/image/{on_map}"))
    assert real.shape == (96, 96)  # 8 px enlarged x12, nearest neighbour
    expected = np.round(np.asarray(run.image_of(on_map))[..., 0] * 255)
    np.testing.assert_allclose(real[::12, ::12], expected, atol=1)
    reco = png_of(client.get(f"/api/runs/1/reconstruction/{on_map}"))
    assert reco.shape == (192, 192)


def test_locate_on_a_map_point_is_that_point_and_between_points_a_blend(client, explored):
    run = explored[1]
    x, y = run.map_xy[5]
    hit = client.post("/api/runs/1/locate", json={"x": x, "y": y}).json()
    assert hit["neighbours"][0] == int(run.map_index[5]) and hit["weights"][0] == 1.0
    np.testing.assert_allclose(hit["z"], run.codes[run.map_index[5]], rtol=1e-6)
    between = client.post("/api/runs/1/locate", json={"x": x + 0.5, "y": y, "k": 4}).json()
    assert len(between["neighbours"]) == 4 and sum(between["weights"]) == pytest.approx(1.0)
    np.testing.assert_allclose(between["z"], np.array(between["weights"]) @ run.codes[between["neighbours"]],
                               rtol=1e-5, atol=1e-6)


def test_decode_returns_the_models_image_of_z(client, explored):
    run = explored[0]
    z = run.codes[10]
    image = png_of(client.post("/api/runs/0/decode", json={"z": z.tolist()}))
    assert image.shape == (192, 192)
    expected = np.round(np.clip(run.decoder(z[None])[0, ..., 0], 0, 1) * 255)
    np.testing.assert_allclose(image[::24, ::24], expected, atol=1)
    other = png_of(client.post("/api/runs/0/decode", json={"z": (z + 3).tolist()}))
    assert not np.array_equal(image, other)


@pytest.mark.parametrize("method", srv.Decoder.METHODS)
def test_every_decode_path_gives_the_models_decode(explored, method):
    network = explored[1].decoder.network
    decoder = srv.Decoder(network, method)
    z = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    from zspace.models.autoencoder import _predict_fixed_batches

    np.testing.assert_allclose(decoder(z), _predict_fixed_batches(network, z, 8), atol=1e-5)
    assert decoder(z[:1]).shape == (1, 8, 8, 1)
    with pytest.raises(ValueError, match="method"):
        srv.Decoder(network, "fast")


def test_directions_follow_the_contract(client, explored):
    d = client.get("/api/runs/1/directions").json()
    assert len(d["pca"]) == len(d["pca_std"]) == 3 and all(len(v) == 3 for v in d["pca"])
    assert d["attributes"] == {} and all(s > 0 for s in d["pca_std"])


@pytest.mark.parametrize("mode", ["linear", "spherical"])
def test_interpolate_gives_a_strip_of_steps(client, explored, mode):
    run = explored[1]
    body = {"a": run.codes[0].tolist(), "b": run.codes[1].tolist(), "steps": 5, "mode": mode}
    strip = png_of(client.post("/api/runs/1/interpolate", json=body))
    assert strip.shape == (96, 5 * 96 + 4 * 2)
    first = png_of(client.post("/api/runs/1/decode", json={"z": run.codes[0].tolist()}))
    np.testing.assert_array_equal(strip[:, :96][::12, ::12], first[::24, ::24])  # the strip starts at a


@pytest.mark.parametrize("body", [{"dist": "normal", "n": 6, "seed": 3},
                                  {"dist": "uniform", "n": 4, "r": 2.0, "seed": 1}])
def test_prior_samples_their_decodes_and_nearest_encoded_points(client, explored, body):
    run = explored[0]
    data = client.post("/api/runs/0/prior", json=body).json()
    n = body["n"]
    z = np.array(data["z"])
    assert z.shape == (n, 3) and len(data["images"]) == len(data["neighbours"]) == len(data["x"]) == n
    assert all(im.startswith("data:image/png;base64,") for im in data["images"])
    full = np.linalg.norm(z[:, None] - run.codes[None], axis=2)
    np.testing.assert_allclose(data["distances"], full.min(axis=1), rtol=1e-4, atol=1e-5)
    assert data["neighbours"] == full.argmin(axis=1).tolist()
    assert data["reference_distance"] == run.reference_distance > 0
    assert set(zip(data["x"], data["y"])) <= set(map(tuple, run.map_xy.tolist()))
    again = client.post("/api/runs/0/prior", json=body).json()
    assert again["z"] == data["z"]  # seeded


def test_neighbours_in_each_runs_own_z_space(client, explored):
    for r, run in enumerate(explored):
        data = client.get(f"/api/runs/{r}/neighbours/7?k=5").json()
        full = np.linalg.norm(run.codes - run.codes[7], axis=1)
        full[7] = np.inf
        assert 7 not in data["neighbours"] and len(data["neighbours"]) == 5
        np.testing.assert_allclose(data["distances"], np.sort(full)[:5], rtol=1e-4, atol=1e-5)


def test_the_page_files_are_served(client):
    for url, kind in [("/", "text/html"), ("/static/explorer.js", "text/javascript"),
                      ("/static/explorer.css", "text/css")]:
        response = client.get(url)
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "script-src 'self'" in response.headers["content-security-policy"]


# --- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["/api/runs/2/map", "/api/runs/99999999999999999999/map", "/api/runs/-1/map",
                                 "/api/runs/0/point/1797", "/api/runs/0/image/1797", "/api/runs/0/point/-1",
                                 "/api/runs/1/reconstruction/5000", "/api/runs/0/neighbours/1797",
                                 "/api/runs/x/map", "/api/nothing"])
def test_unknown_run_or_point_is_404(client, url):
    error_of(client.get(url), 404)


@pytest.mark.parametrize("z, reason", [
    ([0.0, 0.0], "must have 3 numbers"),
    ("0,0,0", "must be a list"),
    (None, "must be a list"),
    ([0, "1", 0], "numbers"),
    ([0, True, 0], "numbers"),
    ([1e308, 1e308, 0], "above the largest accepted norm"),
    ([0, 0, 1e6], "above the largest accepted norm"),
])
def test_a_bad_z_is_422_with_a_one_line_reason(client, z, reason):
    assert reason in error_of(client.post("/api/runs/0/decode", json={"z": z}), 422)


@pytest.mark.parametrize("raw", ['{"z": [0, NaN, 0]}', '{"z": [0, Infinity, 0]}', '{"z": [0, -Infinity, 0]}',
                                 '{"z": [0, 1' + "0" * 400 + ', 0]}'])
def test_non_finite_json_numbers_are_422(client, raw):
    assert "finite" in error_of(client.post("/api/runs/0/decode", content=raw), 422)


@pytest.mark.parametrize("body, status, reason", [
    ("not json", 400, "JSON"),
    ("[" * 50_000, 400, "JSON"),  # nested beyond the parser's recursion
    ("[1, 2]", 422, "JSON object"),
])
def test_a_body_that_is_not_a_json_object(client, body, status, reason):
    assert reason in error_of(client.post("/api/runs/0/decode", content=body), status)


@pytest.mark.parametrize("url, body, reason", [
    ("interpolate", {"a": [0, 0, 0], "b": [0, 0, 0], "steps": 17}, "steps"),
    ("interpolate", {"a": [0, 0, 0], "b": [0, 0, 0], "steps": 1}, "steps"),
    ("interpolate", {"a": [0, 0, 0], "b": [0, 0], "steps": 3}, "b: z must have 3"),
    ("interpolate", {"a": [0, 0, 0], "b": [0, 0, 0], "mode": "cubic"}, "mode"),
    ("prior", {"dist": "normal", "n": 65}, "n must be"),
    ("prior", {"dist": "normal", "n": 0}, "n must be"),
    ("prior", {"dist": "normal", "n": 2.5}, "n must be"),
    ("prior", {"dist": "cauchy", "n": 2}, "dist"),
    ("prior", {"dist": "uniform", "n": 2, "r": 1e9}, "r must be"),
    ("prior", {"dist": "uniform", "n": 2, "r": -1}, "r must be"),
    ("prior", {"dist": "normal", "n": 2, "seed": -1}, "seed"),
    ("locate", {"x": "1", "y": 0}, "x must be a number"),
    ("locate", {"x": 0}, "y must be a number"),
    ("locate", {"x": 0, "y": 1e999}, "finite"),
    ("locate", {"x": 0, "y": 0, "k": 65}, "k must be"),
])
def test_out_of_range_arguments_are_422(client, url, body, reason):
    raw = json.dumps(body).replace("Infinity", "1e999")
    assert reason in error_of(client.post(f"/api/runs/0/{url}", content=raw), 422)


@pytest.mark.parametrize("k", ["0", "65", "-1", "abc", "1e3", "٣", "9" * 40])
def test_neighbours_k_out_of_range_is_422(client, k):
    assert "k must be" in error_of(client.get(f"/api/runs/0/neighbours/1?k={k}"), 422)


def test_a_body_over_the_limit_is_413_by_its_length_and_when_streamed(client):
    big = json.dumps({"z": [0.0] * 3, "pad": "x" * srv.MAX_BODY_BYTES}).encode()
    assert "limit" in error_of(client.post("/api/runs/0/decode", content=big), 413)

    def chunks():  # no Content-Length: chunked transfer encoding
        for i in range(0, len(big), 4096):
            yield big[i:i + 4096]
    response = client.post("/api/runs/0/decode", content=chunks())
    assert "limit" in error_of(response, 413)
    fits = b'{"z": [0, 0, 0], "pad": "' + b"x" * (srv.MAX_BODY_BYTES - 100) + b'"}'
    assert client.post("/api/runs/0/decode", content=iter([fits[:1000], fits[1000:]])).status_code == 200


def test_the_body_limit_is_read_from_the_environment(explored, monkeypatch):
    monkeypatch.setenv("ZSPACE_EXPLORE_MAX_BODY_BYTES", "100")
    with TestClient(build_app(explored), base_url=BASE) as c:
        assert c.post("/api/runs/0/decode", json={"z": [0.0] * 3, "pad": "x" * 100}).status_code == 413
        assert c.post("/api/runs/0/decode", json={"z": [0.0] * 3}).status_code == 200


@pytest.mark.parametrize("host, status", [("127.0.0.1:8050", 200), ("localhost:8050", 200), ("127.0.0.1", 200),
                                          ("LOCALHOST", 200), ("localhost:1", 200), ("evil.example:8050", 400),
                                          ("127.0.0.1.evil.example", 400), ("localhost.evil.example", 400),
                                          ("0.0.0.0:8050", 400), ("", 400), ("[::1]:8050", 400)])
def test_a_foreign_host_header_is_refused(client, host, status):
    assert client.get("/api/runs", headers={"Host": host}).status_code == status


def test_host_names_of_other_binds():
    assert srv.allowed_hosts("127.0.0.1") == ["127.0.0.1", "localhost"]
    assert srv.allowed_hosts("192.168.1.5") == ["192.168.1.5"]  # no localhost: the bind is not loopback
    assert "localhost" in srv.allowed_hosts("::1") and "::1" in srv.allowed_hosts("::1")
    assert socket.gethostname().lower() in srv.allowed_hosts("0.0.0.0")
    assert srv.host_warning("127.0.0.1") is None and srv.host_warning("localhost") is None
    assert "warning" in srv.host_warning("0.0.0.0") and "0.0.0.0" in srv.host_warning("0.0.0.0")


@pytest.mark.parametrize("site, status", [("cross-site", 403), ("same-site", 403), ("same-origin", 200),
                                          ("none", 200)])
def test_cross_site_requests_are_refused(client, site, status):
    assert client.get("/api/runs", headers={"Sec-Fetch-Site": site}).status_code == status


TRAVERSALS = ["/static/../server.py", "/static/%2e%2e/server.py", "/static/%252e%252e/server.py",
              "/static/..%2fserver.py", "/static/%2e%2e%2f%2e%2e%2fcli.py", "/static/..\\server.py",
              "/static/%5c..%5cserver.py", "/static//etc/passwd", "/etc/passwd", "/static/", "/static",
              "/static/index.html", "/index.html", "/static/explorer.js/", "/static/./explorer.js",
              "/static/explorer.js%00.png", "/static/EXPLORER.JS", "/api/runs/0/image/../../server.py",
              "/api/runs/0/image/%2e%2e%2f1", "/__init__.py", "/static/../../../rundir.py"]


def asgi_get(app, raw_path: str) -> tuple[int, bytes]:
    """GET ``raw_path`` straight through the ASGI app, exactly as given (no client normalises it)."""
    from urllib.parse import unquote

    messages = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": unquote(raw_path), "raw_path": raw_path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8050")], "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8050)}
    asyncio.run(app(scope, receive, send))
    return messages[0]["status"], b"".join(m.get("body", b"") for m in messages[1:])


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_and_anything_but_the_three_files_is_404(explored, path):
    status, body = asgi_get(build_app(explored), path)
    assert status == 404 and json.loads(body)["error"]
    assert b"import" not in body and b"root:" not in body


def test_too_many_waiting_decodes_get_503_and_the_rest_complete(explored):
    release, entered = threading.Event(), threading.Semaphore(0)
    run = explored[0]
    original = run.decoder

    def slow(z):
        entered.release()
        release.wait(10)
        return original(z)

    run.decoder = slow
    try:
        with TestClient(build_app(explored, max_waiting=2), base_url=BASE) as c, ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(c.post, "/api/runs/0/decode", json={"z": zeros(run)}) for _ in range(6)]
            assert entered.acquire(timeout=10)  # one decode is running (and blocked)
            deadline = time.monotonic() + 10
            while sum(f.done() for f in futures) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            refused = [f.result() for f in futures if f.done()]
            assert len(refused) == 3 and all(r.status_code == 503 for r in refused)
            assert "busy" in refused[0].json()["error"]
            release.set()
            statuses = sorted(f.result().status_code for f in futures)
    finally:
        run.decoder = original
    assert statuses == [200, 200, 200, 503, 503, 503]


# --- start-up -------------------------------------------------------------------------------------------------
def test_a_session_leaves_the_run_folders_byte_for_byte_unchanged(run_dirs):
    folders = [run_dirs["ae"], run_dirs["vae"], run_dirs["bare"]]
    before = [snapshot(f) for f in folders]
    explored = open_runs(folders, compute=True)
    with TestClient(build_app(explored), base_url=BASE) as c:
        for r in range(3):
            assert c.get(f"/api/runs/{r}/map").status_code == 200
            assert c.get(f"/api/runs/{r}/image/3").status_code == 200
            assert c.get(f"/api/runs/{r}/reconstruction/3").status_code == 200
            assert c.post(f"/api/runs/{r}/decode", json={"z": [0.1] * 3}).status_code == 200
            assert c.post(f"/api/runs/{r}/prior", json={"dist": "normal", "n": 3}).status_code == 200
    assert [snapshot(f) for f in folders] == before


def test_a_run_without_analysis_needs_analyze_or_compute(run_dirs):
    with pytest.raises(RunError, match=r"zspace analyze .*--compute"):
        prepare_run(Run(run_dirs["bare"]), warm=False)
    computed = prepare_run(Run(run_dirs["bare"]), compute=True, warm=False)
    assert computed.computed and computed.projection == "pca" and computed.n_points == 1797


def test_an_analysis_of_other_images_is_refused(run_dirs, tmp_path):
    copy = tmp_path / "subset"
    shutil.copytree(run_dirs["ae"], copy)
    config = (copy / "config.toml").read_text()
    (copy / "config.toml").write_text(re.sub(r"(?m)^subset = \d+", "subset = 500", config))
    with pytest.raises(RunError, match="holds 1797 points but the run's 'all' split has"):
        prepare_run(Run(copy), warm=False)


def hostile_copy(run: Path, tmp_path: Path) -> Path:
    """The run with an extra member in model.keras (a file a Keras model never holds)."""
    copy = tmp_path / "hostile"
    shutil.copytree(run, copy)
    with zipfile.ZipFile(run / "model.keras") as source, zipfile.ZipFile(copy / "model.keras", "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
        target.writestr("assets/payload.py", b"print('hi')")
    return copy


def test_a_model_that_fails_safe_loading_is_refused(run_dirs, tmp_path):
    with pytest.raises(ModelFileError, match="model.keras"):
        prepare_run(Run(hostile_copy(run_dirs["vae"], tmp_path)), warm=False)


def test_runs_of_other_splits_are_not_comparable(explored, run_dirs, tmp_path):
    copy = tmp_path / "seed"
    shutil.copytree(run_dirs["ae"], copy)
    config = (copy / "config.toml").read_text()
    (copy / "config.toml").write_text(re.sub(r"(?m)^seed = \d+", "seed = 7", config, count=1))
    other = prepare_run(Run(copy), warm=False)
    assert comparable(explored) and not comparable([explored[0], other])


@pytest.mark.parametrize("case", ["bare", "hostile", "missing"])
def test_cli_start_up_errors_are_one_line(run_dirs, tmp_path, capsys, case):
    run = {"bare": run_dirs["bare"], "hostile": hostile_copy(run_dirs["ae"], tmp_path),
           "missing": tmp_path / "nothing"}[case]
    code = main(["explore", str(run), "--port", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("zspace: error:"), err
    assert {"bare": "zspace analyze", "hostile": "model.keras", "missing": "does not exist"}[case] in err[0]


def test_cli_port_in_use_is_one_line(run_dirs, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code = main(["explore", str(run_dirs["ae"]), "--port", str(port)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"zspace: error: port {port} on 127.0.0.1 is in use (another `zspace explore`?); "
                                 f"choose another with --port P."]


def test_connections_to_the_bound_socket_get_tcp_nodelay():
    """Without TCP_NODELAY each response on a kept-alive connection waited 40 ms for the client's delayed ACK."""
    sock = srv.bind_socket("127.0.0.1", 0)

    async def nodelay_of_a_connection() -> int:
        seen = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                seen.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP,
                                                                              socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)  # as uvicorn serves it
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(nodelay_of_a_connection()) != 0


def test_an_unexpected_failure_is_a_json_500_without_a_traceback(explored):
    run = explored[0]
    original = run.image_of

    def broken(p):
        raise OSError("disk gone at /secret/path")

    run.image_of = broken
    try:
        with TestClient(build_app(explored), base_url=BASE, raise_server_exceptions=False) as c:
            response = c.get("/api/runs/0/image/1")
    finally:
        run.image_of = original
    assert "OSError" in error_of(response, 500) and "/secret" not in response.text


def test_cli_warns_on_stderr_for_a_bind_beyond_loopback(run_dirs, capsys, monkeypatch):
    class NoServer:  # the command's real path up to uvicorn's loop, which is not entered
        def run(self, sockets):
            assert sockets[0].getsockname()[0] == "127.0.0.1"

    monkeypatch.setattr(srv, "make_server", lambda app: NoServer())
    monkeypatch.setattr(srv, "bind_socket", lambda host, port: socket.create_server(("127.0.0.1", 0)))
    assert main(["explore", str(run_dirs["ae"]), "--host", "0.0.0.0"]) == 0
    out, err = capsys.readouterr()
    assert err.strip().splitlines() == [srv.host_warning("0.0.0.0")]
    assert out.splitlines()[0].startswith("zspace explore: http://127.0.0.1:") and "stopped" in out


def test_cli_host_that_cannot_be_bound_is_one_line(run_dirs, capsys):
    assert main(["explore", str(run_dirs["ae"]), "--host", "no-such-host.invalid", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot listen on no-such-host.invalid:0" in err[0]


def raw_request(port: int, path: str, host: str) -> tuple[int, bytes]:
    """One HTTP/1.1 request over a plain socket, the path and Host header sent exactly as given."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_a_real_uvicorn_server_refuses_a_rebinding_host_and_traversal(explored):
    """The app on uvicorn over a real socket (in a thread): what reaches the app is what a browser sends."""
    with srv.serving(build_app(explored)) as port:
        assert raw_request(port, "/api/runs", f"127.0.0.1:{port}")[0] == 200
        status, body = raw_request(port, "/api/runs", f"rebound.attacker.example:{port}")
        assert status == 400 and b"runs" not in body
        for path in ["/static/../server.py", "/static/%2e%2e/server.py", "/static/%252e%252e/server.py",
                     "/static/..%5cserver.py", "/..%2f..%2fetc/passwd"]:
            assert raw_request(port, path, f"127.0.0.1:{port}")[0] == 404, path
        with pytest.raises(RunError, match=f"port {port} on 127.0.0.1 is in use"):
            srv.bind_socket("127.0.0.1", port)


@pytest.mark.slow
def test_the_real_server_from_the_cli(run_dirs):
    """`zspace explore` prints its URL, answers over HTTP, refuses a rebinding Host and traversal, stops on Ctrl-C."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen([sys.executable, "-m", "zspace.cli", "explore", str(run_dirs["ae"]),
                                str(run_dirs["vae"]), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        line = process.stdout.readline()
        match = re.match(r"zspace explore: http://127\.0\.0\.1:(\d+)/ ", line)
        assert match, (line, process.stderr.read() if process.poll() is not None else "")
        port = int(match.group(1))
        status, body = raw_request(port, "/api/runs", f"127.0.0.1:{port}")
        assert status == 200 and len(json.loads(body)["runs"]) == 2
        assert raw_request(port, "/api/runs", f"localhost:{port}")[0] == 200
        assert raw_request(port, "/api/runs", f"attacker.example:{port}")[0] == 400
        for path in ["/static/../server.py", "/static/%2e%2e/server.py", "/static/%252e%252e/server.py",
                     "/../../etc/passwd", "/static/..%5cserver.py"]:
            assert raw_request(port, path, f"127.0.0.1:{port}")[0] == 404, path
        with socket.socket() as again:  # the port is really taken by the server
            with pytest.raises(OSError):
                again.bind(("127.0.0.1", port))
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert "stopped" in out and "Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_sigterm_stops_the_cli_server_like_ctrl_c(run_dirs):
    """A scheduler's or `kill`'s SIGTERM: graceful stop, the "stopped" line, exit 0 (uvicorn re-raised it into the
    default handler, which ended the process without a word)."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen([sys.executable, "-m", "zspace.cli", "explore", str(run_dirs["ae"]), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        assert line.startswith("zspace explore: http://127.0.0.1:"), (line, process.stderr.read())
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert "zspace explore: stopped" in out and "Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
