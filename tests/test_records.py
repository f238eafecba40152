"""Typed result records: strict JSON out, the annotated types back; the run directory's one owner."""

import io
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from zspace.analysis import analyze_codes
from zspace.analysis.records import Analysis
from zspace.analysis.statistics import axis_stats, radius_stats, vae_internals
from zspace.config import AnalysisConfig
from zspace.errors import RunError
from zspace.rundir import Run

FAST = AnalysisConfig(k_min=2, k_max=6, kmeans_seeds=(0,), tsne_sizes=(60,), pca_subset=50, axes=(0, 2))


@pytest.fixture(scope="module")
def analysis():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(120, 4)).astype(np.float32)
    logvar = np.full_like(mu, -30.0)  # exp(-30) so small that z == mu: relative radius diff 0/0 -> inf
    logvar[:, 1] = 0.2
    z = mu + np.exp(logvar / 2) * rng.normal(size=mu.shape).astype(np.float32)
    mu[0] = 0.0  # r(mu) = 0 while r(z) > 0: radius_rel_diff_max is inf
    labels = rng.integers(0, 3, 120)
    return analyze_codes({"z": z, "mu": mu, "logvar": logvar}, FAST, labels, label_names=("cat", "dog", "cow"))


def _same(a, b):
    """Deep equality of record field values (arrays by value and dtype kind, floats incl. inf/nan)."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype.kind == b.dtype.kind, (a, b)
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert type(b) is dict and list(a) == list(b), (a, b)  # same keys, same types of keys
        for key in a:
            _same(a[key], b[key])
    elif isinstance(a, tuple):
        assert type(b) is tuple and len(a) == len(b), (a, b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, float):
        assert type(b) is float and (a == b or (math.isnan(a) and math.isnan(b))), (a, b)
    elif hasattr(a, "__dataclass_fields__"):
        assert type(a) is type(b)
        for name in a.__dataclass_fields__:
            _same(getattr(a, name), getattr(b, name))
    else:
        assert a == b and type(a) is type(b), (a, b)


def test_analysis_round_trips_through_strict_json(analysis):
    text = json.dumps(analysis.to_json(), allow_nan=False)  # strict JSON: no NaN / Infinity tokens
    assert analysis.internals.radius_rel_diff_max == math.inf and '"radius_rel_diff_max": "inf"' in text
    back = Analysis.from_json(json.loads(text), analysis.arrays)
    _same(back, analysis)
    assert back.axes.histograms.keys() == {0, 2}  # int keys again, not "0" / "2"
    assert back.internals.logvar_edges[0] == -np.inf and back.radius.shell_50.__class__ is tuple
    assert back.label_names == ("cat", "dog", "cow") and back.tsne[0].size == 60


def test_each_statistics_record_round_trips():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(50, 3))
    for record in (radius_stats(z), axis_stats(z, axes=(1,)), vae_internals(z, z, np.zeros_like(z))):
        _same(type(record).from_json(json.loads(json.dumps(record.to_json(), allow_nan=False))), record)


def test_json_is_readable_without_zspace(analysis):
    data = json.loads(json.dumps(analysis.to_json(), allow_nan=False))
    assert data["radius"]["mean"] == pytest.approx(float(analysis.radius.mean))
    assert data["attributes"] is None and data["axes"]["histograms"]["2"][0] == analysis.axes.histograms[2][0].tolist()
    assert float(data["internals"]["logvar_edges"][-1]) == math.inf  # "inf" parses as a float anywhere


def test_a_record_missing_a_field_or_of_a_wrong_type_is_refused(analysis):
    data = analysis.to_json()
    with pytest.raises(KeyError, match="radius"):
        Analysis.from_json({k: v for k, v in data.items() if k != "radius"})
    with pytest.raises(TypeError, match="int"):
        Analysis.from_json({**data, "z_dim": "4"})


def test_run_reads_back_what_it_saved_and_names_a_foreign_file(analysis, tmp_path):
    run = Run(tmp_path)
    assert not run.has_analysis()
    with pytest.raises(FileNotFoundError, match="zspace analyze"):
        run.load_analysis()
    run.save_analysis(analysis)
    back = run.load_analysis()
    _same(back, analysis)
    pair_id = json.loads(run.analysis_json.read_text())["analysis_id"]  # both files of one analyze carry it
    good = {"analysis_id": pair_id, **analysis.to_json()}
    hostile = [
        {"analysis_id": pair_id, "kind": "vae"},  # fields missing
        {**good, "z_dim": 1e308},  # a float where an int belongs
        {**good, "radius": {**good["radius"], "counts": {"a": 1}}},  # an object where numbers belong
        {**good, "radius": {**good["radius"], "counts": ["1e9", "x"]}},  # strings that are no numbers
        {**good, "radius": {**good["radius"], "shell_50": [1.0, 2.0, 3.0]}},  # three values for a pair
        {**good, "tsne": {"size": 3}},  # a table where a list belongs
        [1, 2, 3],  # not a JSON object at all
        {**good, "seconds": [1]},  # a list where a table belongs
        {**good, "axes": {**good["axes"], "histograms": {"x": good["axes"]["histograms"]["0"]}}},  # key no int
        {**good, "radius": {**good["radius"], "mean": True}},  # a bool is no number
        {**good, "radius": {**good["radius"], "mean": "3.5"}},  # nor is a string other than inf / nan
        {**good, "kind": "gan"},  # not a kind zspace trains
        {**good, "label_names": "abc"},  # a string where a list belongs
        {**good, "z_dim": 99},  # inconsistent with the arrays
        {**good, "tsne": [{**good["tsne"][0], "size": 61}]},  # names an embedding the arrays lack
    ]
    for data in hostile:
        run.analysis_json.write_text(json.dumps(data))
        with pytest.raises(RunError, match=r"analysis\.json: not an analysis written by zspace"):
            run.load_analysis()
    run.analysis_json.write_text("[" * 100_000 + "]" * 100_000)  # nested past the recursion limit
    with pytest.raises(RunError, match=r"analysis\.json: not an analysis written by zspace"):
        run.load_analysis()
    run.save_analysis(analysis)
    pair_id = json.loads(run.analysis_json.read_text())["analysis_id"]
    for arrays in ({k: v for k, v in analysis.arrays.items() if k != "z"},  # z missing
                   {**analysis.arrays, "z": np.array(["a"] * 120)},  # z of strings
                   {**analysis.arrays, "z": np.full_like(analysis.arrays["z"], np.nan)},  # report's GMM fit crashed
                   {**analysis.arrays, "pca_indices": analysis.arrays["pca_indices"] + 500},  # out of range
                   {**analysis.arrays, "pca_embedding": analysis.arrays["pca_embedding"][:-1]}):  # a row short
        np.savez(run.analysis_npz, **arrays, analysis_id=np.asarray(pair_id))
        with pytest.raises(RunError, match=r"analysis\.json: not an analysis .*array[s]? `(z|pca_indices)`"):
            run.load_analysis()
    run.analysis_npz.write_bytes(b"not a zip")
    with pytest.raises(RunError, match=r"analysis\.npz: not analysis arrays written by zspace"):
        run.load_analysis()
    run.save_analysis(analysis)
    with open(run.analysis_json, "wb") as f:  # sparse: 65 MiB on the size check, nothing on disk
        f.truncate(65 * 2**20)
    with pytest.raises(RunError, match="larger than 64 MiB"):
        run.load_analysis()


def _npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_analysis_arrays_are_size_checked_before_reading(analysis, tmp_path):
    """A header claiming 1e11 floats, a truncated file, a pickle: one RunError, nothing allocated."""
    run = Run(tmp_path)
    run.save_analysis(analysis)
    good = run.analysis_npz.read_bytes()
    z = analysis.arrays["z"]
    header = np.lib.format.header_data_from_array_1_0(z)
    huge = _npz_bytes(z=z).replace(repr(header["shape"]).encode(), b"(100000000000,)", 1)
    assert b"(100000000000,)" in huge  # the hostile header really is there
    cases = {
        "huge header": huge,
        "truncated": good[: len(good) // 2],
        "pickle": _npz_bytes(z=np.array([{"a": 1}], dtype=object)),
        "empty": b"",
    }
    for what, data in cases.items():
        run.analysis_npz.write_bytes(data)
        with pytest.raises(RunError, match=r"analysis\.npz: not analysis arrays written by zspace") as info:
            run.load_analysis()
        assert "\n" not in str(info.value), what


def test_a_kill_between_the_two_analysis_commits_is_one_line_not_a_keyerror(analysis, tmp_path, monkeypatch):
    """analysis.npz of a new analyze beside analysis.json of the old one: refused, naming both files."""
    run = Run(tmp_path)
    run.save_analysis(analysis)
    import zspace.rundir as rundir

    class Killed(BaseException):
        """Stands in for the SIGKILL after the first commit."""

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(rundir, "atomic_write_text", killed)
    fewer = replace(analysis, tsne=(), arrays={k: v for k, v in analysis.arrays.items() if not k.startswith("tsne")})
    with pytest.raises(Killed):
        run.save_analysis(fewer)
    with pytest.raises(RunError, match=r"analysis\.json and analysis\.npz are from different analyses"):
        run.load_analysis()


def test_an_analysis_written_by_the_previous_version_still_loads(analysis, tmp_path):
    """The previous analysis.json spelled the same keys; only the reader changed."""
    data = analysis.to_json()
    data.pop("label_names")  # a field the previous version did not write
    run = Run(tmp_path)
    run.save_analysis(analysis)
    run.analysis_json.write_text(json.dumps(data))  # neither file of that version had an id
    np.savez(run.analysis_npz, **analysis.arrays)
    back = run.load_analysis()
    assert back.label_names == () and back.internals.radius_rel_diff_max == math.inf


def test_run_loads_config_model_and_data_once(tmp_path, monkeypatch):
    from conftest import tiny_run_config
    import zspace.data.datasets as datasets
    from zspace.training import train

    result = train(tiny_run_config(tmp_path / "run", epochs=1))
    loads = []
    real = datasets.load_dataset
    monkeypatch.setattr("zspace.rundir.load_dataset", lambda *a: loads.append(a) or real(*a))
    run = Run.open(tmp_path / "run")
    assert run.config.resolved_dict() == result.config.resolved_dict()
    assert run.model is run.model and run.split is run.split and run.data is run.data
    assert len(loads) == 1 and len(run.split.x_val) == 180
    assert [e for e, _ in run.checkpoints()] == [1] and run.history[-1]["epoch"] == 1


def test_what_ran_on_a_run_before_does_not_change_sampled_z(tmp_path):
    """One model serves a whole command; each operation still draws the noise of a freshly loaded model."""
    from conftest import tiny_run_config
    from zspace.analysis import encode_run_images
    from zspace.generation import reconstruction_grid
    from zspace.training import train

    train(tiny_run_config(tmp_path / "run", epochs=1))
    fresh = reconstruction_grid(Run(tmp_path / "run"), 6).images
    run = Run(tmp_path / "run")
    first = encode_run_images(run, "validation").codes["z"]
    run.model.encode(run.validation_images(50))  # advances the sampling noise
    np.testing.assert_array_equal(reconstruction_grid(run, 6).images, fresh)
    assert reconstruction_grid(run, 6).reference_rows == (0,)  # the originals are never sharpened
    np.testing.assert_array_equal(encode_run_images(run, "validation").codes["z"], first)
    assert not np.array_equal(run.model.encode(run.validation_images(180))["z"], first)  # the noise does move


def test_no_module_but_rundir_spells_a_run_file_name():
    """The layout of a run directory is written down in one place (zspace/rundir.py)."""
    names = ["config.toml", "history.csv", "run_state.json", "model.keras", "encoder.keras", "decoder.keras",
             "summary.json", "analysis.json", "analysis.npz", "evaluation.json", "checkpoints", "gallery"]
    pattern = re.compile(r"""["'/](%s)["']""" % "|".join(re.escape(n) for n in names))
    package = Path(__import__("zspace").__file__).parent
    offenders = [f"{path.relative_to(package)}: {match.group(0)}"
                 for path in package.rglob("*.py") if path.name != "rundir.py"
                 for match in pattern.finditer(path.read_text())]
    assert offenders == []
