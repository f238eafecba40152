"""The configs/ presets follow the seed's networks; a deviation is explained in the preset's own comment."""

from pathlib import Path

import pytest

from zspace.config import load_config

CONFIGS = Path(__file__).parents[1] / "configs"
# The seed's networks (brief and blog series): CelebA 96x96x3 with Conv2D 32/64/128/256, 3x3, stride 2;
# the MNIST / Fashion-MNIST net 32/64/64/64, 3x3, strides 1/2/2/1. Decoders mirror the encoder.
SEED_NETS = {
    "celeba": dict(input_shape=(96, 96, 3), encoder_filters=(32, 64, 128, 256), encoder_kernels=(3, 3, 3, 3),
                   encoder_strides=(2, 2, 2, 2)),
    "fashion": dict(input_shape=(28, 28, 1), encoder_filters=(32, 64, 64, 64), encoder_kernels=(3, 3, 3, 3),
                    encoder_strides=(1, 2, 2, 1)),
}
SEED_NETS["mnist"] = SEED_NETS["fashion"]
RUN_PRESETS = sorted(p for p in CONFIGS.glob("*.toml") if p.name.split("-")[0] in SEED_NETS)


def _comment(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))


@pytest.mark.parametrize("path", RUN_PRESETS, ids=lambda p: p.name)
def test_preset_uses_the_seed_network_or_says_why_not(path):
    model = load_config(path).model
    seed = SEED_NETS[path.name.split("-")[0]]
    differing = [name for name, value in seed.items() if getattr(model, name) != value]
    if differing:
        assert "deviates from the seed" in _comment(path).lower(), f"{path.name}: {differing} differ, unexplained"
    decoder = ("decoder_filters", "decoder_kernels", "decoder_strides", "decoder_padding")
    assert all(getattr(model, n) is None for n in decoder), f"{path.name}: the seed's decoder mirrors the encoder"
    if model.batch_norm or model.dropout_rate:
        assert "batch_norm" in _comment(path), f"{path.name}: batch_norm / dropout is not the seed's; say why"


@pytest.mark.parametrize("family", ["celeba-", "fashion-"])
def test_presets_compared_with_each_other_share_one_network(family):
    """An AE and the VAEs it is compared with differ in kind and KL weight only (the comments say "the same net")."""
    paths = [p for p in RUN_PRESETS if p.name.startswith(family) and "z1600" not in p.name and "denoise" not in p.name
             and "pairs" not in p.name]
    assert len(paths) >= 3
    ignored = {"kind", "kl_factor", "kl_method", "reconstruction_reduction"}  # the loss, not the network
    nets = {p.name: {k: v for k, v in load_config(p).model.resolved().to_dict().items() if k not in ignored}
            for p in paths}
    first = next(iter(nets.values()))
    assert all(net == first for net in nets.values()), nets


def test_the_per_pixel_preset_is_the_sum_preset_rescaled():
    """fashion-vae-per-pixel.toml claims exactly 1/(H W C) of fashion-vae.toml's loss: its KL weight must match."""
    per_pixel, summed = (load_config(CONFIGS / name).model for name in ("fashion-vae-per-pixel.toml", "fashion-vae.toml"))
    assert (per_pixel.reconstruction_reduction, summed.reconstruction_reduction) == ("mean", "sum")
    h, w, c = per_pixel.input_shape
    assert per_pixel.kl_factor * h * w * c == pytest.approx(summed.kl_factor, rel=1e-12)
