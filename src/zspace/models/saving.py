"""Saving and safe loading of zspace models (``.keras`` files only, ``safe_mode=True``)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import keras

from zspace.errors import ModelFileError
from zspace.storage import atomic_save

__all__ = ["save_model", "load_model", "inspect_model_file"]

# A .keras archive holds a small config.json and the weights; refuse archives whose
# uncompressed size is absurd for the compressed size (zip bombs).
_MAX_COMPRESSION_RATIO = 200
_MAX_CONFIG_BYTES = 10 * 2**20
_ALLOWED_MODULE_PREFIXES = ("keras", "zspace")


def save_model(model: keras.Model, path: str | Path) -> None:
    """Saves ``model`` to a ``.keras`` file atomically (the previous file survives a crash)."""
    atomic_save(path, lambda tmp: model.save(tmp))


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def inspect_model_file(path: str | Path) -> dict[str, Any]:
    """Checks a ``.keras`` file before anything in it runs; returns its parsed config.json.

    Raises:
        FileNotFoundError: no such file.
        ModelFileError: not a .keras zip, a zip bomb, a Lambda layer, or a class from a
            module other than Keras or zspace.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix != ".keras":
        raise ModelFileError(
            f"{path}: only .keras model files are loaded (legacy .h5 / SavedModel files can "
            f"run arbitrary code or lack the zspace config). Received suffix {path.suffix!r}."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            packed = max(sum(i.compress_size for i in infos), 1)
            unpacked = sum(i.file_size for i in infos)
            if unpacked / packed > _MAX_COMPRESSION_RATIO:
                raise ModelFileError(
                    f"{path}: refused: unpacks to {unpacked} bytes from {packed} "
                    f"(ratio above {_MAX_COMPRESSION_RATIO}; a zip bomb?)."
                )
            names = {i.filename: i for i in infos}
            if "config.json" not in names:
                raise ModelFileError(f"{path}: not a Keras model archive (no config.json).")
            if names["config.json"].file_size > _MAX_CONFIG_BYTES:
                raise ModelFileError(f"{path}: config.json is larger than {_MAX_CONFIG_BYTES} bytes.")
            config = json.loads(archive.read("config.json"))
    except zipfile.BadZipFile:
        raise ModelFileError(f"{path}: not a .keras file (not a zip archive, or truncated).") from None
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: config.json is not valid JSON ({exc}).") from None
    for node in _walk(config):
        class_name = node.get("class_name")
        if class_name == "Lambda":
            raise ModelFileError(
                f"{path}: refused: contains a Lambda layer (arbitrary code). zspace models use "
                f"registered layers only; re-save the model without Lambda layers."
            )
        module = node.get("module")
        if class_name and isinstance(module, str) and not module.startswith(_ALLOWED_MODULE_PREFIXES):
            raise ModelFileError(
                f"{path}: refused: class {class_name!r} comes from module {module!r}; only "
                f"Keras and zspace classes are loaded."
            )
    return config


def load_model(path: str | Path, compile: bool = False) -> keras.Model:
    """Loads a zspace ``.keras`` model with ``safe_mode=True`` after :func:`inspect_model_file`."""
    import zspace.models  # noqa: F401  (registers the zspace classes)

    inspect_model_file(path)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except (ValueError, TypeError, OSError, KeyError) as exc:
        raise ModelFileError(f"{path}: could not be loaded: {exc}") from None
