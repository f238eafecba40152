"""``zspace reconstruct``: your own images through a run's model (blog part XI).

Each image file is cropped and resized as ``zspace prepare`` does (:func:`zspace.data.prepare.load_image`:
the centre square or a given box, area averaging, the same protections against corrupt files and
decompression bombs), converted to the run's channels, given to the model as its task wants, and
shown in one row of a grid: the image, the model's input when it differs (grey for recolor, seeded
noise for denoise), its reconstruction, and for a VAE ``samples`` decodes of z = mu + sigma * eps * F
around mu.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from zspace.errors import ConfigError, DataError
from zspace.generation.grid import DEFAULT_CELL, labelled_grid
from zspace.generation.modes import MAX_GRID_IMAGES, Grid
from zspace.storage import atomic_write_bytes

__all__ = ["Reconstructions", "load_images", "reconstruct_arrays", "reconstruct_images", "write_reconstructions",
           "tag_png", "DEFAULT_SAMPLES", "MAX_SAMPLES", "DEFAULT_MAX_PIXELS"]

DEFAULT_SAMPLES = 4
"""Samples of z around mu per image for a VAE when ``samples`` is not given (an AE gets none)."""

MAX_SAMPLES = 100
"""Most samples per image: each is one more column of the grid (which holds at most MAX_GRID_IMAGES tiles)."""

DEFAULT_MAX_PIXELS = 40_000_000
"""Larger source images are refused as decompression bombs (``zspace prepare``'s default max_pixels)."""

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as zspace.data.tasks.to_grayscale


@dataclass(frozen=True)
class Reconstructions:
    """Images through a run's model; arrays float32 in [0, 1] of the run's (H, W, C).

    Attributes:
        names: the images' file names (or "image 0", ... for arrays).
        originals: (N, H, W, C) the cropped, resized images, in the run's channels.
        inputs: (N, H, W, C) what the model was given: the originals, grey for recolor, seeded
            noisy copies for denoise.
        reconstructions: (N, H, W, C) decodes of mu (VAE) or z (AE).
        samples: (N, K, H, W, C) decodes of z = mu + sigma * eps * epsilon_scale (K = 0 for an AE).
        codes: "z" (AE) or "mu", "logvar" (VAE), each (N, z_dim); "z_samples" (N, K, z_dim) for a VAE.
        task: the run's task. epsilon_scale: the scale of the samples' eps (None for an AE). seed: of eps
            and the denoise noise.
    """

    names: tuple[str, ...]
    originals: np.ndarray
    inputs: np.ndarray
    reconstructions: np.ndarray
    samples: np.ndarray
    codes: dict[str, np.ndarray]
    task: str
    epsilon_scale: float | None
    seed: int

    @property
    def columns(self) -> tuple[str, ...]:
        """What each column of :meth:`grid` shows, left to right."""
        shown_input = {"recolor": ("grey input",), "denoise": ("noisy input",)}.get(self.task, ())
        decoded = "decode(mu)" if self.epsilon_scale is not None else "decode(z)"
        scale = "" if self.epsilon_scale is None else f"{self.epsilon_scale:g}"
        return ("original", *shown_input, decoded,
                *(f"z #{k} = decode(mu + sigma * eps_{k} * {scale})"  # numbered as the grid labels them
                  for k in range(1, self.samples.shape[1] + 1)))

    def grid(self) -> Grid:
        """One row per image: original, the input (recolor, denoise), the reconstruction, the samples."""
        parts = [self.originals[:, None]]
        if self.task != "reconstruct":
            parts.append(self.inputs[:, None])
        parts += [self.reconstructions[:, None], self.samples]
        rows = np.concatenate(parts, axis=1)
        return Grid(rows.reshape(-1, *rows.shape[2:]), cols=rows.shape[1], row_labels=tuple(map(_short, self.names)),
                    col_labels=self.short_columns)

    @property
    def short_columns(self) -> tuple[str, ...]:
        """:attr:`columns` short enough to print under a grid cell."""
        shown_input = {"recolor": ("grey in",), "denoise": ("noisy in",)}.get(self.task, ())
        decoded = "mu" if self.epsilon_scale is not None else "output"
        return ("original", *shown_input, decoded, *(f"z #{k + 1}" for k in range(self.samples.shape[1])))


def _short(name: str, most: int = 24) -> str:
    """A file name cut to ``most`` characters for a row label (start and end kept)."""
    return name if len(name) <= most else f"{name[:most // 2 - 2]}...{name[-(most // 2 - 1):]}"


def _to_channels(rgb: np.ndarray, channels: int) -> np.ndarray:
    """(N, H, W, 3) in [0, 1] -> (N, H, W, channels): luma for 1, as is for 3."""
    return (rgb @ _LUMA)[..., None] if channels == 1 else rgb


def load_images(paths, input_shape, crop=None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """JPEG / PNG files -> float32 (N, H, W, C) in [0, 1] for a model of ``input_shape`` (H, W, C).

    Each file is cropped (the centre square, or the box ``crop`` = (left, top, right, bottom) in source
    pixels), resized to max(H, W) with area averaging as ``zspace prepare`` does, and cut to its centre
    H x W; C = 1 takes the ITU-R 601 luma.

    Raises:
        DataError: a file that is not a readable JPEG / PNG, is larger than ``max_pixels`` (a
            decompression bomb), or smaller than the crop box; the message names it and why.
        ConfigError: a bad crop box or max_pixels, or a run of neither 1 nor 3 channels.
    """
    from zspace.data.prepare import PrepareConfig, load_image

    height, width, channels = (int(v) for v in input_shape)
    if channels not in (1, 3):
        raise ConfigError(f"reconstruct needs a run of 1 or 3 channels (grey or colour images); this run's "
                          f"input_shape is {tuple(input_shape)}.")
    side = max(height, width)
    checked = PrepareConfig(size=side, crop=tuple(crop) if crop is not None else None, max_pixels=max_pixels)
    top, left = (side - height) // 2, (side - width) // 2
    images = []
    for path in paths:
        pixels, reason = load_image(str(path), side, checked.crop, checked.max_pixels)
        if pixels is None:
            raise DataError(f"{path}: {reason}; expected a JPEG or PNG image.")
        images.append(pixels[top:top + height, left:left + width])
    if not images:
        raise ConfigError("reconstruct needs at least one image file.")
    return _to_channels(np.stack(images).astype(np.float32) / 255.0, channels).astype(np.float32)


def _check_counts(n_images: int, samples: int, task: str) -> None:
    if not 0 <= samples <= MAX_SAMPLES:
        raise ConfigError(f"samples (--samples) must be in [0, {MAX_SAMPLES}]. Received: {samples}")
    tiles = n_images * (samples + (3 if task != "reconstruct" else 2))
    if tiles > MAX_GRID_IMAGES:
        raise ConfigError(f"{n_images} images with {samples} samples each make {tiles:,} tiles; a grid holds at "
                          f"most {MAX_GRID_IMAGES:,}: give fewer images or samples.")


def _samples(run, samples: int | None) -> int:
    """The samples per image: ``samples``, or DEFAULT_SAMPLES for a VAE and 0 for an AE."""
    is_vae = run.config.model.kind == "vae"
    if samples is None:
        return DEFAULT_SAMPLES if is_vae else 0
    if samples and not is_vae:
        raise ConfigError(f"samples (--samples): {run.root} is an AE: its z is the encoder's output, with no "
                          f"sigma to sample around; give --samples 0 or a VAE run.")
    return samples


def reconstruct_arrays(run, images: np.ndarray, samples: int | None = None, epsilon_scale: float | None = None,
                       seed: int = 0, names=None) -> Reconstructions:
    """Passes (N, H, W, C) images in [0, 1] (the run's shape) through the run's model.

    Args:
        run: a :class:`zspace.Run` or its directory.
        samples: decodes of z = mu + sigma * eps * scale per image (VAE); None = DEFAULT_SAMPLES
            for a VAE, 0 for an AE (which has no sigma: more is an error).
        epsilon_scale: the scale of those eps (the sampling layer's, clipped as it clips); None = the
            run's own. An AE refuses it.
        seed: of eps and of the noise a denoise run's input gets.
    """
    from zspace.analysis.encoding import resolve_epsilon_scale
    from zspace.data.tasks import example_inputs
    from zspace.rundir import Run

    run = Run.of(run)
    images = np.asarray(images, dtype=np.float32)
    shape = tuple(run.config.model.input_shape)
    if images.ndim != 4 or images.shape[1:] != shape:
        raise ConfigError(f"images must be (N, {', '.join(map(str, shape))}) for this run. Received shape "
                          f"{images.shape}")
    scale = resolve_epsilon_scale(run, epsilon_scale)
    k = _samples(run, samples)
    t = run.config.train
    _check_counts(len(images), k, t.task)
    inputs = example_inputs(images, t.task, t.noise_sigma, t.drop_fraction, seed)
    inputs = images if inputs is None else inputs
    model = run.reset_noise()
    codes = model.encode(inputs)
    z_dim = codes["z"].shape[1]
    if scale is None:  # an AE: z is the code
        codes = {"z": codes["z"]}
        decoded = model.decode(codes["z"])
        drawn = np.zeros((len(images), 0, *shape), np.float32)
    else:
        codes = {"mu": codes["mu"], "logvar": codes["logvar"]}
        eps = np.random.default_rng(seed).standard_normal((len(images), k, z_dim)).astype(np.float32)
        clip = run.config.model.epsilon_clip
        eps = np.clip(eps, -clip, clip) if clip is not None else eps
        sigma = np.exp(0.5 * codes["logvar"])[:, None]
        codes["z_samples"] = codes["mu"][:, None] + sigma * eps * np.float32(scale)
        decoded = model.decode(codes["mu"])
        drawn = (model.decode(codes["z_samples"].reshape(-1, z_dim)).reshape(len(images), k, *shape) if k
                 else np.zeros((len(images), 0, *shape), np.float32))
    names = tuple(str(n) for n in names) if names is not None else tuple(f"image {i}" for i in range(len(images)))
    return Reconstructions(names, images, inputs, decoded, drawn, codes, t.task, scale, seed)


def reconstruct_images(run, paths, samples: int | None = None, epsilon_scale: float | None = None, seed: int = 0,
                       crop=None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Reconstructions:
    """Your own JPEG / PNG files through a run's model (see :func:`load_images` and :func:`reconstruct_arrays`).

    ``Reconstructions.grid()`` is the picture ``zspace reconstruct`` saves; :func:`write_reconstructions`
    writes it.
    """
    from zspace.analysis.encoding import resolve_epsilon_scale
    from zspace.rundir import Run

    run = Run.of(run)
    paths = [Path(p) for p in paths]
    resolve_epsilon_scale(run, epsilon_scale)  # bad options fail before the files are read
    _check_counts(len(paths), _samples(run, samples), run.config.train.task)
    images = load_images(paths, run.config.model.input_shape, crop, max_pixels)
    return reconstruct_arrays(run, images, samples, epsilon_scale, seed, names=[p.name for p in paths])


def _png(picture: np.ndarray, text: dict[str, str]) -> bytes:
    """PNG bytes of a uint8 (H, W, 1 or 3) picture with ``text`` as tEXt chunks."""
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def write_reconstructions(path: str | Path, result: Reconstructions, run_dir: str | Path | None = None,
                          cell: int = DEFAULT_CELL) -> Path:
    """Writes ``result.grid()`` as a PNG (atomically; cells at least ``cell`` pixels, labelled rows and
    columns) whose text chunks say what it shows.

    The chunks: ``zspace:columns`` (one per line), ``zspace:files``, ``zspace:task``, ``zspace:seed``,
    ``zspace:epsilon_scale`` (VAE) and ``zspace:run`` (when ``run_dir`` is given).
    """
    from zspace.generation.modes import check_grid_path

    path = check_grid_path(path)
    grid = result.grid()
    text = {"zspace:columns": "\n".join(result.columns), "zspace:files": "\n".join(result.names),
            "zspace:task": result.task, "zspace:seed": str(result.seed)}
    if result.epsilon_scale is not None:
        text["zspace:epsilon_scale"] = f"{result.epsilon_scale:g}"
    if run_dir is not None:
        text["zspace:run"] = str(run_dir)
    atomic_write_bytes(path, _png(labelled_grid(grid.images, grid.cols, grid.row_labels, grid.col_labels,
                                                min_tile=cell), text))
    return path


def tag_png(path: str | Path, text: dict[str, str]) -> None:
    """Adds ``text`` chunks to a PNG zspace wrote (re-encoded losslessly, written atomically); {} does nothing."""
    if not text:
        return
    with Image.open(path, formats=["PNG"]) as img:
        picture = np.asarray(img)
        kept = {k: v for k, v in img.text.items() if k not in text}
    atomic_write_bytes(Path(path), _png(picture if picture.ndim == 3 else picture[..., None], {**kept, **text}))
