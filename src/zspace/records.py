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


_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _number(value: Any, path: str) -> float:
    """A JSON number, or one of the strings "inf", "-inf", "nan"; never a bool or other text."""
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{path}` must be a number. Received: {str(value)[:80]}")
    return value


def _numbers(value: Any, path: str) -> Any:
    """Nested lists of numbers (non-finite ones as strings) -> the same lists of numbers."""
    if isinstance(value, list):
        return [_numbers(v, path) for v in value]
    return _number(value, path)


def _from_json_value(value: Any, tp: Any, path: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return _from_json_value(value, next(a for a in args if a is not type(None)), path)
    if tp is Any:
        return value
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"`{path}` must be one of {list(args)}. Received: {str(value)[:80]}")
        return value
    if tp is np.ndarray:
        if not isinstance(value, list):
            raise TypeError(f"`{path}` must be a list of numbers. Received: {str(value)[:80]}")
        return np.asarray(_numbers(value, path))
    if tp is float:
        try:
            return float(_number(value, path))
        except OverflowError:  # an integer of hundreds of digits
            raise ValueError(f"`{path}` is out of the float range. Received: {str(value)[:80]}") from None
    if tp in (int, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise TypeError(f"`{path}` must be {tp.__name__}. Received: {str(value)[:80]}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise TypeError(f"`{path}` must be a list. Received: {str(value)[:80]}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json_value(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"`{path}` must hold {len(args)} values. Received: {str(value)[:80]}")
        return tuple(_from_json_value(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"`{path}` must be a table. Received: {str(value)[:80]}")
        key_tp, value_tp = args
        out = {}
        for k, v in value.items():
            if key_tp is int and not (k.isascii() and k.lstrip("-").isdigit()):
                raise ValueError(f"`{path}` keys must be integers. Received: {k[:80]!r}")
            out[int(k) if key_tp is int else k] = _from_json_value(v, value_tp, f"{path}.{k}")
        return out
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_json(value, path)
    if isinstance(tp, type) and hasattr(tp, "from_dict"):  # config classes
        if not isinstance(value, dict):
            raise TypeError(f"`{path}` must be a table. Received: {str(value)[:80]}")
        return tp.from_dict(value, source=f"`{path}`")
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
    def from_json(cls, data: dict[str, Any], path: str = ""):
        """The record from :meth:`to_json` output; fields missing from ``data`` take their defaults.

        Args:
            path: where ``data`` sits in a larger document, for error messages ("radius").

        Raises:
            KeyError / TypeError / ValueError: a missing field or a wrong type; the message names
                the field's path and the value received.
        """
        where = path or cls.__name__
        if not isinstance(data, dict):
            raise TypeError(f"`{where}` must be a table. Received: {str(data)[:80]}")
        hints = typing.get_type_hints(cls)
        values = {}
        for f in _json_fields(cls):
            name = _json_name(f)
            if name in data:
                values[f.name] = _from_json_value(data[name], hints[f.name], f"{path}.{name}" if path else name)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise KeyError(f"missing field `{path}.{name}`" if path else f"missing field `{name}`")
        return cls(**values)
