"""Property-based tests: the config loader either builds a valid config or raises a ConfigError naming the field."""

import dataclasses
import math
import re
import tomllib
import types
import typing

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


# --- every field of every config class, from its annotation -------------------------------

def _config_classes():
    from zspace.data.prepare import PrepareConfig
    from zspace.generation.gallery import GalleryConfig

    return [ModelConfig, TrainConfig, AnalysisConfig, PrepareConfig, GalleryConfig]


CLASS_FIELDS = [(cls, f) for cls in _config_classes() for f in dataclasses.fields(cls)]
NAMED = st.sampled_from(CLASS_FIELDS).map(lambda cf: (cf[0], cf[1], typing.get_type_hints(cf[0])[cf[1].name]))


def typed(tp):
    """Values of type ``tp`` as construction stores them (tuples, floats), valid or not."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(st.none() if a is type(None) else typed(a) for a in args))
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is tuple:
        if args[-1] is Ellipsis:
            return st.lists(typed(args[0]), max_size=5).map(tuple)
        return st.tuples(*map(typed, args))
    return {int: st.integers(-3, 300), float: st.floats(-2, 100), bool: st.booleans(), str: st.text(max_size=8)}[tp]


def wrong(tp):
    """Values that are not of type ``tp`` in any spelling the loader accepts."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = next(a for a in args if a is not type(None))
        return wrong(inner).filter(lambda v: v is not False and v != "none")  # false / "none" spell None
    if origin is typing.Literal:
        return st.one_of(st.text(max_size=8).filter(lambda v: v not in args), st.integers())
    if origin is tuple:
        return st.one_of(st.integers(), st.text(max_size=8), st.floats())
    return {int: st.one_of(st.text(max_size=8), st.floats(), st.booleans()),
            float: st.one_of(st.text(max_size=8), st.booleans(), st.sampled_from([math.nan, math.inf, -math.inf])),
            bool: st.one_of(st.integers(), st.text(max_size=8)),
            str: st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(st.text(max_size=3)))}[tp]


@SETTINGS
@given(st.data())
def test_a_wrongly_typed_value_is_named_with_field_and_value(data):
    cls, f, tp = data.draw(NAMED)
    value = data.draw(wrong(tp))
    try:
        cls(**{f.name: value})
    except ConfigError as exc:
        message = str(exc)
    else:
        raise AssertionError(f"{cls.__name__}({f.name}={value!r}) was accepted")
    assert message.startswith(f"`{f.name}` must be "), message
    assert message.endswith(f". Received: {f.name}={value!r}"), message
    assert "\n" not in message


@SETTINGS
@given(st.data())
def test_every_declared_check_is_enforced_and_named(data):
    cls, f, tp = data.draw(NAMED)
    value = data.draw(typed(tp))
    default = cls()
    violated = value is not None and any(not rule.ok(value, default) for rule in f.metadata.get("checks", ()))
    try:
        config = cls(**{f.name: value})
    except ConfigError as exc:
        if violated:
            assert str(exc).startswith(f"`{f.name}` must be "), str(exc)
            assert str(exc).endswith(f". Received: {f.name}={value!r}"), str(exc)
        else:  # a cross-field check (shapes, k_max >= k_min) names the field it blames
            assert re.match(r"`\w+` must be .*\. Received: \w+=", str(exc)), str(exc)
        return
    assert not violated, f"{cls.__name__}({f.name}={value!r}) passed a check it violates"
    assert getattr(config, f.name) == value


@SETTINGS
@given(st.data())
def test_valid_configs_survive_the_toml_round_trip(data):
    cls = data.draw(st.sampled_from(_config_classes()))
    hints = typing.get_type_hints(cls)
    names = data.draw(st.lists(st.sampled_from([f.name for f in dataclasses.fields(cls)]), max_size=4, unique=True))
    try:
        config = cls(**{name: data.draw(typed(hints[name])) for name in names})
    except ConfigError:
        return
    assert cls.from_dict(tomllib.loads(config.to_toml())) == config
    assert config.with_overrides({}) == config


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


# --- `--set key=value` for every field of every config class (issue 12, item 17) ------------------

def _override_targets():
    """(base config, field names): RunConfig (model + train), AnalysisConfig, EvaluationConfig."""
    from zspace.evaluation.evaluate import EvaluationConfig

    return [(RunConfig(), FIELDS["model"] + FIELDS["train"]),
            (AnalysisConfig(), [f.name for f in dataclasses.fields(AnalysisConfig)]),
            (EvaluationConfig(), [f.name for f in dataclasses.fields(EvaluationConfig)])]


OVERRIDE_TARGETS = [(base, name) for base, names in _override_targets() for name in names]
# TOML literals as a user types them after `--set key=`: huge and negative ints, nan / inf, strings, lists
hostile_scalars = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["4294967296", "99999999999", "9223372036854775808", "-1", "0", "1e308", "1e39", "-1e308",
                     "1e-300", "nan", "inf", "-inf", "true", "false", "none", "''", "1979-05-27"]),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda v: tomli_w.dumps({"v": v})[4:].strip()),
    st.text(max_size=8).map(lambda v: tomli_w.dumps({"v": v})[4:].strip()),
    st.text(max_size=8),  # not TOML: taken as a plain string
)
hostile_values = st.one_of(hostile_scalars, st.lists(hostile_scalars, max_size=4).map(lambda v: f"[{', '.join(v)}]"))


def _seed_values(config) -> list[int]:
    sections = [config.model, config.train] if isinstance(config, RunConfig) else [config]
    from zspace.config_fields import is_seed_field

    values = []
    for section in sections:
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if is_seed_field(f.name) and value is not None:
                values += list(value) if isinstance(value, tuple) else [value]
    return values


@SETTINGS
@given(st.sampled_from(OVERRIDE_TARGETS), hostile_values)
def test_any_set_override_gives_a_config_or_one_config_error(target, raw):
    """Only a ConfigError (one line, naming a field and the value) or a config whose seeds numpy,
    scikit-learn and Keras accept; nothing else escapes ``with_overrides(parse_overrides(...))``."""
    from zspace.config_fields import MAX_SEED

    base, name = target
    try:
        config = base.with_overrides(parse_overrides([f"{name}={raw}"]))
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and "Received" in message, message
        assert re.search(r"`\w+(\[\d+\])?`", message), message
        return
    assert all(0 <= s <= MAX_SEED for s in _seed_values(config)), config
