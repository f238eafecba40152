import dataclasses

import pytest

from zspace.config import ModelConfig, RunConfig, TrainConfig, load_config, parse_overrides
from zspace.errors import ConfigError


def test_defaults_are_the_fashion_mnist_reference_vae_with_mirrored_decoder():
    config = ModelConfig()
    assert config.encoder_filters == (32, 64, 64, 64)
    assert config.resolved().decoder_filters == (64, 64, 32, 1)
    assert config.resolved().decoder_strides == (1, 2, 2, 1)
    assert config.encoded_shape == (7, 7, 64)


def test_decoder_mirror_is_derived_not_stored():
    config = ModelConfig()
    resolved = config.resolved()
    assert (config.decoder_filters, config.decoder_padding) == (None, None)  # nothing written into it
    assert resolved.decoder_kernels == (3, 3, 3, 3) and resolved.decoder_padding == ("same",) * 4
    assert resolved.resolved() == resolved and resolved != config
    assert config.to_dict()["decoder_filters"] is False  # TOML has no None: false = mirror, as documented
    # a new encoder gets its own mirror; an explicit decoder is kept (and checked against the new encoder)
    smaller = dataclasses.replace(config, encoder_filters=(8, 16), encoder_kernels=(5, 5), encoder_strides=(2, 2),
                                  encoder_padding=("same", "same"))
    assert smaller.resolved().decoder_filters == (8, 1) and smaller.resolved().decoder_kernels == (5, 5)
    with pytest.raises(ConfigError, match="`decoder_kernels` must be a list of the same length as decoder_filters"):
        dataclasses.replace(smaller, decoder_filters=(8, 4, 1))


def test_old_config_with_spelled_out_mirror_resumes(tmp_path):
    from zspace.training.run import _config_differences

    new = RunConfig(ModelConfig(z_dim=8), TrainConfig(epochs=4))
    old_text = RunConfig(new.model.resolved(), new.train).to_toml()  # what config.toml held before
    assert "decoder_filters = [64, 64, 32, 1]" in old_text
    path = tmp_path / "config.toml"
    path.write_text(old_text)
    saved = load_config(path)
    assert saved.model.decoder_filters == (64, 64, 32, 1)
    assert _config_differences(saved, new) == []
    assert _config_differences(saved, new.with_overrides({"epochs": 9})) == []  # epochs may change on resume
    assert _config_differences(saved, new.with_overrides({"z_dim": 4})) == ["z_dim: 8 -> 4"]
    changed = new.with_overrides({"decoder_kernels": [5, 3, 3, 3]})
    assert _config_differences(saved, changed) == ["decoder_kernels: [3, 3, 3, 3] -> [5, 3, 3, 3]"]


@pytest.mark.parametrize(
    "changes, field, expected",
    [
        ({"z_dim": 0}, "z_dim", "positive integer"),
        ({"z_dim": 2.5}, "z_dim", "an integer"),
        ({"activation": "gelu"}, "activation", "'leaky_relu' | 'relu' | 'selu'"),
        ({"kind": "gan"}, "kind", "'ae' | 'vae'"),
        ({"encoder_kernels": (3, 3)}, "encoder_kernels", "same length as encoder_filters (4)"),
        ({"decoder_filters": (64, 32, 1)}, "decoder_kernels", "same length as decoder_filters (3)"),
        ({"encoder_strides": (2, 2, 2, 2)}, "decoder_strides", "gives back the input's 28x28"),
        ({"decoder_strides": (1, 2, 2, 2)}, "decoder_strides", "they give 56x56"),
        ({"decoder_filters": (64, 64, 32, 3)}, "decoder_filters", "channel count (1)"),
        ({"dropout_rate": 1.0}, "dropout_rate", "in [0, 1)"),
        ({"kl_factor": -1.0}, "kl_factor", "non-negative"),
        ({"epsilon_clip": 0.0}, "epsilon_clip", "positive number"),
        ({"input_shape": (28, 28)}, "input_shape", "three positive integers"),
        ({"encoder_padding": ("same", "same", "full", "same")}, "encoder_padding[2]", "'same' | 'valid'"),
        ({"encoder_padding": ("valid",) * 4, "encoder_kernels": (3, 3, 3, 9)}, "encoder_strides", "they leave -3x-3"),
        ({"encoder_filters": ()}, "encoder_filters", "at least one layer"),
        ({"encoder_strides": (1, 0, 2, 1)}, "encoder_strides", "positive integers"),
        ({"logvar_max": 51.0}, "logvar_max", "in (0, 50]"),
        ({"encoder_dense_units": -1}, "encoder_dense_units", "(0 = no dense layer)"),
    ],
)
def test_invalid_model_values_name_field_value_and_expectation(changes, field, expected):
    with pytest.raises(ConfigError) as info:
        ModelConfig(**changes)
    message = str(info.value)
    assert f"`{field}`" in message
    assert "Received:" in message
    assert expected in message


@pytest.mark.parametrize("changes, field", [
    ({"epochs": 0}, "epochs"), ({"batch_size": -1}, "batch_size"),
    ({"learning_rate": 0.0}, "learning_rate"), ({"validation_split": 1.0}, "validation_split"),
    ({"verbose": 3}, "verbose"), ({"seed": True}, "seed"),
])
def test_invalid_train_values(changes, field):
    with pytest.raises(ConfigError, match=f"`{field}`"):
        TrainConfig(**changes)


def test_valid_padding_shapes_are_computed_like_keras():
    config = ModelConfig(input_shape=(28, 28, 1), encoder_filters=(8,), encoder_kernels=(5,),
                         encoder_strides=(1,), encoder_padding=("valid",))
    assert config.encoded_shape == (24, 24, 8)
    assert config.decoded_shape == (28, 28)


def test_toml_round_trip_keeps_every_field(tmp_path):
    config = RunConfig(ModelConfig(kind="ae", epsilon_clip=None, encoder_dense_units=64),
                       TrainConfig(epochs=3, run_dir="x", lr_decay_epochs=2, lr_decay_factor=0.5))
    path = tmp_path / "c.toml"
    path.write_text(config.to_toml())
    assert load_config(path) == config
    assert RunConfig.from_dict(config.to_dict()) == config


def test_unknown_field_is_named_with_a_suggestion(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[model]\nz_dimm = 3\n")
    with pytest.raises(ConfigError, match=r"c.toml: unknown field `z_dimm` in \[model\]; did you mean `z_dim`"):
        load_config(path)


def test_bad_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[model\n")
    with pytest.raises(ConfigError, match="broken.toml: not valid TOML"):
        load_config(path)


def test_missing_config_file():
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_config("nope.toml")


def test_overrides_by_plain_field_name_across_sections():
    pairs = ["epochs=6", "run_dir=/tmp/r", "z_dim=32", "kind=ae", "epsilon_clip=none", "input_shape=[8, 8, 1]",
             "encoder_filters=[4, 8]", "encoder_kernels=[3, 3]", "encoder_strides=[2, 2]",
             "encoder_padding=['same', 'same']"]
    config = RunConfig().with_overrides(parse_overrides(pairs))
    assert config.train.epochs == 6 and config.train.run_dir == "/tmp/r"
    assert config.model.z_dim == 32 and config.model.kind == "ae" and config.model.epsilon_clip is None
    # the decoder follows the new encoder instead of keeping the old mirror
    assert config.model.decoder_filters is None and config.model.resolved().decoder_filters == (4, 1)


def test_override_errors():
    with pytest.raises(ConfigError, match="unknown config field `epoch`; did you mean `epochs`"):
        RunConfig().with_overrides({"epoch": 3})
    with pytest.raises(ConfigError, match="field=value"):
        parse_overrides(["epochs"])
    with pytest.raises(ConfigError, match="fields are named without their section: `kind`"):
        RunConfig().with_overrides({"model.kind": "ae"})
    with pytest.raises(ConfigError, match=r"k_max outside any section; a run config has \[model\] and \[train\] \(an analysis"):
        RunConfig.from_dict({"k_max": 4, "model": {}})
    with pytest.raises(ConfigError, match="`epochs` must be an integer. Received: epochs='many'"):
        RunConfig().with_overrides(parse_overrides(["epochs=many"]))
    with pytest.raises(ConfigError, match=r"--set epochs given twice \(epochs=3 and epochs=4\)"):  # never the last one silently
        parse_overrides(["epochs=3", "z_dim=2", "epochs = 4"])


def test_step_decay_schedule():
    t = TrainConfig(learning_rate=1e-3, lr_decay_factor=0.5, lr_decay_epochs=2)
    assert [t.learning_rate_at(e) for e in range(5)] == [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4]


def test_shipped_configs_load():
    from pathlib import Path

    from zspace.config import AnalysisConfig
    from zspace.evaluation.evaluate import EvaluationConfig

    paths = sorted((Path(__file__).parents[1] / "configs").glob("*.toml"))
    assert paths
    loaders = {"analysis": AnalysisConfig.load, "evaluate": EvaluationConfig.load}
    for path in paths:
        loaders.get(path.name.split("-")[0], load_config)(path)


def test_readme_config_reference_is_generated_from_the_dataclasses():
    import importlib.util
    from pathlib import Path

    root = Path(__file__).parents[1]
    spec = importlib.util.spec_from_file_location("config_reference", root / "scripts" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (root / "README.md").read_text()
    assert module.updated(readme) == readme, "run scripts/config_reference.py"
    assert "| `kl_method` |" in readme and "| `tsne_sizes` |" in readme


def test_analysis_config_validation_and_round_trip(tmp_path):
    from zspace.config import AnalysisConfig

    config = AnalysisConfig(radius_range=None, tsne_sizes=(), kmeans_seeds=(4,))
    path = tmp_path / "a.toml"
    path.write_text(config.to_toml())
    assert AnalysisConfig.load(path) == config
    assert list(AnalysisConfig(k_min=2, k_max=7, k_step=2).ks) == [2, 4, 6]
    with pytest.raises(ConfigError, match="`radius_range` must be"):
        AnalysisConfig(radius_range=(5.0, 1.0))
    with pytest.raises(ConfigError, match="unknown field `k_maximum`; did you mean `k_max`"):
        AnalysisConfig().with_overrides({"k_maximum": 3})


def test_dataset_doc_names_every_dataset_the_loader_accepts():
    from zspace.config import field_docs
    from zspace.data import datasets
    from zspace.errors import DataError

    doc = dict((name, doc) for name, _, doc in field_docs()["train"])["dataset"]
    for name in datasets.DATASETS:  # the loader's own registry: a new dataset must be documented
        assert f'"{name}' in doc, f"the `dataset` doc omits {name!r}"
    with pytest.raises(DataError, match="expected one of 'digits', 'mnist', .*'cache:FOLDER'"):
        datasets.load_dataset("no-such-dataset")
    with pytest.raises(DataError, match="unknown dataset 'digits:x'"):
        datasets.load_dataset("digits:x")


def test_prepare_and_gallery_configs_raise_config_errors():
    from zspace.data.prepare import PrepareConfig
    from zspace.generation.gallery import GalleryConfig

    for cls, changes, message in [
        (PrepareConfig, {"size": 0}, "`size` must be a positive number of pixels. Received: size=0"),
        (PrepareConfig, {"crop": (5, 0, 5, 9)}, "`crop` must be (left, top, right, bottom) with 0 <= left < right"),
        (PrepareConfig, {"crop": (1, 2, 3)}, "`crop` must be a list of 4 integers or none (false in TOML). "
                                             "Received: crop=(1, 2, 3)"),
        (PrepareConfig, {"max_bad_fraction": 1.5}, "`max_bad_fraction` must be in [0, 1]. Received: max_bad_fraction=1.5"),
        (PrepareConfig, {"shard_size": 0}, "`shard_size` must be a positive integer"),
        (PrepareConfig, {"workers": -1}, "`workers` must be >= 0 (0 = all cores)"),
        (PrepareConfig, {"split_fractions": (0.5, 0.5)}, "`split_fractions` must be two fractions"),
        (GalleryConfig, {"n": 0}, "`n` must be a positive integer. Received: n=0"),
        (GalleryConfig, {"limits": ()}, "`limits` must be at least one limit"),
        (GalleryConfig, {"limits": (1.0, -2.0)}, "`limits` must be positive half-widths"),
        (GalleryConfig, {"sharpen_factor": -1.0}, "`sharpen_factor` must be a non-negative number, or none"),
        (GalleryConfig, {"gmm_components": 0}, "`gmm_components` must be a positive integer"),
    ]:
        with pytest.raises(ConfigError) as info:
            cls(**changes)
        assert message in str(info.value)
    assert PrepareConfig(crop=[0, 0, 4, 4]).crop == (0, 0, 4, 4)
    assert GalleryConfig.from_dict(GalleryConfig(sharpen_factor=2.0).to_dict()).sharpen_factor == 2.0


def _all_config_classes():
    from zspace.config import AnalysisConfig
    from zspace.data.prepare import PrepareConfig
    from zspace.evaluation.evaluate import EvaluationConfig
    from zspace.generation import GalleryConfig, SecondStageConfig

    return [ModelConfig, TrainConfig, AnalysisConfig, EvaluationConfig, PrepareConfig, GalleryConfig,
            SecondStageConfig]


def test_every_seed_field_of_every_config_class_is_bounded():
    """numpy, scikit-learn and Keras take seeds in [0, 2**32): a larger one failed deep inside a command."""
    from zspace.config_fields import MAX_SEED, is_seed_field

    seed_fields = [(cls, f.name) for cls in _all_config_classes() for f in dataclasses.fields(cls)
                   if is_seed_field(f.name)]
    names = {f"{cls.__name__}.{name}" for cls, name in seed_fields}
    assert {"TrainConfig.seed", "AnalysisConfig.seed", "AnalysisConfig.kmeans_seeds", "EvaluationConfig.seed",
            "GalleryConfig.seed", "SecondStageConfig.random_state", "PrepareConfig.split_seed"} <= names
    for cls, name in seed_fields:
        is_list = name.endswith("_seeds")
        for bad in (MAX_SEED + 1, 99999999999, -1):
            with pytest.raises(ConfigError) as info:
                cls(**{name: (0, bad) if is_list else bad})
            assert f"`{name}` must be {'integers' if is_list else 'an integer'} in [0, {MAX_SEED}]" in str(info.value)
        assert getattr(cls(**{name: (MAX_SEED,) if is_list else MAX_SEED}), name) in (MAX_SEED, (MAX_SEED,))


@pytest.mark.parametrize("cls_name, bad, limit, message", [
    ("TrainConfig", {"epochs": 10_001}, {"epochs": 10_000}, "`epochs` must be at most 10,000"),
    ("TrainConfig", {"batch_size": 2**16 + 1}, {"batch_size": 2**16}, "`batch_size` must be at most 65,536"),
    ("ModelConfig", {"epsilon_scale": 1e39}, {"epsilon_scale": 1e3}, "`epsilon_scale` must be in [0, 1000]"),
    ("AnalysisConfig", {"batch_size": 2**16 + 1}, {"batch_size": 2**16}, "`batch_size` must be at most 65,536"),
    ("AnalysisConfig", {"axis_bins": 10_001}, {"axis_bins": 10_000}, "`axis_bins` must be at most 10,000"),
    ("AnalysisConfig", {"k_max": 10_001}, {"k_max": 10_000}, "`k_max` must be at most 10,000"),
    ("AnalysisConfig", {"radius_range": (0, 5000.5)}, {"radius_range": (0, 5000)},
     "`radius_range` must be a range of at most 10,000 bins of radius_bin_width (0.5)"),
    ("AnalysisConfig", {"radius_bin_width": 1e-4, "radius_range": None},
     {"radius_bin_width": 1e-3, "radius_range": None}, "`radius_bin_width` must be at least 0.001"),
    ("AnalysisConfig", {"perplexity": 0.2}, {"perplexity": 1.0}, "`perplexity` must be at least 1"),
    ("GalleryConfig", {"gmm_components": 1001}, {"gmm_components": 1000}, "`gmm_components` must be at most 1,000"),
])
def test_sizes_that_exhaust_memory_or_time_are_refused(cls_name, bad, limit, message):
    cls = {c.__name__: c for c in _all_config_classes()}[cls_name]
    with pytest.raises(ConfigError) as info:
        cls(**bad)
    assert message in str(info.value)
    cls(**limit)  # the limit itself is accepted


def test_config_files_are_read_bounded_and_as_utf8(tmp_path):
    from zspace.config_fields import MAX_CONFIG_BYTES

    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than 1 MiB; expected a TOML config file"):
        load_config(big)
    latin = tmp_path / "latin.toml"
    latin.write_bytes('[train]\ndataset = "d\xe9j\xe0"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xe9 at offset 20\); expected a TOML config file"):
        load_config(latin)


@pytest.mark.parametrize("nested", ["[" * 5000 + "]" * 5000, "{a = " * 5000 + "1" + "}" * 5000])
def test_deeply_nested_toml_is_one_config_error(tmp_path, nested):
    # tomllib recurses once per level: a few thousand levels (10 KB) exhaust Python's stack.
    path = tmp_path / "deep.toml"
    path.write_text(f"[model]\nz_dim = {nested}\n")
    with pytest.raises(ConfigError, match="deep.toml: arrays or tables nested deeper than Python can parse"):
        load_config(path)
    with pytest.raises(ConfigError, match="--set z_dim: the value nests arrays or tables deeper"):
        parse_overrides([f"z_dim={nested}"])
