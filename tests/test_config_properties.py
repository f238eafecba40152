"""Property-based tests: the config loader either builds a valid config or raises ConfigError."""

import dataclasses
import re
import tomllib

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zspace.config import AnalysisConfig, ModelConfig, RunConfig, TrainConfig, parse_overrides
from zspace.errors import ConfigError

FIELDS = {s: [f.name for f in dataclasses.fields(c)] for s, c in (("model", ModelConfig), ("train", TrainConfig))}

scalars = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["vae", "ae", "bce", "mse", "same", "valid", "relu", "selu", "leaky_relu", "layer",
                     "outputs", "add_loss", "train_step", "digits", "none", "stop", "retry"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=5), st.lists(st.integers(0, 300), min_size=1, max_size=5))


def section(name):
    keys = st.one_of(st.sampled_from(FIELDS[name]), st.text(min_size=1, max_size=10))
    return st.dictionaries(keys, values, max_size=6)


documents = st.fixed_dictionaries({}, optional={"model": section("model"), "train": section("train"),
                                                "extra": st.dictionaries(st.text(max_size=5), scalars, max_size=2)})

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(documents)
def test_random_documents_give_a_config_or_a_config_error(document):
    try:
        config = RunConfig.from_dict(document)
    except ConfigError as exc:
        assert str(exc)
        return
    # whatever was accepted survives the TOML round trip unchanged
    assert RunConfig.from_toml(config.to_toml()) == config


@SETTINGS
@given(st.text(max_size=200))
def test_random_text_gives_a_config_or_a_config_error(text):
    try:
        RunConfig.from_toml(text)
    except ConfigError:
        pass


@SETTINGS
@given(st.sampled_from(FIELDS["model"] + FIELDS["train"]), values)
def test_any_value_for_any_field_via_overrides(field, value):
    try:
        text = tomli_w.dumps({"v": value})
    except (TypeError, ValueError):
        return
    raw = text[4:].strip()
    try:
        config = RunConfig().with_overrides(parse_overrides([f"{field}={raw}"]))
    except ConfigError as exc:
        # the message names a field (this one, or the one it conflicts with) and the value received
        assert re.search(r"`\w+(\[\d+\])?`", str(exc)) and "Received" in str(exc), str(exc)
        return
    assert RunConfig.from_toml(config.to_toml()) == config


@SETTINGS
@given(st.dictionaries(st.sampled_from([f.name for f in dataclasses.fields(AnalysisConfig)]), values, max_size=4))
def test_analysis_config_random_values(data):
    try:
        config = AnalysisConfig.from_dict(data)
    except ConfigError:
        return
    assert AnalysisConfig.from_dict(tomllib.loads(config.to_toml())) == config
