"""Hostile and damaged files in a run directory, through every command that reads them.

The files are built from the project's own output (a trained run, its analysis), then damaged
the ways a hostile or unlucky user would: garbage, empty, truncated, a sparse file far past the
size limits, JSON of the wrong shape or nested past the recursion limit, class names from other
modules. The rule checked for each: exit code 2, one line `zspace: error: ...` naming the file,
and nothing in the run directory changed.
"""

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import tiny_run_config
from zspace.analysis import analyze_run
from zspace.cli import main
from zspace.config import AnalysisConfig
from zspace.errors import RunError
from zspace.rundir import Run, read_history
from zspace.training import train

FAST_ANALYSIS = ["--set", "tsne_sizes=[]", "--set", "k_max=4", "--set", "kmeans_seeds=[0]"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A trained and analysed tiny VAE on the digits."""
    root = tmp_path_factory.mktemp("hostile") / "run"
    train(tiny_run_config(root, epochs=1))
    analyze_run(root, AnalysisConfig(tsne_sizes=(), k_max=4, kmeans_seeds=(0,)))
    return root


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file but the writer's lock (its holder note changes by design)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".zspace.lock"}


def _sparse(size: int):
    def damage(path: Path) -> None:
        with open(path, "wb") as f:
            f.truncate(size)  # nothing on disk, but past every size limit
    return damage


def _bytes(data: bytes):
    return lambda path: path.write_bytes(data)


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _json(value):
    return lambda path: path.write_text(json.dumps(value))


def _rewrite_model_config(change):
    """A model.keras whose config.json is changed by ``change(config) -> config``, re-zipped."""
    def damage(path: Path) -> None:
        with zipfile.ZipFile(path) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        members["config.json"] = json.dumps(change(json.loads(members["config.json"]))).encode()
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
    return damage


def _with_module(module: str):
    def change(config):
        config["module"] = module
        return config
    return change


def _with_lambda(config):
    config["config"]["encoder"] = {"class_name": "Lambda", "module": "keras.layers",
                                   "config": {"function": {"class_name": "__lambda__", "config": {"code": "x" * 4000}}}}
    return config


GARBAGE = b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00 not what it should be" * 10
NESTED = b"[" * 200_000 + b"]" * 200_000

DAMAGES = {
    "config.toml": {"garbage": _bytes(GARBAGE), "empty": _bytes(b""), "sparse": _sparse(2**31),
                    "not toml": _bytes(b"[model\nz_dim = = 3")},
    "model.keras": {"garbage": _bytes(GARBAGE), "empty": _bytes(b""), "truncated": _truncated,
                    "sparse": _sparse(2**34),
                    "foreign module": _rewrite_model_config(_with_module("zspace_evil.layers")),
                    "lambda": _rewrite_model_config(_with_lambda)},
    "analysis.json": {"garbage": _bytes(GARBAGE), "list": _json([1, 2]), "nested": _bytes(NESTED),
                      "sparse": _sparse(2**31), "truncated": _truncated},
    "analysis.npz": {"garbage": _bytes(GARBAGE), "truncated": _truncated, "sparse": _sparse(2**34),
                     "empty": _bytes(b"")},
    "history.csv": {"garbage": _bytes(GARBAGE), "sparse": _sparse(2**31), "words": _bytes(b"epoch,total_loss\n1,x\n")},
    "evaluation.json": {"garbage": _bytes(GARBAGE), "list": _json([1, 2]), "nested": _bytes(NESTED),
                        "sparse": _sparse(2**31)},
}

# Which commands read which file (each reads the files before it in its own way).
READERS = {
    "config.toml": ["generate", "encode", "analyze", "report", "train"],
    "model.keras": ["generate", "encode", "analyze", "report"],
    "analysis.json": ["report", "compare"],
    "analysis.npz": ["report", "compare"],
    "history.csv": ["report", "train"],
    "evaluation.json": ["report", "compare"],
}


def _argv(command: str, run_dir: Path, out: Path) -> list[str]:
    return {
        "generate": ["generate", str(run_dir), "--out", str(out / "grid.png")],
        "encode": ["encode", str(run_dir), "--out", str(out / "z.npz")],
        "analyze": ["analyze", str(run_dir), *FAST_ANALYSIS],
        "report": ["report", str(run_dir), "--out", str(out / "report.html")],
        "compare": ["compare", str(run_dir), "--out", str(out / "comparison")],
        "train": ["train", "--config", str(run_dir / "config.toml")],
    }[command]


CASES = [(file, damage, command) for file, damages in DAMAGES.items() for damage in damages
         for command in READERS[file]]


@pytest.mark.parametrize("file, damage, command", CASES, ids=[f"{f}-{d}-{c}" for f, d, c in CASES])
def test_a_damaged_file_is_one_line_naming_it_and_changes_nothing(finished_run, tmp_path, capsys, file, damage,
                                                                    command):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    DAMAGES[file][damage](run_dir / file)
    if command == "train" and file == "history.csv":  # a finished run would not read it: ask for one more epoch
        config = (run_dir / "config.toml").read_text().replace("epochs = 1\n", "epochs = 2\n")
        assert "epochs = 2" in config
        (run_dir / "config.toml").write_text(config)
    before = _snapshot(run_dir)
    out = tmp_path / "out"
    out.mkdir()
    code = main(_argv(command, run_dir, out))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("zspace: error: "), err
    assert file.split(".")[0] in err[0], err[0]  # names the file
    assert len(err[0]) < 600, err[0]
    assert _snapshot(run_dir) == before
    assert not list(out.iterdir())  # no half-written output either


# --- fuzzing the readers with hypothesis --------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


def _paths(node, prefix=()):
    """Every (path) to a value inside nested dicts / lists."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


def _replaced(node, path, value):
    if not path:
        return value
    node = json.loads(json.dumps(node))
    target = node
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return node


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_analysis_json_with_any_value_replaced_loads_or_is_one_run_error(finished_run, tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz")
    for name in ("analysis.json", "analysis.npz", "config.toml"):
        shutil.copy(finished_run / name, folder / name)
    good = json.loads((finished_run / "analysis.json").read_text())
    paths = list(_paths(good))
    path = data.draw(st.sampled_from(paths))
    value = data.draw(JSON_VALUES)
    (folder / "analysis.json").write_text(json.dumps(_replaced(good, path, value)))
    try:
        Run.open(folder).load_analysis()
    except RunError as exc:
        assert "\n" not in str(exc) and "analysis" in str(exc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_history_bytes_read_as_rows_or_one_run_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("history") / "history.csv"
    path.write_bytes(b"epoch,total_loss\n" + content)
    try:
        rows = read_history(path)
    except RunError as exc:
        assert "\n" not in str(exc) and "history.csv" in str(exc)
    else:
        assert all(isinstance(r["epoch"], int) and all(isinstance(v, (int, float)) for v in r.values()) for r in rows)
