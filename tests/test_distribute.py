"""Data-parallel training on Keras' engines: TensorFlow's MirroredStrategy and JAX's DataParallel on
2 logical CPU devices against 1, several JAX processes on 127.0.0.1, and the refusals."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_idx

from zspace.errors import ConfigError
from zspace.training.batches import EpochBatches
from zspace.training.distribute import Cluster, Replicas

ROOT = Path(__file__).resolve().parents[1]


def _env(backend: str, **extra) -> dict:
    return {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT / "src"),
            **extra}


# --- the cluster of a process -----------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    ({"num_processes": 2, "process_id": 2, "coordinator": "127.0.0.1:1234"}, "process_id"),
    ({"num_processes": 2, "process_id": -1, "coordinator": "127.0.0.1:1234"}, "process_id"),
    ({"num_processes": 0}, "num_processes"),
    ({"num_processes": 2, "process_id": 1}, "coordinator"),
    ({"num_processes": 2, "process_id": 1, "coordinator": "127.0.0.1"}, "coordinator"),
    ({"num_processes": 2, "process_id": 1, "coordinator": "127.0.0.1:70000"}, "coordinator"),
])
def test_a_wrong_process_id_or_coordinator_is_refused_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        Cluster(**kwargs)


def test_the_cluster_comes_from_the_environment_unless_given():
    env = {"ZSPACE_COORDINATOR": "node0:1234", "ZSPACE_NUM_PROCESSES": "4", "ZSPACE_PROCESS_ID": "3"}
    assert Cluster.from_env(env) == Cluster("node0:1234", 4, 3)
    assert Cluster.from_env(env, process_id=1).process_id == 1
    assert Cluster.from_env({}) == Cluster()
    with pytest.raises(ConfigError, match="ZSPACE_PROCESS_ID"):
        Cluster.from_env({**env, "ZSPACE_PROCESS_ID": "x"})


# --- each process reads only its share ---------------------------------------------------------

class _Recording:
    """An image array that records which rows were read."""

    def __init__(self, n):
        self.images = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
        self.read = []

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        self.read.extend(np.asarray(index).tolist())
        return self.images[index]


def _epoch(images, batch_size, replicas):
    """(image ids, sample weights) this process fed over one epoch of EpochBatches."""
    batches = EpochBatches(images, batch_size, seed=3, share=replicas.share)
    fed = [batches[i] for i in range(len(batches))]
    assert all(len(b) == 3 and len(b[2]) == len(b[0]) for b in fed)  # (inputs, targets, weights), every batch
    return (np.concatenate([b[0].ravel() for b in fed]).astype(int), np.concatenate([b[2] for b in fed]))


@pytest.mark.parametrize("n, batch_size, processes, devices", [(96, 16, 2, 1), (100, 16, 2, 1), (101, 16, 2, 1),
                                                                (101, 16, 2, 2), (3, 16, 2, 2)])
def test_each_process_reads_only_its_share_and_every_image_counts_once_an_epoch(n, batch_size, processes, devices):
    """Over an epoch every image weighs in exactly one process's batches, once. A last batch that does not
    divide by the devices (101 = 6 x 16 + 5 on 2 or 4 devices; 3 images on 4) is padded with copies of its
    first images, weighted 0; each process reads only the rows it feeds."""
    count = processes * devices
    counted = []
    for process in range(processes):
        images = _Recording(n)
        replicas = Replicas(count=count, cluster=Cluster("127.0.0.1:1234", processes, process), distribution=object())
        ids, weights = _epoch(images, batch_size, replicas)
        assert sorted(ids.tolist()) == sorted(images.read)  # it read what it fed, nothing more
        assert len(ids) % devices == 0 and (weights >= 0).all()
        counted.append(ids[weights > 0])
    everything = np.concatenate(counted)
    assert sorted(everything.tolist()) == list(range(n))  # no image left out, none twice
    assert len(set(counted[0].tolist()) & set(counted[1].tolist())) == 0


def test_a_padded_batch_weighs_its_real_images_so_that_its_mean_is_theirs():
    replicas = Replicas(count=4, distribution=object())
    share = replicas.share(13)
    assert (share.real, share.padded) == (13, 16)
    values = np.random.default_rng(0).random(13)
    fed = values[share.positions()]
    assert np.mean(fed * share.weights()) == pytest.approx(values.mean(), rel=1e-6)
    assert np.array_equal(share.weights()[13:], [0, 0, 0]) and np.array_equal(share.positions()[13:], [0, 1, 2])
    assert np.array_equal(replicas.share(16).weights(), np.ones(16, np.float32))


def test_a_batch_that_does_not_divide_by_the_devices_is_refused():
    with pytest.raises(ConfigError, match="batch_size \\(63\\) must be a multiple of the 2 devices"):
        Replicas(count=2).check_batches(63)


# --- two devices against one -----------------------------------------------------------------

_COMPARE = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from conftest import tiny_run_config
    from zspace.training import train
    out = {}
    for kl_method in ("add_loss", "train_step"):
        for distribution, devices in (("data_parallel", 2), ("none", 0)):  # devices before TF starts
            config = tiny_run_config(sys.argv[1] + f"/{kl_method}-{distribution}", epochs=1,
                                     distribution=distribution, devices=devices).with_overrides(
                                     {"kl_method": kl_method, "monitor_images": 0})
            result = train(config)
            weights = np.concatenate([np.ravel(np.asarray(w)) for w in result.model.get_weights()])
            out[f"{kl_method}-{distribution}"] = {"history": result.history[-1], "weights": weights.tolist()}
    print(json.dumps(out))
""")


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_two_devices_train_like_one_on_the_same_global_batches(tmp_path, backend):
    """Same global batch, seed and noise: the losses and final weights agree up to float rounding.

    Tolerance: the two replicas' gradients are summed in another order than one device's, about
    1e-7 relative per step; one epoch of Adam (26 steps) keeps the weights within 1e-5 and the losses
    within 1e-5 relative or 1e-4 absolute (the KL of this barely trained model is about 0.007; measured
    on TensorFlow: 3e-8 and 1e-7; on JAX, all four KL methods: 6e-8 and 1e-7). All 1,797 digits: the
    training split's last batch of 17 images does not divide by the devices, so JAX pads it (weighted 0),
    TensorFlow splits it unevenly; either way the epoch is the one device's.
    """
    done = subprocess.run([sys.executable, "-c", _COMPARE, str(tmp_path), str(ROOT / "tests")],
                          env=_env(backend), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for kl_method in ("add_loss", "train_step"):
        one, two = out[f"{kl_method}-none"], out[f"{kl_method}-data_parallel"]
        for key in ("total_loss", "kl_divergence", "val_total_loss", "val_kl_divergence"):
            assert two["history"][key] == pytest.approx(one["history"][key], rel=1e-5, abs=1e-4), (kl_method, key)
        np.testing.assert_allclose(two["weights"], one["weights"], atol=1e-5)


_FEATURES = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from conftest import tiny_run_config
    from zspace.errors import TrainingDiverged
    from zspace.training import train
    variants = {
        "warmup": {"kl_warmup_epochs": 2},
        "bfloat16": {"precision": "mixed_bfloat16"},
        "retry": {"learning_rate": 1e9, "on_nonfinite": "retry", "nonfinite_retries": 2, "retry_lr_factor": 1e-11},
    }
    out = {}
    for name, changes in variants.items():
        for distribution, devices in (("data_parallel", 2), ("none", 0)):  # devices before TF starts
            config = tiny_run_config(sys.argv[1] + f"/{name}-{distribution}", epochs=2,
                                     distribution=distribution, devices=devices, **changes)
            result = train(config)
            out[f"{name}-{distribution}"] = {"history": result.history,
                                             "state": json.loads(result.run.state_path.read_text())
                                             if result.run.state_path.exists() else {}}
    print(json.dumps(out))
""")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_kl_warmup_mixed_precision_and_the_nonfinite_rollback_work_on_two_devices(tmp_path, backend):
    """The KL warm-up gives the 1-device history; bfloat16 stays within its rounding (1e-2 relative);
    a non-finite loss on either replica rolls both back and the retries record the same events."""
    done = subprocess.run([sys.executable, "-c", _FEATURES, str(tmp_path), str(ROOT / "tests")],
                          env=_env(backend), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for name, rel in (("warmup", 1e-5), ("bfloat16", 1e-2), ("retry", 1e-5)):
        one, two = out[f"{name}-none"], out[f"{name}-data_parallel"]
        assert [r["epoch"] for r in two["history"]] == [r["epoch"] for r in one["history"]] == [1, 2]
        for r1, r2 in zip(one["history"], two["history"]):
            for key in ("total_loss", "val_total_loss", "kl_scale"):
                assert r2[key] == pytest.approx(r1[key], rel=rel, abs=1e-4), (name, key)
    assert [r["kl_scale"] for r in out["warmup-data_parallel"]["history"]] == [0.0, 0.5]
    events = [e["epoch"] for e in out["retry-data_parallel"]["state"]["nonfinite_events"]]
    assert events and events == [e["epoch"] for e in out["retry-none"]["state"]["nonfinite_events"]]


def test_data_parallel_on_pytorch_and_several_tensorflow_processes_are_refused_in_one_line(tmp_path):
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        from conftest import tiny_run_config
        from zspace.training import train
        from zspace.training.distribute import Cluster
        cluster = Cluster("127.0.0.1:9", 2, 0) if sys.argv[2] == "processes" else None
        train(tiny_run_config(sys.argv[3], distribution="data_parallel", devices=2, monitor_images=0),
              cluster=cluster)
    """)
    for backend, case, expected in (("torch", "devices", "runs on the TensorFlow and JAX backends"),
                                    ("tensorflow", "processes", "several processes train on the JAX backend only")):
        done = subprocess.run([sys.executable, "-c", script, str(ROOT / "tests"), case, str(tmp_path / case)],
                              env=_env(backend), capture_output=True, text=True, timeout=300)
        assert done.returncode != 0 and expected in done.stderr.strip().splitlines()[-1], done.stderr[-2000:]
        assert not (tmp_path / case).exists()


# --- several processes (JAX) ------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Runs the CLI with a Python audit hook that logs every write under WATCHED_DIR (opening a file for writing,
# renames, removals, new folders...) to WRITE_LOG. Files written by C++ code (TensorBoard's event files) bypass
# it; their names carry the writing process's pid.
_WATCH_WRITES = r"""
import os, runpy, sys
watched, log = os.path.realpath(os.environ["WATCHED_DIR"]), open(os.environ["WRITE_LOG"], "a")
CHANGES = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.truncate", "os.chmod",
           "os.chown", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile", "shutil.copytree"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
def inside(path):
    if not isinstance(path, (str, bytes, os.PathLike)):
        return False
    path = os.path.realpath(os.fsdecode(path))
    return path == watched or path.startswith(watched + os.sep)
def hook(event, args):
    if event == "open":
        path, mode, flags = args
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & WRITE_FLAGS)
        if writes and inside(path):
            log.write(f"{event} {path!r} {mode} {flags}\n")
            log.flush()
    elif event in CHANGES and any(inside(a) for a in args[:2]):
        log.write(f"{event} {args[:2]!r}\n")
        log.flush()
sys.addaudithook(hook)
sys.argv[0] = "zspace"
runpy.run_module("zspace.cli", run_name="__main__")
"""


def _train_processes(run_dir: Path, epochs: int, port: int, ids=(0, 1), sets=("monitor_images=0",),
                     watch_worker: Path | None = None, cwd=None, worker_program: str | None = None,
                     **env) -> list[subprocess.Popen]:
    """The two processes of a run (``watch_worker``: log the worker's writes in the run directory there;
    ``cwd``: each process's working folder; ``worker_program``: Python source that runs the worker's CLI)."""
    sets = [part for value in sets for part in ("--set", value)]
    if watch_worker is not None:
        worker_program = _WATCH_WRITES

    def start(i):
        return ["-c", worker_program] if i and worker_program is not None else ["-m", "zspace.cli"]

    watched = {"WATCHED_DIR": str(run_dir), "WRITE_LOG": str(watch_worker)} if watch_worker is not None else {}
    return [subprocess.Popen([sys.executable, *start(i), "train", "-c", str(ROOT / "configs/demo.toml"),
                              "--set", f"epochs={epochs}", "--set", f"run_dir={run_dir}", "--set",
                              "distribution=data_parallel", *sets, "--set", "verbose=0",
                              "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
                             env=_env("jax", **env, **watched), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=None if cwd is None else cwd[i])
            for i in ids]


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_two_devices_and_resume_after_both_are_killed(tmp_path):
    single = tmp_path / "single"
    done = subprocess.run([sys.executable, "-m", "zspace.cli", "train", "-c", str(ROOT / "configs/demo.toml"),
                           "--set", "epochs=2", "--set", f"run_dir={single}", "--set", "distribution=data_parallel",
                           "--set", "devices=2", "--set", "verbose=0"],
                          env=_env("jax"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    run = tmp_path / "run"
    # the z-space monitor and the TensorBoard logs on: their model calls are collectives of both processes
    writes = tmp_path / "worker-writes.log"
    processes = _train_processes(run, 2, _free_port(), sets=("tensorboard=true",), watch_worker=writes)
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    assert [code for code, _ in results] == [0, 0], results[0][1][-2000:] + results[1][1][-2000:]
    # only the chief writes in the run directory: the worker opened nothing there for writing, renamed or
    # removed nothing, and every TensorBoard event file (written by C++, named with its pid) is the chief's
    assert writes.read_text() == "", writes.read_text()
    event_files = list((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert event_files and {f.name.split(".")[-3] for f in event_files} == {str(processes[0].pid)}
    ours = json.loads((run / "summary.json").read_text())
    theirs = json.loads((single / "summary.json").read_text())
    assert ours["processes"] == 2 and ours["devices"] == 2
    for key, value in theirs["final"].items():
        if key != "seconds":
            assert ours["final"][key] == pytest.approx(value, rel=1e-5), key
    assert (run / "history.csv").read_text().count("\n") == 3  # a header and each epoch once
    assert ours["final"]["z_radius_mean"] == pytest.approx(theirs["final"]["z_radius_mean"], rel=1e-5)
    assert len(list((run / "tensorboard" / "validation").glob("events.out.tfevents.*"))) == 1

    # Kill both in the middle of a longer run; starting both again resumes from the last checkpoint.
    processes = _train_processes(run, 40, _free_port())
    deadline = time.monotonic() + 240
    while not (run / "checkpoints").glob("*") or len(list((run / "checkpoints").iterdir())) < 4:
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.2)
    for p in processes:
        p.kill()
        p.wait()
    kept = len(list((run / "checkpoints").iterdir()))
    processes = _train_processes(run, 6, _free_port())
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    assert [code for code, _ in results] == [0, 0], results[0][1][-2000:]
    epochs = [int(line.split(",")[0]) for line in (run / "history.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(1, 7)) and kept >= 4


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["worker", "chief"])
def test_when_one_process_dies_the_other_stops_within_the_heartbeat_timeout(tmp_path, victim):
    """The survivor stops with zspace's one line when the collective it waits in breaks. Outside a collective
    (the chief saving, the worker between steps), JAX's coordination service stops it instead, at once when the
    chief (its host) dies, after ZSPACE_HEARTBEAT_TIMEOUT_S when a worker does, with JAX's own message."""
    run = tmp_path / "run"
    chief, worker = _train_processes(run, 200, _free_port(), ZSPACE_HEARTBEAT_TIMEOUT_S="5")
    deadline = time.monotonic() + 240
    while not (run / "checkpoints").is_dir() or not any((run / "checkpoints").iterdir()):
        assert time.monotonic() < deadline and chief.poll() is None, chief.stderr.read()[-2000:]
        time.sleep(0.2)
    dead, survivor = (worker, chief) if victim == "worker" else (chief, worker)
    dead.kill()
    dead.wait()
    killed = time.monotonic()
    code, err = survivor.wait(timeout=120), survivor.stderr.read()
    stopped_after = time.monotonic() - killed
    ours = [line for line in err.splitlines() if line.startswith("zspace: error:")]
    assert code != 0 and stopped_after < 5 + 30, (code, stopped_after, err[-2000:])
    assert (len(ours) == 1 and "lost each other" in ours[0]) or "another task died" in err, err[-3000:]
    if victim == "worker":
        assert len(ours) == 1, err[-3000:]  # the chief steps on: it meets the broken collective first


def test_a_process_that_cannot_reach_the_coordinator_stops_in_one_line_within_the_timeout(tmp_path):
    started = time.monotonic()
    worker = _train_processes(tmp_path / "run", 1, _free_port(), ids=(1,), ZSPACE_COORDINATOR_TIMEOUT_S="3")[0]
    code, err = worker.wait(timeout=120), worker.stderr.read()
    lines = [line for line in err.splitlines() if line.startswith("zspace:")]
    assert code == 2 and len(lines) == 1 and "could not join the coordinator" in lines[0], err[-2000:]
    assert time.monotonic() - started < 60
    assert not (tmp_path / "run").exists()


def test_one_device_trains_on_the_plain_path_without_a_strategy():
    """data_parallel on one device adds nothing but overhead (Keras' distributed input skips its copy ahead):
    it is the plain path."""
    from zspace.config import TrainConfig
    from zspace.training.distribute import replicas_for

    replicas = replicas_for(TrainConfig(distribution="data_parallel", devices=1))
    assert (replicas.count, replicas.strategy, replicas.distribution) == (1, None, None)


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", "1e9"])
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_refused(monkeypatch, value):
    from zspace.training.distribute import _env_float

    monkeypatch.setenv("ZSPACE_COORDINATOR_TIMEOUT_S", value)
    with pytest.raises(ConfigError, match="ZSPACE_COORDINATOR_TIMEOUT_S"):
        _env_float("ZSPACE_COORDINATOR_TIMEOUT_S", 60.0)
    monkeypatch.setenv("ZSPACE_COORDINATOR_TIMEOUT_S", " 2.5 ")
    assert _env_float("ZSPACE_COORDINATOR_TIMEOUT_S", 60.0) == 2.5


def test_processes_started_with_different_configs_stop_in_one_line_instead_of_waiting_forever(tmp_path):
    """Found by an adversarial pass: a batch_size of 64 on one process and 32 on the other deadlocked."""
    port = _free_port()
    processes = [_train_processes(tmp_path / "run", 1, port, ids=(i,), sets=("monitor_images=0", f"batch_size={b}"))[0]
                 for i, b in ((0, 64), (1, 32))]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in processes]
    for code, err in results:
        ours = [line for line in err.splitlines() if line.startswith("zspace:")]
        assert code == 2 and len(ours) == 1 and "started with different configs" in ours[0] and "process 1 differs from process 0" in ours[0], err[-2000:]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_processes_that_loaded_different_data_stop_in_one_line_instead_of_waiting_forever(tmp_path):
    """One config, dataset = "idx:data", but each process's working folder holds other files under that
    name (a stale copy on one machine): 200 against 180 training images would deadlock mid-epoch."""
    port, rng = _free_port(), np.random.default_rng(0)
    folders = []
    for n in (200, 180):
        folder = tmp_path / f"machine-{n}"
        (folder / "data").mkdir(parents=True)
        write_idx(folder / "data/train-images-idx3-ubyte", rng.integers(0, 256, (n, 8, 8)))
        write_idx(folder / "data/train-labels-idx1-ubyte", np.arange(n) % 10)
        write_idx(folder / "data/t10k-images-idx3-ubyte", rng.integers(0, 256, (40, 8, 8)))
        write_idx(folder / "data/t10k-labels-idx1-ubyte", np.arange(40) % 10)
        folders.append(folder)
    processes = _train_processes(tmp_path / "run", 1, port, sets=("monitor_images=0", "dataset=idx:data"),
                                 cwd=folders)
    results = [(p.wait(timeout=120), p.stderr.read()) for p in processes]
    for code, err in results:
        ours = [line for line in err.splitlines() if line.startswith("zspace:")]
        assert code == 2 and len(ours) == 1 and "started with different data" in ours[0], err[-2000:]
        assert "process 1 differs from process 0" in ours[0]
    assert not (tmp_path / "run" / "checkpoints").exists()


# Process 1 gets 2 CPU devices where process 0 has 1, as hosts with different GPU counts would.
_TWO_CPU_DEVICES = r"""
import runpy, sys
import jax
jax.config.update("jax_num_cpu_devices", 2)
sys.argv[0] = "zspace"
runpy.run_module("zspace.cli", run_name="__main__")
"""


def test_processes_with_different_numbers_of_devices_stop_in_one_line(tmp_path):
    """Found by an adversarial pass: JAX's multi-process helpers ended both in a reshape traceback."""
    processes = _train_processes(tmp_path / "run", 1, _free_port(), worker_program=_TWO_CPU_DEVICES)
    results = [(p.wait(timeout=120), p.stderr.read()) for p in processes]
    for (code, err), mine in zip(results, ("1 cpu devices", "2 cpu devices")):
        ours = [line for line in err.splitlines() if line.startswith("zspace:")]
        assert code == 2 and len(ours) == 1 and mine in ours[0] and "3 in all" in ours[0], err[-2000:]


def test_a_chief_whose_coordinator_port_is_taken_says_so_in_one_line(tmp_path):
    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::", 0))
        taken.listen()
        port = taken.getsockname()[1]
        chief = _train_processes(tmp_path / "run", 1, port, ids=(0,))[0]
        code, err = chief.wait(timeout=120), chief.stderr.read()
    ours = [line for line in err.splitlines() if line.startswith("zspace:")]
    assert code == 2 and len(ours) == 1 and f"port {port} is in use" in ours[0], err[-2000:]


def test_the_cluster_options_are_checked_before_anything_is_written(tmp_path):
    def zspace(*args):
        return subprocess.run([sys.executable, "-m", "zspace.cli", "train", *args], env=_env("jax"),
                              capture_output=True, text=True, timeout=120)

    done = zspace("-c", str(ROOT / "configs/demo.toml"), "--num-processes", "99999999999")
    assert done.returncode == 2 and "--num-processes" in done.stderr, done.stderr[-2000:]
    source = tmp_path / "source"
    source.mkdir()
    done = zspace(str(source), "--from-epoch", "1", "--out", str(tmp_path / "branch"), "--num-processes", "2",
                  "--process-id", "1", "--coordinator", "127.0.0.1:5996")
    assert done.returncode == 2 and "--from-epoch makes a branch on one process" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "branch").exists()
    with pytest.raises(ConfigError, match="ZSPACE_NUM_PROCESSES"):
        Cluster.from_env({"ZSPACE_NUM_PROCESSES": "0"})
