"""One writer per run directory, a run's identity, its history against its checkpoints, full disks."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from conftest import tiny_run_config
from zspace.errors import DiskFullError, RunError
from zspace.rundir import Run, read_history, training_config
from zspace.training import train


@contextlib.contextmanager
def small_disk(size: str):
    """A tmpfs of ``size`` (root only); skips the test where one cannot be mounted."""
    folder = Path(f"/tmp/zspace-small-disk-{uuid.uuid4().hex[:8]}")
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    try:
        if not mounted:
            pytest.skip("a small filesystem cannot be mounted here (needs root and mount permission)")
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], capture_output=True)
        folder.rmdir()


def _fill(folder: Path, leave: int) -> Path:
    """Writes a file that leaves about ``leave`` bytes free in ``folder``'s filesystem."""
    filler = folder / "filler.bin"
    size = shutil.disk_usage(folder).free - leave
    with open(filler, "wb") as f:
        f.write(b"\0" * max(size, 0))
    return filler


# --- the lock -------------------------------------------------------------------------------------

_HOLD = textwrap.dedent("""
    import sys, time
    from zspace.rundir import Run
    with Run(sys.argv[1]).lock("train"):
        print("locked", flush=True)
        time.sleep(60)
""")


def _holder(run_dir: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", _HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_writer_is_refused_with_the_holders_pid_and_a_killed_holder_leaves_no_lock(tmp_path):
    config = tiny_run_config(tmp_path / "run", epochs=1)
    holder = _holder(tmp_path / "run")
    try:
        with pytest.raises(RunError, match=rf"run is in use by PID {holder.pid} \(`zspace train`"):
            train(config)
        assert not (tmp_path / "run" / "config.toml").exists()  # the refused run wrote nothing
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / "run" / ".zspace.lock").exists()  # the stale file stays: harmless
    result = train(config)
    assert [r["epoch"] for r in result.history] == [1]


def test_two_trainings_of_one_run_dir_at_once_leave_one_consistent_run(tmp_path):
    """The issue's case: the same run_dir with different epochs, started together. One trains; the
    other exits non-zero naming the holder; history, summary and model agree."""
    run_dir = tmp_path / "run"
    base = tmp_path / "base.toml"
    base.write_text(tiny_run_config(run_dir, epochs=6).to_toml())
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    processes = [subprocess.Popen([sys.executable, "-m", "zspace.cli", "train", "-c", str(base), "--set",
                                   f"epochs={epochs}"], env=env, stderr=subprocess.PIPE, text=True)
                 for epochs in (6, 5)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    codes = sorted(code for code, _ in results)
    if codes == [0, 0]:  # the first finished before the second began: then both ran in turn, fine
        pytest.skip("the two processes did not overlap on this machine")
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    ours = [line for line in refused.splitlines() if not line.startswith(("WARNING: All log", "I0000", "W0000"))]
    assert len(ours) == 1 and ours[0].startswith("zspace: error: ") and "is in use by PID" in ours[0], refused
    history = read_history(run_dir / "history.csv")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r["epoch"] for r in history] == list(range(1, summary["epochs_done"] + 1))


def test_the_lock_loser_never_removes_the_folder_the_winner_is_starting_in(tmp_path, monkeypatch):
    """Both saw no folder; the other process took the lock between our mkdir and our lock. Its
    folder (still only the lock file) must survive our refusal."""
    import zspace.training.run as training_run

    run_dir = tmp_path / "run"
    make_folder = training_run._check_writable
    winner = []

    def winner_locks_first(folder):
        make_folder(folder)
        winner.append(subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], stdout=subprocess.PIPE,
                                       text=True))
        assert winner[0].stdout.readline().strip() == "locked"

    monkeypatch.setattr(training_run, "_check_writable", winner_locks_first)
    try:
        with pytest.raises(RunError, match="is in use by PID"):
            train(tiny_run_config(run_dir, epochs=1))
        assert (run_dir / ".zspace.lock").is_file()
    finally:
        for process in winner:
            process.kill()
            process.wait()


def test_a_failed_start_in_a_new_folder_leaves_no_folder(tmp_path):
    config = tiny_run_config(tmp_path / "new", epochs=1, dataset="idx:" + str(tmp_path / "missing"))
    with pytest.raises(Exception):
        train(config)
    assert not (tmp_path / "new").exists()


# --- history against the checkpoints ------------------------------------------------------------

@pytest.fixture(scope="module")
def three_epochs(tmp_path_factory):
    root = tmp_path_factory.mktemp("three")
    train(tiny_run_config(root / "run", epochs=3))
    return root / "run"


def _copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _rewrite_history(run_dir: Path, epochs_in_order: list[int]) -> None:
    lines = (run_dir / "history.csv").read_text().splitlines()
    by_epoch = {int(line.split(",")[0]): line for line in lines[1:]}
    (run_dir / "history.csv").write_text("\n".join([lines[0]] + [by_epoch[e] for e in epochs_in_order]) + "\n")


@pytest.mark.parametrize("damage", [[1, 2, 3, 2], [1, 3], [2, 1, 3], [1, 2, 2, 3]])
def test_a_damaged_history_is_repaired_against_the_checkpoints_on_resume(three_epochs, tmp_path, damage):
    run_dir = _copy_run(three_epochs, tmp_path / "run")
    _rewrite_history(run_dir, damage)
    result = train(training_config(run_dir / "config.toml").with_overrides({"epochs": 4}))
    epochs = [r["epoch"] for r in read_history(run_dir / "history.csv")]
    assert epochs == [1, 2, 3, 4] and [r["epoch"] for r in result.history] == epochs


def test_two_different_rows_for_one_epoch_are_refused(three_epochs, tmp_path):
    run_dir = _copy_run(three_epochs, tmp_path / "run")
    lines = (run_dir / "history.csv").read_text().splitlines()
    cells = lines[2].split(",")
    cells[1] = "12345.0"  # epoch 2's total loss, changed
    (run_dir / "history.csv").write_text("\n".join(lines + [",".join(cells)]) + "\n")
    with pytest.raises(RunError, match=r"history\.csv: epoch 2 has two different rows"):
        train(training_config(run_dir / "config.toml").with_overrides({"epochs": 4}))


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary", b"epoch,total_loss\n1,abc\n",
                                     b"total_loss\n1.0\n", "epoch\n1\n".encode("utf-16")])
def test_a_history_that_is_not_numbers_is_one_line(three_epochs, tmp_path, content):
    run_dir = _copy_run(three_epochs, tmp_path / "run")
    (run_dir / "history.csv").write_bytes(content)
    with pytest.raises(RunError, match=r"history\.csv: not a history written by zspace") as info:
        train(training_config(run_dir / "config.toml").with_overrides({"epochs": 4}))
    assert "\n" not in str(info.value)


# --- a run's identity is its folder -----------------------------------------------------------------

def test_a_copied_run_resumes_the_copy_and_leaves_the_original_alone(three_epochs, tmp_path):
    original = _copy_run(three_epochs, tmp_path / "original")
    # as the issue found it: config.toml names the absolute folder it was trained in
    config_text = (original / "config.toml").read_text()
    (original / "config.toml").write_text(config_text.replace(str(three_epochs), str(original)))
    before = {p.name: p.stat().st_mtime_ns for p in original.rglob("*")}
    copy = _copy_run(original, tmp_path / "copy")
    assert str(original) in (copy / "config.toml").read_text()
    result = train(training_config(copy / "config.toml").with_overrides({"epochs": 4}))
    assert result.run.root == copy and [r["epoch"] for r in read_history(copy / "history.csv")] == [1, 2, 3, 4]
    assert {p.name: p.stat().st_mtime_ns for p in original.rglob("*")} == before
    assert Run.open(copy).config.train.run_dir == str(copy)


# --- full disks ---------------------------------------------------------------------------------------

def test_the_pre_check_counts_every_checkpoint_and_the_final_models(tmp_path):
    """On a 2 MiB disk, 40 kept checkpoints of ~77 KB cannot fit: refused before training, with advice."""
    with small_disk("2m") as disk:
        with pytest.raises(RunError, match=r"not enough free disk space .* Set keep_checkpoints = \d \(it fits\)"):
            train(tiny_run_config(disk / "run", epochs=40))
        assert not (disk / "run").exists()
        result = train(tiny_run_config(disk / "run", epochs=40, keep_checkpoints=2))  # the advice works
        assert len(result.history) == 40 and (disk / "run" / "model.keras").is_file()


def test_the_estimate_is_close_to_the_real_files(three_epochs):
    from zspace.models import load_model
    from zspace.training.run import _save_sizes

    checkpoint, halves = _save_sizes(load_model(three_epochs / "model.keras"))
    real_checkpoint = (three_epochs / "checkpoints" / "epoch-0003.keras").stat().st_size
    real_halves = sum((three_epochs / f"{half}.keras").stat().st_size for half in ("encoder", "decoder"))
    assert real_checkpoint <= checkpoint <= 1.2 * real_checkpoint
    assert real_halves <= halves <= 2 * real_halves


def test_disk_full_at_the_final_save_is_one_line_and_a_rerun_finishes(tmp_path, monkeypatch):
    """A real ENOSPC from Keras' own save (h5py) at model.keras: one DiskFullError, the checkpoints and no
    temporaries left; once space is freed the same command saves the models."""
    import zspace.training.run as run_module

    real_save = run_module.save_model
    with small_disk("4m") as disk:
        filled = []

        def filling_save(model, path):
            if not filled:
                filled.append(_fill(disk, leave=20_000))
            return real_save(model, path)

        monkeypatch.setattr(run_module, "save_model", filling_save)
        config = tiny_run_config(disk / "run", epochs=2)
        with pytest.raises(DiskFullError, match=r"disk full while writing .*model\.keras .*no model\.keras was "
                                                r"written") as info:
            train(config)
        assert "\n" not in str(info.value)
        run_dir = disk / "run"
        assert not (run_dir / "model.keras").exists()
        assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch-0001.keras", "epoch-0002.keras"]
        assert not [p for p in run_dir.rglob(".tmp-*")]
        filled[0].unlink()
        result = train(config)
        assert result.start_epoch == 2 and (run_dir / "model.keras").is_file()


def test_analyze_and_encode_on_a_full_disk_are_one_line_and_keep_the_last_analysis(three_epochs, capsys):
    from zspace.cli import main

    with small_disk("3m") as disk:
        run_dir = _copy_run(three_epochs, disk / "run")
        fast = ["--set", "tsne_sizes=[]", "--set", "k_max=4"]
        assert main(["analyze", str(run_dir), *fast]) == 0
        before = {name: (run_dir / name).read_bytes() for name in ("analysis.json", "analysis.npz")}
        filler = _fill(disk, leave=4096)
        capsys.readouterr()
        for argv in (["analyze", str(run_dir), *fast], ["encode", str(run_dir), "--out", str(disk / "z.npz")]):
            assert main(argv) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("zspace: error: disk full while writing"), err
        assert {name: (run_dir / name).read_bytes() for name in before} == before
        assert not (disk / "z.npz").exists() and not list(disk.rglob(".tmp-*"))
        filler.unlink()


# --- Keras' temporaries ------------------------------------------------------------------------------

def test_keras_save_temporaries_live_in_the_run_and_a_killed_saves_are_cleaned(tmp_path, monkeypatch):
    """Keras makes scratch folders while saving; they go into the run (removed after each save, and at
    the next start after a kill), never into the system temp directory."""
    import tempfile

    import keras

    seen = []
    real_save = keras.Model.save

    def recording_save(self, path, *args, **kwargs):
        seen.append(Path(tempfile.gettempdir()))
        return real_save(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", recording_save)
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    stale = run_dir / "checkpoints" / ".tmp-scratch-killed"  # what a kill mid-save leaves
    (stale / "assets").mkdir(parents=True)
    train(tiny_run_config(run_dir, epochs=2))
    assert seen and all(run_dir in p.parents for p in seen), seen
    assert not stale.exists() and not list(run_dir.rglob(".tmp-*"))
    assert Path(tempfile.gettempdir()) not in [p for p in seen]


# --- SIGKILL of analyze -------------------------------------------------------------------------------

_KILLED_ANALYZE = textwrap.dedent("""
    import os, signal, sys
    import zspace.rundir as rundir
    import zspace.storage as storage

    where = os.environ["KILL_AT"]
    real_write_text, real_replace = rundir.atomic_write_text, os.replace

    def write_text(path, text):
        if where == "between the commits" and path.name == "analysis.json":
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write_text(path, text)

    def replace(src, dst):
        if where == "inside the npz commit" and str(dst).endswith("analysis.npz"):
            os.kill(os.getpid(), signal.SIGKILL)  # the temporary is written and fsynced, not yet renamed
        return real_replace(src, dst)

    rundir.atomic_write_text = write_text
    storage.os.replace = replace
    from zspace.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("kill_at", ["between the commits", "inside the npz commit"])
def test_sigkill_of_analyze_in_its_saves_leaves_a_readable_pair_or_one_line(three_epochs, tmp_path, kill_at):
    """A real SIGKILL of `zspace analyze` at the two worst lines of its save. After it the run's analysis
    loads whole (the old one) or is refused in one line saying what to run; no temporary is taken for a
    file; the next analyze works."""
    from zspace.analysis.records import Analysis

    run_dir = _copy_run(three_epochs, tmp_path / "run")
    fast = ["--set", "tsne_sizes=[]", "--set", "k_max=4", "--set", "kmeans_seeds=[0]"]
    from zspace.cli import main

    assert main(["analyze", str(run_dir), *fast]) == 0
    old = (run_dir / "analysis.json").read_text()
    script = tmp_path / "killed_analyze.py"
    script.write_text(_KILLED_ANALYZE)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KILL_AT": kill_at}
    result = subprocess.run([sys.executable, str(script), "analyze", str(run_dir), *[a.replace("k_max=4", "k_max=5") for a in fast]],
                            env=env, capture_output=True, timeout=300)
    assert result.returncode == -9, result.stderr[-2000:]
    if kill_at == "between the commits":  # new arrays, old records: refused, never joined
        with pytest.raises(RunError, match=r"from different analyses .* run `zspace analyze .*` again"):
            Run.open(run_dir).load_analysis()
    else:  # the old pair is intact; the orphaned temporary is not a file of the run
        assert (run_dir / "analysis.json").read_text() == old
        assert isinstance(Run.open(run_dir).load_analysis(), Analysis)
    assert main(["analyze", str(run_dir), *fast]) == 0
    assert isinstance(Run.open(run_dir).load_analysis(), Analysis)
    assert not list(run_dir.glob(".tmp-*"))  # the next writer removed what the killed one left


@pytest.mark.parametrize("planted", ["symlink", "folder"])
def test_a_lock_file_that_is_a_symlink_or_a_folder_is_one_line_and_its_target_untouched(tmp_path, planted):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    if planted == "symlink":
        (run_dir / ".zspace.lock").symlink_to(target)
    else:
        (run_dir / ".zspace.lock").mkdir()
    with pytest.raises(RunError, match=r"\.zspace\.lock: cannot be opened as the run's lock file \(.+\); it must "
                                       r"be a plain file"):
        with Run(run_dir).lock("analyze"):
            pass
    assert target.read_text() == "keep me\n"
