"""decoder_upsampling ("transpose" | "nearest" | "bilinear") and residual blocks (issue 13, item 11).

CI runs these on TensorFlow, PyTorch and JAX too (the backend marker).
"""

import json
import zipfile

import keras
import numpy as np
import pytest

from conftest import tiny_model_config
from zspace.config import ModelConfig, resize_padding
from zspace.errors import ConfigError, ModelFileError
from zspace.model_size import model_size
from zspace.models import build_model, load_model
from zspace.models.saving import load_autoencoder, save_model

pytestmark = pytest.mark.backend

UPSAMPLINGS = ["transpose", "nearest", "bilinear"]
# "valid" padding, a kernel smaller than its stride's mirror, stride 1 and 2, and a non-mirrored decoder.
VALID = dict(input_shape=(9, 9, 2), encoder_padding=("valid", "same"), decoder_filters=(5, 3, 2),
             decoder_kernels=(4, 3, 3), decoder_strides=(2, 2, 1), decoder_padding=("same", "valid", "same"))
CONFIGS = [
    dict(),
    dict(kind="ae", batch_norm=True, dropout_rate=0.1),
    VALID,
    dict(residual_blocks=2),
    dict(residual_blocks=1, residual_in="encoder", batch_norm=True, activation="selu", encoder_dense_units=5),
    dict(residual_blocks=1, residual_in="decoder", **VALID),
]


def weighted_and_resampled_outputs(model) -> int:
    """Activation values the size estimate counts besides the input: conv / dense / resampling outputs."""
    kinds = (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.Dense, keras.layers.UpSampling2D,
             keras.layers.ZeroPadding2D)
    return sum(int(np.prod(layer.output.shape[1:])) for network in (model.encoder, model.decoder)
               for layer in network.layers if isinstance(layer, kinds))


@pytest.mark.parametrize("upsampling", UPSAMPLINGS)
@pytest.mark.parametrize("changes", CONFIGS)
def test_size_estimate_equals_the_built_model(changes, upsampling):
    config = tiny_model_config(decoder_upsampling=upsampling, **changes)
    model = build_model(config)
    size = model_size(config)
    assert size.parameters == model.count_params() == sum(int(np.prod(w.shape)) for w in model.weights)
    assert size.tensors == len(model.weights)
    assert size.activations == int(np.prod(config.input_shape)) + weighted_and_resampled_outputs(model)
    images = np.random.default_rng(0).random((2, *config.input_shape)).astype("float32")
    assert tuple(model(images)["reconstruction"].shape) == (2, *config.input_shape)
    assert config.decoded_shape == config.input_shape[:2]


@pytest.mark.parametrize("changes", CONFIGS)
def test_the_three_upsamplings_have_the_same_parameters(changes):
    """Conv2DTranspose and Conv2D of one kernel and filters hold the same weights."""
    counts = {u: model_size(tiny_model_config(decoder_upsampling=u, **changes)).parameters for u in UPSAMPLINGS}
    assert len(set(counts.values())) == 1, counts


@pytest.mark.parametrize("upsampling", ["nearest", "bilinear"])
def test_resize_decoder_layers(upsampling):
    model = build_model(tiny_model_config(decoder_upsampling=upsampling, **VALID))
    classes = [type(layer).__name__ for layer in model.decoder.layers]
    assert "Conv2DTranspose" not in classes
    ups = [layer for layer in model.decoder.layers if isinstance(layer, keras.layers.UpSampling2D)]
    assert [layer.size for layer in ups] == [(2, 2), (2, 2)]  # the stride-1 layer needs none
    assert {layer.interpolation for layer in ups} == {upsampling}
    pad = model.decoder.get_layer("decoder_pad_1")  # the "valid" layer: kernel 3, stride 2
    assert tuple(map(tuple, pad.padding)) == (resize_padding(3, 2, "valid"),) * 2 == ((1, 2), (1, 2))


def test_resize_padding_gives_the_transposed_layer_size():
    from zspace.config import _deconv_out

    for kernel in range(1, 7):
        for stride in range(1, 5):
            for size in (1, 2, 5):
                before, after = resize_padding(kernel, stride, "valid")
                resized = size * stride + before + after - kernel + 1  # UpSampling2D, pad, "valid" Conv2D
                assert resized == _deconv_out(size, kernel, stride, "valid"), (kernel, stride, size)
    assert resize_padding(3, 2, "same") == (0, 0)


def test_transpose_is_the_default_and_unchanged():
    model = build_model(tiny_model_config())
    assert ModelConfig().decoder_upsampling == "transpose" and ModelConfig().residual_blocks == 0
    classes = {type(layer).__name__ for layer in model.decoder.layers}
    assert "Conv2DTranspose" in classes and not classes & {"UpSampling2D", "ZeroPadding2D", "Add"}


@pytest.mark.parametrize("residual_in, encoder, decoder", [("both", 2, 1), ("encoder", 2, 0), ("decoder", 0, 1)])
def test_residual_blocks_go_after_each_hidden_layer(residual_in, encoder, decoder):
    """Two encoder layers, two decoder layers of which the last is the output: 2 and 1 places."""
    model = build_model(tiny_model_config(residual_blocks=2, residual_in=residual_in))
    adds = [[layer for layer in network.layers if isinstance(layer, keras.layers.Add)]
            for network in (model.encoder, model.decoder)]
    assert [len(a) for a in adds] == [2 * encoder, 2 * decoder]


def test_a_residual_block_with_a_zero_second_conv_is_the_identity(images):
    """Skip path: relu(relu(x) + 0) = relu(x), so zeroing each block's second conv gives the plain model."""
    plain = build_model(tiny_model_config(kind="ae", activation="relu"))
    residual = build_model(tiny_model_config(kind="ae", activation="relu", residual_blocks=1))
    for network, plain_network in ((residual.encoder, plain.encoder), (residual.decoder, plain.decoder)):
        for layer in network.layers:
            if "_res_" in layer.name and layer.name.endswith("conv_b"):
                layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
            elif layer.weights and "_res_" not in layer.name:
                layer.set_weights(plain_network.get_layer(layer.name).get_weights())
    np.testing.assert_allclose(residual.reconstruct(images), plain.reconstruct(images), atol=1e-6)
    # ... and with it, the block changes the output
    for layer in residual.encoder.layers:
        if layer.name.endswith("conv_b"):
            layer.set_weights([np.full_like(w, 0.1) for w in layer.get_weights()])
    assert np.abs(residual.reconstruct(images) - plain.reconstruct(images)).max() > 1e-3


@pytest.mark.parametrize("upsampling", ["nearest", "bilinear"])
def test_save_load_round_trip_with_safe_mode(tmp_path, images, upsampling):
    model = build_model(tiny_model_config(decoder_upsampling=upsampling, residual_blocks=1, batch_norm=True,
                                          epsilon_scale=0.0), seed=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.train_on_batch(images, images)
    save_model(model, tmp_path / "m.keras")
    loaded = load_autoencoder(tmp_path / "m.keras", compile=True)
    assert loaded.model_config == model.model_config
    np.testing.assert_allclose(loaded.reconstruct(images), model.reconstruct(images), atol=1e-6)
    for network in ("encoder", "decoder"):  # the halves alone: Functional files with the new layer classes
        save_model(getattr(model, network), tmp_path / f"{network}.keras")
        half = load_model(tmp_path / f"{network}.keras")
        assert half.count_params() == getattr(model, network).count_params()
    z = model.encode(images)["z"]
    np.testing.assert_allclose(half.predict(z, verbose=0), model.decode(z), atol=1e-6)


def _rewrite_config(path, change):
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    change(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.mark.parametrize("layer, key, value", [("decoder_upsample_0", "size", [100_000, 100_000]),
                                               ("decoder_pad_1", "padding", [[10**9, 0], [0, 0]]),
                                               ("decoder_upsample_0", "size", ["2", 2])])
def test_hostile_resampling_layer_is_refused_before_keras_reads_it(tmp_path, layer, key, value):
    model = build_model(tiny_model_config(decoder_upsampling="nearest", **VALID))
    path = tmp_path / "decoder.keras"
    save_model(model.decoder, path)
    load_model(path)  # the honest file loads

    def enlarge(config):
        node = next(n for n in config["config"]["layers"] if n["config"]["name"] == layer)
        node["config"][key] = value

    _rewrite_config(path, enlarge)
    with pytest.raises(ModelFileError, match=f"refused: layer '{layer}': |layer '{layer}': {key} must be an integer"):
        load_model(path)


@pytest.mark.parametrize("changes, field", [
    (dict(decoder_upsampling="bicubic"), "decoder_upsampling"),
    (dict(residual_blocks=-1), "residual_blocks"),
    (dict(residual_in="middle"), "residual_in"),
    (dict(residual_blocks=10**18), "residual_blocks"),  # refused by the conv-layer limit, before any loop
])
def test_bad_values_are_refused_naming_the_field(changes, field):
    with pytest.raises(ConfigError, match=f"`{field}`"):
        tiny_model_config(**changes)
