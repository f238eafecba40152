"""Hostile model files: each is refused with one ModelFileError line naming the file, before Keras
unpacks, builds or allocates anything the file chose; model sizes are bounded from the config.

The hostile files are real zspace models saved by zspace, then rewritten with zipfile / h5py.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import tiny_model_config, tiny_run_config
from zspace.cli import main
from zspace.config import ModelConfig
from zspace.errors import ConfigError, ModelFileError, RunError
from zspace.model_size import MAX_MODEL_PARAMETERS, approx, model_size
from zspace.models import build_model, load_autoencoder, load_model
from zspace.models.saving import save_model
from zspace.rundir import Run
from zspace.training import train

WEIGHTS = "model.weights.h5"


# --- building hostile files ---------------------------------------------------------------

def saved(path: Path, model=None, compiled: bool = False) -> Path:
    """A tiny zspace VAE (or ``model``) saved by zspace at ``path``."""
    if model is None:
        model = build_model(tiny_model_config(), seed=0)
    if compiled:
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        model.optimizer.build(model.trainable_variables)
    save_model(model, path)
    return path


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_zip(path: Path, parts: list[tuple[str, bytes]], compression=zipfile.ZIP_STORED) -> Path:
    """Writes ``parts`` in order (duplicates allowed), each with ``compression`` unless given per part."""
    with zipfile.ZipFile(path, "w") as archive:
        for part in parts:
            name, data, *method = part
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=method[0] if method else compression)
    return path


def rewritten(source: Path, target: Path, config=None, weights: bytes | None = None,
              extra: list[tuple] = ()) -> Path:
    """``source`` with its config.json (a JSON value, or raw bytes) and/or weights replaced, plus ``extra``."""
    parts = members(source)
    if config is not None:
        parts["config.json"] = config if isinstance(config, bytes) else json.dumps(config).encode()
    if weights is not None:
        parts[WEIGHTS] = weights
    return write_zip(target, [*parts.items(), *extra])


def config_of(path: Path) -> dict:
    return json.loads(members(path)["config.json"])


def refusal(path: Path, load=load_model, match: str | None = None) -> str:
    """The one-line ModelFileError message of loading ``path`` (it must name the file)."""
    with pytest.raises(ModelFileError, match=match) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    assert len(message) < len(str(path)) + 320, message
    return message


@pytest.fixture
def model_file(tmp_path) -> Path:
    return saved(tmp_path / "m.keras")


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """The system temp dir for this test: an empty folder whose contents the test can check."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


# --- item 1: the archive ----------------------------------------------------------------------

def test_bomb_padded_below_the_archive_ratio_is_refused_without_unpacking(tmp_path, model_file, private_tmp):
    """Incompressible padding brought a bomb under the old whole-archive ratio; Keras then unpacked
    every member of an archive with more than three to a temporary folder."""
    random_bytes = np.random.default_rng(0).bytes(2**20)
    zeros = bytes(48 * 2**20)
    bomb = rewritten(model_file, tmp_path / "bomb.keras",
                     extra=[("padding.bin", random_bytes)] + [(f"zeros-{i}", zeros, zipfile.ZIP_DEFLATED)
                                                              for i in range(4)])
    with zipfile.ZipFile(bomb) as archive:
        infos = archive.infolist()
    assert sum(i.file_size for i in infos) / sum(i.compress_size for i in infos) < 200  # the old check passed it
    assert "'padding.bin' is not part of a Keras model file" in refusal(bomb)
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("extra", [
    [("assets/notes.txt", b"hello")],
    [(f"x{i}", b"") for i in range(20)],
    [("../escape.json", b"{}")],
])
def test_members_no_keras_model_has_are_refused(tmp_path, model_file, private_tmp, extra):
    path = rewritten(model_file, tmp_path / "extra.keras", extra=extra)
    refusal(path, match="is not part of a Keras model file|a .keras model has 3")
    assert list(private_tmp.iterdir()) == []


def test_duplicate_member_names_are_refused(tmp_path, model_file):
    second_config = json.dumps({"class_name": "Autoencoder"}).encode()
    path = rewritten(model_file, tmp_path / "dup.keras", extra=[("config.json", second_config)])
    refusal(path, match="'config.json' appears more than once")


def test_deflated_bomb_in_a_keras_member_is_refused(tmp_path, model_file):
    parts = members(model_file)
    path = write_zip(tmp_path / "bomb.keras", [("metadata.json", bytes(8 * 2**20), zipfile.ZIP_DEFLATED),
                     ("config.json", parts["config.json"]), (WEIGHTS, parts[WEIGHTS])])
    refusal(path, match="'metadata.json' unpacks to .* more than the 65,536 allowed")


def test_weights_larger_than_the_config_can_need_are_refused(tmp_path, model_file):
    """A stored (ratio 1) weights member padded far beyond what the tiny model can need."""
    padded = members(model_file)[WEIGHTS] + bytes(8 * 2**20)
    path = rewritten(model_file, tmp_path / "padded.keras", weights=padded)
    parameters = model_size(tiny_model_config()).parameters
    message = refusal(path, match="more than the .* bytes the model its config declares can need")
    assert f"{WEIGHTS} unpacks to {approx(len(padded))} bytes" in message and f"({parameters} parameters)" in message


def test_hdf5_dataset_declaring_more_than_the_model_needs_is_refused(tmp_path, model_file):
    """A gzip-filtered dataset declares 64 MiB in a few bytes; the sampling layer reads every dataset
    of its group, so the old loader allocated it."""
    buffer = io.BytesIO(members(model_file)[WEIGHTS])
    with h5py.File(buffer, "a") as h5:
        h5["encoder/layers/sampling/vars"].create_dataset("extra", shape=(2**24,), dtype="float32", chunks=(2**16,),
                                                          compression="gzip")
    path = rewritten(model_file, tmp_path / "h5bomb.keras", weights=buffer.getvalue())
    assert len(members(path)[WEIGHTS]) < 2**20
    refusal(path, match="the datasets of model.weights.h5 declare 6.71e\\+07 bytes, more than")


def test_hdf5_soft_link_is_refused(tmp_path, model_file):
    buffer = io.BytesIO(members(model_file)[WEIGHTS])
    with h5py.File(buffer, "a") as h5:
        h5["encoder/layers/sampling/vars/link"] = h5py.SoftLink("/encoder/layers/dense/vars/0")
    refusal(rewritten(model_file, tmp_path / "link.keras", weights=buffer.getvalue()), match="soft or external link")


def test_file_size_limit_is_read_from_the_environment(tmp_path, model_file, monkeypatch):
    load_model(model_file)
    monkeypatch.setenv("ZSPACE_MAX_MODEL_FILE_BYTES", "10_000")
    refusal(model_file, match="more than the 10,000 (allowed|of ZSPACE_MAX_MODEL_FILE_BYTES)")
    monkeypatch.setenv("ZSPACE_MAX_MODEL_FILE_BYTES", "lots")
    with pytest.raises(ConfigError, match="ZSPACE_MAX_MODEL_FILE_BYTES must be a positive integer"):
        load_model(model_file)


def test_real_files_of_every_kind_pass(tmp_path, images):
    """The checks refuse nothing zspace writes: compiled checkpoints, both halves, every variant."""
    for i, changes in enumerate([dict(kind="ae"), dict(batch_norm=True, dropout_rate=0.1, activation="selu"),
                                 dict(encoder_dense_units=5, activation="relu", kl_method="layer")]):
        model = build_model(tiny_model_config(**changes), seed=0)
        model.compile(optimizer=keras.optimizers.Adam(1e-3, amsgrad=True))
        model.train_on_batch(images, images)
        for part, network in (("model", model), ("encoder", model.encoder), ("decoder", model.decoder)):
            save_model(network, tmp_path / f"{i}-{part}.keras")
            assert isinstance(load_model(tmp_path / f"{i}-{part}.keras"), keras.Model)
        assert load_autoencoder(tmp_path / f"{i}-model.keras", compile=True).optimizer.iterations == 1


# --- item 2: sizes from the config ------------------------------------------------------------

ESTIMATED_CONFIGS = [
    dict(),
    dict(kind="ae"),
    dict(batch_norm=True, dropout_rate=0.1),
    dict(encoder_dense_units=5, batch_norm=True, activation="selu"),
    dict(kl_method="layer"),
    dict(kl_method="outputs"),
    dict(input_shape=(9, 9, 2), encoder_padding=("valid", "same"), decoder_filters=(5, 3, 2),
         decoder_kernels=(4, 3, 3), decoder_strides=(2, 2, 1), decoder_padding=("same", "valid", "same")),
]


def _output_values(layer) -> int:
    shape = layer.output.shape
    return int(np.prod(shape[1:]))


@pytest.mark.parametrize("changes", ESTIMATED_CONFIGS)
def test_size_estimate_equals_the_built_model(changes):
    """Weights exactly; activations: the input plus the output of every conv and dense layer."""
    config = tiny_model_config(**changes)
    model = build_model(config)
    size = model_size(config)
    assert size.parameters == sum(int(np.prod(w.shape)) for w in model.weights)
    assert size.tensors == len(model.weights)
    weighted = [layer for network in (model.encoder, model.decoder) for layer in network.layers
                if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.Dense))]
    assert size.activations == int(np.prod(config.input_shape)) + sum(map(_output_values, weighted))


@pytest.mark.parametrize("changes, field", [
    (dict(z_dim=1_000_000_000), "z_dim"),
    (dict(input_shape=(100_000, 100_000, 1)), "input_shape"),
    (dict(encoder_kernels=(3, 3, 3, 10_000), encoder_padding=("same",) * 4), "encoder_kernels"),
    (dict(encoder_filters=(32, 64, 64, 10**6)), "encoder_filters"),
    (dict(encoder_dense_units=10**7), "encoder_dense_units"),
])
def test_model_config_above_the_parameter_limit_is_refused(changes, field):
    with pytest.raises(ConfigError) as info:
        ModelConfig(**changes)
    message = str(info.value)
    assert message.startswith(f"`{field}` must be small enough for a model of at most 100,000,000 parameters "
                              f"(ZSPACE_MAX_MODEL_PARAMETERS); this one would have "), message


def test_activation_limit_names_the_input_shape():
    with pytest.raises(ConfigError, match=r"`input_shape` must be small enough for a model of at most "
                                          r"268,435,456 activation values per image"):
        ModelConfig(input_shape=(40_000, 40_000, 1), encoder_strides=(1, 2, 2, 200))


def test_parameter_limit_is_read_from_the_environment(monkeypatch):
    default = model_size(ModelConfig()).parameters
    assert default < MAX_MODEL_PARAMETERS
    monkeypatch.setenv("ZSPACE_MAX_MODEL_PARAMETERS", str(default - 1))
    with pytest.raises(ConfigError, match=f"at most {default - 1:,} parameters"):
        ModelConfig()
    monkeypatch.setenv("ZSPACE_MAX_MODEL_PARAMETERS", str(default))
    ModelConfig()


def test_conv_layer_count_is_bounded():
    with pytest.raises(ConfigError, match="`encoder_filters` must be a list of at most 256 layers"):
        ModelConfig(encoder_filters=(1,) * 300, encoder_kernels=(1,) * 300, encoder_strides=(1,) * 300,
                     encoder_padding=("same",) * 300)


def test_cli_train_with_a_huge_z_dim_gives_one_line(capsys, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(tiny_run_config(tmp_path / "run").to_toml())
    code = main(["train", "--config", str(config), "--set", "z_dim=1000000000"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("zspace: error: `z_dim` must be small enough") and "100,000,000" in lines[0]
    assert "Received: z_dim=1000000000" in lines[0]
    assert not (tmp_path / "run").exists()


def test_model_file_declaring_a_huge_z_dim_is_refused_before_building(tmp_path, model_file):
    config = config_of(model_file)
    config["config"]["config"]["z_dim"] = 1_000_000_000
    message = refusal(rewritten(model_file, tmp_path / "huge.keras", config=config))
    assert "`z_dim` must be small enough for a model of at most 100,000,000 parameters" in message


@pytest.mark.parametrize("layer_class, key, value, match", [
    ("Dense", "units", 10**9, "declare .* parameters, more than 100,000,000"),
    ("Conv2D", "kernel_size", [10**5, 10**5], "declare .* parameters, more than 100,000,000"),
    ("InputLayer", "batch_shape", [None, 10**6, 10**6, 1], "batch_shape .* more than 268,435,456"),
    ("Dense", "lora_rank", 10**6, "sets lora_rank"),
])
def test_network_file_declaring_absurd_sizes_is_refused(tmp_path, layer_class, key, value, match):
    encoder = saved(tmp_path / "encoder.keras", build_model(tiny_model_config()).encoder)
    config = config_of(encoder)
    layer = next(layer for layer in config["config"]["layers"] if layer["class_name"] == layer_class)
    layer["config"][key] = value
    refusal(rewritten(encoder, tmp_path / "hostile.keras", config=config), match=match)


# --- item 16: classes and structure of config.json --------------------------------------------

def _set_top(original, **changes):
    return {**original, **changes}


@pytest.mark.parametrize("mutate, match", [
    (lambda c: _set_top(c, module="zspace_evil.models"), "comes from module 'zspace_evil.models'"),
    (lambda c: _set_top(c, module="keraspwn"), "comes from module 'keraspwn'"),
    (lambda c: _set_top(c, module="keras.utils", class_name="get_file", registered_name=None),
     "'keras.utils.get_file' .* is not a class a zspace model file holds"),
    (lambda c: _set_top(c, module="keras.utils", class_name="Progbar", registered_name=None),
     "'keras.utils.Progbar' .* is not a class a zspace model file holds"),
    (lambda c: _set_top(c, module="builtins", class_name="function", config="print"),
     "comes from module 'builtins'"),
    (lambda c: _set_top(c, module="keras.layers", class_name="Dense", registered_name="zspace>Autoencoder"),
     "'keras.layers.Dense' .* is not a class"),
    (lambda c: _set_top(c, module="keras.src.models.sequential", class_name="Sequential", registered_name=None),
     "Sequential' .* is not a class"),
    (lambda c: [c], "not a Keras model config .* received list"),
    (lambda c: 3, "not a Keras model config .* received int 3"),
    (lambda c: {"class_name": ["Autoencoder"]}, "not a Keras model config"),
])
def test_config_json_naming_foreign_classes_or_not_a_model_is_refused(tmp_path, model_file, mutate, match):
    config = mutate(config_of(model_file))
    refusal(rewritten(model_file, tmp_path / "evil.keras", config=config), match=match)


def test_deeply_nested_config_json_is_refused(tmp_path, model_file):
    depth = 200_000
    nested = b'{"class_name": "Autoencoder", "config": ' + b"[" * depth + b"]" * depth + b"}"
    refusal(rewritten(model_file, tmp_path / "deep.keras", config=nested), match="nests deeper")
    moderately = {**config_of(model_file), "config": json.loads("[" * 500 + "]" * 500)}
    refusal(rewritten(model_file, tmp_path / "deep2.keras", config=moderately), match="nests deeper than 32")


def test_config_json_that_is_not_utf8_is_refused(tmp_path, model_file):
    raw = json.dumps(config_of(model_file)).encode().replace(b"Autoencoder", b"Auto\xff\xfeencoder", 1)
    refusal(rewritten(model_file, tmp_path / "latin.keras", config=raw), match="config.json is not UTF-8 text")


def test_plain_keras_model_is_not_a_zspace_model(tmp_path, model_file):
    inputs = keras.Input((3,))
    plain = saved(tmp_path / "plain.keras", keras.Model(inputs, keras.layers.Dense(2)(inputs)))
    refusal(plain, load=load_autoencoder, match="not a zspace model: its top-level class is 'Functional', not "
                                                "Autoencoder")
    sequential = saved(tmp_path / "seq.keras", keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    refusal(sequential, match="Sequential")


def test_lambda_function_in_a_layer_config_gives_one_line_naming_the_layer(tmp_path):
    encoder = saved(tmp_path / "encoder.keras", build_model(tiny_model_config()).encoder)
    config = config_of(encoder)
    dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
    dense["config"]["activation"] = {"class_name": "__lambda__", "config": {"value": "A" * 4000, "defaults": None,
                                                                            "closure": None}}
    message = refusal(rewritten(encoder, tmp_path / "lambda.keras", config=config), match="serialised Python lambda")
    assert f"layer {dense['config']['name']!r}" in message


# --- property: any mutation of a real config.json loads or is refused cleanly -----------------

MODULES = ["keras", "keras.layers", "keras.utils", "keras.src.models.functional", "zspace", "zspace.models",
           "zspace_evil.x", "os", "builtins", "", None]
CLASSES = ["Autoencoder", "Functional", "Dense", "Conv2D", "Lambda", "__lambda__", "function", "get_file",
           "Sequential", "__keras_tensor__", "__numpy__", "DTypePolicy", "Adam", "system"]
numbers = st.one_of(st.integers(-3, 40), st.sampled_from([0, -1, 10**9, 10**18, 2**63, 10**400]),
                    st.floats(allow_nan=True, allow_infinity=True))
leaves = st.one_of(numbers, st.booleans(), st.none(), st.text(max_size=8), st.sampled_from(CLASSES))


def _containers(node, found):
    """(container, key) of every value in the tree, for mutation."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found.append((node, key))
        _containers(value, found)
    return found


@st.composite
def mutated_configs(draw, original):
    config = json.loads(json.dumps(original))
    for _ in range(draw(st.integers(1, 3))):
        spots = _containers(config, [])
        container, key = draw(st.sampled_from(spots))
        action = draw(st.sampled_from(["leaf", "nest", "class", "shape"]))
        if action == "leaf":
            container[key] = draw(leaves)
        elif action == "nest":
            value = container[key]
            for _ in range(draw(st.integers(1, 60))):
                value = draw(st.sampled_from([[value], {"config": value}, {"class_name": "Dense", "config": value}]))
            container[key] = value
        elif action == "class":
            target = container if isinstance(container, dict) else {}
            target["class_name"] = draw(st.sampled_from(CLASSES))
            target["module"] = draw(st.sampled_from(MODULES))
        else:
            container[key] = draw(st.lists(numbers, min_size=0, max_size=5))
    return config


@pytest.fixture(scope="module")
def fuzz_sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    model = build_model(tiny_model_config(), seed=0)
    return [saved(folder / "model.keras", model, compiled=True), saved(folder / "encoder.keras", model.encoder)]


# FUZZ_EXAMPLES=2000 for a longer search (1,500 examples ran clean when this test was written).
@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 80)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_config_json_loads_or_is_refused(fuzz_sources, tmp_path, monkeypatch, data):
    # Limits far below the defaults: a mutation that passes them allocates little.
    monkeypatch.setenv("ZSPACE_MAX_MODEL_PARAMETERS", "200000")
    monkeypatch.setenv("ZSPACE_MAX_ACTIVATIONS_PER_IMAGE", "100000")
    source = data.draw(st.sampled_from(fuzz_sources))
    config = data.draw(mutated_configs(config_of(source)))
    path = rewritten(source, tmp_path / "fuzz.keras", config=config)
    try:
        model = load_model(path)
    except ModelFileError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(f"{path}: ") and len(message) < len(str(path)) + 320
    else:
        assert isinstance(model, keras.Model)


# --- every path that reads a model file ------------------------------------------------------

def _run_dir(root: Path) -> Path:
    root.mkdir()
    (root / "config.toml").write_text(tiny_run_config(root).to_toml())
    return root


def test_cli_generate_with_a_hostile_model_gives_one_line(capsys, tmp_path, private_tmp):
    run = _run_dir(tmp_path / "run")
    model = build_model(tiny_model_config(), seed=0)
    saved(run / "model.keras", model.encoder)  # a zspace network, but not a model: "no attribute 'encode'"
    code = main(["generate", str(run), "--out", str(tmp_path / "x.png")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0] == (f"zspace: error: {run / 'model.keras'}: not a zspace model: its top-level class is "
                        f"'Functional', not Autoencoder.")
    assert not (tmp_path / "x.png").exists()

    bomb = rewritten(saved(tmp_path / "m.keras", model), run / "model.keras",
                     extra=[(f"zeros-{i}", bytes(2**20), zipfile.ZIP_DEFLATED) for i in range(4)])
    assert main(["generate", str(run), "--out", str(tmp_path / "x.png")]) == 2
    assert "is not part of a Keras model file" in capsys.readouterr().err
    assert bomb.exists() and list(private_tmp.iterdir()) == []


def test_run_model_refuses_a_non_autoencoder(tmp_path):
    run = _run_dir(tmp_path / "run")
    saved(run / "model.keras", build_model(tiny_model_config()).decoder)
    with pytest.raises(ModelFileError, match="not a zspace model"):
        Run.open(run).model  # noqa: B018


def test_resume_refuses_a_hostile_checkpoint(tmp_path):
    """_restore_latest checks a checkpoint before load_weights reads its weights member."""
    config = tiny_run_config(tmp_path / "run", epochs=1)
    train(config)
    checkpoint = tmp_path / "run" / "checkpoints" / "epoch-0001.keras"
    padded = members(checkpoint)[WEIGHTS] + bytes(16 * 2**20)
    rewritten(checkpoint, tmp_path / "padded.keras", weights=padded).replace(checkpoint)
    longer = tiny_run_config(tmp_path / "run", epochs=2)
    with pytest.raises(RunError, match="none of the 1 checkpoints .* can be read"):
        train(longer)


def test_no_temporary_folder_is_left_by_refused_files(tmp_path, model_file, private_tmp):
    hostile = [
        rewritten(model_file, tmp_path / "a.keras", extra=[("assets/x", b"1"), ("assets/y", b"2")]),
        rewritten(model_file, tmp_path / "b.keras", config=b"\xff"),
        rewritten(model_file, tmp_path / "c.keras", weights=b"not hdf5"),
    ]
    for path in hostile:
        refusal(path)
    assert list(private_tmp.iterdir()) == []
    # Keras extracts big weights beside the file: nothing may be left there either.
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["system-tmp"]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_model_with_non_finite_weights_is_refused_with_one_line(tmp_path, capsys, bad):
    """NaN weights made every z NaN: analyze, evaluate, report and generate --dist gmm ended in tracebacks."""
    model = build_model(tiny_model_config(), seed=0)
    model.set_weights([np.full_like(w, bad) if w.dtype.kind == "f" and w.ndim > 1 else w
                       for w in model.get_weights()])
    path = saved(tmp_path / "m.keras", model)
    refusal(path, load_autoencoder, match="holds non-finite values")
    refusal(saved(tmp_path / "encoder.keras", model.encoder), load_model, match="holds non-finite values")
