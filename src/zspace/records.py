"""Typed result records: frozen dataclasses that write themselves as strict JSON and read themselves back.

``to_json`` gives plain JSON types only: arrays become (nested) lists, tuples lists, dict keys
strings, and the non-finite floats that strict JSON lacks become the strings "inf", "-inf" and
"nan" (``float()`` in any language parses them back). ``from_json`` restores the annotated types
(arrays, tuples, int keys, floats, nested records) from the field annotations, so readers get
attributes of the right type and never see those strings.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

import numpy as np

__all__ = ["Record", "to_json_value"]


def to_json_value(value: Any) -> Any:
    """``value`` as plain JSON types (see the module docstring)."""
    if isinstance(value, Record):
        return value.to_json()
    if dataclasses.is_dataclass(value) and hasattr(value, "to_dict"):  # config classes
        return to_json_value(value.to_dict())
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json_value(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _floats(value: Any) -> Any:
    """Nested lists with "inf" / "nan" strings turned back into floats."""
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return float(value) if isinstance(value, str) else value


def _from_json_value(value: Any, tp: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return _from_json_value(value, next(a for a in args if a is not type(None)))
    if tp is Any:
        return value
    if tp is np.ndarray:
        array = np.asarray(_floats(value))
        if array.dtype.kind not in "biuf":  # numbers only: no object or string arrays from a file
            raise TypeError(f"expected a (nested) list of numbers, got {str(value)[:80]}")
        return array
    if tp is float:
        return float(value)
    if tp in (int, str, bool):
        if not isinstance(value, tp):
            raise TypeError(f"expected {tp.__name__}, got {value!r}")
        return value
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json_value(v, args[0]) for v in value)
        if len(value) != len(args):
            raise ValueError(f"expected {len(args)} values, got {value!r}")
        return tuple(_from_json_value(v, a) for v, a in zip(value, args))
    if origin is dict:
        key_tp, value_tp = args
        return {_from_json_value(int(k) if key_tp is int else k, key_tp): _from_json_value(v, value_tp)
                for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_json(value)
    if isinstance(tp, type) and hasattr(tp, "from_dict"):  # config classes
        return tp.from_dict(value)
    raise TypeError(f"no JSON reader for type {tp!r}")  # programming error


def _json_fields(record) -> list[dataclasses.Field]:
    """Fields written to JSON: all but those marked ``metadata={"json": False}``."""
    return [f for f in dataclasses.fields(record) if f.metadata.get("json", True) is not False]


def _json_name(f: dataclasses.Field) -> str:
    """The JSON key of a field: ``metadata={"json": "name"}`` renames (e.g. a Python keyword)."""
    name = f.metadata.get("json", True)
    return name if isinstance(name, str) else f.name


class Record:
    """Base of frozen dataclass results: ``to_json()`` and ``Class.from_json(data)``."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of every field (valid for ``json.dumps(..., allow_nan=False)``)."""
        return {_json_name(f): to_json_value(getattr(self, f.name)) for f in _json_fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]):
        """The record from :meth:`to_json` output; fields missing from ``data`` take their defaults.

        Raises:
            KeyError / TypeError / ValueError: ``data`` lacks a required field or holds a wrong type.
        """
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        values = {}
        for f in _json_fields(cls):
            if _json_name(f) in data:
                values[f.name] = _from_json_value(data[_json_name(f)], hints[f.name])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise KeyError(f"{cls.__name__}.{f.name}")
        return cls(**values)
