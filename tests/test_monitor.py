"""The per-epoch z-space monitor, the jump detector (warn / reseed) and branching a run from an older epoch."""

import csv
import dataclasses
import hashlib
import json

import numpy as np
import pytest

from conftest import tiny_run_config
from zspace.cli import main
from zspace.config import TrainConfig
from zspace.errors import ConfigError, RunError
from zspace.rundir import Run, list_checkpoints, read_history, run_data
from zspace.training import branch_run, train
from zspace.training.callbacks import COLUMNS, MONITOR_COLUMNS, KLWarmup, find_jumps
from zspace.training.noise import fresh_noise_state
from zspace.training.run import monitor_images, new_model


def with_train(config, **changes):
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))


def weights_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def file_digests(root):
    """sha256 of every file under ``root`` but the lock (a lock's holder line is rewritten by each locker)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".zspace.lock"}


def no_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


# --- 1. the monitor -----------------------------------------------------------------------------

def test_vae_monitor_columns_are_the_radius_and_logvar_of_the_monitor_images(tmp_path):
    config = tiny_run_config(tmp_path, epochs=2, monitor_images=50)
    result = train(config)
    with open(tmp_path / "history.csv") as f:
        assert tuple(next(csv.reader(f))) == COLUMNS
    last = result.history[-1]
    for column in MONITOR_COLUMNS:
        assert np.isfinite(last[column]), column
    # the final model is the last epoch's: its mu and logvar of the 50 monitored images give the columns
    images = monitor_images(run_data(config)[1].x_val, config.train)
    assert len(images) == 50
    encoded = result.model.encode(images)
    mu_radius = np.linalg.norm(encoded["mu"].astype(np.float64), axis=1)
    assert last["mu_radius_mean"] == pytest.approx(mu_radius.mean(), rel=1e-5)
    assert last["mu_radius_max"] == pytest.approx(mu_radius.max(), rel=1e-5)
    assert last["logvar_mean"] == pytest.approx(encoded["logvar"].astype(np.float64).mean(), rel=1e-5, abs=1e-7)
    assert last["logvar_min"] == pytest.approx(float(encoded["logvar"].min()), rel=1e-5)
    assert last["z_radius_max"] >= last["z_radius_mean"] > 0
    # the monitored images are the same seeded choice every time, not the first ones
    again = monitor_images(run_data(config)[1].x_val, config.train)
    np.testing.assert_array_equal(images, again)
    assert not np.array_equal(images, run_data(config)[1].x_val[:50])


def test_ae_monitor_has_z_columns_only_and_zero_turns_it_off(tmp_path):
    ae = tiny_run_config(tmp_path / "ae", epochs=1).with_overrides({"kind": "ae"})
    row = train(ae).history[-1]
    assert np.isfinite(row["z_radius_mean"]) and row["z_radius_max"] >= row["z_radius_mean"]
    with open(tmp_path / "ae" / "history.csv") as f:
        cells = list(csv.DictReader(f))[-1]
    assert [cells[c] for c in ("mu_radius_mean", "mu_radius_max", "logvar_mean", "logvar_min")] == [""] * 4

    off = tiny_run_config(tmp_path / "off", epochs=1, monitor_images=0)
    row = train(off).history[-1]
    assert all(k not in row for k in MONITOR_COLUMNS) and "active_units" not in row
    assert all(np.isnan(read_history(tmp_path / "off" / "history.csv")[-1][k]) for k in MONITOR_COLUMNS)


def test_monitoring_does_not_change_what_training_draws(tmp_path):
    # The monitor's encode draws sampling noise; it is put back, so the trained weights are the
    # same whether (and how much) it monitors.
    watched = train(tiny_run_config(tmp_path / "a", epochs=2, monitor_images=300))
    unwatched = train(tiny_run_config(tmp_path / "b", epochs=2, monitor_images=0))
    assert weights_equal(watched.model, unwatched.model)


def test_monitor_size_is_bounded():
    with pytest.raises(ConfigError, match="monitor_images"):
        TrainConfig(monitor_images=10_001)
    with pytest.raises(ConfigError, match="jump_factor"):
        TrainConfig(jump_factor=1.0)


def test_history_without_monitor_columns_resumes(tmp_path):
    # history.csv of a run trained before the monitor existed: the old header, no radius columns
    config = tiny_run_config(tmp_path, epochs=1)
    train(config)
    path = tmp_path / "history.csv"
    old_columns = [c for c in COLUMNS if c not in MONITOR_COLUMNS]
    rows = list(csv.DictReader(path.open()))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old_columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    assert "z_radius_mean" not in read_history(path)[0]
    result = train(with_train(config, epochs=2))
    rows = read_history(path)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert np.isnan(rows[0]["z_radius_mean"]) and np.isfinite(rows[1]["z_radius_mean"])
    assert result.run.jump_events == []


# --- 2. the jump detector -----------------------------------------------------------------------

def test_find_jumps_compares_with_the_previous_epoch():
    before = {"val_kl_divergence": 2.0, "z_radius_mean": 4.0}
    assert find_jumps(before, {"val_kl_divergence": 5.9, "z_radius_mean": 11.0}, 3.0) == []
    jumps = find_jumps(before, {"val_kl_divergence": 6.5, "z_radius_mean": 16.5}, 3.0)
    assert [(j["quantity"], j["from"], j["to"]) for j in jumps] == [
        ("val_kl_divergence", 2.0, 6.5), ("z_radius_mean", 4.0, 16.5)]
    assert find_jumps({}, {"z_radius_mean": 100.0}, 3.0) == []  # an old row without the column
    assert find_jumps({"z_radius_mean": float("nan")}, {"z_radius_mean": 100.0}, 3.0) == []
    # below JUMP_FLOOR (1 nat) a tripling is noise: 0.01 -> 0.07 nats is no jump, 0.5 -> 3.5 is
    assert find_jumps({"val_kl_divergence": 0.01}, {"val_kl_divergence": 0.07}, 3.0) == []
    assert len(find_jumps({"val_kl_divergence": 0.5}, {"val_kl_divergence": 3.5}, 3.0)) == 1


def blow_up_mu_once(monkeypatch, at_epoch: int, times: int = 1):
    """Adds 10 to the encoder's mu bias as 1-based ``at_epoch`` begins, ``times`` times: that epoch's
    validation KL and radius jump (a few Adam steps cannot undo it). Returns the firings."""
    fired = []
    original = KLWarmup.on_epoch_begin

    def perturbed(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch + 1 == at_epoch and len(fired) < times:
            fired.append(epoch + 1)
            layer = self.model.encoder.get_layer("mu")
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, bias + 10.0])

    monkeypatch.setattr(KLWarmup, "on_epoch_begin", perturbed)
    return fired


def test_jump_warns_and_is_recorded(tmp_path, monkeypatch, capsys):
    fired = blow_up_mu_once(monkeypatch, at_epoch=2)
    result = train(tiny_run_config(tmp_path, epochs=3))
    assert fired == [2]
    err = capsys.readouterr().err
    assert "epoch 2: jump above jump_factor 3" in err and "z_radius_mean" in err
    events = Run.open(tmp_path).jump_events
    assert {e["quantity"] for e in events} == {"val_kl_divergence", "z_radius_mean"}
    assert all(e["epoch"] == 2 and e["action"] == "warn" and e["to"] > 3 * e["from"] for e in events)
    rows = read_history(tmp_path / "history.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # warn only: the epoch stays
    assert rows[1]["z_radius_mean"] > 3 * rows[0]["z_radius_mean"]
    assert json.loads((tmp_path / "summary.json").read_text())["jumps"] == 2
    assert result.run.read_state()["noise_seeds"] == []


def test_jump_reseed_rolls_back_and_trains_on_with_fresh_noise(tmp_path, monkeypatch, capsys):
    fired = blow_up_mu_once(monkeypatch, at_epoch=2)
    config = tiny_run_config(tmp_path, epochs=3, on_jump="reseed", seed=4, verbose=2)
    train(config)
    assert fired == [2]
    assert "rolled back to epoch 1" in capsys.readouterr().err
    run = Run.open(tmp_path)
    events = run.jump_events
    assert events and all(e["action"] == "reseed" and e["noise_seed"] == 5 and e["epoch"] == 2 for e in events)
    state = run.read_state()
    assert state["noise_seeds"] == [{"after_epoch": 1, "seed": 5}] and state["jump_reseeds"] == 1
    rows = read_history(tmp_path / "history.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[1]["z_radius_mean"] < 3 * rows[0]["z_radius_mean"]  # the retrained epoch 2 did not jump
    assert [e for e, _ in list_checkpoints(tmp_path / "checkpoints")] == [1, 2, 3]


def test_reseeds_run_out_then_it_only_warns(tmp_path, monkeypatch, capsys):
    fired = blow_up_mu_once(monkeypatch, at_epoch=2, times=5)
    train(tiny_run_config(tmp_path, epochs=2, on_jump="reseed", jump_reseeds=1))
    assert fired == [2, 2]
    assert "used all 1 of its jump_reseeds" in capsys.readouterr().err
    actions = [e["action"] for e in Run.open(tmp_path).jump_events]
    assert "reseed" in actions and actions[-1] == "warn"


def test_jump_factor_zero_turns_the_check_off(tmp_path, monkeypatch, capsys):
    blow_up_mu_once(monkeypatch, at_epoch=2)
    train(tiny_run_config(tmp_path, epochs=2, jump_factor=0.0, on_jump="reseed"))
    assert "jump" not in capsys.readouterr().err and Run.open(tmp_path).jump_events == []


# --- 3. branching -------------------------------------------------------------------------------

def test_reseeding_changes_the_sampling_noise_and_only_the_seed_matters(tmp_path):
    config = tiny_run_config(tmp_path, epochs=1)
    train(config)
    images = run_data(config)[1].x_val[:32]

    def z_with_noise_seed(seed):
        model = new_model(config, steps_per_epoch=1)
        model.load_weights(tmp_path / "checkpoints" / "epoch-0001.keras")
        model.set_noise_state(fresh_noise_state(model.noise_state(), seed))
        return model.encode(images)["z"]

    a, b, c = z_with_noise_seed(7), z_with_noise_seed(7), z_with_noise_seed(8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_branch_copies_epochs_keeps_the_source_and_reseeds(tmp_path):
    source_config = tiny_run_config(tmp_path / "src", epochs=3)
    source = train(source_config)
    before = file_digests(tmp_path / "src")

    def branch(name, seed, epochs=3):
        config = branch_run(with_train(source_config, epochs=epochs), 1, tmp_path / name, noise_seed=seed)
        return train(config)

    b7, again, b8 = branch("b7", 7), branch("b7-again", 7), branch("b8", 8)
    assert file_digests(tmp_path / "src") == before  # the source is only read
    run = Run.open(tmp_path / "b7")
    assert run.origin["source_run"] == str((tmp_path / "src").resolve())
    assert (run.origin["epoch"], run.origin["noise_seed_before"], run.origin["noise_seed"]) == (1, 0, 7)
    assert run.history[0] == source.history[0] and len(run.history) == 3
    # same seed: the same continuation; another seed: another one; neither is the source's
    assert no_seconds(b7.history) == no_seconds(again.history) and weights_equal(b7.model, again.model)
    assert not weights_equal(b7.model, b8.model) and not weights_equal(b7.model, source.model)
    assert Run.open(tmp_path / "src").origin is None


def test_branch_resumes_like_an_uninterrupted_branch(tmp_path):
    source_config = tiny_run_config(tmp_path / "src", epochs=2)
    train(source_config)
    straight = train(branch_run(with_train(source_config, epochs=3), 1, tmp_path / "straight", noise_seed=3))
    stopped = branch_run(with_train(source_config, epochs=2), 1, tmp_path / "stopped", noise_seed=3)
    train(stopped)  # epoch 2, then killed; resumed to 3 from its own checkpoint (not reseeded again)
    resumed = train(with_train(stopped, epochs=3))
    assert resumed.start_epoch == 2
    assert weights_equal(straight.model, resumed.model)


def test_branch_without_reseed_continues_like_the_source(tmp_path):
    source_config = tiny_run_config(tmp_path / "src", epochs=2)
    source = train(source_config)
    copy = train(branch_run(source_config, 1, tmp_path / "copy"))
    assert weights_equal(source.model, copy.model)
    assert Run.open(tmp_path / "copy").origin["noise_seed"] is None


def test_branch_errors_are_one_line_and_write_nothing(tmp_path, capsys, monkeypatch):
    source_config = tiny_run_config(tmp_path / "src", epochs=3, keep_checkpoints=2)
    train(source_config)
    before = file_digests(tmp_path / "src")
    with pytest.raises(RunError, match=r"no checkpoint of epoch 1; checkpoints of epochs: 2 3"):
        branch_run(source_config, 1, tmp_path / "new")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(RunError, match="exists and is not empty"):
        branch_run(source_config, 2, tmp_path / "full")
    with pytest.raises(RunError, match="inside it"):
        branch_run(source_config, 2, tmp_path / "src" / "sub")
    with pytest.raises(RunError, match="learning_rate"):
        branch_run(with_train(source_config, learning_rate=0.1), 2, tmp_path / "new")
    with pytest.raises(RunError, match="not a run directory"):
        branch_run(with_train(source_config, run_dir=str(tmp_path / "nothing")), 2, tmp_path / "new")
    # a failure while building (as a kill would) leaves no new run and no temporary folder behind
    import zspace.training.branch as branch_module

    def broken_copy(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(branch_module.shutil, "copyfile", broken_copy)
    with pytest.raises(OSError):
        branch_run(source_config, 2, tmp_path / "new")
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".tmp-*"))
    monkeypatch.undo()
    assert file_digests(tmp_path / "src") == before
    capsys.readouterr()
    for argv, message in [
        (["train", str(tmp_path / "src"), "--from-epoch", "1", "--out", str(tmp_path / "new")],
         "no checkpoint of epoch 1; checkpoints of epochs: 2 3"),
        (["train", str(tmp_path / "src"), "--from-epoch", "2"], "give its directory with --out"),
        (["train", str(tmp_path / "src"), "--reseed", "3"], "give --from-epoch N too"),
        (["train", str(tmp_path / "src"), "--from-epoch", "2", "--from-epoch", "3", "--out", "x"],
         "--from-epoch given 2 times"),
        (["train", str(tmp_path / "src"), "-c", str(tmp_path / "src" / "config.toml")], "not both"),
        (["train"], "neither"),
        (["train", str(tmp_path / "full")], "not a run directory"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "new").exists() and not (tmp_path / "x").exists()


def test_cli_branch_trains_the_new_run(tmp_path, capsys):
    train(tiny_run_config(tmp_path / "src", epochs=2))
    assert main(["train", str(tmp_path / "src"), "--from-epoch", "1", "--reseed", "9", "--out",
                 str(tmp_path / "b"), "--set", "epochs=3"]) == 0
    assert "branched" in capsys.readouterr().out
    run = Run.open(tmp_path / "b")
    assert [r["epoch"] for r in run.history] == [1, 2, 3] and run.origin["noise_seed"] == 9
    assert run.config.train.epochs == 3 and Run.open(tmp_path / "src").config.train.epochs == 2
    assert main(["train", str(tmp_path / "b")]) == 0  # the branch resumes as a run of its own (complete)


def test_old_run_state_reads_with_empty_noise_seeds_and_bad_files_are_refused(tmp_path):
    run = Run(tmp_path)
    run.state_path.write_text('{"lr_scale": 0.5, "nonfinite_events": []}')  # written before jumps existed
    state = run.read_state()
    assert (state["lr_scale"], state["noise_seeds"], state["jump_events"], state["jump_reseeds"]) == (0.5, [], [], 0)
    run.state_path.write_text('{"lr_scale": 1, "nonfinite_events": [], "noise_seeds": [{"after_epoch": "x"}]}')
    with pytest.raises(RunError, match="run_state.json: not a run state written by zspace"):
        run.read_state()
    assert run.origin is None
    run.origin_path.write_text('{"source_run": 3}')
    with pytest.raises(RunError, match="origin.json: not a run origin written by zspace"):
        run.origin  # noqa: B018
    run.origin_path.write_bytes(b" " * (2**16 + 1))
    with pytest.raises(RunError, match="larger than 64 KiB"):
        run.origin  # noqa: B018
