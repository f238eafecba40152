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
    (lambda m: m.update(version=2), "version is 2; this zspace reads version 1"),
    (lambda m: m.pop("version"), "version is None; this zspace reads version 1"),
    (lambda m: m.update(version=True), "version is True; this zspace reads version 1"),
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


# --- 5. the worker processes end with the preparing process -----------------------------------

def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], ppid [1], start time [19])."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def children(pid: int) -> dict[int, str]:
    """{child pid: its start time} of the live children of ``pid``, from /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields and int(fields[1]) == pid and fields[0] != "Z":
                found[int(entry)] = fields[19]
    return found


def still_running(processes: dict[int, str]) -> list[int]:
    """Those of ``processes`` ({pid: start time}) alive now (not gone, not a zombie, not a reused pid)."""
    alive = []
    for pid, start in processes.items():
        fields = _stat(pid)
        if fields and fields[19] == start and fields[0] != "Z":
            alive.append(pid)
    return alive


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


SLOW_PREPARE = """
import sys
from zspace.data.prepare import PrepareConfig, prepare_images
if __name__ == "__main__":
    prepare_images(sys.argv[1], sys.argv[2], PrepareConfig(size=8, shard_size=50, workers=2))
"""


@pytest.fixture(scope="module")
def slow_images(tmp_path_factory):
    """300 links to one 1200x1200 noise PNG: decoding them takes the two workers several seconds."""
    folder = tmp_path_factory.mktemp("slow") / "src"
    folder.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "base.png")
    for i in range(300):
        os.link(folder / "base.png", folder / f"{i:04d}.png")
    return folder


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds the workers in /proc")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_stopping_prepare_stops_its_worker_processes(tmp_path, slow_images, signum):
    script = tmp_path / "slow_prepare.py"
    script.write_text(SLOW_PREPARE)
    out = tmp_path / "cache"
    parent = subprocess.Popen([sys.executable, str(script), str(slow_images), str(out)],
                              env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    spawned: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and parent.poll() is None:
            spawned = children(parent.pid)
            if sum("spawn_main" in cmdline(pid) for pid in spawned) == 2:
                break
            time.sleep(0.05)
        assert parent.poll() is None, f"prepare ended before its workers were seen: {parent.stderr.read()}"
        assert sum("spawn_main" in cmdline(pid) for pid in spawned) == 2, "no two workers within 60 s"
        time.sleep(0.3)  # the workers are decoding now
        os.kill(parent.pid, signum)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 5
        while still_running(spawned) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = {pid: cmdline(pid) for pid in still_running(spawned)}
        assert not left, f"worker processes left running after {signal.Signals(signum).name}: {left}"
        if signum != signal.SIGKILL:  # it could clean up: no temporaries, a manifest to resume from
            assert temporaries(out) == []
            assert json.loads((out / "manifest.json").read_text())["complete"] is False
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in still_running(spawned):  # the test's own processes, if the code under test left them
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        parent.stderr.close()


WATCHED_CHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
                          "import os; from zspace.data.prepare import _watch_parent; _watch_parent(os.getppid())"])
print(child.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="follows the child in /proc")
def test_without_a_parent_death_signal_the_watch_thread_ends_an_orphan():
    # What ends a worker where prctl(PR_SET_PDEATHSIG) does not exist (macOS, ...).
    parent = subprocess.Popen([sys.executable, "-c", WATCHED_CHILD], env={**os.environ, "PYTHONPATH": SRC},
                              stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    watched = {child: _stat(child)[19]}
    try:
        time.sleep(0.5)
        assert still_running(watched), "the watching child ended while its parent lived"
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5
        while still_running(watched) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not still_running(watched), "the orphan kept running"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in still_running(watched):
            os.kill(pid, signal.SIGKILL)
        parent.stdout.close()


# --- 6. stale temporaries ------------------------------------------------------------------------

def test_a_rerun_removes_the_temporaries_of_a_killed_run_and_nothing_else(tmp_path):
    src = image_folder(tmp_path / "src")
    out = tmp_path / "cache"
    prepare_images(src, out, SMALL)
    own = [".tmp-shard-00001.images-k2j3.npy", ".tmp-shard-00002.meta-x8.npz", ".tmp-manifest-a1b2.json",
           ".tmp-bad_files-zz.tsv"]
    for name in own:
        (out / name).write_bytes(b"\0" * 10_000)
    (out / ".tmp-my-notes.txt").write_text("not zspace's")
    result = prepare_images(src, out, SMALL)
    assert result.written_shards == 0  # a completed rerun: nothing to write, yet the folder is cleaned
    assert temporaries(out) == [".tmp-my-notes.txt"]
    assert read_cache(out).images.shape == (10, 8, 8, 3)


def test_temporaries_are_kept_in_a_folder_that_is_not_a_zspace_cache(tmp_path):
    src = image_folder(tmp_path / "src", n=4)
    out = tmp_path / "mine"
    out.mkdir()
    (out / ".tmp-shard-keep.npy").write_bytes(b"user data")
    prepare_images(src, out, SMALL)
    assert (out / ".tmp-shard-keep.npy").read_bytes() == b"user data"


def test_a_folder_with_another_programs_manifest_is_refused_untouched(tmp_path):
    src = image_folder(tmp_path / "src", n=4)
    out = tmp_path / "webapp"
    out.mkdir()
    foreign = json.dumps({"name": "my-web-app", "icons": []})
    (out / "manifest.json").write_text(foreign)
    (out / ".tmp-shard-x.npy").write_bytes(b"theirs")
    with pytest.raises(DataError, match=r"webapp/manifest.json: format is None, not 'zspace-image-cache'.*"
                                        r"Refusing to write into"):
        prepare_images(src, out, SMALL)
    assert (out / "manifest.json").read_text() == foreign
    assert sorted(p.name for p in out.iterdir()) == [".tmp-shard-x.npy", "manifest.json"]


def test_a_second_preparation_of_the_same_folder_is_refused(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    src = image_folder(tmp_path / "src", n=4)
    out = tmp_path / "cache"
    out.mkdir()
    with open(out / ".prepare.lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # as a running preparation holds it
        with pytest.raises(DataError, match="another `zspace prepare` is writing this cache"):
            prepare_images(src, out, SMALL)
    assert prepare_images(src, out, SMALL).n_images == 4


# --- 9. a full disk --------------------------------------------------------------------------------

def disk_full_on_call(monkeypatch, module, function_name: str, call: int):
    """Makes ``module.function_name(path, ...)`` write a little, then fail with ENOSPC, on its ``call``-th call."""
    real = getattr(module, function_name)
    calls = []

    def write(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == call:
            Path(path).write_bytes(b"\x93NUMPY partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(module, function_name, write)


@pytest.mark.parametrize("module, function_name", [(prepare, "_save_npy"), (np, "savez")])
def test_a_full_disk_mid_preparation_keeps_the_finished_shards(tmp_path, monkeypatch, module, function_name):
    src = image_folder(tmp_path / "src", n=14)
    out = tmp_path / "cache"
    disk_full_on_call(monkeypatch, module, function_name, call=3)  # the third shard's images / metadata
    with pytest.raises(CacheDirError, match=rf"{out}: no space left on the device while writing shard-00002\.\w+"
                                            rf"\.\w+ \(\d+\.\d MiB free\); the finished shards are kept"):
        prepare_images(src, out, SMALL)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["name"] for s in manifest["shards"]] == ["shard-00000", "shard-00001"] and not manifest["complete"]
    assert temporaries(out) == [] and not (out / "shard-00002.images.npy").exists()
    monkeypatch.undo()
    result = prepare_images(src, out, SMALL)
    assert (result.reused_shards, result.written_shards) == (2, 2)
    fresh = prepare_images(src, tmp_path / "fresh", SMALL)
    np.testing.assert_array_equal(read_cache(out).images[:], read_cache(fresh.folder).images[:])


def test_a_full_disk_at_the_manifest_is_one_cli_line(tmp_path, monkeypatch, capsys):
    src = image_folder(tmp_path / "src", n=6)
    out = tmp_path / "cache"
    real_write = prepare.atomic_write_text

    def full(path, text):
        if Path(path).name == "manifest.json" and (out / "shard-00001.images.npy").exists():
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, text)

    monkeypatch.setattr(prepare, "atomic_write_text", full)
    code = main(["prepare", "images", "--src", str(src), "--out", str(out), "--size", "8", "--shard-size", "4",
                 "--workers", "1"])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("prepare images:")]
    assert code == 2 and len(err) == 1, err  # the progress bar, then one line
    assert err[0].startswith(f"zspace: error: {out}: no space left on the device while writing manifest.json")
    manifest = json.loads((out / "manifest.json").read_text())  # the last good one
    assert [s["name"] for s in manifest["shards"]] == ["shard-00000"]
    assert temporaries(out) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs mounted for the test (needs root and a kernel that allows it)."""
    mount_point = tmp_path / "tiny-disk"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount a 1 MiB tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_not_enough_space_is_said_before_anything_is_written(tmp_path, tiny_disk):
    src = image_folder(tmp_path / "src", n=40, size=40)
    out = tiny_disk / "cache"
    line = assert_one_error_line(zspace_cli("prepare", "images", "--src", str(src), "--out", str(out),
                                            "--size", "128", "--workers", "1"))
    assert f"{out}: not enough free disk space: 40 images of 128x128x3 need about" in line
    assert re.search(r"need about (\d+\.\d) MiB, (0\.\d|1\.0) MiB free", line), line
    assert sorted(p.name for p in out.iterdir()) == [".prepare.lock"]  # no shard, no manifest


def test_a_really_full_disk_keeps_the_last_good_shards(tmp_path, tiny_disk, monkeypatch):
    src = image_folder(tmp_path / "src", n=60, size=40)
    out = tiny_disk / "cache"
    monkeypatch.setattr(prepare, "_check_free_space", lambda *args: None)  # as if the space went meanwhile
    config = PrepareConfig(size=96, shard_size=8, workers=1)  # 8 shards of 216 KiB: 1 MiB holds 4
    with pytest.raises(CacheDirError, match=rf"{out}: no space left on the device while writing .*MiB free"):
        prepare_images(src, out, config)
    assert temporaries(out) == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and 1 <= len(manifest["shards"]) < 8
    for entry in manifest["shards"]:  # every shard the manifest lists is whole
        images = np.load(out / f"{entry['name']}.images.npy")
        assert images.shape == (entry["count"], 96, 96, 3)
        with np.load(out / f"{entry['name']}.meta.npz") as meta:
            assert len(meta["files"]) == entry["count"]
    listed = {f"{e['name']}{s}" for e in manifest["shards"] for s in (".images.npy", ".meta.npz")}
    assert {p.name for p in out.glob("shard-*")} == listed


# --- 11. pixel formats -----------------------------------------------------------------------------

def png_bytes(array: np.ndarray, color_type: int, bit_depth: int) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit colour): colour type 0 grey, 2 RGB, 4 grey+alpha,
    6 RGBA; ``array`` (H, W[, C]) of uint8 or uint16 samples."""
    height, width = array.shape[:2]
    rows = array.reshape(height, -1).astype(">u2" if bit_depth == 16 else "u1")
    raw = b"".join(b"\0" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def cached_pixels(path: Path, size: int = 4) -> np.ndarray:
    array, reason = load_image(str(path), size, None, 10**7)
    assert array is not None, reason
    return array


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    mid = tmp_path / "mid.png"
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(mid)  # Pillow writes 16-bit grey
    with Image.open(mid) as img:
        assert img.mode.startswith("I")
    np.testing.assert_array_equal(cached_pixels(mid), 128)  # 32768 / 257 = 127.5 -> 128, not 255
    ramp = (np.arange(64, dtype=np.uint32).reshape(8, 8) * 1040).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    expected = np.asarray(Image.fromarray(np.round(ramp / 257).astype(np.uint8)).resize((4, 4), Image.Resampling.BOX))
    got = cached_pixels(tmp_path / "ramp.png")
    assert np.abs(got.astype(int) - expected[..., None]).max() <= 1 and np.ptp(got) > 200
    (tmp_path / "hand.png").write_bytes(png_bytes(np.full((8, 8), 65535, np.uint16), 0, 16))
    np.testing.assert_array_equal(cached_pixels(tmp_path / "hand.png"), 255)


@pytest.mark.parametrize("mode", ["I", "I;16", "I;16B", "I;16L"])
def test_every_sixteen_bit_grey_mode_converts_by_its_depth(mode):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    if mode == "I":  # older Pillow opens 16-bit PNGs as 32-bit "I"
        img = Image.fromarray(values.astype(np.int32), "I")
    else:
        img = Image.new(mode, (4, 1))
        img.putdata(values.ravel().tolist())
    assert np.asarray(img).ravel().tolist() == values.ravel().tolist()
    rgb = np.asarray(prepare._to_rgb(img))
    assert rgb.shape == (1, 4, 3) and rgb[0, :, 0].tolist() == [0, 1, 128, 255]


def test_sixteen_bit_colour_one_bit_and_palette_images(tmp_path):
    (tmp_path / "rgb16.png").write_bytes(png_bytes(np.full((8, 8, 3), [65535, 32768, 0], np.uint16), 2, 16))
    np.testing.assert_array_equal(cached_pixels(tmp_path / "rgb16.png")[0, 0], [255, 128, 0])
    one_bit = Image.new("1", (8, 8), 0)
    one_bit.paste(1, (0, 0, 8, 4))  # top half white
    one_bit.save(tmp_path / "bits.png")
    bits = cached_pixels(tmp_path / "bits.png")
    assert bits[:2].min() == 255 and bits[2:].max() == 0
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    palette.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(cached_pixels(tmp_path / "palette.png"), np.broadcast_to([200, 100, 50], (4, 4, 3)))


def test_transparent_pixels_are_composited_onto_the_background(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 255           # white everywhere ...
    rgba[:, :4, 3] = 0            # ... left half fully transparent
    rgba[:, 4:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    pixels = cached_pixels(tmp_path / "rgba.png", size=8)
    np.testing.assert_array_equal(pixels[:, :4], np.broadcast_to(prepare.ALPHA_BACKGROUND, (8, 4, 3)))
    np.testing.assert_array_equal(pixels[:, 4:], 255)
    grey_alpha = np.stack([np.full((8, 8), 200, np.uint8), np.full((8, 8), 128, np.uint8)], axis=-1)
    Image.fromarray(grey_alpha, "LA").save(tmp_path / "la.png")
    assert abs(int(cached_pixels(tmp_path / "la.png")[0, 0, 0]) - 100) <= 1  # 200 * 128/255 over black
    (tmp_path / "la16.png").write_bytes(png_bytes(np.full((8, 8, 2), [65535, 0], np.uint16), 4, 16))
    np.testing.assert_array_equal(cached_pixels(tmp_path / "la16.png"), 0)  # white, fully transparent
    keyed = Image.new("P", (8, 8), 0)
    keyed.putpalette([255, 255, 255, 10, 20, 30] + [0] * 762)
    keyed.paste(1, (0, 0, 8, 4))
    keyed.save(tmp_path / "keyed.png", transparency=0)  # palette entry 0 (white) is transparent
    keyed_pixels = cached_pixels(tmp_path / "keyed.png", size=8)
    np.testing.assert_array_equal(keyed_pixels[:4], np.broadcast_to([10, 20, 30], (4, 8, 3)))
    np.testing.assert_array_equal(keyed_pixels[4:], 0)


def test_a_sixteen_bit_folder_prepares_to_mid_grey(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        Image.fromarray(np.full((10, 10), 32768, np.uint16)).save(src / f"{i}.png")
    cache = read_cache(prepare_images(src, tmp_path / "cache", SMALL).folder)
    assert abs(float(cache.images[:].mean()) - 0.5) < 0.01


def test_a_file_of_another_format_is_a_bad_file(tmp_path):
    src = image_folder(tmp_path / "src", n=3)
    Image.new("RGB", (10, 10)).save(src / "really-a-gif.png", format="GIF")
    result = prepare_images(src, tmp_path / "cache", SMALL)
    assert result.n_images == 3 and result.bad == [(str(src / "really-a-gif.png"), "not an image (no JPEG or PNG data)")]


# --- 17. prepare's own inputs --------------------------------------------------------------------------

def test_out_that_is_a_file_is_one_cli_line(tmp_path):
    src = image_folder(tmp_path / "src", n=2)
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    line = assert_one_error_line(zspace_cli("prepare", "images", "--src", str(src), "--out", str(target)))
    assert f"{target}: exists and is not a folder" in line
    assert target.read_text() == "mine"
    line = assert_one_error_line(zspace_cli("prepare", "images", "--src", str(src), "--out", str(target / "sub")))
    assert f"{target / 'sub'}: the cache folder cannot be created" in line


def celeba_folder(root: Path, attribute_rows: list[str]) -> Path:
    images = image_folder(root / "img_align_celeba", n=3)
    for i, path in enumerate(sorted(images.iterdir())):
        path.rename(images / f"{i:06d}.jpg")
    (root / "list_attr_celeba.txt").write_text("3\nSmiling Male\n" + "".join(f"{r}\n" for r in attribute_rows))
    return root


def test_a_binary_attribute_file_is_one_cli_line(tmp_path):
    root = celeba_folder(tmp_path / "celeba", [])
    (root / "list_attr_celeba.txt").write_bytes(bytes(range(256)) * 4)
    line = assert_one_error_line(zspace_cli("prepare", "celeba", "--src", str(root), "--out", str(tmp_path / "c"),
                                            "--size", "8", "--workers", "1"))
    assert f"{root / 'list_attr_celeba.txt'}: not UTF-8 text (byte 128 is 0x80); expected CelebA's" in line
    (root / "list_attr_celeba.txt").write_bytes(b"\0" * 100)
    with pytest.raises(DataError, match="a binary file"):
        prepare.read_celeba_attributes(root / "list_attr_celeba.txt")


@pytest.mark.parametrize("value", ["7", "300", "1.0", "yes"])
def test_an_attribute_value_other_than_plus_minus_one_is_named(tmp_path, value):
    root = celeba_folder(tmp_path / "celeba", ["000000.jpg 1 -1", f"000001.jpg -1 {value}", "000002.jpg 1 1"])
    line = assert_one_error_line(zspace_cli("prepare", "celeba", "--src", str(root), "--out", str(tmp_path / "c"),
                                            "--size", "8", "--workers", "1"))
    assert (f"{root / 'list_attr_celeba.txt'}:4: Male of 000001.jpg is {value!r}; attribute values must be 1 or -1 "
            f"(0 = unknown)") in line
    assert not (tmp_path / "c").exists()


def test_zero_attribute_means_unknown(tmp_path):
    root = celeba_folder(tmp_path / "celeba", ["000000.jpg 1 -1", "000001.jpg 0 1", "000002.jpg -1 0"])
    cache = read_cache(prepare_celeba(root, tmp_path / "c", SMALL).folder)
    assert cache.attributes.tolist() == [[1, -1], [0, 1], [-1, 0]]


def test_annotation_limits(tmp_path, monkeypatch):
    root = celeba_folder(tmp_path / "celeba", ["000000.jpg 1 -1"])
    (root / "list_attr_celeba.txt").write_text("3\nSmiling Smiling\n")
    with pytest.raises(DataError, match=r"list_attr_celeba.txt:2: attribute names must be unique; Smiling repeated"):
        prepare.read_celeba_attributes(root / "list_attr_celeba.txt")
    monkeypatch.setenv("ZSPACE_MAX_ANNOTATION_BYTES", "10")
    with pytest.raises(DataError, match=r"larger than 10 bytes \(ZSPACE_MAX_ANNOTATION_BYTES\)"):
        prepare.read_celeba_attributes(root / "list_attr_celeba.txt")
    (root / "list_eval_partition.txt").write_bytes(b"\xc3\x28 1\n")
    monkeypatch.delenv("ZSPACE_MAX_ANNOTATION_BYTES")
    with pytest.raises(DataError, match=r"list_eval_partition.txt: not UTF-8 text \(byte 0 is 0xc3\)"):
        prepare.read_celeba_partition(root / "list_eval_partition.txt")


# --- 18 (prepare's part): an earlier manifest is read as read_cache reads it -------------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_prepare_resumes_or_refuses_a_fuzzed_manifest(cache_folder, cache_copy, data):
    src = cache_copy.parent / "src"
    if not src.exists():
        image_folder(src)
    original = json.loads((cache_folder / "manifest.json").read_text())
    path = data.draw(st.sampled_from(_paths(original)))
    manifest = _mutate(original, list(path), data.draw(st.sampled_from(["delete", "replace"])), data.draw(JSON_VALUES))
    (cache_copy / "manifest.json").write_text(json.dumps(manifest))
    try:
        prepare_images(src, cache_copy, SMALL)
    except DataError as exc:
        assert "\n" not in str(exc) and "manifest.json" in str(exc)
    else:
        assert read_cache(cache_copy).files.tolist() == [f"{i:03d}.png" for i in range(10)]  # each image once
    (cache_copy / "manifest.json").write_text(json.dumps(original))


def _idx_header(*dims: int, type_code: int = 0x08) -> bytes:
    return bytes([0, 0, type_code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


def test_a_gzip_bomb_behind_an_idx_header_is_not_unpacked(tmp_path, monkeypatch):
    """512 MiB of zeros behind a header declaring 640 bytes: refused after reading one byte past them."""
    import gzip
    import tracemalloc

    from zspace.data.idx import read_idx

    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(_idx_header(10, 8, 8))
        chunk = b"\0" * 2**24
        for _ in range(32):
            f.write(chunk)
    tracemalloc.start()
    with pytest.raises(DataError, match=r"declares shape \(10, 8, 8\) \(640 bytes of data\) but the file holds more"):
        read_idx(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**24  # nothing near the 512 MiB the stream unpacks to

    path.write_bytes(gzip.compress(_idx_header(100_000, 100_000, 1000)))  # 1e13 bytes declared
    with pytest.raises(DataError, match=r"above the limit of \d+ bytes \(ZSPACE_MAX_IDX_BYTES\)"):
        read_idx(path)
    monkeypatch.setenv("ZSPACE_MAX_IDX_BYTES", "100")
    path.write_bytes(gzip.compress(_idx_header(10, 8, 8) + b"\0" * 640))
    with pytest.raises(DataError, match=r"above the limit of 100 bytes"):
        read_idx(path)


def test_the_source_folder_as_its_own_cache_is_refused(tmp_path):
    from zspace.data.prepare import PrepareConfig, prepare_images

    src = image_folder(tmp_path / "src")
    before = sorted(p.name for p in src.iterdir())
    with pytest.raises(DataError, match=r"is the source folder itself"):
        prepare_images(src, src / ".." / "src", PrepareConfig(size=8, workers=1))
    assert sorted(p.name for p in src.iterdir()) == before


def test_a_file_name_with_tabs_and_newlines_cannot_add_rows_to_the_bad_file_list(tmp_path):
    from zspace.data.prepare import PrepareConfig, prepare_images

    src = image_folder(tmp_path / "src")
    (src / "evil\tname\nfake\trow.png").write_bytes(b"not a png")
    result = prepare_images(src, tmp_path / "cache", PrepareConfig(size=8, workers=1, max_bad_fraction=0.5))
    lines = (tmp_path / "cache" / "bad_files.tsv").read_text().splitlines()
    assert len(result.bad) == 1 and len(lines) == 2 and lines[1].count("\t") == 1
    assert lines[1].split("\t")[0].endswith("evil\\tname\\nfake\\trow.png")


def test_a_worker_that_dies_is_one_line_and_keeps_the_finished_shards(tmp_path, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    import zspace.data.prepare as prepare

    def dying(*args, **kwargs):
        raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    monkeypatch.setattr(prepare, "_write_shards", dying)
    with pytest.raises(DataError, match=r"a decoding worker process died .* Run the same command again to resume"):
        prepare.prepare_images(image_folder(tmp_path / "src"), tmp_path / "cache",
                               prepare.PrepareConfig(size=8, workers=2))
