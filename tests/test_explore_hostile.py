"""`zspace explore` against hostile requests and crafted run folders (an adversarial pass over the server).

Each test names the input that used to get a 500, a traceback in the server's output, a hang or a wrong
answer, and checks the one-line refusal (or the correct answer) that replaced it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
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
