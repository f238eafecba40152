import csv
import dataclasses

import numpy as np
import pytest

from conftest import tiny_run_config
from zspace.config import ModelConfig, RunConfig, TrainConfig
from zspace.data import load_dataset
from zspace.errors import RunError
from zspace.training import read_history, run_data, train
from zspace.rundir import list_checkpoints
from zspace.training.callbacks import COLUMNS


def with_train(config, **changes):
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))


def weights_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def numpy_losses(model, images):
    """(BCE summed per image, KL in nats per image), each averaged over ``images``, in float64.

    The model's networks give mu, logvar and the reconstruction; the losses are numpy's own.
    Deterministic only for a model with epsilon_scale = 0 (z = mu).
    """
    encoded = model.encode(images)
    mu, logvar = (encoded[k].astype(np.float64) for k in ("mu", "logvar"))
    np.testing.assert_array_equal(encoded["z"], encoded["mu"])  # no sampling noise
    output = np.clip(model.decode(encoded["z"]).astype(np.float64), 1e-7, 1 - 1e-7)  # Keras' BCE clip
    x = np.asarray(images, dtype=np.float64)
    bce = -(x * np.log(output) + (1 - x) * np.log(1 - output)).reshape(len(x), -1).sum(axis=1)
    kl = -0.5 * (1 + logvar - mu**2 - np.exp(logvar)).sum(axis=1)
    return bce.mean(), kl.mean()


@pytest.mark.backend
@pytest.mark.parametrize("method", ["layer", "outputs", "add_loss", "train_step"])
def test_validation_metrics_of_every_kl_method_match_numpy(tmp_path, method):
    # epsilon_scale = 0 makes z = mu, so the validation losses are a function of the final
    # weights alone. 180 validation images in batches of 64 (a smaller last batch): the
    # epoch's metrics must be means over images, not over batches.
    config = tiny_run_config(tmp_path, batch_size=64).with_overrides(
        {"kl_method": method, "kl_factor": 2.0, "epsilon_scale": 0.0})
    result = train(config)
    x_val = run_data(config)[1].x_val
    assert len(x_val) % 64
    reco, kl = numpy_losses(result.model, x_val)
    last = result.history[-1]
    assert last["val_reco_loss"] == pytest.approx(reco, rel=1e-4)
    assert last["val_kl_divergence"] == pytest.approx(kl, rel=1e-4)
    assert last["val_kl_loss"] == pytest.approx(2.0 * kl, rel=1e-4)
    assert last["val_total_loss"] == pytest.approx(reco + 2.0 * kl, rel=1e-4)


def test_run_directory_contents(tmp_path):
    result = train(tiny_run_config(tmp_path / "run", epochs=3, keep_checkpoints=2))
    root = tmp_path / "run"
    for name in ("config.toml", "history.csv", "model.keras", "encoder.keras", "decoder.keras", "summary.json"):
        assert (root / name).is_file(), name
    assert [e for e, _ in list_checkpoints(root / "checkpoints")] == [2, 3]
    with open(root / "history.csv") as f:
        header = next(csv.reader(f))
    assert tuple(header) == COLUMNS
    assert [row["epoch"] for row in read_history(root / "history.csv")] == [1, 2, 3]
    saved = RunConfig.from_toml((root / "config.toml").read_text())
    assert saved.resolved_dict() == result.config.resolved_dict()
    assert saved.model.decoder_filters == (4, 1)  # the decoder that was trained, spelled out
    assert not list(root.rglob(".tmp-*"))


def test_same_seed_same_losses_different_seed_different(tmp_path):
    a = train(tiny_run_config(tmp_path / "a"))
    b = train(tiny_run_config(tmp_path / "b"))
    c = train(tiny_run_config(tmp_path / "c", seed=1))
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(a.history) == drop(b.history)
    assert weights_equal(a.model, b.model)
    assert drop(a.history) != drop(c.history)


def test_resume_continues_without_duplicates_and_matches_uninterrupted_run(tmp_path):
    straight = train(tiny_run_config(tmp_path / "straight", epochs=4))
    config = tiny_run_config(tmp_path / "resumed", epochs=2)
    train(config)
    resumed = train(with_train(config, epochs=4))
    assert resumed.start_epoch == 2
    assert [r["epoch"] for r in read_history(tmp_path / "resumed" / "history.csv")] == [1, 2, 3, 4]
    assert weights_equal(straight.model, resumed.model)
    # running the finished run again trains nothing and keeps the history
    again = train(with_train(config, epochs=4))
    assert again.start_epoch == 4 and len(again.history) == 4


def test_resume_drops_history_rows_without_checkpoint(tmp_path):
    config = tiny_run_config(tmp_path, epochs=2)
    train(config)
    (tmp_path / "checkpoints" / "epoch-0002.keras").unlink()  # as if killed between the two writes
    result = train(config)
    assert result.start_epoch == 1
    assert [r["epoch"] for r in read_history(tmp_path / "history.csv")] == [1, 2]


def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path, capsys):
    config = tiny_run_config(tmp_path, epochs=2, verbose=2)
    train(config)
    (tmp_path / "checkpoints" / "epoch-0002.keras").write_bytes(b"truncated")
    result = train(with_train(config, epochs=3))
    assert result.start_epoch == 1
    assert "epoch-0002.keras is unreadable" in capsys.readouterr().err


def test_resume_with_changed_model_is_refused(tmp_path):
    config = tiny_run_config(tmp_path)
    train(config)
    changed = dataclasses.replace(config, model=dataclasses.replace(config.model, z_dim=5))
    with pytest.raises(RunError, match=r"Changed: z_dim: 3 -> 5"):
        train(changed)
    with pytest.raises(RunError, match=r"learning_rate"):
        train(with_train(config, learning_rate=0.1))


def test_stale_temporaries_are_cleaned(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".tmp-epoch-0001-x.keras").write_bytes(b"half")
    train(tiny_run_config(tmp_path, epochs=1))
    assert not list(tmp_path.rglob(".tmp-*"))


def test_unwritable_run_dir_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunError, match="cannot be created"):
        train(tiny_run_config(blocker / "run"))


def test_learning_rate_schedule_reaches_the_optimizer(tmp_path):
    result = train(tiny_run_config(tmp_path, epochs=3, lr_decay_epochs=1, lr_decay_factor=0.5))
    assert [r["learning_rate"] for r in result.history] == pytest.approx([1e-3, 5e-4, 2.5e-4])


@pytest.mark.slow
@pytest.mark.backend
def test_real_training_on_a_fashion_mnist_slice_lowers_the_loss(tmp_path, fashion_dir):
    data = load_dataset("fashion_mnist", data_dir=fashion_dir)
    model = ModelConfig(z_dim=8, encoder_filters=(16, 32), encoder_kernels=(3, 3), encoder_strides=(2, 2),
                        encoder_padding=("same", "same"))
    config = RunConfig(model, TrainConfig(dataset="fashion_mnist", data_dir=str(fashion_dir), subset=3000,
                                          epochs=3, batch_size=100, run_dir=str(tmp_path), verbose=0))
    history = train(config, dataset=data).history
    val = [r["val_total_loss"] for r in history]
    assert val[-1] < val[0] < 784 * np.log(2)  # below the loss of predicting 0.5 everywhere
    assert history[-1]["reco_loss"] < 0.8 * history[0]["reco_loss"]


def test_tf_pipeline_gives_the_batches_of_epoch_batches():
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the in-graph pipeline is TensorFlow's")
    from zspace.training import EpochBatches
    from zspace.training.tf_pipeline import epoch_dataset

    x = np.random.default_rng(0).random((1000, 4, 4, 1)).astype(np.float32)
    for seed, start, end in ((3, 2, 4), (None, 0, 1)):
        reference = EpochBatches(x, 96, seed=seed, start_epoch=start, end_epoch=end)
        batches = list(epoch_dataset(x, 96, seed, start, end))
        assert len(batches) == len(reference) == 11 * (end - start)
        for i, (inputs, targets) in enumerate(batches):
            np.testing.assert_array_equal(inputs.numpy(), reference[i][0])
            np.testing.assert_array_equal(targets.numpy(), reference[i][1])
