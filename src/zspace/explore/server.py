"""``zspace explore``: a local Starlette app over one or more analysed runs, served by uvicorn.

The HTTP contract is the one the page (``static/``) uses; every endpoint is listed in :func:`build_app`.

Security (a server on localhost is still reachable from every page the browser opens):

* binds 127.0.0.1 unless told otherwise (:func:`serve` warns for any other host);
* a request whose ``Host`` header is not the bound host or address (or localhost / 127.0.0.1 when bound to a
  loopback address), with or without the port, gets 400 (Starlette's TrustedHostMiddleware): a page of
  another site cannot reach the server through DNS rebinding;
* a request a browser marks as coming from another site (``Sec-Fetch-Site: cross-site`` / ``same-site``)
  gets 403, so no other page can make the browser use the explorer for it;
* only the three files of the page are served, by a fixed table of URL -> packaged file; no path from a
  request ever reaches the file system, and nothing lists folders;
* request bodies are at most ``ZSPACE_EXPLORE_MAX_BODY_BYTES`` (:data:`MAX_BODY_BYTES`, 64 KiB), checked on
  Content-Length and again while a chunked body streams in: 413 beyond; a body still incomplete after
  ``ZSPACE_EXPLORE_BODY_TIMEOUT_S`` (:data:`BODY_TIMEOUT_S`, 10 s) gets 408, and a connection whose request
  headers are incomplete after ``ZSPACE_EXPLORE_HEADER_TIMEOUT_S`` (:data:`HEADER_TIMEOUT_S`, 10 s) is closed;
* an analysis is checked at start-up beyond what loading it checks: z components within
  :data:`MAX_CODE_ABS`, a map with as many positions as point ids, recorded as of the run's dataset;
* every z is checked (:func:`zspace.explore.space.check_z`): z_dim finite numbers of L2 norm at most the
  run's ``max_norm``, else 422 with one line; every count (steps, samples, neighbours) has a bound;
* at most one decode runs at a time, off the event loop, and at most ``ZSPACE_EXPLORE_MAX_WAITING_DECODES``
  (:data:`MAX_WAITING_DECODES`, 4) wait for it: 503 beyond, so sliding never queues work without bound;
* nothing is written anywhere: the runs are opened read-only (config, safe-loaded model, analysis, data).
"""

from __future__ import annotations

import base64
import errno
import io
import json
import math
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np

from zspace.errors import ConfigError, RunError
from zspace.explore import space
from zspace.model_size import env_limit

__all__ = ["ExploredRun", "Decoder", "open_runs", "prepare_run", "build_app", "serve", "bind_socket",
           "allowed_hosts", "comparable", "MAX_BODY_BYTES", "MAX_WAITING_DECODES", "DEFAULT_PORT"]

DEFAULT_PORT = 8050
MAX_BODY_BYTES = 64 * 2**10
"""Largest request body (``ZSPACE_EXPLORE_MAX_BODY_BYTES``): the largest valid one, two z of z_dim 1,600
in JSON, is about 40 KiB."""
MAX_WAITING_DECODES = 4
"""Decode requests that may wait while one runs (``ZSPACE_EXPLORE_MAX_WAITING_DECODES``); more get 503."""
MAX_CONNECTIONS = 64
"""Open connections and requests in progress uvicorn allows (503 beyond): one page needs a handful."""
N_DIRECTIONS = 8
"""PCA directions offered as sliders (fewer when z_dim is smaller)."""
MAX_NEIGHBOURS = 64
"""Largest k of /neighbours and /locate."""
MAX_PRIOR_SAMPLES = 64
MAX_STEPS = 16
DECODE_SIDE = 192
"""Decoded images are enlarged (nearest neighbour, a whole factor) to at least this many pixels a side."""
IMAGE_SIDE = 96
"""Real images: at least this many pixels a side."""
MAX_CODE_ABS = 1e6
"""Largest |component| of an analysis' z the explorer serves: far beyond any encoder's output (a diverged
model or a crafted analysis.npz beyond it is refused at start-up), and small enough that squared distances
and norms of z_dim 10^4 such components stay finite in float32."""
BODY_TIMEOUT_S = 10
"""Seconds a request body may take to arrive in full (``ZSPACE_EXPLORE_BODY_TIMEOUT_S``): the page's bodies
are under 1 KiB; a client trickling one in (slow loris) gets 408 and its connection back."""
HEADER_TIMEOUT_S = 10
"""Seconds a connection may take to send a request's headers in full (``ZSPACE_EXPLORE_HEADER_TIMEOUT_S``), from
its opening or from the previous response: uvicorn starts no timer before the first response, so a client
that sends half a request line held its connection (one of :data:`MAX_CONNECTIONS`) for good."""
_STATIC = {  # URL path -> (packaged file, media type): the only files the server ever reads for a request
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/explorer.js": ("explorer.js", "text/javascript; charset=utf-8"),
    "/static/explorer.css": ("explorer.css", "text/css; charset=utf-8"),
}
_LOOPBACK_NAMES = ("localhost", "127.0.0.1")
_WILDCARDS = ("0.0.0.0", "::", "")
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
                                "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                                "form-action 'none'"),
}


def max_body_bytes() -> int:
    return env_limit("ZSPACE_EXPLORE_MAX_BODY_BYTES", MAX_BODY_BYTES)


def max_waiting_decodes() -> int:
    return env_limit("ZSPACE_EXPLORE_MAX_WAITING_DECODES", MAX_WAITING_DECODES)


def body_timeout_s() -> float:
    return float(env_limit("ZSPACE_EXPLORE_BODY_TIMEOUT_S", BODY_TIMEOUT_S))


def header_timeout_s() -> float:
    return float(env_limit("ZSPACE_EXPLORE_HEADER_TIMEOUT_S", HEADER_TIMEOUT_S))


# ---------------------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------------------
class Decoder:
    """A warm decode path of a run's decoder: z (n, d) float32 -> images (n, H, W, C) float32 in [0, 1].

    ``method``:
        "jit": a backend-compiled function of the decoder (TensorFlow: ``tf.function`` with a (None, d)
            input signature, one trace for every batch size; JAX: ``jax.jit`` of the stateless call;
            torch: the call under ``torch.no_grad``), the fastest (benchmarks/explore_latency.py);
        "predict_on_batch": Keras' predict function (compiled, plus Keras' batch bookkeeping);
        "call": the model called eagerly.
    """

    METHODS = ("jit", "predict_on_batch", "call")

    def __init__(self, network, method: str = "jit"):
        if method not in self.METHODS:
            raise ValueError(f"`method` must be one of {self.METHODS}. Received: {method!r}")
        self.network = network
        self.method = method
        self.z_dim = int(network.inputs[0].shape[-1])
        self._fn = self._make(method)
        self._lock = threading.Lock()  # one decode at a time per model (JAX state, torch modules)

    def _make(self, method: str) -> Callable[[np.ndarray], Any]:
        import keras

        net = self.network
        if method == "predict_on_batch":
            return net.predict_on_batch
        if method == "call":
            return lambda z: net(z, training=False)
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            return tf.function(lambda z: net(z, training=False), reduce_retracing=True,
                               input_signature=[tf.TensorSpec((None, self.z_dim), tf.float32)])
        if backend == "jax":
            import jax

            trainable = [v.value for v in net.trainable_variables]
            non_trainable = [v.value for v in net.non_trainable_variables]
            jitted = jax.jit(lambda tv, ntv, z: net.stateless_call(tv, ntv, z, training=False)[0])
            return lambda z: jitted(trainable, non_trainable, z)
        if backend == "torch":
            import torch

            def call(z):
                with torch.no_grad():
                    return net(z, training=False)
            return call
        return lambda z: net(z, training=False)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        import keras

        z = np.ascontiguousarray(z, np.float32).reshape(-1, self.z_dim)
        with self._lock:
            out = self._fn(z)
            return np.asarray(keras.ops.convert_to_numpy(out), np.float32)

    def warm_up(self, batch_sizes=(1, 2)) -> None:
        """Traces and runs the decode once per batch size, so the first request pays no compile."""
        for n in batch_sizes:
            self(np.zeros((n, self.z_dim), np.float32))


# ---------------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------------
def _scale_for(size: int, at_least: int) -> int:
    return max(1, math.ceil(at_least / max(size, 1)))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W, C) float in [0, 1] -> (H, W) grey or (H, W, 3) RGB uint8 (the first channel of other C)."""
    image = np.nan_to_num(np.asarray(image, np.float32), nan=0.0)
    pixels = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if pixels.ndim == 2:
        return pixels
    return pixels if pixels.shape[-1] == 3 else pixels[..., 0]


def png_bytes(images: np.ndarray, at_least: int, gap: int = 0) -> bytes:
    """PNG of images (n, H, W, C) in [0, 1] side by side (a strip when n > 1), enlarged by the smallest whole
    factor (nearest neighbour) that makes each at least ``at_least`` pixels high; ``gap`` white pixels between."""
    from PIL import Image

    pixels = [_to_uint8(im) for im in images]
    factor = _scale_for(pixels[0].shape[0], at_least)
    pixels = [np.repeat(np.repeat(p, factor, axis=0), factor, axis=1) for p in pixels]
    if len(pixels) > 1:
        white = np.full((pixels[0].shape[0], gap, *pixels[0].shape[2:]), 255, np.uint8)
        parts = [part for p in pixels for part in (p, white)][:-1] if gap else pixels
        strip = np.concatenate(parts, axis=1)
    else:
        strip = pixels[0]
    buffer = io.BytesIO()
    Image.fromarray(strip).save(buffer, format="PNG", compress_level=1)  # level 1: fast, little larger
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# The runs
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class ExploredRun:
    """What the explorer serves of one run, prepared once at start-up.

    Attributes:
        codes: (n, d) the z of each point as the explorer uses it: mu for a VAE (the point's code, without
            the sampling noise of the analysed z), z for an AE.
        map_index: (m,) point ids on the map; map_xy: (m, 2) their map coordinates.
        colors: (m,) index into ``color_names`` per map point, or None.
        image_of: point id -> its real image (H, W, C) float32 in [0, 1].
        compare_key: equal for runs whose point ids name the same images (:func:`comparable`).
    """

    name: str
    kind: str
    z_dim: int
    image_shape: tuple[int, ...]
    codes: np.ndarray
    labels: np.ndarray | None
    class_names: list[str]
    attribute_names: list[str]
    color_by: str | None
    projection: str
    map_index: np.ndarray
    map_xy: np.ndarray
    colors: np.ndarray | None
    color_names: list[str]
    pca: np.ndarray
    pca_std: np.ndarray
    attributes: dict[str, np.ndarray]
    max_norm: float
    prior_radius: float
    reference_distance: float
    image_of: Callable[[int], np.ndarray]
    decoder: Decoder | Callable[[np.ndarray], np.ndarray]
    compare_key: tuple
    root: Path | None = None
    computed: bool = False
    map_row: dict[int, int] = field(default_factory=dict)
    map_codes: np.ndarray | None = None

    def __post_init__(self):
        self.map_row = {int(p): i for i, p in enumerate(self.map_index)}
        self.map_codes = np.ascontiguousarray(self.codes[self.map_index])

    @property
    def n_points(self) -> int:
        return len(self.codes)

    def label_of(self, p: int) -> str | None:
        if self.labels is None:
            return None
        value = int(self.labels[p])
        if 0 <= value < len(self.class_names):
            return self.class_names[value]
        return None if value < 0 else str(value)


def _expected_points(run, split: str) -> int:
    data = run.split
    return {"all": len(data.x_train) + len(data.x_val), "train": len(data.x_train),
            "validation": len(data.x_val)}[split]


def _image_reader(run, split: str) -> Callable[[int], np.ndarray]:
    """point id -> image, in the order ``zspace analyze`` encoded them ("all": train, then validation)."""
    data = run.split
    n_train = len(data.x_train)

    def image(p: int) -> np.ndarray:
        if split == "validation":
            return np.asarray(data.x_val[p], np.float32)
        if p < n_train:
            return np.asarray(data.x_train[p], np.float32)
        return np.asarray(data.x_val[p - n_train], np.float32)
    return image


def _computed_analysis(run):
    """An analysis made in memory (encode + PCA map, no t-SNE or clustering); nothing is written."""
    from zspace.analysis import analyze_run
    from zspace.config import AnalysisConfig

    config = AnalysisConfig().with_overrides({"tsne_sizes": [], "k_min": 1, "k_max": 1, "color_by": "label"})
    return analyze_run(run, config, save=False)


def _map_of(analysis, path) -> tuple[str, np.ndarray, np.ndarray]:
    """(projection name, point ids, (m, 2) coordinates): the first t-SNE fit, else the PCA scatter.

    Raises:
        RunError: the ids and coordinates differ in number, or the map is empty (not ``zspace analyze``'s).
    """
    if analysis.tsne:
        fit = analysis.tsne[0]
        name, (indices, xy) = f"tsne_p{fit.perplexity:g}", analysis.embedding(fit.name)
    else:
        name, (indices, xy) = "pca", analysis.embedding("pca")
    if len(indices) != len(xy) or not len(indices):
        raise RunError(f"{path}: the {name} map has {len(indices)} point ids and {len(xy)} positions (a damaged "
                       f"analysis); run `zspace analyze` again.")
    return name, indices, xy


def _check_codes(codes: np.ndarray, path) -> None:
    """RunError when a z component is beyond :data:`MAX_CODE_ABS` (see there)."""
    largest = float(np.abs(codes).max(initial=0.0))
    if largest > MAX_CODE_ABS:
        raise RunError(f"{path}: holds z components up to {largest:.3g}, beyond the {MAX_CODE_ABS:g} the explorer "
                       f"serves (a diverged model?); run `zspace analyze` again.")


def _colors_of(analysis, index: np.ndarray, label_names) -> tuple[np.ndarray | None, list[str]]:
    colors = analysis.colors
    if colors is None:
        return None, []
    values = np.asarray(colors)[index].astype(np.int64)
    distinct = np.unique(values)
    if analysis.color_by not in (None, "label"):  # an attribute: 0 without, 1 with
        names = [f"not {analysis.color_by}" if v == 0 else analysis.color_by for v in distinct]
    else:
        names = [label_names[v] if 0 <= v < len(label_names) else ("unlabelled" if v < 0 else str(v))
                 for v in distinct]
    return np.searchsorted(distinct, values).astype(np.int64), [str(n) for n in names]


def prepare_run(run, compute: bool = False, decode_method: str = "jit", warm: bool = True) -> ExploredRun:
    """Loads and checks one run for the explorer (reads only).

    Raises:
        RunError: no analysis (unless ``compute``), an analysis of other images than the run's split, or of
            another z_dim. ModelFileError: the model fails the safe-loading checks.
    """
    from zspace.errors import ModelFileError

    if not run.has_analysis() and not compute:
        raise RunError(f"{run.root} has no analysis (analysis.json + analysis.npz); run `zspace analyze {run.root}` "
                       f"first, or start the explorer with --compute (encodes and projects in memory, writes nothing).")
    try:
        model = run.model
    except ModelFileError:
        raise
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{run.model_path}: cannot be loaded ({str(exc)[:200]}).") from None
    analysis = run.load_analysis() if run.has_analysis() else _computed_analysis(run)
    split = analysis.config.split
    expected = _expected_points(run, split)
    if analysis.n_points != expected:
        raise RunError(f"{run.analysis_npz}: holds {analysis.n_points} points but the run's {split!r} split has "
                       f"{expected} images (an analysis of other data?); run `zspace analyze {run.root}` again.")
    if analysis.run is not None and analysis.run.dataset != run.data.name:
        raise RunError(f"{run.analysis_json}: an analysis of dataset {analysis.run.dataset!r} but {run.root} holds "
                       f"{run.data.name!r} (config.toml changed?); run `zspace analyze {run.root}` again.")
    model_z_dim = int(model.model_config.z_dim)
    if analysis.z_dim != model_z_dim:
        raise RunError(f"{run.analysis_npz}: z_dim {analysis.z_dim} but the model's is {model_z_dim}; "
                       f"run `zspace analyze {run.root}` again.")
    codes = np.asarray(analysis.arrays["mu" if analysis.is_vae else "z"], np.float32)
    _check_codes(codes, run.analysis_npz)
    projection, index, xy = _map_of(analysis, run.analysis_npz)
    label_names = list(run.data.label_names)
    colors, color_names = _colors_of(analysis, index, label_names)
    pca, pca_std = space.pca_directions(codes, min(N_DIRECTIONS, model_z_dim))
    attribute_names = list(analysis.attributes.names) if analysis.attributes else []
    radius = space.prior_radius(codes)
    decoder = Decoder(model.decoder, decode_method)
    if warm:
        decoder.warm_up()
    t = run.config.train
    labels = analysis.arrays.get("labels")
    compare_key = (t.dataset, t.validation_split, t.subset, t.seed, split, analysis.n_points,
                   tuple(run.config.model.input_shape),
                   None if labels is None else hash(np.asarray(labels, np.int64).tobytes()))
    return ExploredRun(
        name=run.name, kind=analysis.kind, z_dim=model_z_dim, image_shape=tuple(run.config.model.input_shape),
        codes=codes, labels=None if labels is None else np.asarray(labels, np.int64), class_names=label_names,
        attribute_names=attribute_names, color_by=analysis.color_by, projection=projection,
        map_index=np.asarray(index, np.int64), map_xy=np.asarray(xy, np.float64), colors=colors,
        color_names=color_names, pca=pca, pca_std=pca_std,
        attributes=space.attribute_directions(attribute_names, analysis.arrays.get("attribute_vectors")),
        max_norm=space.max_norm(codes, radius), prior_radius=radius,
        reference_distance=space.typical_spacing(codes), image_of=_image_reader(run, split),
        decoder=decoder, compare_key=compare_key, root=run.root, computed=not run.has_analysis(),
    )


def open_runs(paths, compute: bool = False, decode_method: str = "jit") -> list[ExploredRun]:
    """:func:`prepare_run` of each run directory, in order."""
    from zspace.rundir import Run

    return [prepare_run(Run.open(p), compute, decode_method) for p in paths]


def comparable(runs: list[ExploredRun]) -> bool:
    """Whether point ids name the same images in every run: the same dataset string, validation split,
    subset and seed (so the same train / validation split), the same analysed split and number of points,
    the same image shape and the same labels. Then AE and VAE of one dataset can be shown side by side."""
    return len(runs) > 0 and all(r.compare_key == runs[0].compare_key for r in runs)


# ---------------------------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------------------------
def allowed_hosts(host: str) -> list[str]:
    """Host header names the server answers: the bound host, plus localhost / 127.0.0.1 for a loopback bind;
    a wildcard bind (0.0.0.0, ::) answers this machine's name and addresses as well."""
    names = {host.lower().strip("[]")} - {""}
    if host in _WILDCARDS or _is_loopback(host):
        names.update(_LOOPBACK_NAMES)
    if host in _WILDCARDS:
        hostname = socket.gethostname()
        names.update({hostname.lower(), socket.getfqdn().lower()})
        try:
            names.update(socket.gethostbyname_ex(hostname)[2])
        except OSError:
            pass
        names -= set(_WILDCARDS)
    # A browser sends an IPv6 literal in brackets ("Host: [::1]:8050") and Starlette compares it so.
    return sorted(names | {f"[{name}]" for name in names if ":" in name})


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _BodyTooLarge(Exception):
    pass


class _Limits:
    """Pure ASGI middleware: body size (413), cross-site requests (403) and security headers on every response."""

    def __init__(self, app, max_body: int):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        site = headers.get(b"sec-fetch-site", b"").decode("latin-1").lower()
        if site in ("cross-site", "same-site"):
            await _send_error(send, 403, "cross-site requests are refused (the explorer serves its own page only)")
            return
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                await _send_error(send, 400, "Content-Length is not a number")
                return
            if declared > self.max_body:
                await _send_error(send, 413, f"request body of {declared} bytes; the limit is {self.max_body}")
                return
        received = 0
        started = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge()
            return message

        async def secured_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = dict(message)
                message["headers"] = [*message.get("headers", []),
                                      *[(k.lower().encode(), v.encode()) for k, v in _SECURITY_HEADERS.items()]]
            await send(message)

        try:
            await self.app(scope, counted_receive, secured_send)
        except _BodyTooLarge:
            if not started:
                await _send_error(send, 413, f"request body over {self.max_body} bytes (the limit)")


async def _send_error(send, status: int, reason: str) -> None:
    body = json.dumps({"error": reason}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *[(k.lower().encode(), v.encode()) for k, v in _SECURITY_HEADERS.items()]]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once from the package by the fixed table :data:`_STATIC`."""
    folder = resources.files("zspace.explore") / "static"
    return {url: ((folder / name).read_bytes(), media) for url, (name, media) in _STATIC.items()}


class DecodeGate:
    """One decode at a time, off the event loop; at most ``max_waiting`` more wait, the rest get 503."""

    def __init__(self, max_waiting: int):
        import anyio

        self.max_waiting = max_waiting
        self.limiter = anyio.CapacityLimiter(1)
        self.pending = 0  # only touched on the event loop's thread

    async def run(self, fn, *args):
        from anyio import to_thread
        from starlette.exceptions import HTTPException

        if self.pending > self.max_waiting:
            raise HTTPException(503, f"busy: {self.pending} decodes running or waiting; retry the latest only")
        self.pending += 1
        try:
            return await to_thread.run_sync(fn, *args, limiter=self.limiter)
        finally:
            self.pending -= 1


def build_app(runs: list[ExploredRun], host: str = "127.0.0.1", max_body: int | None = None,
              max_waiting: int | None = None):
    """The Starlette app of ``runs`` (run id = position in the list), answering only ``host``'s names.

    Endpoints (all JSON but the images; errors are ``{"error": "one line"}``): ``GET /``, the page's
    ``/static/explorer.js`` and ``/static/explorer.css``; ``GET /api/runs``; per run ``r``: ``GET map``,
    ``image/{p}``, ``point/{p}``, ``directions``, ``neighbours/{p}?k=``, ``reconstruction/{p}``, and ``POST``
    ``locate``, ``decode``, ``interpolate``, ``prior`` (see /work/notes/explore-api.md, the page's contract).
    """
    from starlette.applications import Starlette
    import anyio
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    max_body = max_body_bytes() if max_body is None else max_body
    body_timeout = body_timeout_s()
    gate = DecodeGate(max_waiting_decodes() if max_waiting is None else max_waiting)
    static = _static_files()
    is_comparable = comparable(runs)
    map_cache: dict[int, bytes] = {}

    def fail(status: int, reason: str):
        raise HTTPException(status, reason)

    def run_of(request: Request) -> ExploredRun:
        r = request.path_params["r"]
        if not 0 <= r < len(runs):
            fail(404, f"no run {r}; runs are 0..{len(runs) - 1}")
        return runs[r]

    def point_of(request: Request, run: ExploredRun) -> int:
        p = request.path_params["p"]
        if not 0 <= p < run.n_points:
            fail(404, f"no point {p} in run {run.name}; points are 0..{run.n_points - 1}")
        return p

    async def body_of(request: Request) -> dict:
        raw = b""
        try:
            with anyio.fail_after(body_timeout):
                async for chunk in request.stream():  # the middleware counts and stops an oversized body
                    raw += chunk
        except TimeoutError:
            fail(408, f"the request body took over {body_timeout:g} s to arrive")
        except ClientDisconnect:  # nobody to answer; no traceback in the server's output
            fail(400, "the client went away before sending the whole body")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            fail(400, "the request body must be JSON")
        if not isinstance(data, dict):
            fail(422, "the request body must be a JSON object")
        return data

    def z_of(value, run: ExploredRun, name: str = "z") -> np.ndarray:
        try:
            return space.check_z(value, run.z_dim, run.max_norm)
        except ValueError as exc:
            fail(422, f"{name}: {exc}" if name != "z" else str(exc))

    def integer(data: dict, key: str, low: int, high: int, default: int | None = None) -> int:
        value = data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            fail(422, f"{key} must be an integer in [{low}, {high}]; received {str(value)[:40]}")
        return value

    def number(data: dict, key: str, default: float | None = None) -> float:
        value = data.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            fail(422, f"{key} must be a number; received {str(value)[:40]}")
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            fail(422, f"{key} must be finite")
        return value

    def png(data: bytes) -> Response:
        return Response(data, media_type="image/png")

    async def decode_png(run: ExploredRun, z: np.ndarray, at_least: int, gap: int = 0) -> bytes:
        return await gate.run(lambda: png_bytes(run.decoder(z), at_least, gap))

    async def page(request: Request) -> Response:
        body, media = static[request.url.path]
        return Response(body, media_type=media)

    async def list_runs(request: Request) -> Response:
        return JSONResponse({"runs": [_run_json(i, r) for i, r in enumerate(runs)], "comparable": is_comparable})

    async def map_(request: Request) -> Response:
        run = run_of(request)
        r = request.path_params["r"]
        if r not in map_cache:
            map_cache[r] = json.dumps({
                "x": run.map_xy[:, 0].round(4).tolist(), "y": run.map_xy[:, 1].round(4).tolist(),
                "index": run.map_index.tolist(), "color": None if run.colors is None else run.colors.tolist(),
                "color_names": run.color_names}).encode()
        return Response(map_cache[r], media_type="application/json")

    async def image(request: Request) -> Response:
        run = run_of(request)
        p = point_of(request, run)
        return png(png_bytes(run.image_of(p)[None], IMAGE_SIDE))

    async def point(request: Request) -> Response:
        run = run_of(request)
        p = point_of(request, run)
        row = run.map_row.get(p)
        xy = (None, None) if row is None else (float(run.map_xy[row, 0]), float(run.map_xy[row, 1]))
        return JSONResponse({"id": p, "z": run.codes[p].tolist(), "label": run.label_of(p), "x": xy[0], "y": xy[1]})

    async def locate(request: Request) -> Response:
        run = run_of(request)
        data = await body_of(request)
        at = (number(data, "x"), number(data, "y"))
        k = integer(data, "k", 1, MAX_NEIGHBOURS, 8)
        z, rows, weights = space.blend_nearest(run.map_xy, run.map_codes, at, k)
        return JSONResponse({"z": z.tolist(), "neighbours": run.map_index[rows].tolist(), "weights": weights.tolist()})

    async def decode(request: Request) -> Response:
        run = run_of(request)
        data = await body_of(request)
        z = z_of(data.get("z"), run)
        return png(await decode_png(run, z[None], DECODE_SIDE))

    async def directions(request: Request) -> Response:
        run = run_of(request)
        return JSONResponse({"pca": run.pca.tolist(), "pca_std": run.pca_std.tolist(),
                             "attributes": {k: v.tolist() for k, v in run.attributes.items()}})

    async def interpolate(request: Request) -> Response:
        run = run_of(request)
        data = await body_of(request)
        a, b = z_of(data.get("a"), run, "a"), z_of(data.get("b"), run, "b")
        steps = integer(data, "steps", 2, MAX_STEPS, 8)
        mode = data.get("mode", "linear")
        if mode not in ("linear", "spherical"):
            fail(422, f'mode must be "linear" or "spherical"; received {str(mode)[:40]}')
        return png(await decode_png(run, space.interpolate(a, b, steps, mode), DECODE_SIDE // 2, gap=2))

    async def prior(request: Request) -> Response:
        run = run_of(request)
        data = await body_of(request)
        dist = data.get("dist", "normal")
        if dist not in ("normal", "uniform"):
            fail(422, f'dist must be "normal" or "uniform"; received {str(dist)[:40]}')
        n = integer(data, "n", 1, MAX_PRIOR_SAMPLES, 16)
        seed = integer(data, "seed", 0, 2**32 - 1, 0)
        r = 1.0
        if dist == "uniform":
            r = number(data, "r", 1.0)
            if not 0 < r <= run.prior_radius:
                fail(422, f"r must be in (0, {run.prior_radius:g}] (prior_radius); received {r:g}")
        z = space.prior_samples(dist, n, run.z_dim, r, seed)

        def work():
            images = run.decoder(z)
            return images, space.nearest_neighbours(run.codes, z, 1)
        images, (nearest, distances) = await gate.run(work)
        map_nearest, _ = space.nearest_neighbours(run.map_codes, z, 1)
        xy = run.map_xy[map_nearest[:, 0]]
        return JSONResponse({
            "z": z.tolist(),
            "images": ["data:image/png;base64," + base64.b64encode(png_bytes(im[None], IMAGE_SIDE)).decode()
                       for im in images],
            "neighbours": nearest[:, 0].tolist(), "distances": distances[:, 0].tolist(),
            "reference_distance": run.reference_distance, "x": xy[:, 0].tolist(), "y": xy[:, 1].tolist()})

    async def neighbours(request: Request) -> Response:
        run = run_of(request)
        p = point_of(request, run)
        raw = request.query_params.get("k", "8")
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 4 and 1 <= int(raw) <= MAX_NEIGHBOURS):
            fail(422, f"k must be an integer in [1, {MAX_NEIGHBOURS}]; received {raw[:40]!r}")
        k = min(int(raw), run.n_points - 1) if run.n_points > 1 else 0
        idx, dist = space.nearest_neighbours(run.codes, run.codes[p][None], k + 1)
        keep = idx[0] != p  # the point itself is its own nearest
        return JSONResponse({"neighbours": idx[0][keep][:k].tolist(), "distances": dist[0][keep][:k].tolist()})

    async def reconstruction(request: Request) -> Response:
        run = run_of(request)
        p = point_of(request, run)
        return png(await decode_png(run, run.codes[p][None], DECODE_SIDE))

    async def error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    async def crash(request: Request, exc: Exception) -> Response:  # the traceback goes to the server's log only
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server's output"},
                            status_code=500)

    routes = [Route(url, page, methods=["GET"]) for url in _STATIC]
    routes += [
        Route("/api/runs", list_runs, methods=["GET"]),
        Route("/api/runs/{r:int}/map", map_, methods=["GET"]),
        Route("/api/runs/{r:int}/image/{p:int}", image, methods=["GET"]),
        Route("/api/runs/{r:int}/point/{p:int}", point, methods=["GET"]),
        Route("/api/runs/{r:int}/locate", locate, methods=["POST"]),
        Route("/api/runs/{r:int}/decode", decode, methods=["POST"]),
        Route("/api/runs/{r:int}/directions", directions, methods=["GET"]),
        Route("/api/runs/{r:int}/interpolate", interpolate, methods=["POST"]),
        Route("/api/runs/{r:int}/prior", prior, methods=["POST"]),
        Route("/api/runs/{r:int}/neighbours/{p:int}", neighbours, methods=["GET"]),
        Route("/api/runs/{r:int}/reconstruction/{p:int}", reconstruction, methods=["GET"]),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host), www_redirect=False),
                  Middleware(_Limits, max_body=max_body)]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: error, Exception: crash})
    app.router.redirect_slashes = False  # "/static/explorer.js/" is no file: 404, not a redirect to one
    app.state.gate = gate
    return app


def _run_json(i: int, run: ExploredRun) -> dict:
    return {"id": i, "name": run.name, "kind": run.kind, "z_dim": run.z_dim, "image_shape": list(run.image_shape),
            "n_points": run.n_points, "projection": run.projection, "color_by": run.color_by,
            "class_names": run.class_names, "attribute_names": run.attribute_names,
            "n_directions": len(run.pca), "max_norm": run.max_norm, "prior_radius": run.prior_radius,
            "reference_distance": run.reference_distance, "computed": run.computed}


# ---------------------------------------------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------------------------------------------
def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port) (port 0: a free one).

    Raises:
        RunError: the port is in use, or the address cannot be bound here (one line naming both).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections whose socket says TCP, and without
    # it Nagle's algorithm holds each response's body until the client's delayed ACK (+40 ms per request on a
    # kept-alive connection).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free; a listener is not
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise RunError(f"port {port} on {host} is in use (another `zspace explore`?); choose another with "
                           f"--port P.") from None
        raise RunError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); check --host and --port.") from None
    except OverflowError:
        sock.close()
        raise ConfigError(f"--port must be in [0, 65535]. Received: {port}") from None
    return sock


def url_of(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in _WILDCARDS else host
    return f"http://[{shown.strip('[]')}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def host_warning(host: str) -> str | None:
    """The warning line for a bind address other than loopback, else None."""
    if _is_loopback(host):
        return None
    return (f"warning: listening on {host}, not 127.0.0.1: other machines on the network can reach the explorer "
            f"(and decode with your models); use --host 127.0.0.1 unless you mean that.")


def _header_deadline_protocol(timeout: float):
    """uvicorn's h11 protocol with a deadline on each request's headers (:data:`HEADER_TIMEOUT_S`)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self):
            super().on_response_complete()
            self._arm()

        def _arm(self):
            # uvicorn makes a new cycle when a request's headers are complete: the same cycle at the deadline
            # (None on a new connection) means the headers never came.
            self.loop.call_later(timeout, self._expire, self.cycle)

        def _expire(self, cycle):
            if self.cycle is cycle and not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadline


def make_server(app):
    """A uvicorn server of ``app`` (quiet: warnings only, no access log); run it with ``.run(sockets=[sock])``."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", server_header=False,
                            timeout_graceful_shutdown=2, limit_concurrency=MAX_CONNECTIONS,
                            http=_header_deadline_protocol(header_timeout_s()))
    return uvicorn.Server(config)


@contextmanager
def serving(app, host: str = "127.0.0.1", timeout: float = 30.0) -> Iterator[int]:
    """Runs ``app`` on :func:`make_server` in a daemon thread on a free port of ``host``; yields the port.

    For tests, benchmarks and scripts: the same server and socket as ``zspace explore``, stopped on exit.

    Raises:
        RuntimeError: the server did not start within ``timeout`` seconds.
    """
    sock = bind_socket(host, 0)
    server = make_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the explorer server on {host} did not start within {timeout:g} s")
            time.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def serve(runs: list[ExploredRun], host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          say: Callable[[str], None] = print, sock: socket.socket | None = None,
          warn: Callable[[str], None] | None = None) -> None:
    """Serves ``runs`` until Ctrl-C (or SIGTERM); ``say`` gets the URL line first, ``warn`` (default ``say``)
    the warning of a bind address that is not loopback.

    ``sock``: a socket from :func:`bind_socket` (else bound here, not by uvicorn, so that a port in use is
    one :class:`RunError` line).
    """
    warning = host_warning(host)
    if warning:
        (warn or say)(warning)
    sock = sock or bind_socket(host, port)
    port = sock.getsockname()[1]
    server = make_server(build_app(runs, host))
    # uvicorn shuts down gracefully on SIGINT / SIGTERM, then re-raises the signal to the handler that was there
    # before: SIGTERM's default would end the process without the "stopped" line, so it becomes an interrupt too
    # (installed before the URL is printed: a client may stop the server as soon as it reads the URL).
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
    try:
        say(f"zspace explore: {url_of(host, port)}  (Ctrl-C stops it)")
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    say("zspace explore: stopped")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
