"""TensorBoard training logs ([train] tensorboard = true), read back with TensorBoard's own reader (real
event files): scalars equal to history.csv, image grids, histograms, one value per step after a resume
from a kill and after rollbacks."""

import io
import subprocess
import time
import sys

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from conftest import tiny_run_config
from zspace.cli import main
from zspace.errors import RunError
from zspace.rundir import Run, list_checkpoints, read_history
from zspace.training import branch_run, train
from zspace.training import callbacks as callbacks_module
from zspace.training import tensorboard as tb
from zspace.training.callbacks import EpochCheckpoint, NonFiniteGuard
from zspace.training.tensorboard import (TENSORBOARD_CELL, TENSORBOARD_IMAGES, TENSORBOARD_PRIOR_SAMPLES,
                                         fixed_images, prior_samples, reconstruction_rows)

# Columns of history.csv that are not scalars of an epoch (the step is the epoch).
NOT_LOGGED = {"epoch"}


def read_logs(run_dir, which):
    """TensorBoard's EventAccumulator over RUN/tensorboard/<which> ("train" or "validation"), loaded."""
    accumulator = EventAccumulator(str(run_dir / "tensorboard" / which), size_guidance={"tensors": 0})
    accumulator.Reload()
    return accumulator


def steps(accumulator, tag):
    return [e.step for e in accumulator.Tensors(tag)]


def scalars(accumulator, tag):
    return {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in accumulator.Tensors(tag)}


def picture(event):
    """The PNG of an image summary event, decoded: uint8 (H, W, C); checks the width/height it records."""
    width, height, png = event.tensor_proto.string_val[:3]
    image = np.asarray(Image.open(io.BytesIO(png)))
    assert (int(width), int(height)) == (image.shape[1], image.shape[0])
    return image if image.ndim == 3 else image[..., None]


def expected_tags(history):
    """The scalar tags Keras' layout gives history.csv's columns (those with values; read_history reads
    an empty cell as NaN): {"train": {...}, "validation": {...}}."""
    columns = {k for row in history for k, v in row.items() if not np.isnan(v)} - NOT_LOGGED
    return {"train": {f"epoch_{c}" for c in columns if not c.startswith("val_")},
            "validation": {f"epoch_{c[4:]}" for c in columns if c.startswith("val_")}}


def assert_scalars_are_the_history(run_dir):
    """Every history.csv column is a scalar with one value per epoch, equal to the CSV's (float32)."""
    history = read_history(run_dir / "history.csv")
    epochs = [row["epoch"] for row in history]
    for which, tags in expected_tags(history).items():
        logs = read_logs(run_dir, which)
        assert {t for t in logs.Tags()["tensors"] if t.startswith("epoch_")} == tags, which
        for tag in tags:
            assert steps(logs, tag) == epochs, (which, tag)
            column = tag.removeprefix("epoch_")
            column = f"val_{column}" if which == "validation" else column
            logged = scalars(logs, tag)
            np.testing.assert_allclose([logged[e] for e in epochs],
                                       np.float32([row[column] for row in history]), rtol=1e-6, err_msg=tag)


def grid_size(rows, cols, image_size):
    cell = image_size * -(-TENSORBOARD_CELL // image_size) + 2  # upscaled cell plus the 2-pixel padding
    return rows * cell + 2, cols * cell + 2


@pytest.mark.backend
def test_logs_hold_history_scalars_image_grids_and_histograms_per_epoch(tmp_path):
    config = tiny_run_config(tmp_path / "run", epochs=3, tensorboard=True)
    result = train(config)
    run_dir = tmp_path / "run"
    assert_scalars_are_the_history(run_dir)
    train_logs, val_logs = read_logs(run_dir, "train"), read_logs(run_dir, "validation")
    assert {"epoch_learning_rate", "epoch_kl_scale", "epoch_active_units", "epoch_z_radius_mean",
            "epoch_reco_loss_per_pixel", "epoch_seconds"} <= set(train_logs.Tags()["tensors"])
    assert {"epoch_total_loss", "epoch_reco_loss_per_image"} <= set(val_logs.Tags()["tensors"])
    # no scalar against optimizer iterations (Keras' evaluation_*_vs_iterations): steps are epochs only
    assert not [t for t in val_logs.Tags()["tensors"] if "iterations" in t]

    # image grids: one per epoch; 8 originals above their reconstructions, 2 rows of 8 prior decodes
    assert steps(val_logs, "reconstructions") == steps(train_logs, "prior_samples") == [1, 2, 3]
    reconstructions = [picture(e) for e in val_logs.Tensors("reconstructions")]
    priors = [picture(e) for e in train_logs.Tensors("prior_samples")]
    assert reconstructions[0].shape == (*grid_size(2, TENSORBOARD_IMAGES, 8), 1)
    assert priors[0].shape == (*grid_size(2, TENSORBOARD_PRIOR_SAMPLES // 2, 8), 1)
    # the top row is the first validation images, every epoch; the prior decodes are the seeded z's
    inputs, targets = fixed_images(result.run.split, config.train)
    assert targets is None
    expected_top = tb._grid(reconstruction_rows(inputs, inputs, None), TENSORBOARD_IMAGES)[0]
    half = reconstructions[0].shape[0] // 2
    for grid in reconstructions:
        np.testing.assert_array_equal(grid[:half], expected_top[:half])
    last_prior = tb._grid(result.model.decode(prior_samples(config.model.z_dim, config.train.seed)),
                          TENSORBOARD_PRIOR_SAMPLES // 2)[0]
    np.testing.assert_array_equal(priors[-1], last_prior)
    assert not np.array_equal(priors[0], priors[-1])  # the decoder learnt something between epochs 1 and 3

    # histograms of mu and logvar over the monitor's validation images: every value counted once
    n_monitored = min(config.train.monitor_images, len(result.run.split.x_val))
    for name in ("mu", "logvar"):
        assert steps(val_logs, name) == [1, 2, 3]
        for event in val_logs.Tensors(name):
            buckets = tensor_util.make_ndarray(event.tensor_proto)  # (k, 3): left edge, right edge, count
            assert buckets[:, 2].sum() == n_monitored * config.model.z_dim
    assert "z" not in val_logs.Tags()["tensors"]


def test_an_autoencoder_logs_z_and_no_kl_columns(tmp_path):
    config = tiny_run_config(tmp_path, epochs=2, tensorboard=True, monitor_images=0).with_overrides({"kind": "ae"})
    train(config)
    assert_scalars_are_the_history(tmp_path)
    val_logs = read_logs(tmp_path, "validation")
    tags = set(val_logs.Tags()["tensors"])
    assert "z" in tags and not {"mu", "logvar", "epoch_kl_divergence"} & tags
    # the monitor is off: the histogram is of the grid's images
    counts = tensor_util.make_ndarray(val_logs.Tensors("z")[0].tensor_proto)[:, 2]
    assert counts.sum() == TENSORBOARD_IMAGES * config.model.z_dim


def test_a_task_grid_is_inputs_outputs_and_targets(tmp_path):
    config = tiny_run_config(tmp_path, epochs=1, tensorboard=True, task="denoise", monitor_images=0)
    result = train(config)
    grid = picture(read_logs(tmp_path, "validation").Tensors("reconstructions")[0])
    assert grid.shape == (*grid_size(3, TENSORBOARD_IMAGES, 8), 1)
    noisy, clean = fixed_images(result.run.split, config.train)
    assert not np.array_equal(noisy, clean)
    third = grid.shape[0] // 3
    for row, images in ((0, noisy), (2, clean)):  # the noisy inputs on top, the clean targets at the bottom
        expected = tb._grid(images, TENSORBOARD_IMAGES)[0]
        np.testing.assert_array_equal(grid[row * third + 2:(row + 1) * third], expected[2:third])


def test_off_by_default_and_switching_it_on_for_a_resume_logs_from_there(tmp_path):
    config = tiny_run_config(tmp_path, epochs=1)
    assert config.train.tensorboard is False
    train(config)
    assert not (tmp_path / "tensorboard").exists()
    train(tiny_run_config(tmp_path, epochs=2, tensorboard=True))  # a resumable field, as epochs
    assert steps(read_logs(tmp_path, "train"), "epoch_total_loss") == [2]


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing on the way out cleans up after it."""


def kill_at_checkpoint(monkeypatch, epoch):
    """Makes the run die as it begins to commit ``epoch``'s checkpoint: that epoch's history row and
    TensorBoard events are written, its checkpoint never is."""
    real_save = callbacks_module.atomic_save

    def dying_save(path, save):
        if path.name == f"epoch-{epoch:04d}.keras":
            raise Killed
        return real_save(path, save)

    monkeypatch.setattr(callbacks_module, "atomic_save", dying_save)


def raw_steps(run_dir, which, tag):
    """Every event of ``tag`` in the folder's files, no purging: what a reader without it would show."""
    accumulator = EventAccumulator(str(run_dir / "tensorboard" / which), size_guidance={"tensors": 0},
                                   purge_orphaned_data=False)
    accumulator.Reload()
    return sorted(steps(accumulator, tag))


def test_resume_after_a_kill_has_one_value_per_step(tmp_path, monkeypatch):
    config = tiny_run_config(tmp_path, epochs=4, tensorboard=True)
    kill_at_checkpoint(monkeypatch, 3)
    with pytest.raises(Killed):
        train(config)
    monkeypatch.undo()
    assert [e for e, _ in list_checkpoints(tmp_path / "checkpoints")] == [1, 2]
    assert raw_steps(tmp_path, "validation", "reconstructions") == [1, 2, 3]  # epoch 3's events are on disk
    train(config)  # resumes after epoch 2: epochs 3 and 4 again
    assert [r["epoch"] for r in read_history(tmp_path / "history.csv")] == [1, 2, 3, 4]
    assert raw_steps(tmp_path, "validation", "reconstructions") == [1, 2, 3, 3, 4]  # both epoch-3 events
    assert_scalars_are_the_history(tmp_path)  # ... of which TensorBoard shows the resumed one only
    for which, tag in (("validation", "reconstructions"), ("validation", "mu"), ("train", "prior_samples")):
        assert steps(read_logs(tmp_path, which), tag) == [1, 2, 3, 4]


@pytest.mark.slow
def test_resume_after_sigkill_of_the_cli_has_one_value_per_step(tmp_path):
    """A real SIGKILL as epoch 3's checkpoint is saved, then `zspace train RUN` resumes."""
    config = tiny_run_config(tmp_path / "run", epochs=4, tensorboard=True)
    config_path = tmp_path / "run.toml"
    config_path.write_text(config.to_toml())
    script = tmp_path / "dying.py"
    script.write_text(
        "import os, signal, sys\n"
        "import zspace.training.callbacks as callbacks\n"
        "real_save = callbacks.atomic_save\n"
        "def dying_save(path, save):\n"
        "    if path.name == 'epoch-0003.keras':\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real_save(path, save)\n"
        "callbacks.atomic_save = dying_save\n"
        "from zspace.cli import main\n"
        "sys.exit(main())\n")
    killed = subprocess.run([sys.executable, str(script), "train", "--config", str(config_path)],
                            capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert raw_steps(tmp_path / "run", "train", "epoch_total_loss") == [1, 2, 3]
    resumed = subprocess.run([sys.executable, "-m", "zspace.cli", "train", str(tmp_path / "run")],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert raw_steps(tmp_path / "run", "train", "epoch_total_loss") == [1, 2, 3, 3, 4]
    assert_scalars_are_the_history(tmp_path / "run")
    assert steps(read_logs(tmp_path / "run", "validation"), "reconstructions") == [1, 2, 3, 4]


def test_a_jump_rollback_logs_the_retrained_epoch_once(tmp_path, monkeypatch):
    real_find_jumps = callbacks_module.find_jumps
    compared = []

    def a_jump_at_epoch_2(previous, current, factor):
        compared.append(current)
        if len(compared) == 2:  # epoch 2's comparison, the first time
            return [{"quantity": "z_radius_mean", "from": 1.0, "to": 10.0}]
        return real_find_jumps(previous, current, factor)

    monkeypatch.setattr(callbacks_module, "find_jumps", a_jump_at_epoch_2)
    train(tiny_run_config(tmp_path, epochs=3, on_jump="reseed", tensorboard=True))
    assert Run.open(tmp_path).read_state()["jump_reseeds"] == 1  # epoch 2 was rolled back and trained again
    assert raw_steps(tmp_path, "train", "epoch_z_radius_mean") == [1, 2, 3]  # the rejected epoch 2 never written
    assert_scalars_are_the_history(tmp_path)


def test_a_rollback_after_the_epoch_was_logged_leaves_one_value_per_step(tmp_path, monkeypatch):
    """The checkpoint's last line of defence (non-finite weights) rejects epoch 2 after its events were
    written; on_nonfinite = "retry" trains it again in the same process."""
    real_end = EpochCheckpoint.on_epoch_end
    rejected = []

    def rejecting_end(self, epoch, logs=None):
        if epoch == 1 and not rejected:  # as if epoch 2's weights were not finite
            rejected.append(epoch + 1)
            next(g for g in self.guard if isinstance(g, NonFiniteGuard)).trip(epoch, None, "non-finite weights")
            self.model.stop_training = True
            return
        real_end(self, epoch, logs)

    monkeypatch.setattr(EpochCheckpoint, "on_epoch_end", rejecting_end)
    train(tiny_run_config(tmp_path, epochs=3, on_nonfinite="retry", tensorboard=True))
    assert rejected == [2]
    assert raw_steps(tmp_path, "validation", "mu") == [1, 2, 2, 3]
    assert_scalars_are_the_history(tmp_path)
    assert steps(read_logs(tmp_path, "validation"), "mu") == [1, 2, 3]


def test_a_branch_starts_its_own_logs_after_the_branch_epoch(tmp_path):
    source = tiny_run_config(tmp_path / "src", epochs=3, tensorboard=True)
    train(source)
    branch = train(branch_run(source, 1, tmp_path / "branch", noise_seed=5))
    assert steps(read_logs(tmp_path / "branch", "train"), "epoch_total_loss") == [2, 3]
    assert steps(read_logs(tmp_path / "src", "train"), "epoch_total_loss") == [1, 2, 3]  # untouched
    logged = scalars(read_logs(tmp_path / "branch", "validation"), "epoch_total_loss")
    assert logged[3] == pytest.approx(branch.history[-1]["val_total_loss"], rel=1e-6)


def test_cli_set_turns_it_on(tmp_path, capsys):
    code = main(["train", "--config", "configs/demo.toml", "--set", f"run_dir={tmp_path}", "--set", "epochs=1",
                 "--set", "tensorboard=true", "--set", "verbose=0"])
    assert code == 0, capsys.readouterr().err
    assert Run.open(tmp_path).config.train.tensorboard is True
    assert steps(read_logs(tmp_path, "validation"), "reconstructions") == [1]


def test_without_tensorflow_it_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # how Python marks a module that cannot be imported
    with pytest.raises(RunError, match="needs TensorFlow"):
        train(tiny_run_config(tmp_path / "run", epochs=1, tensorboard=True))
    assert not (tmp_path / "run").exists()
    code = main(["train", "--config", "configs/demo.toml", "--set", f"run_dir={tmp_path / 'cli'}",
                 "--set", "tensorboard=true"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "zspace: error: tensorboard = true needs TensorFlow" in err
    assert not (tmp_path / "cli").exists()


def test_a_new_event_file_sorts_after_the_files_already_there(tmp_path):
    """Readers read a folder's event files in name order, and the name begins with the file's second:
    a file made in the same second as one already there (by another process: another host or pid in
    the name) could sort before it, so the writer waits for a later second."""
    import tensorflow as tf

    soon = int(time.time()) + 1  # dated this second or the next; "~" sorts after any host name
    there = tmp_path / f"events.out.tfevents.{soon}.~.99999.0.v2"
    there.write_bytes(b"")
    tb._wait_for_a_later_second(tmp_path)
    tf.summary.create_file_writer(str(tmp_path)).close()
    assert sorted(p.name for p in tmp_path.iterdir())[0] == there.name
    # a file dated far ahead (the clock was set back) is not waited for
    (tmp_path / f"events.out.tfevents.{soon + 3600}.~.99999.0.v2").write_bytes(b"")
    start = time.monotonic()
    tb._wait_for_a_later_second(tmp_path)
    assert time.monotonic() - start < 1


def test_a_failing_log_write_is_one_line_and_commits_no_checkpoint(tmp_path, monkeypatch, capsys):
    import tensorflow as tf

    writer_type = type(tf.summary.create_file_writer(str(tmp_path / "probe")))  # the class Keras' writers are
    real_flush = writer_type.flush
    checkpoints = tmp_path / "run" / "checkpoints"

    def full_disk_at_epoch_2(self):
        if list_checkpoints(checkpoints):  # epoch 1 is committed: epoch 2's events are being written
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
        return real_flush(self)

    monkeypatch.setattr(writer_type, "flush", full_disk_at_epoch_2)
    code = main(["train", "--config", "configs/demo.toml", "--set", f"run_dir={tmp_path / 'run'}",
                 "--set", "epochs=3", "--set", "tensorboard=true", "--set", "verbose=0"])
    err = capsys.readouterr().err
    assert code == 2 and "zspace: error: writing the TensorBoard logs of epoch 2" in err, err
    assert "No space left on device" in err and "Traceback" not in err
    assert [e for e, _ in list_checkpoints(checkpoints)] == [1]
