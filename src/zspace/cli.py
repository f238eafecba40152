"""Command line: parses arguments and calls the Python API (``zspace --help``)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shlex
import sys
import tempfile
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

# TensorFlow's C++ INFO/WARNING lines drown the CLI's output; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from zspace.config_fields import MAX_BATCH_SIZE, MAX_PROCESSES, MAX_SEED  # noqa: E402
from zspace.errors import ConfigError, ZspaceError  # noqa: E402



def repeated_options(command, args: list[str], parent=None) -> list[str]:
    """Single-valued options given more than once in ``args`` of ``command`` (sub-commands followed), as
    "--name given N times (zspace SUB)": the parser would keep the last value and drop the others unseen.

    Parses with the command's own parser (resilient: a bad option is left for the real parse to report);
    list options (``multiple``) may repeat.
    """
    name = command.name if parent is not None else "zspace"
    ctx = command.context_class(command, parent=parent, info_name=name, resilient_parsing=True)
    _, rest, order = command.make_parser(ctx).parse_args(args=list(args))
    counts: dict = {}
    for param in order:
        if param.param_type_name == "option" and not param.multiple and not getattr(param, "count", False):
            counts[param] = counts.get(param, 0) + 1
    found = [f"{'/'.join([*p.opts, *p.secondary_opts])} given {c} times ({ctx.command_path})"
             for p, c in counts.items() if c > 1]
    sub = command.get_command(ctx, rest[0]) if isinstance(command, TyperGroup) and rest else None
    return found + (repeated_options(sub, rest[1:], ctx) if sub is not None else [])


class _OneValuePerOption(TyperGroup):
    """The zspace group: a single-valued option given twice is a usage error, not a silently dropped value."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if ctx.parent is None:
            repeated = repeated_options(self, args)
            if repeated:
                ctx.fail(f"{'; '.join(repeated)}: a single-valued option, the parser would keep only the "
                         f"last; give it once (options that take several values say so in --help).")
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_OneValuePerOption,
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


@contextlib.contextmanager
def _lost_processes_exit():
    """Several processes: an error ends the process at once (os._exit) after its one line: JAX's exit
    handler would wait for the other processes and abort with pages of C++ log."""
    try:
        yield
    except typer.Exit as exc:
        cluster = _state.get("cluster")
        if cluster is not None and cluster.multi_process and exc.exit_code:
            sys.stderr.flush()
            os._exit(exc.exit_code)
        raise


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
    grid = "grid"


class Center(str, Enum):
    zero = "zero"
    mean = "mean"


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


EpsilonScale = Annotated[float | None, typer.Option(
    "--epsilon-scale", help="VAE only: z = mu + sigma * eps * F (0: z = mu, 2: twice the noise); default: the "
                            "run's own scale (1 unless trained with another).")]


def _note_epsilon_scale(run, scale: float | None, written: Path) -> None:
    """Says that ``written`` now holds results at a scale other than the run's own (the default readers assume)."""
    own = run.config.model.epsilon_scale
    if scale is not None and scale != own:  # "replaced" would be wrong for a first analysis or evaluation
        typer.echo(f"note: {written} now holds results at epsilon_scale {scale:g}, not the run's own {own:g} "
                   f"(recorded there; `zspace report` shows it). Run again without --epsilon-scale for the "
                   f"run's own scale.")


ConfigPath = Annotated[Path, typer.Option("--config", "-c", help="TOML run config.", exists=True, dir_okay=False)]
RunDir = Annotated[Path, typer.Argument(help="Run directory written by `zspace train`.", exists=True, file_okay=False)]


def _train_config_path(run: Path | None, config: Path | None) -> Path:
    """The TOML to train from: ``--config`` or the run directory's own config.toml (exactly one given)."""
    if (run is None) == (config is None):
        raise ConfigError("train needs a run directory (RUN) or --config FILE, not " + ("both." if run else "neither."))
    if config is not None:
        return config
    from zspace.rundir import run_config_path

    path = run_config_path(run)
    if not path.is_file():
        raise ConfigError(f"{run}: no {path.name}, so not a run directory; start a new run with --config FILE.")
    return path


@app.command()
def train(
    run: Annotated[Path | None, typer.Argument(
        help="A run directory to resume (or, with --from-epoch, to branch); instead of --config.",
        exists=True, file_okay=False, show_default=False)] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="TOML run config (a run's own config.toml resumes that run).", exists=True,
        dir_okay=False, show_default=False)] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field: --set epochs=6.")] = None,
    from_epoch: Annotated[int | None, typer.Option(
        "--from-epoch", min=1, show_default=False,
        help="Branch: a new run (--out) from this epoch's checkpoint of the run; the run is only read.")] = None,
    reseed: Annotated[int | None, typer.Option(
        "--reseed", min=0, max=MAX_SEED, show_default=False,
        help="Branch: the new run's noise seed (sampling noise, batch order); default: the checkpoint's noise.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", show_default=False, help="Branch: the new run directory (absent or empty).")] = None,
    coordinator: Annotated[str | None, typer.Option(
        "--coordinator", show_default=False,
        help="Several processes (JAX): HOST:PORT of process 0; default $ZSPACE_COORDINATOR.")] = None,
    num_processes: Annotated[int | None, typer.Option(
        "--num-processes", min=1, max=MAX_PROCESSES, show_default=False,
        help="Several processes: how many; default $ZSPACE_NUM_PROCESSES, else 1.")] = None,
    process_id: Annotated[int | None, typer.Option(
        "--process-id", min=0, show_default=False,
        help="Several processes: this one's, 0..N-1 (0 writes the run); default $ZSPACE_PROCESS_ID, else 0.")] = None,
) -> None:
    """Train (or resume) a run, or branch it: --from-epoch N --out NEW [--reseed S].

    A branch NEW starts from epoch N's checkpoint of RUN (with --reseed S, fresh noise) and trains on to `epochs`.
    Several processes: the same command on each, with --coordinator, --num-processes and --process-id."""
    from zspace.config import parse_overrides
    from zspace.rundir import training_config
    from zspace.training import branch_run
    from zspace.training import train as train_run
    from zspace.training.distribute import Cluster

    with _lost_processes_exit(), _clear_errors():
        cluster = Cluster.from_env(coordinator=coordinator, num_processes=num_processes, process_id=process_id)
        _state["cluster"] = cluster
        epoch, seed, new_run = from_epoch, reseed, out  # each given once (a repeated option is a usage error)
        if cluster.multi_process and epoch is not None:
            raise ConfigError("--from-epoch makes a branch on one process; branch first, then train it on several.")
        if epoch is None and (seed is not None or new_run is not None):
            raise ConfigError("--reseed and --out branch a run: give --from-epoch N too.")
        if epoch is not None and new_run is None:
            raise ConfigError("--from-epoch makes a new run: give its directory with --out NEW_RUN.")
        run_config = training_config(_train_config_path(run, config)).with_overrides(parse_overrides(set_ or []))
        if epoch is not None:
            source = run_config.train.run_dir
            run_config = branch_run(run_config, epoch, new_run, noise_seed=seed)
            typer.echo(f"branched {new_run} from epoch {epoch} of {source}"
                       + (f" with noise seed {seed}" if seed is not None else ""))
        result = train_run(run_config, cluster=cluster)
        if not cluster.is_chief:
            return
        last = result.history[-1] if result.history else {}
        epochs = len(result.history)
        typer.echo(f"run {result.run.root}: {epochs} epoch{'s' if epochs != 1 else ''}, "
                   f"val_total_loss={last.get('val_total_loss', float('nan')):.4f}")


@app.command()
def encode(
    run: RunDir,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .npz file.")],
    split: Annotated[Split, typer.Option(help="Which images of the run's dataset.")] = Split.all,
    batch_size: Annotated[int, typer.Option(min=1, max=MAX_BATCH_SIZE)] = 256,
    epsilon_scale: EpsilonScale = None,
) -> None:
    """Encode the run's dataset: z (and mu, logvar, epsilon_scale for a VAE), labels, attributes and split per image."""
    from zspace.analysis import encode_run_images, save_encoding
    from zspace.analysis.encoding import check_encoding_path, resolve_epsilon_scale
    from zspace.rundir import Run

    with _clear_errors():
        check_encoding_path(out)
        target = Run.open(run)
        resolve_epsilon_scale(target, epsilon_scale, "--epsilon-scale")  # before any output check or model load
        _check_output(out, "--out")
        arrays = encode_run_images(target, split.value, batch_size=batch_size, epsilon_scale=epsilon_scale).to_arrays()
        save_encoding(out, arrays)
        typer.echo(f"wrote {out}: {', '.join(f'{k} {v.shape}' for k, v in arrays.items())}")


@app.command()
def analyze(
    run: RunDir,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Analysis TOML.", exists=True, dir_okay=False)] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field: --set k_max=40.")] = None,
    data: Annotated[str | None, typer.Option(help="Dataset to encode instead of the run's (e.g. idx:DIR).")] = None,
    epsilon_scale: EpsilonScale = None,
    tensorboard: Annotated[bool, typer.Option(
        "--tensorboard", help="Also write TensorBoard Embedding Projector data (mu / z of up to projector_points "
                              "points, labels, image sprite) into RUN/tensorboard; the same as --set "
                              "tensorboard=true.")] = False,
) -> None:
    """Encode the run's dataset and write its analysis (records and arrays) into the run directory."""
    from zspace.analysis import analyze_run
    from zspace.analysis.encoding import resolve_epsilon_scale
    from zspace.rundir import tensorboard_dir
    from zspace.analysis.tables import format_radius_table
    from zspace.config import AnalysisConfig, parse_overrides
    from zspace.data import load_dataset
    from zspace.rundir import Run

    with _clear_errors():
        base = AnalysisConfig.load(config) if config else AnalysisConfig()
        overrides = parse_overrides(set_ or [])
        if tensorboard:
            if "tensorboard" in overrides:  # one of the two would silently win
                raise ConfigError(f"--tensorboard and --set tensorboard={overrides['tensorboard']} both given; "
                                  f"give one.")
            overrides["tensorboard"] = True
        analysis_config = base.with_overrides(overrides)
        target = Run.open(run, load_dataset(data) if data else None)
        resolve_epsilon_scale(target, epsilon_scale, "--epsilon-scale")
        a = analyze_run(target, analysis_config, epsilon_scale=epsilon_scale)
        typer.echo(f"analysed {a.n_points} z-points of dimension {a.z_dim}: mean radius {a.radius.mean:.3f} "
                   f"(N(0, I): {a.radius.expected_normal:.3f}), active units {a.axes.active_units}; "
                   f"wrote {target.analysis_json}")
        _note_epsilon_scale(target, a.run.epsilon_scale, target.analysis_json)
        typer.echo(format_radius_table(a))
        for note in a.notes:
            typer.echo(f"note: {note}")
        if analysis_config.tensorboard:
            logs = tensorboard_dir(target.root)
            typer.echo(f"wrote Embedding Projector data of {min(a.n_points, analysis_config.projector_points)} "
                       f"points into {logs}; open it with: tensorboard --logdir {shlex.quote(str(logs))}  (Projector tab)")


@app.command()
def evaluate(
    run: RunDir,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Evaluation TOML.", exists=True, dir_okay=False)] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field: --set k=100.")] = None,
    epsilon_scale: EpsilonScale = None,
) -> None:
    """Reconstruction, likelihood (VAE), prior holes and sample quality per sampler, written to evaluation.json."""
    from zspace.analysis.encoding import resolve_epsilon_scale
    from zspace.config import parse_overrides
    from zspace.evaluation.evaluate import EvaluationConfig, evaluate as evaluate_run
    from zspace.rundir import Run

    with _clear_errors():
        base = EvaluationConfig.load(config) if config else EvaluationConfig()
        target = Run.open(run)
        resolve_epsilon_scale(target, epsilon_scale, "--epsilon-scale")
        e = evaluate_run(target, base.with_overrides(parse_overrides(set_ or [])), epsilon_scale=epsilon_scale)
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
        _note_epsilon_scale(target, e.epsilon_scale, target.evaluation_json)


@app.command()
def generate(
    run: RunDir,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output PNG grid.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of images (per row for several --limit; per side "
                                                      "for --dist grid).")] = 28,
    dist: Annotated[Dist, typer.Option(help="z ~ N(0, I), uniform in [-limit, limit], a Gaussian mixture fitted "
                                            "to the training z-points, or a regular n x n grid on a plane.")] = Dist.normal,
    limit: Annotated[list[float] | None, typer.Option(help="Half-width r of the uniform box (repeat for one row "
                                                           "per r: --limit 0.5 --limit 1) or of the --dist grid "
                                                           "(default: the 2%-98% range of the training codes).")] = None,
    reconstruct: Annotated[bool, typer.Option(help="Validation images beside their reconstructions instead.")] = False,
    interpolate: Annotated[tuple[int, int] | None, typer.Option(help="Decode the line between validation "
                                                                     "images I and J, in n steps.")] = None,
    attribute: Annotated[str | None, typer.Option(help="Add this attribute's vector (from `zspace analyze`) to "
                                                      "n validation images, one row per --strength.")] = None,
    strength: Annotated[list[float] | None, typer.Option(help="Multiples of the attribute vector "
                                                              "(default -1 0 1 2).")] = None,
    sharpen: Annotated[list[float] | None, typer.Option(help="PIL sharpness factor (0 blurred, 1 unchanged); "
                                                             "repeat for one labelled block of rows per factor.")] = None,
    axes: Annotated[tuple[int, int] | None, typer.Option(help="--dist grid: the two z axes I J (default 0 1).")] = None,
    pca: Annotated[bool, typer.Option("--pca", help="--dist grid: the first two principal directions of the "
                                                    "training codes (mu for a VAE).")] = False,
    center: Annotated[Center | None, typer.Option(help="--dist grid: the other coordinates, 0 or the training "
                                                       "mean (default: zero; mean with --pca).")] = None,
    components: Annotated[int, typer.Option(min=1, help="Mixture components for --dist gmm.")] = 10,
    cols: Annotated[int | None, typer.Option(min=1, help="Images per row.")] = None,
    cell: Annotated[int, typer.Option(min=1, help="Smallest cell height in pixels (small images are enlarged, "
                                                  "nearest neighbour).")] = 64,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED)] = 0,
    epsilon_scale: Annotated[float | None, typer.Option(
        "--epsilon-scale", help="VAE, --reconstruct and --dist gmm: z = mu + sigma * eps * F for the "
                                "reconstructions / the mixture's training z-points (default: the run's own).")] = None,
) -> None:
    """Decode random z-points (or reconstructions, an interpolation, a latent grid) and save a labelled image grid."""
    from zspace import generation as g
    from zspace.analysis.encoding import epsilon_scaled
    from zspace.generation.reconstruct import tag_png
    from zspace.rundir import Run

    with _clear_errors(), contextlib.ExitStack() as scaled:
        if sum(bool(v) for v in (reconstruct, interpolate, attribute)) > 1:
            raise ConfigError("--reconstruct, --interpolate and --attribute exclude each other.")
        mode = ("attribute" if attribute else "reconstruct" if reconstruct else "interpolate" if interpolate
                else dist.value)
        g.check_generate_options(mode, limit, strength, axes, pca, center)
        if epsilon_scale is not None and mode not in ("reconstruct", "gmm"):
            raise ConfigError("--epsilon-scale changes only --reconstruct and --dist gmm grids (the other modes "
                              "decode mu or draws from a fixed distribution, with no sampling noise to scale).")
        limits = g.check_limits(limit or [1.0])
        strengths = g.check_strengths(strength or g.DEFAULT_STRENGTHS)
        factors = g.check_sharpen(sharpen)
        rows = len(strengths) if attribute else n if mode == "grid" else 3 if reconstruct else len(limits)
        g.check_grid_size(n, rows * max(1, len(factors)), cols)
        g.check_cell(cell)
        g.check_grid_path(out)
        _check_output(out, "--out")
        r = Run.open(run)
        g.check_grid_pixels(n * rows * max(1, len(factors)), r.config.model.input_shape, cell)
        scale = scaled.enter_context(epsilon_scaled(r, epsilon_scale, "--epsilon-scale"))
        if attribute:
            grid = g.attribute_grid(r, attribute, n, strengths)
        elif reconstruct:
            grid = g.reconstruction_grid(r, n, seed)
        elif interpolate:
            grid = g.interpolation_grid(r, *interpolate, steps=n, seed=seed)
        elif dist == Dist.grid:
            grid = g.latent_grid(r, n, axes, pca, limit[0] if limit else None, center and center.value, seed=seed)
        elif dist == Dist.gmm:
            grid = g.gmm_grid(r, n, components, seed)
        elif dist == Dist.uniform and len(limits) > 1:
            grid = g.uniform_sweep_grid(r, limits, n, seed)
        else:
            grid = g.sample_grid(r, n, dist.value, limits[0], seed)
        grid = g.with_cols(grid, cols)
        for path in g.write_grid(out, g.sharpen_series(grid, factors) if factors else grid, cell=cell):
            tag_png(path, {"zspace:epsilon_scale": f"{scale:g}"} if epsilon_scale is not None else {})
            typer.echo(f"wrote {path}")


@app.command("reconstruct")
def reconstruct_files(
    run: RunDir,
    images: Annotated[list[Path], typer.Argument(help="JPEG / PNG files.", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output PNG grid.")],
    samples: Annotated[int | None, typer.Option(min=0, help="VAE: decodes of z = mu + sigma * eps around mu per "
                                                            "image (default 4; an AE has none).")] = None,
    epsilon_scale: EpsilonScale = None,
    crop: Annotated[str | None, typer.Option(help="Crop box LEFT,TOP,RIGHT,BOTTOM in source pixels (default: "
                                                  "centre square), as `zspace prepare`.")] = None,
    max_pixels: Annotated[int, typer.Option(min=1, help="Larger images are refused as decompression bombs.")]
    = 40_000_000,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed of eps (and of a denoise run's input "
                                                                "noise).")] = 0,
) -> None:
    """Your own images through the run's model: one row each of original, (input,) reconstruction, samples.

    Each image is cropped and resized as `zspace prepare` does, in the run's channels.

    A recolor run is given its grey version, a denoise run a copy with the run's noise (seeded).
    """
    from zspace.analysis.encoding import resolve_epsilon_scale
    from zspace.generation.modes import check_grid_path
    from zspace.generation.reconstruct import reconstruct_images, write_reconstructions
    from zspace.rundir import Run

    with _clear_errors():
        check_grid_path(out)
        _check_output(out, "--out")
        box = _prepare_config(1, crop, 1, 0, 0.0, max_pixels).crop
        target = Run.open(run)
        resolve_epsilon_scale(target, epsilon_scale, "--epsilon-scale")
        result = reconstruct_images(target, images, samples, epsilon_scale, seed, box, max_pixels)
        write_reconstructions(out, result, target.root)
        typer.echo(f"columns: {' | '.join(result.columns)}")
        typer.echo(f"wrote {out}: {len(result.names)} image(s) through {target.root} ({result.task})")


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


@app.command()
def sweep(
    config: ConfigPath,
    out: Annotated[Path, typer.Option("--out", "-o", help="Sweep folder: one run folder per value, report.html.")],
    sweep_: Annotated[list[str], typer.Option("--sweep", help="One run per value: --sweep z_dim=2,4,12 (a list "
                                                              "field: --sweep encoder_filters=[[32,64],[16,32]]); "
                                                              "repeat for the product of several fields.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field in every run: --set epochs=6.")] = None,
    analysis_config: Annotated[Path | None, typer.Option(help="Analysis TOML for each run.", exists=True,
                                                         dir_okay=False)] = None,
    analysis_set: Annotated[list[str] | None, typer.Option("--analysis-set", help="Override an analysis field: "
                                                                                  "--analysis-set k_max=20.")] = None,
) -> None:
    """Train, analyse and compare one run per value of some config fields (resumes an interrupted sweep)."""
    from zspace.config import AnalysisConfig, parse_overrides
    from zspace.rundir import training_config
    from zspace.sweep import check_set_values, parse_sweep, run_sweep

    with _clear_errors():
        overrides = parse_overrides(set_ or [])
        check_set_values(overrides)
        swept = parse_sweep(sweep_)
        base = training_config(config).with_overrides(overrides)
        analysis = (AnalysisConfig.load(analysis_config) if analysis_config else AnalysisConfig()).with_overrides(
            parse_overrides(analysis_set or []))
        _check_output(out, "--out", folder=True)
        result = run_sweep(base, swept, out, analysis, say=typer.echo)
        typer.echo(f"{len(result.runs)} runs in {out}: " + ", ".join(f"{n} {s}" for n, s in result.status.items()))


@app.command()
def explore(
    runs: Runs,
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: a free one).")] = 8050,
    host: Annotated[str, typer.Option(help="Address to listen on; anything but 127.0.0.1 / localhost lets other "
                                           "machines in (a warning says so).")] = "127.0.0.1",
    compute: Annotated[bool, typer.Option("--compute", help="Runs without an analysis: encode and project (PCA) in "
                                                            "memory; nothing is written.")] = False,
) -> None:
    """A local web page to move through the z-space of analysed runs: map, sliders, interpolation, prior samples.

    Prints the URL; Ctrl-C stops it. The run directories are only read."""
    from zspace.explore.server import bind_socket, open_runs, serve

    with _clear_errors():
        sock = bind_socket(host, port)  # first: a port in use is reported before the models load
        try:
            explored = open_runs(runs, compute=compute)
        except BaseException:
            sock.close()
            raise
        serve(explored, host, port, say=typer.echo, sock=sock, warn=lambda line: typer.echo(line, err=True))


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


def _report_prepared(result, what: str = "images") -> None:
    typer.echo(f"wrote {result.n_images} {what} into {result.folder} ({result.written_shards} shards written, "
               f"{result.reused_shards} kept from an earlier run); {len(result.bad)} bad files skipped"
               + (f", listed in {result.folder / 'bad_files.tsv'}" if result.bad else ""))


def _add_prepare_command(name: str, doc: str) -> None:
    """``zspace prepare NAME``: the same options for every source, calling ``zspace.data.prepare.prepare_NAME``."""
    def command(src: SourceDir, out: CacheDir, size: Size = 96, crop: Crop = None, shard_size: ShardSize = 10_000,
                workers: Workers = 0, max_bad_fraction: MaxBad = 0.01, max_pixels: MaxPixels = 40_000_000) -> None:
        from zspace.data import prepare

        with _clear_errors():
            config = _prepare_config(size, crop, shard_size, workers, max_bad_fraction, max_pixels)
            _report_prepared(getattr(prepare, f"prepare_{name}")(src, out, config),
                             "input/target pairs" if name == "pairs" else "images")

    command.__doc__ = doc
    prepare_app.command(name)(command)


_add_prepare_command("celeba", "CelebA: img_align_celeba JPEGs (+ list_attr_celeba.txt, list_eval_partition.txt "
                               "when present).")
_add_prepare_command("images", "Any folder of JPEG / PNG images; sub-folder names become labels.")
_add_prepare_command("pairs", "Input/target pairs: SRC/input/NAME and SRC/target/NAME, the same names in both; "
                              "train with dataset = \"cache:OUT\", task = \"pairs\".")


# Lines TensorFlow's C++ runtime prints while it loads, whatever TF_CPP_MIN_LOG_LEVEL says (absl
# logs them before its own initialisation): they would bury a one-line error.
_STARTUP_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
                            r"STDERR|I0000 00:00:\d+\.\d+ +\d+ port\.cc:\d+\] oneDNN custom operations are on)")
# Commands that run a model: they load Keras (and the backend) anyway.
_KERAS_COMMANDS = {"train", "encode", "analyze", "evaluate", "generate", "reconstruct", "compare", "report", "demo",
                   "sweep", "explore"}


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
