"""Saving and safe loading of zspace models (``.keras`` files only, ``safe_mode=True``).

Any model file may be hostile. :func:`inspect_model_file` checks one before Keras reads any of
it, so Keras never unpacks, builds or allocates what the checks have not bounded; every refusal
(and any error Keras raises afterwards) is one :class:`~zspace.errors.ModelFileError` line naming
the file, with echoed values cut to 80 characters. The checks, in order:

1. The archive, without decompressing anything: a zip whose central directory is at most
   :data:`MAX_CENTRAL_DIRECTORY_BYTES`; its members only those a Keras 3 model without assets
   has (``config.json``, ``metadata.json``, ``model.weights.h5``; the same for a compiled
   checkpoint, whose optimizer state is inside ``model.weights.h5``), each once, stored or
   deflated, unencrypted; each member within its size limit (:data:`MAX_CONFIG_BYTES`,
   :data:`MAX_METADATA_BYTES`) and at most :data:`MAX_COMPRESSION_RATIO` times its stored size;
   all members together at most ``ZSPACE_MAX_MODEL_FILE_BYTES``. With three members Keras
   extracts nothing to a temporary folder (it does for a fourth, as "assets").
2. ``config.json``: UTF-8 JSON, an object, nested at most :data:`MAX_CONFIG_DEPTH` deep, with at
   most :data:`MAX_CONFIG_OBJECTS` objects. Every object naming a ``class_name`` names a class a
   zspace model file holds: the Keras classes of :data:`KERAS_CLASSES` (whole dotted module
   names: ``keras.layers``, not ``keras_evil``) or a registered zspace class (module ``zspace``
   or ``zspace.*``); no ``Lambda`` layer and no serialised ``__lambda__`` function anywhere; the
   top-level class an ``Autoencoder`` (:func:`load_autoencoder`) or a ``Functional`` network
   (the encoder / decoder halves; :func:`load_model`).
3. The size the config declares: an Autoencoder's ModelConfig passes its own checks, which bound
   its parameters and activations (:mod:`zspace.model_size`: ``ZSPACE_MAX_MODEL_PARAMETERS``,
   ``ZSPACE_MAX_ACTIVATIONS_PER_IMAGE``); a network's Dense / Conv / BatchNormalization layers
   are counted from their recorded input shapes, against the same limits, and the output of its
   UpSampling2D / ZeroPadding2D layers (a resize decoder's) is bounded like an activation.
4. ``model.weights.h5`` is at most what those weights can need (:func:`weights_bytes_bound`:
   4 bytes (8 for float64) per value, times 5 with a compiled model's optimizer slots, plus
   :data:`TENSOR_OVERHEAD_BYTES` per tensor and :data:`WEIGHTS_SLACK_BYTES`), and its HDF5
   datasets declare no more than that in total (a gzip-filtered dataset can declare gigabytes in
   a few bytes), with no soft / external links, external or virtual datasets.

Limits read from the environment at each check (``_`` separators allowed):

``ZSPACE_MAX_MODEL_FILE_BYTES`` (:data:`MAX_MODEL_FILE_BYTES`, 4 GiB)
    Uncompressed size of a model file's members together (a 100-million-parameter checkpoint
    with Adam is 1.2 GB).
``ZSPACE_MAX_MODEL_PARAMETERS``, ``ZSPACE_MAX_ACTIVATIONS_PER_IMAGE``
    See :mod:`zspace.model_size`.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

from zspace.config import ModelConfig
from zspace.errors import ModelFileError, ZspaceError
from zspace.model_size import MAX_ACTIVATIONS_PER_IMAGE, MAX_MODEL_PARAMETERS, approx, env_limit, model_size
from zspace.storage import atomic_save

__all__ = ["save_model", "load_model", "load_autoencoder", "inspect_model_file", "weights_bytes_bound",
           "MAX_MODEL_FILE_BYTES", "KERAS_CLASSES"]

MAX_MODEL_FILE_BYTES = 4 * 2**30
MAX_CONFIG_BYTES = 10 * 2**20
MAX_METADATA_BYTES = 64 * 2**10
MAX_CENTRAL_DIRECTORY_BYTES = 64 * 2**10  # three members need about 200 bytes
MAX_COMPRESSION_RATIO = 200  # per member; Keras stores members uncompressed (ratio 1)
MAX_CONFIG_DEPTH = 32  # a zspace config.json nests 11 deep
MAX_CONFIG_OBJECTS = 20_000  # an encoder of 256 conv layers with batch norm and dropout: about 6,000
MAX_H5_OBJECTS = 100_000  # groups and datasets in model.weights.h5 (about 6 per layer)
TENSOR_OVERHEAD_BYTES = 8 * 2**10  # HDF5 headers of a dataset and its group: about 1.3 KiB measured
WEIGHTS_SLACK_BYTES = 2**20
OPTIMIZER_SLOTS = 4  # Adam's two moments, plus amsgrad's maximum or EMA / gradient-accumulation copies
MAX_ECHO = 80

WEIGHTS_MEMBER = "model.weights.h5"
_MEMBER_LIMITS = {"config.json": MAX_CONFIG_BYTES, "metadata.json": MAX_METADATA_BYTES, WEIGHTS_MEMBER: None}

# The Keras classes in the files zspace writes (every kind, activation, batch norm, dropout, dense
# layer and KL method; compiled with Adam), by the module Keras 3 records for them.
KERAS_CLASSES: dict[str, frozenset[str]] = {
    "keras": frozenset({"DTypePolicy"}),
    "keras.initializers": frozenset({"GlorotUniform", "LecunNormal", "Ones", "Zeros"}),
    "keras.layers": frozenset({"Activation", "Add", "AlphaDropout", "BatchNormalization", "Conv2D",
                               "Conv2DTranspose", "Dense", "Dropout", "Flatten", "InputLayer", "Reshape",
                               "UpSampling2D", "ZeroPadding2D"}),
    "keras.optimizers": frozenset({"Adam"}),
    # Keras' PyTorch backend records its own Adam subclass for a compiled model.
    "keras.src.backend.torch.optimizers.torch_adam": frozenset({"Adam"}),
    "keras.src.models.functional": frozenset({"Functional"}),
}
_KERAS_MARKERS = frozenset({"__keras_tensor__"})  # a symbolic tensor in a Functional's graph
_TOP_LEVEL = ("Autoencoder", "Functional")
_WEIGHTED_LAYERS = frozenset({"Dense", "Conv2D", "Conv2DTranspose", "BatchNormalization"})
# Layers without weights whose output is larger than their input (decoder_upsampling "nearest" / "bilinear").
_RESAMPLING_LAYERS = frozenset({"UpSampling2D", "ZeroPadding2D"})


def save_model(model: keras.Model, path: str | Path) -> None:
    """Saves ``model`` to a ``.keras`` file atomically (the previous file survives a crash)."""
    atomic_save(path, lambda tmp: model.save(tmp))


# --- messages ---------------------------------------------------------------------------

def _short(value: Any) -> str:
    """``repr(value)`` cut to :data:`MAX_ECHO` characters (a hostile value can be megabytes)."""
    try:
        text = repr(value)
    except ValueError:  # an int too long for repr
        text = f"<{type(value).__name__}>"
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 3] + "..."


def _refused(path: Path, reason: str) -> ModelFileError:
    """One line: ``path: reason`` (whitespace folded; a reason quoting Keras or a config is cut)."""
    reason = " ".join(reason.split())
    if len(reason) > 300:
        reason = reason[:297] + "..."
    return ModelFileError(f"{path}: {reason}")


# --- 1. the archive -----------------------------------------------------------------------

def _check_central_directory(path: Path) -> None:
    """Refuses a zip whose central directory (read whole by ``zipfile``) is absurdly large."""
    with open(path, "rb") as f:
        # zipfile's own end-of-archive reader: reads at most 64 KiB from the end.
        end = zipfile._EndRecData(f)  # noqa: SLF001
    if end is None:
        raise _refused(path, "not a .keras file (not a zip archive, or truncated).")
    size, entries = end[zipfile._ECD_SIZE], end[zipfile._ECD_ENTRIES_TOTAL]  # noqa: SLF001
    if size > MAX_CENTRAL_DIRECTORY_BYTES or entries > 16:
        raise _refused(path, f"refused: a zip of {entries} members ({size} bytes of directory); a .keras "
                             f"model has {len(_MEMBER_LIMITS)}.")


def _check_members(path: Path, infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    """The members by name, once each checked against their names, methods and size limits."""
    names = [info.filename for info in infos]
    unknown = [name for name in names if name not in _MEMBER_LIMITS]
    if unknown:
        raise _refused(path, f"refused: member {_short(unknown[0])} is not part of a Keras model file "
                             f"(expected only {', '.join(_MEMBER_LIMITS)}).")
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise _refused(path, f"refused: member {duplicated[0]!r} appears more than once.")
    total_limit = env_limit("ZSPACE_MAX_MODEL_FILE_BYTES", MAX_MODEL_FILE_BYTES)
    for info in infos:
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 0x1:
            raise _refused(path, f"refused: member {info.filename!r} is encrypted or uses an unusual "
                                 f"compression (method {info.compress_type}).")
        limit = _MEMBER_LIMITS[info.filename] or total_limit
        if info.file_size > limit:
            raise _refused(path, f"refused: member {info.filename!r} unpacks to {approx(info.file_size)} bytes, "
                                 f"more than the {approx(limit)} allowed.")
        if info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1) + 2**16:
            raise _refused(path, f"refused: member {info.filename!r} unpacks to {approx(info.file_size)} bytes "
                                 f"from {approx(info.compress_size)} (ratio above {MAX_COMPRESSION_RATIO}; "
                                 f"a zip bomb?).")
    total = sum(info.file_size for info in infos)
    if total > total_limit:
        raise _refused(path, f"refused: unpacks to {approx(total)} bytes, more than the {approx(total_limit)} "
                             f"of ZSPACE_MAX_MODEL_FILE_BYTES.")
    members = {info.filename: info for info in infos}
    for name in ("config.json", WEIGHTS_MEMBER):
        if name not in members:
            raise _refused(path, f"not a Keras model archive (no {name}).")
    return members


# --- 2. config.json -----------------------------------------------------------------------

def _parse_config(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        config = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _refused(path, f"config.json is not UTF-8 text (byte {exc.start}).") from None
    except RecursionError:
        raise _refused(path, f"config.json nests deeper than Python can parse (a zspace config nests "
                             f"{MAX_CONFIG_DEPTH} deep at most).") from None
    except ValueError as exc:  # JSONDecodeError, an integer of more than 4300 digits
        raise _refused(path, f"config.json is not valid JSON ({_short(str(exc))}).") from None
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise _refused(path, f"config.json is not a Keras model config (a JSON object with a class_name); "
                             f"received {type(config).__name__} {_short(config)}.")
    return config


def _is_module(module: Any, package: str) -> bool:
    """``module`` is ``package`` or one of its submodules (whole dotted names: not ``zspace_evil``)."""
    return isinstance(module, str) and (module == package or module.startswith(package + "."))


def _layer_name(node: dict[str, Any], outer: str) -> str:
    config = node.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    return _short(name) if isinstance(name, str) else outer


def _check_class(path: Path, node: dict[str, Any], layer: str) -> None:
    """Refuses an object whose class is not one a zspace model file holds."""
    class_name, module, registered = node["class_name"], node.get("module"), node.get("registered_name")
    if not isinstance(class_name, str):
        raise _refused(path, f"refused: class_name {_short(class_name)} in layer {layer} is not a name.")
    if class_name == "Lambda":
        raise _refused(path, f"refused: layer {_layer_name(node, layer)} is a Lambda layer (arbitrary code). zspace "
                             f"models use registered layers only; re-save the model without Lambda layers.")
    if class_name == "__lambda__":
        raise _refused(path, f"refused: layer {layer} holds a serialised Python lambda, a Lambda layer "
                             f"function (arbitrary code); zspace models have none.")
    if class_name in _KERAS_MARKERS and module is None and registered is None:
        return
    if module is not None and not (_is_module(module, "keras") or _is_module(module, "zspace")):
        raise _refused(path, f"refused: class {_short(class_name)} comes from module {_short(module)}; only "
                             f"Keras and zspace classes are loaded.")
    if class_name in KERAS_CLASSES.get(module, ()) and registered in (None, class_name):
        return
    # zspace classes load through Keras' registry (zspace.models registers them on import).
    if _is_module(module, "zspace") and registered == f"zspace>{class_name}":
        if isinstance(keras.saving.get_registered_object(registered), type):
            return
    raise _refused(path, f"refused: {_short(f'{module}.{class_name}')} (in layer {layer}) is not a class a "
                         f"zspace model file holds.")


def _walk_classes(path: Path, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object of ``config`` that names a class, each checked; depth and count bounded."""
    found, stack, objects = [], [(config, 1, "<top level>")], 0
    while stack:
        node, depth, layer = stack.pop()
        objects += 1
        if depth > MAX_CONFIG_DEPTH or objects > MAX_CONFIG_OBJECTS:
            what = f"nests deeper than {MAX_CONFIG_DEPTH}" if depth > MAX_CONFIG_DEPTH else \
                f"holds more than {MAX_CONFIG_OBJECTS:,} objects"
            raise _refused(path, f"refused: config.json {what}; no zspace model does.")
        if isinstance(node, dict):
            if "class_name" in node:
                _check_class(path, node, layer)
                layer = _layer_name(node, layer)
                found.append(node)
            stack.extend((value, depth + 1, layer) for value in node.values() if isinstance(value, (dict, list)))
        else:
            stack.extend((value, depth + 1, layer) for value in node if isinstance(value, (dict, list)))
    return found


# --- 3. the declared size -------------------------------------------------------------------

class _Size:
    """Weights the config declares: scalars, tensors, and whether optimizer slots come with them."""

    def __init__(self) -> None:
        self.parameters = self.tensors = 0
        self.bytes_per_value = 4
        self.optimizer = False


def _int(path: Path, layer: str, key: str, value: Any, low: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise _refused(path, f"layer {layer}: {key} must be an integer >= {low}. Received: {_short(value)}")
    return value


def _shape(path: Path, layer: str, key: str, value: Any) -> list[int | None]:
    """A shape ``[None, 8, 8, 1]``: dimensions are integers >= 0 or null; checked against the limit."""
    if not isinstance(value, list) or not value or len(value) > 8:
        raise _refused(path, f"layer {layer}: {key} is not a shape. Received: {_short(value)}")
    dims = [None if d is None else _int(path, layer, key, d) for d in value]
    values = math.prod(d for d in dims if d is not None)
    limit = env_limit("ZSPACE_MAX_ACTIVATIONS_PER_IMAGE", MAX_ACTIVATIONS_PER_IMAGE)
    if values > limit:
        raise _refused(path, f"refused: layer {layer}: {key} {_short(value)} holds {approx(values)} values per "
                             f"image, more than {limit:,} (ZSPACE_MAX_ACTIVATIONS_PER_IMAGE).")
    return dims


def _input_shapes(path: Path, layer: str, node: dict[str, Any]) -> list[list[int | None]]:
    """The input shape(s) in the layer's build_config (a list of shapes for a multi-input layer)."""
    build = node.get("build_config")
    if not isinstance(build, dict) or build.get("input_shape") is None:  # a Functional records null
        return []
    shape = build["input_shape"]
    if isinstance(shape, list) and shape and all(isinstance(s, list) for s in shape):
        return [_shape(path, layer, "input_shape", s) for s in shape]
    return [_shape(path, layer, "input_shape", shape)]


def _weighted_layer(path: Path, node: dict[str, Any], layer: str, config: dict[str, Any]) -> int:
    """Upper bound on the weights a Dense / Conv / BatchNormalization layer builds from its build_config."""
    shapes = _input_shapes(path, layer, node)
    if len(shapes) != 1 or shapes[0][-1] is None or len(shapes[0]) < 2:
        raise _refused(path, f"layer {layer} ({node['class_name']}) records no input shape to build from; "
                             f"zspace files always do.")
    shape = shapes[0]
    for key in ("lora_rank", "quantization_config"):
        if config.get(key) is not None:
            raise _refused(path, f"refused: layer {layer} sets {key}; zspace models have none.")
    kind = node["class_name"]
    if kind == "Dense":
        units = _int(path, layer, "units", config.get("units"), 1)
        return shape[-1] * units + units
    if kind == "BatchNormalization":
        axis = config.get("axis", -1)
        axes = axis if isinstance(axis, list) else [axis]
        if not axes or not all(isinstance(a, int) and -len(shape) <= a < len(shape) for a in axes):
            raise _refused(path, f"layer {layer}: axis {_short(axis)} is not an axis of {_short(shape)}.")
        return 4 * math.prod(shape[a] or 1 for a in axes)
    filters = _int(path, layer, "filters", config.get("filters"), 1)
    kernel = config.get("kernel_size")
    kernel = kernel if isinstance(kernel, list) else [kernel]
    size = math.prod(_int(path, layer, "kernel_size", k, 1) for k in kernel)
    channels = shape[1] if config.get("data_format") == "channels_first" else shape[-1]
    return size * (channels or 1) * filters + filters


def _pairs(path: Path, layer: str, key: str, value: Any, low: int) -> list[list[int]]:
    """Keras' forms of a per-axis pair: ``n``, ``[a, b]`` (one per axis) or ``[[a1, a2], [b1, b2]]``."""
    if not isinstance(value, list):
        value = [value, value]
    if len(value) != 2:
        raise _refused(path, f"layer {layer}: {key} must name two spatial axes. Received: {_short(value)}")
    pairs = [item if isinstance(item, list) else [item] for item in value]
    if not all(1 <= len(pair) <= 2 for pair in pairs):
        raise _refused(path, f"layer {layer}: {key} is not a pair per axis. Received: {_short(value)}")
    return [[_int(path, layer, key, v, low) for v in pair] for pair in pairs]


def _check_resampled_output(path: Path, node: dict[str, Any], layer: str, config: dict[str, Any]) -> None:
    """An UpSampling2D's / ZeroPadding2D's output (from its recorded input shape) is within the activation limit."""
    shapes = _input_shapes(path, layer, node)
    if len(shapes) != 1 or len(shapes[0]) != 4:
        raise _refused(path, f"layer {layer} ({node['class_name']}) records no 4-D input shape; zspace files "
                             f"always do.")
    out = list(shapes[0])
    axes = (2, 3) if config.get("data_format") == "channels_first" else (1, 2)
    if node["class_name"] == "UpSampling2D":
        factors = _pairs(path, layer, "size", config.get("size", 2), 1)
        grow = [(lambda d, f=pair[0]: d * f) for pair in factors]
    else:
        pads = _pairs(path, layer, "padding", config.get("padding", 1), 0)
        grow = [(lambda d, p=sum(pair) * (2 if len(pair) == 1 else 1): d + p) for pair in pads]
    for axis, change in zip(axes, grow):
        out[axis] = None if out[axis] is None else change(out[axis])
    _shape(path, layer, "output shape", out)


def _declared_size(path: Path, config: dict[str, Any], nodes: list[dict[str, Any]]) -> _Size:
    """The weights ``config`` declares, checked against the parameter limit before anything is built."""
    size = _Size()
    size.optimizer = isinstance(config.get("compile_config"), dict)
    for node in nodes:
        layer = _layer_name(node, "<top level>")
        inner = node.get("config")
        if node["class_name"] == "DTypePolicy" and isinstance(inner, dict) and "64" in str(inner.get("name")):
            size.bytes_per_value = 8
        if node["class_name"] == "Autoencoder":
            model_config = inner.get("config") if isinstance(inner, dict) else None
            try:
                declared = model_size(ModelConfig.from_dict(model_config, source="config.json", where=" (model)"))
            except (ZspaceError, ValueError, TypeError, ArithmeticError) as exc:
                raise _refused(path, f"refused: its model config: {exc}") from None
            size.parameters += declared.parameters
            size.tensors += declared.tensors
        elif node["class_name"] in _WEIGHTED_LAYERS:
            size.parameters += _weighted_layer(path, node, layer, inner if isinstance(inner, dict) else {})
            size.tensors += 4
        elif node["class_name"] in _RESAMPLING_LAYERS:
            _check_resampled_output(path, node, layer, inner if isinstance(inner, dict) else {})
        elif str(node.get("registered_name")).startswith("zspace>"):  # the sampling layer's epsilon_scale, seed
            size.parameters += 2
            size.tensors += 2
        if isinstance(inner, dict):
            for key in ("batch_shape", "target_shape"):
                if key in inner:
                    _shape(path, layer, key, inner[key])
            _input_shapes(path, layer, node)
    limit = env_limit("ZSPACE_MAX_MODEL_PARAMETERS", MAX_MODEL_PARAMETERS)
    if size.parameters > limit:
        raise _refused(path, f"refused: its layers declare {approx(size.parameters)} parameters, more than "
                             f"{limit:,} (ZSPACE_MAX_MODEL_PARAMETERS).")
    return size


def weights_bytes_bound(parameters: int, tensors: int, optimizer: bool, bytes_per_value: int = 4) -> int:
    """Largest ``model.weights.h5`` (bytes) a model of that many weights writes.

    ``bytes_per_value`` per scalar for the weights and, with ``optimizer``, :data:`OPTIMIZER_SLOTS`
    copies more; :data:`TENSOR_OVERHEAD_BYTES` per tensor of each; :data:`WEIGHTS_SLACK_BYTES`.
    """
    copies = 1 + (OPTIMIZER_SLOTS if optimizer else 0)
    return copies * (bytes_per_value * parameters + TENSOR_OVERHEAD_BYTES * tensors) + WEIGHTS_SLACK_BYTES


# --- 4. the weights -----------------------------------------------------------------------

def _check_weights(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, size: _Size) -> None:
    bound = weights_bytes_bound(size.parameters, size.tensors, size.optimizer, size.bytes_per_value)
    need = f"the {approx(bound)} bytes the model its config declares can need ({approx(size.parameters)} parameters)"
    if info.file_size > bound:
        raise _refused(path, f"refused: {WEIGHTS_MEMBER} unpacks to {approx(info.file_size)} bytes, more than "
                             f"{need}.")
    import h5py

    declared, objects = 0, 0
    try:
        with h5py.File(io.BytesIO(archive.read(info)), "r") as h5:
            groups = [h5]
            while groups:
                group = groups.pop()
                for name in group:
                    objects += 1
                    if objects > MAX_H5_OBJECTS:
                        raise _refused(path, f"refused: {WEIGHTS_MEMBER} holds more than {MAX_H5_OBJECTS:,} objects.")
                    if not isinstance(group.get(name, getlink=True), h5py.HardLink):
                        raise _refused(path, f"refused: {WEIGHTS_MEMBER} holds a soft or external link.")
                    item = group[name]
                    if isinstance(item, h5py.Group):
                        groups.append(item)
                    elif isinstance(item, h5py.Dataset):
                        if item.external or item.is_virtual:
                            raise _refused(path, f"refused: {WEIGHTS_MEMBER} holds an external or virtual dataset.")
                        declared += math.prod(item.shape or ()) * item.dtype.itemsize
    except ModelFileError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, ValueError, RuntimeError, TypeError on bad files
        raise _refused(path, f"{WEIGHTS_MEMBER} is not a readable HDF5 file ({type(exc).__name__}: "
                             f"{_short(str(exc))}).") from None
    if declared > bound:
        raise _refused(path, f"refused: the datasets of {WEIGHTS_MEMBER} declare {approx(declared)} bytes, more "
                             f"than {need}.")


# --- public -------------------------------------------------------------------------------

def inspect_model_file(path: str | Path, autoencoder_only: bool = False) -> dict[str, Any]:
    """Checks a ``.keras`` file (module docstring) before anything in it runs; returns its config.json.

    Call it before every Keras read of a model file (``load_model`` does; so must
    ``model.load_weights(checkpoint)``).

    Args:
        autoencoder_only: refuse anything but a zspace Autoencoder (a run's model.keras).

    Raises:
        FileNotFoundError: no such file.
        ModelFileError: the file is refused; one line naming it and why.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix != ".keras":
        raise _refused(path, f"only .keras model files are loaded (legacy .h5 / SavedModel files can run "
                             f"arbitrary code or lack the zspace config). Received suffix {path.suffix!r}.")
    try:
        _check_central_directory(path)
        with zipfile.ZipFile(path) as archive:
            members = _check_members(path, archive.infolist())
            config = _parse_config(path, archive.read(members["config.json"]))
            nodes = _walk_classes(path, config)
            top = config["class_name"]
            expected = ("Autoencoder",) if autoencoder_only else _TOP_LEVEL
            if top not in expected:
                raise _refused(path, f"not a zspace model: its top-level class is {_short(top)}, not "
                                     f"{' or '.join(expected)}.")
            size = _declared_size(path, config, nodes)
            _check_weights(path, archive, members[WEIGHTS_MEMBER], size)
    except ZspaceError:  # a refusal, or a limit in the environment that is not a number
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError, RuntimeError,
            ValueError) as exc:  # a damaged archive: bad headers, CRC, deflate stream
        raise _refused(path, f"not a readable .keras file (not a zip archive, or truncated: "
                             f"{type(exc).__name__}: {_short(str(exc))}).") from None
    return config


def _keras_load(path: Path, compile: bool) -> keras.Model:
    import zspace.models  # noqa: F401  (registers the zspace classes)

    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # anything Keras raises on a file that passed the checks is the file's fault
        raise _refused(path, f"could not be loaded ({type(exc).__name__}: {_short(str(exc))}).") from None


def _check_finite_weights(path: Path, model: keras.Model) -> keras.Model:
    """Refuses a model whose weights hold NaN or infinity (diverged, or damaged): every z-point and
    image it makes is NaN, which would only fail later, deep in the analysis, as a traceback."""
    for variable in model.weights:
        values = keras.ops.convert_to_numpy(variable.value)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise _refused(path, f"its weight {_short(variable.path)} holds non-finite values (NaN or infinity): "
                                 f"the model diverged or the file is damaged; nothing it computes is usable.")
    return model


def load_model(path: str | Path, compile: bool = False) -> keras.Model:
    """Loads a zspace ``.keras`` model (an Autoencoder, or its encoder / decoder network) with
    ``safe_mode=True`` after :func:`inspect_model_file`."""
    path = Path(path)
    inspect_model_file(path)
    return _check_finite_weights(path, _keras_load(path, compile))


def load_autoencoder(path: str | Path, compile: bool = False):
    """Loads a zspace Autoencoder (a run's model.keras or a checkpoint); anything else is refused."""
    from zspace.models.autoencoder import Autoencoder

    path = Path(path)
    inspect_model_file(path, autoencoder_only=True)
    model = _keras_load(path, compile)
    if not isinstance(model, Autoencoder):
        raise _refused(path, f"not a zspace model: it loads as a {type(model).__name__}, not an Autoencoder.")
    return _check_finite_weights(path, model)
