"""Hostile and unlucky inputs to the data layer (issue 12): killed and full-disk preparations,
odd pixel formats, out-of-range and non-finite images, damaged or malicious caches and annotations."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import zspace
import zspace.data.prepare as prepare
from zspace.cli import main
from zspace.data import read_cache
from zspace.data.prepare import PrepareConfig, load_image, prepare_celeba, prepare_images
from zspace.errors import CacheDirError, DataError

SRC = str(Path(zspace.__file__).resolve().parents[1])
SMALL = PrepareConfig(size=8, shard_size=4, workers=1, max_bad_fraction=1.0)


def image_folder(folder: Path, n: int = 10, size: int = 12) -> Path:
    """``n`` seeded random RGB PNGs of size x size pixels in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def zspace_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m zspace.cli ARGS`` in a fresh process (this checkout's zspace)."""
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-m", "zspace.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def assert_one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result
    assert len(lines) == 1 and lines[0].startswith("zspace: error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


# --- 13, 18. damaged and malicious cache manifests -----------------------------------------------------

@pytest.fixture(scope="module")
def cache_folder(tmp_path_factory):
    """A complete 3-shard cache (10 images, 4 per shard); tests work on copies."""
    root = tmp_path_factory.mktemp("cache")
    return prepare_images(image_folder(root / "src"), root / "cache", SMALL).folder


@pytest.fixture
def cache_copy(cache_folder, tmp_path):
    copy = tmp_path / "cache"
    shutil.copytree(cache_folder, copy)
    return copy


def edit_manifest(folder: Path, change) -> Path:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)  # in place
    path.write_text(json.dumps(manifest))
    return path


@pytest.mark.parametrize("name", ["../other/shard-00001", "/tmp/shard-00001", "shard-00001/../../other/shard-00001",
                                  "sub/shard-00001", "shard-1", ""])
def test_a_shard_name_that_is_a_path_is_refused(cache_copy, tmp_path, name):
    other = tmp_path / "other"
    other.mkdir()
    for suffix in (".images.npy", ".meta.npz"):  # a readable shard there, as an attacker would place
        shutil.copy(cache_copy / f"shard-00001{suffix}", other / f"shard-00001{suffix}")
    path = edit_manifest(cache_copy, lambda m: m["shards"][1].update(name=name))
    with pytest.raises(DataError, match=rf"{path}: shard entry 1 has name {re.escape(repr(name))}; expected "
                                        rf"'shard-' and a number"):
        read_cache(cache_copy)


def test_a_shard_listed_twice_is_refused(cache_copy):
    path = edit_manifest(cache_copy, lambda m: m["shards"].insert(2, dict(m["shards"][0])))
    with pytest.raises(DataError, match=rf"{path}: shard entry 2 \(shard-00000\) is listed twice"):
        read_cache(cache_copy)


def test_shard_files_linked_out_of_the_folder_or_to_each_other_are_refused(cache_copy, tmp_path):
    outside = tmp_path / "outside.images.npy"
    shutil.copy(cache_copy / "shard-00001.images.npy", outside)
    (cache_copy / "shard-00001.images.npy").unlink()
    (cache_copy / "shard-00001.images.npy").symlink_to(outside)
    with pytest.raises(DataError, match=r"manifest.json: shard shard-00001: shard-00001.images.npy is a link to "
                                        r".*outside.images.npy, outside the cache folder"):
        read_cache(cache_copy)
    (cache_copy / "shard-00001.images.npy").unlink()
    os.link(cache_copy / "shard-00000.images.npy", cache_copy / "shard-00001.images.npy")  # the same data twice
    with pytest.raises(DataError, match=r"shard shard-00001: shard-00001.images.npy is the same file as "
                                        r"shard-00000.images.npy"):
        read_cache(cache_copy)


def test_a_cache_folder_reached_through_a_link_still_reads(cache_folder, tmp_path):
    (tmp_path / "link").symlink_to(cache_folder)
    assert read_cache(tmp_path / "link").images.shape == (10, 8, 8, 3)


@pytest.mark.parametrize("content, message", [
    (b"[1, 2, 3]", "holds a JSON list, not an object"),
    (b"\xff\xfe garbage \x00\x01", r"not UTF-8 text \(byte 0\)"),
    (b"{not json", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    (b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON"),
])
def test_a_manifest_that_is_not_an_object_is_named(cache_copy, content, message):
    (cache_copy / "manifest.json").write_bytes(content)
    with pytest.raises(DataError, match=rf"{cache_copy / 'manifest.json'}: {message}"):
        read_cache(cache_copy)


def test_a_manifest_above_the_size_limit_is_not_read(cache_copy, monkeypatch):
    edit_manifest(cache_copy, lambda m: m.update(padding="x" * 5000))
    monkeypatch.setenv("ZSPACE_MAX_MANIFEST_BYTES", "4096")
    with pytest.raises(DataError, match=r"manifest.json: larger than 4096 bytes \(ZSPACE_MAX_MANIFEST_BYTES\)"):
        read_cache(cache_copy)
    monkeypatch.delenv("ZSPACE_MAX_MANIFEST_BYTES")
    assert read_cache(cache_copy).images.shape[0] == 10


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("shards"), "'shards' is not a list"),
    (lambda m: m.update(shards={"a": 1}), "'shards' is not a list"),
    (lambda m: m.pop("size"), "size is None"),
    (lambda m: m.update(size="96"), "size is '96'; expected an integer"),
    (lambda m: m.update(size=10**12), r"size is 1000000000000; expected an integer in \[1, 65536\]"),
    (lambda m: m.update(channels=True), "channels is True"),
    (lambda m: m.update(complete="yes"), "'complete' is not true or false"),
    (lambda m: m.update(label_names="cats"), "'label_names' is not a list of strings"),
    (lambda m: m["shards"][0].pop("count"), r"shard entry 0 \(shard-00000\) has count None"),
    (lambda m: m["shards"][0].update(count="4"), r"shard entry 0 \(shard-00000\) has count '4'; expected an "
                                                  r"integer >= 0"),
    (lambda m: m["shards"][1].update(count=3), r"shard entry 1 \(shard-00001\) has split_counts .* summing to count=3"),
    (lambda m: m["shards"][0].update(bad="none"), r"shard entry 0 \(shard-00000\) has a 'bad' field that is not "
                                                  r"a list of"),
    (lambda m: m["shards"].__setitem__(2, [1, 2]), "shard entry 2 is a list, not an object"),
    (lambda m: m["shards"][0].pop("plan"), r"shard entry 0 \(shard-00000\) has no 'plan' string"),
])
def test_a_manifest_with_missing_or_mistyped_fields_is_named(cache_copy, change, message):
    path = edit_manifest(cache_copy, change)
    with pytest.raises(DataError, match=rf"{path}: {message}.*not a manifest written by `zspace prepare`"):
        read_cache(cache_copy)


def test_shard_metadata_that_disagrees_with_the_manifest_is_named(cache_copy):
    meta_path = cache_copy / "shard-00001.meta.npz"
    with np.load(meta_path) as meta:
        arrays = dict(meta)
    np.savez(meta_path, **{**arrays, "split": np.full(4, 7)})
    with pytest.raises(DataError, match=r"shard-00001.meta.npz: split values span \[7, 7\]; expected 0 to 2"):
        read_cache(cache_copy)
    np.savez(meta_path, **{**arrays, "files": np.array(["a"] * 40)})
    with pytest.raises(DataError, match=r"shard-00001.meta.npz: files is <U1 \(40,\); expected \(4,\)"):
        read_cache(cache_copy)
    np.save(meta_path.with_suffix(".npy"), np.zeros(3))
    meta_path.with_suffix(".npy").replace(meta_path)
    with pytest.raises(DataError, match=r"shard-00001.meta.npz: not the .npz \(zip\) archive"):
        read_cache(cache_copy)
    meta_path.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(DataError, match=r"shard shard-00001 cannot be read"):
        read_cache(cache_copy)


def test_a_hostile_manifest_is_one_cli_line(cache_copy, tmp_path, capsys):
    from conftest import tiny_run_config

    edit_manifest(cache_copy, lambda m: m["shards"][1].update(name="../../etc/shard-00001"))
    config = tmp_path / "run.toml"
    config.write_text(tiny_run_config(tmp_path / "run", dataset=f"cache:{cache_copy}").to_toml())
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shard entry 1 has name '../../etc/shard-00001'" in err[0], err


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**12) | st.floats(allow_nan=True)
                           | st.text(max_size=20), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def _mutate(value, path: list, action: str, replacement):
    """``value`` with the item at ``path`` (keys / indices) deleted or replaced."""
    if not path:
        return replacement
    head, rest = path[0], path[1:]
    if isinstance(value, dict) and head in value or isinstance(value, list) and head < len(value):
        copy = dict(value) if isinstance(value, dict) else list(value)
        if not rest and action == "delete":
            del copy[head]
        else:
            copy[head] = _mutate(copy[head], rest, action, replacement)
        return copy
    return value


def _paths(value, prefix=()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            found += _paths(item, (*prefix, index))
    return found


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_manifests_read_or_fail_with_one_data_error(cache_folder, cache_copy, data):
    original = json.loads((cache_folder / "manifest.json").read_text())
    manifest = original
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(manifest)))
        action = data.draw(st.sampled_from(["delete", "replace"]))
        manifest = _mutate(manifest, list(path), action, data.draw(JSON_VALUES))
    (cache_copy / "manifest.json").write_text(json.dumps(manifest))
    try:
        contents = read_cache(cache_copy)
    except DataError as exc:
        assert "\n" not in str(exc) and str(cache_copy) in str(exc)
    else:
        assert contents.images[:].shape[1:] == (8, 8, 3)  # what reads, reads whole
        contents.close()
