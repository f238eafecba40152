"""Sweeps: one run per value (or combination of values) of some config fields, analysed and compared.

``zspace sweep --config X.toml --sweep z_dim=2,4,12 --out SWEEP`` trains ``SWEEP/z_dim=2``,
``SWEEP/z_dim=4`` and ``SWEEP/z_dim=12`` (the base config with that field replaced), analyses each
(:func:`zspace.analysis.analyze_run`) and writes one HTML report of all of them
(``SWEEP/report.html``, :func:`zspace.report.write_html_report`).

Syntax: ``--sweep FIELD=VALUES`` names the values a field takes, one run each; ``--set FIELD=VALUE``
stays an ordinary override, the same for every run. VALUES is either a comma-separated list of
scalars (``z_dim=2,4,12``, ``kind=ae,vae``: each a TOML literal, else a plain string) or a TOML
array whose elements are the values (``z_dim=[2,4,12]``; a list-valued field needs this form:
``encoder_filters=[[32,64],[16,32]]`` is two runs). Several ``--sweep`` options sweep the product
of their values; the runs are named by them (``kind=ae,z_dim=2``) in the order given.

Every run's config is built and checked before anything is trained, and so is every earlier run
already in SWEEP (a changed config is refused, as ``zspace train`` refuses it). Running the same
command again skips the finished runs and resumes the unfinished ones from their newest checkpoint
(:func:`zspace.training.train`); raising ``epochs`` continues every run. A run trained or resumed
by the call is analysed again; a finished one keeps its analysis (``zspace analyze`` redoes it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zspace.config import AnalysisConfig, ModelConfig, RunConfig, TrainConfig
from zspace.config_fields import did_you_mean
from zspace.errors import ConfigError, RunError

__all__ = ["SweepRun", "SweepResult", "parse_sweep", "check_set_values", "plan_sweep", "run_sweep", "run_name",
           "MAX_SWEEP_RUNS", "MAX_RUN_NAME", "REPORT_NAME"]

MAX_SWEEP_RUNS = 256
"""Most runs of one sweep (the product of the swept values' counts): each is a full training run, so a
larger product is almost always a typo (``z_dim=[2,4,...]`` twice) rather than a plan."""

MAX_RUN_NAME = 120
"""Most characters of a run folder's name; longer ones (many fields, long strings) are cut and end in a
hash of the whole name, so they stay distinct and within the file system's 255 bytes."""

REPORT_NAME = "report.html"
LOCK_NAME = ".zspace-sweep.lock"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")  # anything else in a value becomes "_" in a folder name
_FIELDS = {f.name: f for cls in (ModelConfig, TrainConfig) for f in dataclasses.fields(cls)}
_HINTS = {**typing.get_type_hints(ModelConfig), **typing.get_type_hints(TrainConfig)}


def _is_list_field(name: str) -> bool:
    """Whether a run config field holds a list (``encoder_filters``), possibly None."""
    hint = _HINTS[name]
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return any(typing.get_origin(o) is tuple for o in options)


def _literal(raw: str) -> Any:
    """A TOML literal (``2``, ``0.5``, ``true``, ``"x"``, ``[1, 2]``), else the text itself."""
    try:
        return tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return raw.strip()
    except RecursionError:
        raise ConfigError(f"--sweep: the value {raw[:40]!r} nests arrays deeper than Python can parse.") from None


def _check_field(key: str, option: str) -> None:
    if key not in _FIELDS:
        raise ConfigError(f"{option}: unknown config field `{key}`" + did_you_mean(key, _FIELDS))
    if key == "run_dir":
        raise ConfigError(f"{option} run_dir: a sweep puts each run in its own folder under --out; "
                          f"run_dir cannot be set or swept.")


def parse_sweep(pairs: list[str]) -> dict[str, tuple]:
    """``["z_dim=2,4", "kind=[\"ae\",\"vae\"]"]`` -> ``{"z_dim": (2, 4), "kind": ("ae", "vae")}``, in order given.

    Raises:
        ConfigError: no ``=``, an unknown field, ``run_dir``, a field given twice, no values, or a value
            given twice (two runs of one folder); names the option.
    """
    sweep: dict[str, tuple] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise ConfigError(f"--sweep expects field=value1,value2,... Received: {pair!r}")
        _check_field(key, "--sweep")
        if key in sweep:
            raise ConfigError(f"--sweep {key} is given twice; give all its values in one option "
                              f"({key}=a,b,c).")
        parsed = _literal(raw) if raw.startswith("[") else None
        if raw.startswith("[") and not isinstance(parsed, list):
            raise ConfigError(f"--sweep {key}={raw[:60]}: not a TOML array; expected [v1, v2, ...] or v1,v2,...")
        values = tuple(parsed) if parsed is not None else tuple(_literal(v) for v in raw.split(",") if v.strip())
        if not values:
            raise ConfigError(f"--sweep {key}: no values; expected {key}=v1,v2,...")
        names = [_value_text(v) for v in values]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"--sweep {key}: the value {repeated[0]} is given twice; each value is one run.")
        sweep[key] = tuple(tuple(v) if isinstance(v, list) else v for v in values)
    return sweep


def check_set_values(overrides: dict[str, Any]) -> None:
    """ConfigError for a ``--set`` of a list to a scalar field: a sweep was meant (``--sweep``), and
    ``run_dir``, which the sweep chooses."""
    for key, value in overrides.items():
        if key in _FIELDS:
            _check_field(key, "--set")
            if isinstance(value, list) and not _is_list_field(key):
                values = ",".join(_value_text(v) for v in value)
                raise ConfigError(f"--set {key}=[{', '.join(map(str, value))}]: {key} takes one value (--set is the same for "
                                  f"every run); for one run per value write --sweep {key}={values}.")


def _value_text(value: Any) -> str:
    """A value as it appears in a run's name: ``2``, ``0.5``, ``ae``, ``true``, ``32-64`` for a list."""
    if isinstance(value, (list, tuple)):
        return "-".join(_value_text(v) for v in value) or "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_name(values: dict[str, Any]) -> str:
    """The folder name of the run with these swept ``values``: ``z_dim=2``, ``kind=ae,z_dim=2``.

    Characters other than letters, digits and ``._=+-`` become ``_``; a name longer than
    :data:`MAX_RUN_NAME` is cut and ends in a hash of the whole.
    """
    name = ",".join(f"{k}={_UNSAFE.sub('_', _value_text(v))}" for k, v in values.items())
    if len(name) > MAX_RUN_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        name = f"{name[:MAX_RUN_NAME - 11]}~{digest}"
    return name


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its folder ``name`` under the sweep's folder, the swept ``values``, its ``config``."""

    name: str
    values: dict[str, Any]
    config: RunConfig

    @property
    def root(self) -> Path:
        return Path(self.config.train.run_dir)


def _combinations(sweep: dict[str, tuple]) -> Iterator[dict[str, Any]]:
    for combo in itertools.product(*sweep.values()):
        yield dict(zip(sweep, combo))


def plan_sweep(base: RunConfig, sweep: dict[str, tuple], out: str | Path) -> list[SweepRun]:
    """The runs of a sweep, every config built and checked; trains nothing, writes nothing.

    Args:
        base: the config every run starts from (its ``run_dir`` is replaced by ``out/<run name>``).
        sweep: {field: values} as :func:`parse_sweep` returns; the runs are their product.
        out: the sweep's folder.

    Raises:
        ConfigError: more than :data:`MAX_SWEEP_RUNS` runs, two runs of one folder name, or a value a
            field does not take (the message names the run and the field).
    """
    for key in sweep:
        _check_field(key, "--sweep")
    total = 1
    for values in sweep.values():
        total *= len(values)
    if total > MAX_SWEEP_RUNS:
        sizes = " x ".join(f"{len(v)} {k}" for k, v in sweep.items())
        raise ConfigError(f"--sweep gives {sizes} = {total} runs; at most {MAX_SWEEP_RUNS} (MAX_SWEEP_RUNS).")
    out = Path(out)
    runs, seen = [], {}
    for values in _combinations(sweep):
        name = run_name(values)
        if name in seen:
            raise ConfigError(f"--sweep: the runs {seen[name]} and {values} would share the folder {name!r}; "
                              f"give values that differ in letters or digits.")
        seen[name] = values
        runs.append(SweepRun(name, values, _run_config(base, values, out / name)))
    return runs


def _run_config(base: RunConfig, values: dict[str, Any], root: Path) -> RunConfig:
    try:
        return base.with_overrides({**values, "run_dir": str(root)})
    except ConfigError as exc:
        hint = ""
        scalar = [k for k, v in values.items() if _is_list_field(k) and not isinstance(v, tuple)]
        if scalar:
            k = scalar[0]
            hint = (f" ({k} is a list field: sweep lists as --sweep {k}=[[...],[...]], e.g. "
                    f"{k}=[[32,64],[16,32]])")
        raise ConfigError(f"sweep run {run_name(values)}: {exc}{hint}") from None


def _differences(saved: RunConfig, new: RunConfig) -> list[str]:
    """Fields (not resumable ones) in which a run's saved config differs from ``new``."""
    from zspace.training.run import RESUMABLE_FIELDS

    old_d, new_d = saved.resolved_dict(), new.resolved_dict()
    return [f"{key}: {value!r} -> {new_d[section][key]!r}" for section in old_d
            for key, value in old_d[section].items() if key not in RESUMABLE_FIELDS and new_d[section][key] != value]


def _check_existing(runs: list[SweepRun]) -> None:
    """RunError naming the run when one already in the sweep's folder was trained with another config."""
    from zspace.rundir import Run

    for sweep_run in runs:
        run = Run(sweep_run.root)
        if not run.config_path.exists():
            continue
        changes = _differences(run.saved_config(), sweep_run.config)
        if changes:
            raise RunError(f"{run.root} holds a run with a different config; refusing to resume. Changed: "
                           f"{'; '.join(changes)}. Use another --out for a new sweep.")


def _is_finished(run, config: RunConfig) -> bool:
    """The run's model was saved after ``config.train.epochs`` epochs (its config was checked before)."""
    checkpoints = run.checkpoints()
    return run.model_path.is_file() and bool(checkpoints) and checkpoints[-1][0] >= config.train.epochs


@dataclass
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes:
        runs: the planned runs, in order; status: {run name: "trained", "resumed" or "finished"
        (skipped)}; final: {run name: last history row}; report: the HTML report (None if not written).
    """

    runs: list[SweepRun]
    status: dict[str, str] = field(default_factory=dict)
    final: dict[str, dict[str, float]] = field(default_factory=dict)
    report: Path | None = None


@dataclass
class _Lock:
    path: Path

    def __enter__(self):
        from filelock import FileLock, Timeout

        self._lock = FileLock(self.path, timeout=0)
        try:
            self._lock.acquire()
        except Timeout:
            raise RunError(f"{self.path.parent}: another `zspace sweep` is running in this folder; wait for it "
                           f"to finish or choose another --out.") from None
        except OSError as exc:
            raise RunError(f"{self.path}: cannot be opened as the sweep's lock file "
                           f"({exc.strerror or exc}).") from None
        return self

    def __exit__(self, *exc):
        self._lock.release()


def run_sweep(base: RunConfig, sweep: dict[str, tuple], out: str | Path,
              analysis_config: AnalysisConfig = AnalysisConfig(), report: bool = True, dataset=None,
              say: Callable[[str], None] = lambda _message: None) -> SweepResult:
    """Trains (or resumes, or skips when finished) every run of a sweep, analyses each, writes one report.

    Args:
        base: the config each run starts from; sweep: {field: values}; out: the sweep's folder
            (``out/<run name>`` per run, ``out/report.html``).
        analysis_config: settings of each run's analysis (saved into the run, as ``zspace analyze``).
        report: False skips the HTML report.
        dataset: a :class:`zspace.data.Dataset` every run uses instead of loading its ``dataset``.
        say: called with one line per step (the CLI prints them).

    Raises:
        ConfigError: a bad sweep or run config (before anything is trained); RunError: an existing run
        with another config; and whatever :func:`zspace.training.train` raises.
    """
    import keras

    from zspace.analysis import analyze_run
    from zspace.rundir import Run
    from zspace.training import train

    runs = plan_sweep(base, sweep, out)
    out = Path(out)
    if report:
        from zspace.report.build import check_report_path

        check_report_path(out / REPORT_NAME)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder.")
    _check_existing(runs)
    out.mkdir(parents=True, exist_ok=True)
    result = SweepResult(runs)
    with _Lock(out / LOCK_NAME):
        for number, sweep_run in enumerate(runs, start=1):
            run = Run(sweep_run.root, dataset)
            status = "finished"
            if not _is_finished(run, sweep_run.config):
                status = "resumed" if run.checkpoints() else "trained"
                say(f"run {number}/{len(runs)} {sweep_run.name}: {'resuming' if status == 'resumed' else 'training'}")
                train(sweep_run.config, dataset)
                keras.backend.clear_session()  # one sweep process trains many models: free each one's graph
            if status != "finished" or not run.has_analysis():  # a finished run keeps its analysis
                analysed = Run(sweep_run.root, dataset)
                try:
                    analyze_run(analysed, analysis_config)
                finally:
                    analysed.close()
            result.status[sweep_run.name] = status
            result.final[sweep_run.name] = (run.history or [{}])[-1]
            say(f"run {number}/{len(runs)} {sweep_run.name}: {result.status[sweep_run.name]}, "
                f"val_total_loss {result.final[sweep_run.name].get('val_total_loss', float('nan')):.4f}")
        if report:
            result.report = _write_report(runs, out / REPORT_NAME, analysis_config, dataset)
            say(f"wrote {result.report}")
    return result


def _write_report(runs: list[SweepRun], path: Path, analysis_config: AnalysisConfig, dataset) -> Path:
    from zspace.report import collect_run, write_html_report
    from zspace.rundir import Run

    reports = []
    for sweep_run in runs:
        run = Run(sweep_run.root, dataset)
        try:
            reports.append(collect_run(run, analysis_config))
        finally:
            run.close()
    return write_html_report(reports, path)
