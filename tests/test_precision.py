"""precision = "auto": what it resolves to, and that a run trains and says so."""

import json

import pytest
from conftest import tiny_run_config

from zspace.config import TrainConfig
from zspace.errors import ConfigError
from zspace.training import precision, train

CPUINFO_BF16 = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu vme avx2 avx512f avx512bw avx512_bf16 avx512_vnni
bogomips\t: 4800.00
"""
CPUINFO_AVX512_ONLY = CPUINFO_BF16.replace(" avx512_bf16", "")
CPUINFO_ARM = "processor\t: 0\nFeatures\t: fp asimd bf16 sve\n"


@pytest.mark.parametrize("cpuinfo, expected", [
    (CPUINFO_BF16, True),
    (CPUINFO_AVX512_ONLY, False),
    (CPUINFO_ARM, False),  # not measured there: float32
    (CPUINFO_AVX512_ONLY.replace("bogomips\t: 4800.00", "model name\t: avx512_bf16 in a name"), False),
    ("", False),
])
def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo, expected):
    assert precision.cpu_has_native_bf16(cpuinfo) is expected


@pytest.mark.parametrize("gpu, bf16, expected", [
    (True, True, "mixed_float16"), (True, False, "mixed_float16"),
    (False, True, "mixed_bfloat16"), (False, False, "float32"),
])
def test_auto_resolves_by_the_hardware(gpu, bf16, expected):
    assert precision.resolve_precision("auto", gpu=gpu, native_bf16=bf16) == expected


@pytest.mark.parametrize("explicit", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_an_explicit_precision_is_kept_whatever_the_hardware(explicit):
    assert precision.resolve_precision(explicit, gpu=True, native_bf16=True) == explicit
    assert precision.resolve_precision(explicit, gpu=False, native_bf16=False) == explicit


def test_auto_is_a_config_value_and_a_typo_is_named():
    assert TrainConfig(precision="auto").precision == "auto"
    with pytest.raises(ConfigError, match="precision.*auto"):
        TrainConfig(precision="automatic")


@pytest.mark.parametrize("native_bf16, expected", [(True, "mixed_bfloat16"), (False, "float32")])
def test_an_auto_run_trains_in_the_resolved_precision_and_says_which(tmp_path, monkeypatch, native_bf16, expected):
    monkeypatch.setattr(precision, "backend_sees_a_gpu", lambda: False)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native_bf16)
    result = train(tiny_run_config(tmp_path, epochs=1, precision="auto"))
    conv = next(layer for layer in result.model.encoder.layers if "conv" in layer.name)
    assert conv.compute_dtype == expected.removeprefix("mixed_")
    assert json.loads((tmp_path / "summary.json").read_text())["precision"] == expected
    assert 'precision = "auto"' in (tmp_path / "config.toml").read_text()
