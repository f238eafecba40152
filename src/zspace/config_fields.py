"""Declarative config fields: each field carries its doc and checks; :class:`Config` enforces them.

Every zspace config class (``zspace.config``'s ModelConfig, TrainConfig, AnalysisConfig,
``zspace.data.prepare.PrepareConfig``, ``zspace.generation.GalleryConfig``) is a frozen dataclass
deriving from :class:`Config` whose fields are declared with :func:`config_field`. Construction
converts each value to its annotated type (TOML lists to tuples, ints to floats, false / "none"
to None) and runs the declared checks; a bad value raises ConfigError
"`name` must be <expected>. Received: name=<value>". No Keras imports: the CLI loads configs
before TensorFlow starts.

Seeds: a field named ``seed``, ``*_seed``, ``*_seeds`` (a list of seeds) or ``random_state`` is a
seed, whatever its class declares, and must lie in [0, :data:`MAX_SEED`] (None where its type allows
None): numpy's legacy seeding, scikit-learn's ``random_state`` and ``keras.utils.set_random_seed``
refuse anything else, deep inside a command.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomli_w

from zspace.errors import ConfigError

__all__ = ["Config", "Check", "config_field", "check", "positive", "at_least", "at_most", "in_range", "each",
           "same_length_as", "non_empty", "config_error", "toml_value", "did_you_mean", "parse_toml",
           "read_toml", "is_seed_field", "MAX_SEED", "MAX_BATCH_SIZE", "MAX_CONFIG_BYTES", "MAX_PROCESSES"]

MAX_SEED = 2**32 - 1
"""Largest seed (inclusive): numpy's RandomState, scikit-learn's random_state and Keras' set_random_seed take
seeds in [0, 2**32)."""

MAX_PROCESSES = 4096
"""Most processes of one multi-process run (``zspace train --num-processes``; JAX numbers them with
32-bit integers, and 4,096 machines is far beyond what this toolkit has been run on)."""

MAX_BATCH_SIZE = 2**16
"""Largest batch of images (training, encoding): a model predicts in fixed-size batches, so a batch is
allocated whole even for fewer images (65,536 96x96x3 float32 images are 7 GiB)."""

MAX_CONFIG_BYTES = 2**20
"""Largest config file read (1 MiB): a config holds a few dozen lines; anything larger is not one."""


@dataclass(frozen=True)
class Check:
    """A constraint on one field: ``ok(value, config)`` must hold, else "must be ``expected``".

    ``expected`` may be a function of the config when it quotes another field.
    """

    ok: Callable[[Any, Any], bool]
    expected: str | Callable[[Any], str]


def check(ok: Callable[[Any], bool], expected: str) -> Check:
    """A check of the value alone."""
    return Check(lambda v, _config: ok(v), expected)


def positive(expected: str = "a positive integer") -> Check:
    return check(lambda v: v > 0, expected)


def at_least(low: float, expected: str | None = None) -> Check:
    return check(lambda v: v >= low, expected or f">= {low}")


def at_most(high: float, expected: str | None = None) -> Check:
    return check(lambda v: v <= high, expected or f"at most {high:,}")


def in_range(low: float, high: float, brackets: str = "[]", expected: str | None = None) -> Check:
    """``low <= v <= high``; "(" / ")" in ``brackets`` make that end open."""
    def ok(v):
        return (v > low if brackets[0] == "(" else v >= low) and (v < high if brackets[1] == ")" else v <= high)
    return check(ok, expected or f"in {brackets[0]}{low}, {high}{brackets[1]}")


def each(ok: Callable[[Any], bool], expected: str) -> Check:
    """Every entry of a list field satisfies ``ok``."""
    return check(lambda v: all(ok(x) for x in v), expected)


def same_length_as(other: str) -> Check:
    def n(config):
        return len(config.value_of(other))
    return Check(lambda v, config: len(v) == n(config),
                 lambda config: f"a list of the same length as {other} ({n(config)})")


def non_empty(expected: str) -> Check:
    return check(lambda v: len(v.strip() if isinstance(v, str) else v) > 0, expected)


def config_field(doc: str, default: Any, *checks: Check) -> Any:
    """A dataclass field with its one-line doc (README reference) and the checks it must pass."""
    return field(default=default, metadata={"doc": doc, "checks": checks})


def config_error(name: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"`{name}` must be {expected}. Received: {name}={value!r}")


def _type_name(tp: Any, plural: bool = False) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is tuple:
        count = "" if args[-1] is Ellipsis else f"{len(args)} "
        return f"a list of {count}{_type_name(args[0], plural=True)}"
    if tp is type(None):
        return "none (false in TOML)"
    names = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "booleans"),
             str: ("a string", "strings")}
    return names[tp][plural]


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Returns ``value`` converted to ``tp`` (lists to tuples, ints to floats, false/"none" to None)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or value is False or value == "none"):
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(name, value, arg)
            except ConfigError:
                pass
    elif origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
    elif origin is tuple:
        items = args[:1] * len(value) if args[-1] is Ellipsis and isinstance(value, (list, tuple)) else args
        if isinstance(value, (list, tuple)) and len(value) == len(items):
            return tuple(_coerce(f"{name}[{i}]", v, t) for i, (v, t) in enumerate(zip(value, items)))
    elif tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise config_error(name, value, "a finite number")
        return float(value)
    elif isinstance(value, tp) and (tp is bool or not isinstance(value, bool)):
        if tp is str and "\x00" in value:  # TOML's "\u0000": no path or name holds one (os calls raise)
            raise config_error(name, value, "a string without NUL characters")
        return value
    raise config_error(name, value, _type_name(tp))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _plain(value: Any) -> Any:
    """TOML-ready value: tuples as lists, None as False."""
    if value is None:
        return False
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def toml_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value})[4:].strip()


def did_you_mean(key: str, known: Any) -> str:
    section, dot, name = key.rpartition(".")
    if dot and name in known:  # `model.kind`: fields are named without their section
        return f"; fields are named without their section: `{name}`"
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"; did you mean `{close[0]}`?" if close else f". Known fields: {', '.join(sorted(known))}"


def read_toml(path: str | Path, what: str) -> tuple[dict[str, Any], str]:
    """The table of a TOML file of at most MAX_CONFIG_BYTES of UTF-8 text, and its name for messages."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    with open(path, "rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)  # bounded: the path may name a huge file or a device
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 2**20} MiB; expected a TOML {what} file.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                          f"expected a TOML {what} file.") from None
    return parse_toml(text, str(path)), str(path)


def parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per nested array / inline table
        raise ConfigError(f"{source}: arrays or tables nested deeper than Python can parse; "
                          f"expected a TOML config.") from None


def is_seed_field(name: str) -> bool:
    """Whether a config field of this name holds a seed (or a list of seeds); see the module docstring."""
    return name in ("seed", "random_state") or name.endswith(("_seed", "_seeds"))


def _check_seed(name: str, value: Any) -> None:
    """ConfigError unless ``value`` (an int, a tuple of ints, or None) holds seeds in [0, MAX_SEED]."""
    seeds = value if isinstance(value, tuple) else () if value is None else (value,)
    if not all(0 <= s <= MAX_SEED for s in seeds):
        what = "integers" if isinstance(value, tuple) else "an integer"
        raise config_error(name, value, f"{what} in [0, {MAX_SEED}] (the seeds numpy, scikit-learn and Keras accept)")


class Config:
    """Base of the config dataclasses: validation from field metadata, dict / TOML round trip.

    Fields whose names mark them as seeds (:func:`is_seed_field`) are also checked against [0, MAX_SEED].
    """

    _what = "config"  # names the file kind in errors ("analysis config file not found")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            # Normalising in place (lists -> tuples, ints -> floats) is construction, not mutation.
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name), _hints(type(self))[f.name]))
            if is_seed_field(f.name):
                _check_seed(f.name, getattr(self, f.name))
        for f in dataclasses.fields(self):  # in field order: a check may quote an earlier field
            value = self.value_of(f.name)
            for rule in f.metadata.get("checks", ()):
                if value is not None and not rule.ok(value, self):
                    expected = rule.expected(self) if callable(rule.expected) else rule.expected
                    raise config_error(f.name, value, expected)
        self._check_together()

    def _check_together(self) -> None:
        """Cross-field checks beyond one field's declared ones (none by default)."""

    def value_of(self, name: str) -> Any:
        """The effective value of field ``name`` (a subclass may derive defaults left at None)."""
        return getattr(self, name)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists, None as False) that TOML can hold."""
        return {name: _plain(getattr(self, name)) for name in self.field_names()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None, where: str = "") -> Any:
        """Builds the config from ``{field: value}``; unknown names are errors naming ``source``."""
        source = source or cls._what
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a table{where}. Received: {data!r}")
        known = cls.field_names()
        for key in data:
            if key not in known:
                raise ConfigError(f"{source}: unknown field `{key}`{where}" + did_you_mean(key, known))
        return cls(**data)

    def to_toml(self) -> str:
        """One ``name = value`` line per field (lists inline), readable by :meth:`load`."""
        return "".join(f"{k} = {toml_value(v)}\n" for k, v in self.to_dict().items())

    @classmethod
    def load(cls, path: str | Path) -> Any:
        """Reads a TOML file of this config; errors name the file."""
        data, source = read_toml(path, cls._what)
        return cls.from_dict(data, source=source)

    def with_overrides(self, overrides: dict[str, Any]) -> Any:
        """A copy with fields replaced by name (``{"perplexity": 50}``)."""
        return self.from_dict({**self.to_dict(), **overrides}, source="overrides")
