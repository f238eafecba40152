"""Command line: parses arguments and calls the Python API (``zspace --help``)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import tempfile
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

# TensorFlow's C++ INFO/WARNING lines drown the CLI's output; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from zspace.config_fields import MAX_BATCH_SIZE, MAX_SEED  # noqa: E402
from zspace.errors import ConfigError, ZspaceError  # noqa: E402

app = typer.Typer(
    name="zspace",
    help="Train convolutional AEs and VAEs on images and look inside their latent space.",
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state = {"debug": False}


@contextlib.contextmanager
def _clear_errors():
    """Bad input ends the command with one line on stderr and exit code 2 (traceback with --debug)."""
    try:
        yield
    except (ZspaceError, FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError) as exc:
        if _state["debug"]:
            traceback.print_exc()
        message = str(exc) or type(exc).__name__
        typer.echo(f"zspace: error: {message}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:  # filename2: the target of a rename (the temporary is short)
            raise
        if _state["debug"]:
            traceback.print_exc()
        typer.echo(f"zspace: error: {exc.filename2 or exc.filename}: a file name longer than this file system "
                   f"allows (usually 255 bytes per name); choose a shorter one.", err=True)
        raise typer.Exit(2) from None


@app.callback()
def _main(ctx: typer.Context,
          debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    _state["debug"] = debug
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


class Dist(str, Enum):
    normal = "normal"
    uniform = "uniform"
    gmm = "gmm"


class Split(str, Enum):
    train = "train"
    validation = "validation"
    all = "all"


def _check_output(path: Path, option: str, folder: bool = False) -> None:
    """ConfigError unless ``path`` can be written (checked before the work, which may take minutes).

    A file must not be an existing folder, a folder not an existing file, and the nearest existing
    folder above it must be writable (the missing ones between are created when writing).
    """
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: exists and is not a folder.")
    if not folder and path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; expected a file name.")
    ancestor = next(p for p in (path if folder else path.parent, *path.parents) if p.exists() or p == Path(p.anchor))
    if not ancestor.is_dir():
        raise ConfigError(f"{option} {path}: {ancestor} is not a folder.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: the folder {ancestor} is not writable.")


ConfigPath = Annotated[Path, typer.Option("--config", "-c", help="TOML run config.", exists=True, dir_okay=False)]
RunDir = Annotated[Path, typer.Argument(help="Run directory written by `zspace train`.", exists=True, file_okay=False)]


@app.command()
def train(
    config: ConfigPath,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field: --set epochs=6.")] = None,
) -> None:
    """Train (or resume) the run described by a TOML config."""
    from zspace.config import parse_overrides
    from zspace.rundir import training_config
    from zspace.training import train as train_run

    with _clear_errors():
        run_config = training_config(config).with_overrides(parse_overrides(set_ or []))
        result = train_run(run_config)
        last = result.history[-1] if result.history else {}
        typer.echo(f"run {result.run.root}: {len(result.history)} epochs, "
                   f"val_total_loss={last.get('val_total_loss', float('nan')):.4f}")


@app.command()
def encode(
    run: RunDir,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .npz file.")],
    split: Annotated[Split, typer.Option(help="Which images of the run's dataset.")] = Split.all,
    batch_size: Annotated[int, typer.Option(min=1, max=MAX_BATCH_SIZE)] = 256,
) -> None:
    """Encode the run's dataset: z (and mu, logvar for a VAE), labels, attributes and split per image."""
    from zspace.analysis import encode_run_images, save_encoding
    from zspace.analysis.encoding import check_encoding_path
    from zspace.rundir import Run

    with _clear_errors():
        check_encoding_path(out)
        _check_output(out, "--out")
        arrays = encode_run_images(Run.open(run), split.value, batch_size=batch_size).to_arrays()
        save_encoding(out, arrays)
        typer.echo(f"wrote {out}: {', '.join(f'{k} {v.shape}' for k, v in arrays.items())}")


@app.command()
def analyze(
    run: RunDir,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Analysis TOML.", exists=True, dir_okay=False)] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field: --set k_max=40.")] = None,
    data: Annotated[str | None, typer.Option(help="Dataset to encode instead of the run's (e.g. idx:DIR).")] = None,
) -> None:
    """Encode the run's dataset and write its analysis (records and arrays) into the run directory."""
    from zspace.analysis import analyze_run
    from zspace.analysis.tables import format_radius_table
    from zspace.config import AnalysisConfig, parse_overrides
    from zspace.data import load_dataset
    from zspace.rundir import Run

    with _clear_errors():
        base = AnalysisConfig.load(config) if config else AnalysisConfig()
        analysis_config = base.with_overrides(parse_overrides(set_ or []))
        target = Run.open(run, load_dataset(data) if data else None)
        a = analyze_run(target, analysis_config)
        typer.echo(f"analysed {a.n_points} z-points of dimension {a.z_dim}: mean radius {a.radius.mean:.3f} "
                   f"(N(0, I): {a.radius.expected_normal:.3f}), active units {a.axes.active_units}; "
                   f"wrote {target.analysis_json}")
        typer.echo(format_radius_table(a))
        for note in a.notes:
            typer.echo(f"note: {note}")


@app.command()
def evaluate(
    run: RunDir,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Evaluation TOML.", exists=True, dir_okay=False)] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field: --set k=100.")] = None,
) -> None:
    """Reconstruction, likelihood (VAE), prior holes and sample quality per sampler, written to evaluation.json."""
    from zspace.config import parse_overrides
    from zspace.evaluation.evaluate import EvaluationConfig, evaluate as evaluate_run
    from zspace.rundir import Run

    with _clear_errors():
        base = EvaluationConfig.load(config) if config else EvaluationConfig()
        target = Run.open(run)
        e = evaluate_run(target, base.with_overrides(parse_overrides(set_ or [])))
        r, s = e.reconstruction, e.prior.surgery
        nll = (f"NLL {e.likelihood.nll:.3f} nats (ELBO {e.likelihood.elbo:.3f}, K={e.likelihood.k})" if e.likelihood
               else "no likelihood (an AE has none)")
        typer.echo(f"{r.loss} {r.loss_per_image:.3f} per image, PSNR {r.psnr:.2f} dB, SSIM {r.ssim:.3f}; {nll}; "
                   f"I(x;z) {s.mutual_information:.3f}, marginal KL {s.marginal_kl:.3f}, holes under N(0, I) "
                   f"{e.prior.hole_fraction['normal']:.3f}")
        for label, space in e.features.items():
            distances = ", ".join(f"{q.sampler} {q.fd:.4g}" for q in e.samples if q.features == label)
            accuracy = "" if space.held_out_accuracy is None else f", held-out accuracy {space.held_out_accuracy:.3f}"
            typer.echo(f"{label} of {len(e.samples) and e.samples[0].n_fake} images ({space.network}{accuracy}): "
                       f"{distances}")
        for note in e.notes:
            typer.echo(f"note: {note}")
        typer.echo(f"wrote {target.evaluation_json}")


@app.command()
def generate(
    run: RunDir,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output PNG grid.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of images (per row for several --limit).")] = 28,
    dist: Annotated[Dist, typer.Option(help="z ~ N(0, I), uniform in [-limit, limit], or a Gaussian mixture "
                                            "fitted to the training z-points.")] = Dist.normal,
    limit: Annotated[list[float] | None, typer.Option(help="Half-width r of the uniform box; repeat for one "
                                                           "row per r (--limit 0.5 --limit 1 ...).")] = None,
    reconstruct: Annotated[bool, typer.Option(help="Validation images beside their reconstructions instead.")] = False,
    interpolate: Annotated[tuple[int, int] | None, typer.Option(help="Decode the line between validation "
                                                                     "images I and J, in n steps.")] = None,
    attribute: Annotated[str | None, typer.Option(help="Add this attribute's vector (from `zspace analyze`) to "
                                                      "n validation images, one row per --strength.")] = None,
    strength: Annotated[list[float] | None, typer.Option(help="Multiples of the attribute vector "
                                                              "(default -1 0 1 2).")] = None,
    sharpen: Annotated[float | None, typer.Option(help="Also write a copy sharpened by PIL with this factor.")] = None,
    components: Annotated[int, typer.Option(min=1, help="Mixture components for --dist gmm.")] = 10,
    cols: Annotated[int | None, typer.Option(min=1, help="Images per row.")] = None,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED)] = 0,
) -> None:
    """Decode random z-points (or reconstructions, or an interpolation) and save an image grid."""
    from dataclasses import replace

    from zspace import generation as g
    from zspace.rundir import Run

    with _clear_errors():
        if sum(bool(v) for v in (reconstruct, interpolate, attribute)) > 1:
            raise ConfigError("--reconstruct, --interpolate and --attribute exclude each other.")
        limits = g.check_limits(limit or [1.0])
        strengths = g.check_strengths(strength or g.DEFAULT_STRENGTHS)
        g.check_sharpen(sharpen)
        rows = len(strengths) if attribute else len(limits)  # rows of n images (at most)
        g.check_grid_size(n, rows, cols)
        g.check_grid_path(out)
        _check_output(out, "--out")
        r = Run.open(run)
        if attribute:
            grid = g.attribute_grid(r, attribute, n, strengths)
        elif reconstruct:
            grid = g.reconstruction_grid(r, n, seed)
        elif interpolate:
            grid = g.interpolation_grid(r, *interpolate, steps=n, seed=seed)
        elif dist == Dist.gmm:
            grid = g.gmm_grid(r, n, components, seed)
        elif dist == Dist.uniform and len(limits) > 1:
            grid = g.uniform_sweep_grid(r, limits, n, seed)
        else:
            grid = g.sample_grid(r, n, dist.value, limits[0], seed)
        for path in g.write_grid(out, replace(grid, cols=cols or grid.cols), sharpen):
            typer.echo(f"wrote {path}")


def _collect(runs: list[Path], set_: list[str] | None, sharpen: float | None):
    from zspace.config import AnalysisConfig, parse_overrides
    from zspace.generation import GalleryConfig
    from zspace.report import collect_run
    from zspace.rundir import Run

    analysis_config = AnalysisConfig().with_overrides(parse_overrides(set_ or []))
    return [collect_run(Run.open(run), analysis_config, GalleryConfig(sharpen_factor=sharpen)) for run in runs]


Runs = Annotated[list[Path], typer.Argument(help="Run directories.", exists=True, file_okay=False)]
AnalysisSet = Annotated[list[str] | None, typer.Option("--set", help="Analysis field for runs not yet analysed.")]
Sharpen = Annotated[float | None, typer.Option(help="Also show grids sharpened by PIL with this factor.")]


@app.command()
def compare(
    runs: Runs,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("comparison"),
    set_: AnalysisSet = None,
    sharpen: Sharpen = None,
) -> None:
    """Overlay radius histograms and inertia curves, tabulate losses and VAE internals, grids side by side."""
    from zspace.report import write_comparison

    with _clear_errors():
        _check_output(out, "--out", folder=True)
        written = write_comparison(_collect(runs, set_, sharpen), out)
        typer.echo(written["tables"].read_text())
        typer.echo(f"wrote {len(written)} files into {out}")


@app.command()
def report(
    runs: Runs,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output HTML file.")] = Path("report.html"),
    set_: AnalysisSet = None,
    sharpen: Sharpen = None,
) -> None:
    """One self-contained HTML report of one or more runs (PNGs saved beside it)."""
    from zspace.report import write_html_report
    from zspace.report.build import check_report_path, report_files_dir

    with _clear_errors():
        check_report_path(out)
        _check_output(out, "--out")
        _check_output(report_files_dir(out), "--out", folder=True)
        path = write_html_report(_collect(runs, set_, sharpen), out)
        typer.echo(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder of the demo runs.")] = Path("demo-runs"),
    config: Annotated[Path, typer.Option(exists=True, dir_okay=False)] = Path("configs/demo.toml"),
    fashion_config: Annotated[Path, typer.Option(dir_okay=False, help="Used when Fashion-MNIST is on this machine.")] = Path("configs/demo-fashion.toml"),
    analysis_config: Annotated[Path | None, typer.Option(dir_okay=False, help="Analysis TOML for the report.")] = Path("configs/analysis-demo.toml"),
    evaluation_config: Annotated[Path | None, typer.Option(dir_okay=False, help="Evaluation TOML for the report.")] = Path("configs/evaluate-demo.toml"),
) -> None:
    """Train the demo AE and VAE, evaluate them, write image grids and an HTML report, print a summary."""
    from zspace.config import AnalysisConfig
    from zspace.demo import format_summary, run_demo
    from zspace.evaluation.evaluate import EvaluationConfig

    with _clear_errors():
        analysis = AnalysisConfig.load(analysis_config) if analysis_config and analysis_config.is_file() else AnalysisConfig()
        evaluation = (EvaluationConfig.load(evaluation_config) if evaluation_config and evaluation_config.is_file()
                      else EvaluationConfig())
        rows, report_path = run_demo(config, fashion_config if fashion_config.is_file() else None, out, analysis,
                                     evaluation)
        typer.echo(format_summary(rows))
        typer.echo(f"report: {report_path}")


prepare_app = typer.Typer(help="Prepare a folder of images as a sharded uint8 cache for streaming training.",
                          no_args_is_help=True)
app.add_typer(prepare_app, name="prepare")

SourceDir = Annotated[Path, typer.Option("--src", help="Folder of the source images.", exists=True, file_okay=False)]
CacheDir = Annotated[Path, typer.Option("--out", "-o", help="Cache folder to write (created).")]
Size = Annotated[int, typer.Option(min=1, help="Side of the square output images, pixels.")]
Crop = Annotated[str | None, typer.Option(help="Crop box LEFT,TOP,RIGHT,BOTTOM in source pixels (default: "
                                               "centre square).")]
ShardSize = Annotated[int, typer.Option(min=1, help="Images per shard file.")]
Workers = Annotated[int, typer.Option(min=0, help="Decoding processes (0 = all cores).")]
MaxBad = Annotated[float, typer.Option(min=0.0, max=1.0, help="Stop above this fraction of bad files.")]
MaxPixels = Annotated[int, typer.Option(min=1, help="Larger images are refused as decompression bombs.")]


def _prepare_config(size, crop, shard_size, workers, max_bad_fraction, max_pixels):
    from zspace.data.prepare import PrepareConfig
    from zspace.errors import ConfigError

    box = None
    if crop:
        try:
            box = tuple(int(v) for v in crop.split(","))
        except ValueError:
            box = ()
        if len(box) != 4:
            raise ConfigError(f"--crop must be four integers LEFT,TOP,RIGHT,BOTTOM. Received: {crop!r}")
    return PrepareConfig(size=size, crop=box, shard_size=shard_size, workers=workers,
                         max_bad_fraction=max_bad_fraction, max_pixels=max_pixels)


def _report_prepared(result) -> None:
    typer.echo(f"wrote {result.n_images} images into {result.folder} ({result.written_shards} shards written, "
               f"{result.reused_shards} kept from an earlier run); {len(result.bad)} bad files skipped"
               + (f", listed in {result.folder / 'bad_files.tsv'}" if result.bad else ""))


def _add_prepare_command(name: str, doc: str) -> None:
    """``zspace prepare NAME``: the same options for every source, calling ``zspace.data.prepare.prepare_NAME``."""
    def command(src: SourceDir, out: CacheDir, size: Size = 96, crop: Crop = None, shard_size: ShardSize = 10_000,
                workers: Workers = 0, max_bad_fraction: MaxBad = 0.01, max_pixels: MaxPixels = 40_000_000) -> None:
        from zspace.data import prepare

        with _clear_errors():
            config = _prepare_config(size, crop, shard_size, workers, max_bad_fraction, max_pixels)
            _report_prepared(getattr(prepare, f"prepare_{name}")(src, out, config))

    command.__doc__ = doc
    prepare_app.command(name)(command)


_add_prepare_command("celeba", "CelebA: img_align_celeba JPEGs (+ list_attr_celeba.txt, list_eval_partition.txt "
                               "when present).")
_add_prepare_command("images", "Any folder of JPEG / PNG images; sub-folder names become labels.")


# Lines TensorFlow's C++ runtime prints while it loads, whatever TF_CPP_MIN_LOG_LEVEL says (absl
# logs them before its own initialisation): they would bury a one-line error.
_STARTUP_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
                            r"STDERR|I0000 00:00:\d+\.\d+ +\d+ port\.cc:\d+\] oneDNN custom operations are on)")
# Commands that run a model: they load Keras (and the backend) anyway.
_KERAS_COMMANDS = {"train", "encode", "analyze", "evaluate", "generate", "compare", "report", "demo"}


@contextlib.contextmanager
def _without_startup_noise():
    """Runs the block with file descriptor 2 captured, then writes back all of it but :data:`_STARTUP_NOISE`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _STARTUP_NOISE.match(line)))
            sys.stderr.flush()


def _load_keras_quietly(argv: list[str]) -> None:
    """Imports Keras before a model command runs, without the runtime's start-up lines."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in _KERAS_COMMANDS and "keras" not in sys.modules:
        with _without_startup_noise():
            import keras  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs a command and returns its exit code.

    Usage errors (unknown option, missing file, bad number) become one line on stderr and
    exit code 2, like the errors the commands themselves raise.
    """
    from typer.exceptions import Abort, TyperException

    _load_keras_quietly(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=argv, standalone_mode=False, prog_name="zspace")
    except TyperException as exc:  # usage errors: unknown option, missing file, bad number, ...
        typer.echo(f"zspace: error: {exc.format_message()}", err=True)
        return getattr(exc, "exit_code", 2) or 2
    except (Abort, KeyboardInterrupt):
        typer.echo("zspace: aborted", err=True)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
