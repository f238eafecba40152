"""Command line: parses arguments and calls the Python API (``zspace --help``)."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

# TensorFlow's C++ INFO/WARNING lines drown the CLI's output; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from zspace.errors import ZspaceError  # noqa: E402

app = typer.Typer(
    name="zspace",
    help="Train convolutional AEs and VAEs on images and look inside their latent space.",
    no_args_is_help=True,
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


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    _state["debug"] = debug


class Dist(str, Enum):
    normal = "normal"
    uniform = "uniform"


class Split(str, Enum):
    train = "train"
    validation = "validation"
    all = "all"


ConfigPath = Annotated[Path, typer.Option("--config", "-c", help="TOML run config.", exists=True, dir_okay=False)]
RunDir = Annotated[Path, typer.Argument(help="Run directory written by `zspace train`.", exists=True, file_okay=False)]


@app.command()
def train(
    config: ConfigPath,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field: --set epochs=6.")] = None,
) -> None:
    """Train (or resume) the run described by a TOML config."""
    from zspace.config import load_config, parse_overrides
    from zspace.training import train as train_run

    with _clear_errors():
        run_config = load_config(config).with_overrides(parse_overrides(set_ or []))
        result = train_run(run_config)
        last = result.history[-1] if result.history else {}
        typer.echo(f"run {result.files.root}: {len(result.history)} epochs, "
                   f"val_total_loss={last.get('val_total_loss', float('nan')):.4f}")


@app.command()
def encode(
    run: RunDir,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .npz file.")],
    split: Annotated[Split, typer.Option(help="Which images of the run's dataset.")] = Split.all,
    batch_size: Annotated[int, typer.Option(min=1)] = 256,
) -> None:
    """Encode the run's dataset: z (and mu, logvar for a VAE), labels and split per image."""
    import numpy as np

    from zspace.analysis import encode_images, save_encoding
    from zspace.training import load_run, run_data

    with _clear_errors():
        config, model = load_run(run)
        _, (x_train, y_train, x_val, y_val) = run_data(config)
        parts = {"train": [(x_train, y_train, 0)], "validation": [(x_val, y_val, 1)]}
        chosen = parts["train"] + parts["validation"] if split == Split.all else parts[split.value]
        images = np.concatenate([p[0] for p in chosen])
        arrays = encode_images(model, images, batch_size)
        arrays["split"] = np.concatenate([np.full(len(p[0]), p[2], np.int8) for p in chosen])
        if all(p[1] is not None for p in chosen):
            arrays["labels"] = np.concatenate([p[1] for p in chosen])
        save_encoding(out, arrays)
        typer.echo(f"wrote {out}: {', '.join(f'{k} {v.shape}' for k, v in arrays.items())}")


@app.command()
def generate(
    run: RunDir,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output PNG grid.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of images.")] = 28,
    dist: Annotated[Dist, typer.Option(help="z ~ N(0, I) or uniform in [-limit, limit].")] = Dist.normal,
    limit: Annotated[float, typer.Option(help="Half-width of the uniform box (> 0).")] = 1.0,
    cols: Annotated[int | None, typer.Option(min=1, help="Images per row.")] = None,
    seed: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Decode random z-points and save an image grid."""
    from zspace.generation import generate_images, save_grid
    from zspace.training import load_run

    with _clear_errors():
        _, model = load_run(run)
        save_grid(out, generate_images(model, n, dist.value, limit, seed), cols=cols)
        typer.echo(f"wrote {out}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder of the demo runs.")] = Path("demo-runs"),
    config: Annotated[Path, typer.Option(exists=True, dir_okay=False)] = Path("configs/demo.toml"),
    fashion_config: Annotated[Path, typer.Option(dir_okay=False, help="Used when Fashion-MNIST is on this machine.")] = Path("configs/demo-fashion.toml"),
) -> None:
    """Train the demo AE and VAE, write image grids, print a summary."""
    from zspace.demo import format_summary, run_demo

    with _clear_errors():
        rows = run_demo(config, fashion_config if fashion_config.is_file() else None, out)
        typer.echo(format_summary(rows))


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
