"""Model tests; CI runs them on TensorFlow, PyTorch and JAX (KERAS_BACKEND=torch, jax)."""

import dataclasses
import inspect
import json
import zipfile

import keras
import numpy as np
import pytest

from conftest import tiny_model_config
from zspace.config import ModelConfig
from zspace.evaluation.likelihood import DecoderLogLikelihood
from zspace.errors import ModelFileError
from zspace.generation.second_stage import LogGamma
from zspace.models import Autoencoder, KLDivergenceLoss, Sampling, build_model, kl_per_image, load_model
from zspace.models.autoencoder import FirstNonFiniteStep
from zspace.models.layers import FusibleLeakyReLU, SoftUpperClip
from zspace.models.losses import LogvarKLLoss, MuKLLoss, ReconstructionLoss
from zspace.models.saving import save_model

pytestmark = pytest.mark.backend

MNIST_VAE = dict(input_shape=(28, 28, 1), encoder_filters=(32, 64, 64, 64), encoder_kernels=(3, 3, 3, 3),
                 encoder_strides=(1, 2, 2, 1), encoder_padding=("same",) * 4, z_dim=2)
CELEBA_VAE = dict(input_shape=(96, 96, 3), encoder_filters=(32, 64, 128, 256), encoder_kernels=(3, 3, 3, 3),
                  encoder_strides=(2, 2, 2, 2), encoder_padding=("same",) * 4, z_dim=256)


def trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def conv(k, c_in, c_out):
    return k * k * c_in * c_out + c_out


def dense(n_in, n_out):
    return n_in * n_out + n_out


# --- shapes and parameter counts ---------------------------------------------------

def test_mnist_reference_counts_match_the_published_architecture():
    # Foster, "Generative Deep Learning", ch. 3: AE encoder 98,946 and decoder 102,017 parameters.
    ae = build_model(ModelConfig(kind="ae", **MNIST_VAE))
    assert trainable_count(ae.encoder) == 98_946
    assert trainable_count(ae.decoder) == 102_017
    vae = build_model(ModelConfig(kind="vae", **MNIST_VAE))
    assert trainable_count(vae.encoder) == 98_946 + dense(3136, 2)  # a second head: logvar
    out = vae(np.zeros((2, 28, 28, 1), "float32"))
    assert tuple(out["reconstruction"].shape) == (2, 28, 28, 1)
    assert all(tuple(out[k].shape) == (2, 2) for k in ("z", "mu", "logvar"))


@pytest.mark.parametrize("dense_units", [0, 128])
def test_celeba_reference_shapes_and_counts(dense_units):
    vae = build_model(ModelConfig(encoder_dense_units=dense_units, **CELEBA_VAE))
    convs = conv(3, 3, 32) + conv(3, 32, 64) + conv(3, 64, 128) + conv(3, 128, 256)
    flat = 6 * 6 * 256
    heads = (dense(flat, dense_units) + 2 * dense(dense_units, 256)) if dense_units else 2 * dense(flat, 256)
    assert trainable_count(vae.encoder) == convs + heads
    decoder = dense(256, flat) + conv(3, 256, 128) + conv(3, 128, 64) + conv(3, 64, 32) + conv(3, 32, 3)
    assert trainable_count(vae.decoder) == decoder == 2_756_675
    out = vae.encoder(np.zeros((1, 96, 96, 3), "float32"))
    assert tuple(out["z"].shape) == (1, 256)
    assert tuple(vae.decoder(out["z"]).shape) == (1, 96, 96, 3)


def test_dense_units_cut_the_encoder_parameters():
    big = build_model(ModelConfig(**CELEBA_VAE))
    small = build_model(ModelConfig(encoder_dense_units=128, **CELEBA_VAE))
    assert trainable_count(small.encoder) < trainable_count(big.encoder) / 3


@pytest.mark.parametrize("activation", ["relu", "selu"])
def test_activation_batch_norm_dropout_layers(activation):
    model = build_model(tiny_model_config(activation=activation, batch_norm=True, dropout_rate=0.2))
    names = [layer.__class__.__name__ for layer in model.encoder.layers]
    assert "BatchNormalization" in names
    assert ("AlphaDropout" if activation == "selu" else "Dropout") in names
    conv0 = model.encoder.get_layer("encoder_conv_0")
    expected_init = "LecunNormal" if activation == "selu" else "GlorotUniform"
    assert conv0.kernel_initializer.__class__.__name__ == expected_init


# --- losses ------------------------------------------------------------------------

def test_kl_formula_known_values():
    mu = np.array([[0.0, 0.0], [1.0, 2.0]], "float32")
    logvar = np.array([[0.0, 0.0], [np.log(2.0), 0.0]], "float32")
    kl = keras.ops.convert_to_numpy(kl_per_image(mu, logvar))
    expected_second = -0.5 * ((1 + np.log(2.0) - 1 - 2.0) + (1 + 0 - 4 - 1))
    np.testing.assert_allclose(kl, [0.0, expected_second], rtol=1e-6)


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_four_kl_methods_give_same_loss_and_gradients(images, kind):
    """Same batch, weights and noise: one SGD(lr=1) step moves every weight by -grad."""
    keras.utils.set_random_seed(3)
    reference = build_model(tiny_model_config(kind=kind, kl_factor=0.7), seed=11)
    initial = reference.get_weights()
    losses, steps = {}, {}
    for method in ("layer", "outputs", "add_loss", "train_step"):
        model = build_model(tiny_model_config(kind=kind, kl_factor=0.7, kl_method=method), seed=11)
        model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
        logs = model.train_on_batch(images, images, return_dict=True)
        losses[method] = logs
        steps[method] = [w0 - w1 for w0, w1 in zip(initial, model.get_weights())]
    ref = losses["layer"]
    for method, logs in losses.items():
        assert logs["loss"] == pytest.approx(ref["loss"], rel=1e-6), method
        assert logs["total_loss"] == logs["loss"], method
        assert logs["kl_loss"] == pytest.approx(ref["kl_loss"], rel=1e-6), method
        for a, b in zip(steps["layer"], steps[method]):
            np.testing.assert_allclose(a, b, atol=1e-6, err_msg=method)
    moved = max(float(np.abs(s).max()) for s in steps["layer"])
    assert moved > 1e-4  # the step did something, so equal steps mean equal gradients
    if kind == "vae":
        assert ref["kl_loss"] > 0


@pytest.mark.parametrize("kind, method", [("ae", "layer"), ("vae", "layer"), ("vae", "outputs"),
                                          ("vae", "add_loss"), ("vae", "train_step")])
def test_a_padded_batch_weighted_zero_on_its_padding_trains_like_the_batch_itself(images, kind, method):
    """JAX's DataParallel pads a batch to a multiple of the devices with rows weighted 0 (the others
    padded / real): the loss, the metrics and the step are the unpadded batch's, whatever the padding
    holds (black images here, far from the batch's; mse, whose loss tells them apart at the start).
    z = mu: the noise of 13 and 16 rows differs."""
    real, padded = 13, 16
    x = images[:real]
    x_padded = np.concatenate([x, np.zeros_like(x[:padded - real])])
    weights = np.where(np.arange(padded) < real, padded / real, 0.0).astype("float32")
    config = tiny_model_config(kind=kind, kl_method=method, kl_factor=0.7, epsilon_scale=0.0,
                               reconstruction_loss="mse")
    initial = build_model(config, seed=4).get_weights()
    logs, steps = {}, {}
    for name, args in (("plain", (x, x)), ("padded", (x_padded, x_padded, weights))):
        model = build_model(config, seed=4)
        model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
        logs[name] = model.train_on_batch(*args, return_dict=True)
        steps[name] = [w0 - w1 for w0, w1 in zip(initial, model.get_weights())]
    for key in ("loss", "kl_loss", "reco_loss") + (("kl_divergence",) if kind == "vae" else ()):
        assert logs["padded"][key] == pytest.approx(logs["plain"][key], rel=1e-5), key
    for a, b in zip(steps["plain"], steps["padded"]):
        np.testing.assert_allclose(b, a, atol=1e-5 * max(1.0, float(np.abs(a).max())))
    assert max(float(np.abs(s).max()) for s in steps["plain"]) > 1e-4
    # the weights matter: the same padded rows unweighted give another loss
    model = build_model(config, seed=4)
    model.set_weights(initial)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    unweighted = model.test_on_batch(x_padded, x_padded, return_dict=True)["loss"]
    assert unweighted != pytest.approx(logs["plain"]["loss"], rel=1e-4)


@pytest.mark.parametrize("method", ["layer", "outputs", "add_loss", "train_step"])
def test_nonfinite_step_names_the_first_bad_step_inside_one_compiled_call(images, method):
    images = images.copy()
    images[5, 0, 0, 0] = np.nan  # in the second batch of 4
    # mse: PyTorch's binary cross-entropy raises on NaN instead of returning it
    model = build_model(tiny_model_config(kl_method=method, reconstruction_loss="mse"), seed=0)
    spe = 1 if keras.backend.backend() == "torch" else 4  # Keras' PyTorch trainer runs one step per call
    model.compile(optimizer=keras.optimizers.SGD(1e-3), steps_per_execution=spe)
    history = model.fit(images, images, batch_size=4, epochs=1, shuffle=False, verbose=0).history
    assert history["nonfinite_step"] == [2.0]
    assert not np.isfinite(history["loss"][0]) and not np.isfinite(history["total_loss"][0])


def test_train_step_method_scales_the_loss_under_mixed_float16(images):
    """The custom step must scale the loss as Keras' step does: the loss-scale optimizer
    divides every gradient by its scale (32768), whether or not the loss was scaled."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("mixed precision checked on the TensorFlow backend")
    keras.utils.set_random_seed(3)
    steps = {}
    for method in ("add_loss", "train_step"):
        model = build_model(tiny_model_config(kl_method=method), seed=11, precision="mixed_float16")
        if method == "add_loss":
            initial = model.get_weights()
        model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
        model.train_on_batch(images, images)
        steps[method] = [w0 - w1 for w0, w1 in zip(initial, model.get_weights())]
    for a, b in zip(steps["add_loss"], steps["train_step"]):
        np.testing.assert_allclose(a, b, atol=1e-3 * max(1.0, float(np.abs(a).max())))
    assert max(float(np.abs(s).max()) for s in steps["add_loss"]) > 1e-3


def test_kl_weight_scales_the_kl_term(images):
    logs = {}
    for factor in (1.0, 3.0):
        keras.utils.set_random_seed(0)
        model = build_model(tiny_model_config(kl_factor=factor), seed=1)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))
        logs[factor] = model.test_on_batch(images, images, return_dict=True)
    assert logs[3.0]["kl_loss"] == pytest.approx(3 * logs[1.0]["kl_loss"], rel=1e-5)
    assert logs[3.0]["kl_divergence"] == pytest.approx(logs[1.0]["kl_divergence"], rel=1e-5)


@pytest.mark.parametrize("method", ["layer", "outputs", "add_loss", "train_step"])
def test_reported_losses_equal_independent_numpy_values(images, method):
    """reco_loss is derived (total - KL terms), so check it, and the KL, against numpy."""
    model = build_model(tiny_model_config(epsilon_scale=0.0, kl_factor=0.7, kl_method=method), seed=0)
    model.compile()
    logs = model.test_on_batch(images, images, return_dict=True)
    out = np.clip(model.reconstruct(images).astype(np.float64), 1e-7, 1 - 1e-7)
    bce = -(images * np.log(out) + (1 - images) * np.log(1 - out)).reshape(len(images), -1).sum(1).mean()
    encoded = {k: v.astype(np.float64) for k, v in model.encode(images).items()}
    kl = (-0.5 * (1 + encoded["logvar"] - encoded["mu"] ** 2 - np.exp(encoded["logvar"])).sum(1)).mean()
    assert logs["reco_loss"] == pytest.approx(bce, rel=1e-4)
    assert logs["kl_divergence"] == pytest.approx(kl, rel=1e-4)
    assert logs["kl_loss"] == pytest.approx(0.7 * kl, rel=1e-4)
    assert logs["total_loss"] == pytest.approx(bce + 0.7 * kl, rel=1e-4)


@pytest.mark.parametrize("method", ["add_loss", "train_step"])
def test_evaluated_metrics_are_means_over_images_with_a_smaller_last_batch(images, method):
    """16 images in batches of 10 and 6: an unweighted mean of the two batch means would differ."""
    images = images.copy()
    images[10:] *= 0.1  # darker images: a different loss in the second batch
    model = build_model(tiny_model_config(epsilon_scale=0.0, kl_factor=0.7, kl_method=method), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(images, images, batch_size=16, epochs=5, verbose=0)  # untrained outputs are all near 0.5
    logs = model.evaluate(images, images, batch_size=10, return_dict=True, verbose=0)
    out = np.clip(model.reconstruct(images).astype(np.float64), 1e-7, 1 - 1e-7)
    bce = -(images * np.log(out) + (1 - images) * np.log(1 - out)).reshape(len(images), -1).sum(1)
    encoded = {k: v.astype(np.float64) for k, v in model.encode(images).items()}
    kl = -0.5 * (1 + encoded["logvar"] - encoded["mu"] ** 2 - np.exp(encoded["logvar"])).sum(1)
    # the unweighted mean of the two batch means is off by |mean_1 - mean_2| / 8
    assert abs(bce[:10].mean() - bce[10:].mean()) / 8 > 1e-3 * bce.mean()
    assert logs["reco_loss"] == pytest.approx(bce.mean(), rel=1e-4)
    assert logs["kl_divergence"] == pytest.approx(kl.mean(), rel=1e-4)
    assert logs["total_loss"] == pytest.approx(bce.mean() + 0.7 * kl.mean(), rel=1e-4)


@pytest.mark.parametrize("slope", [0.3, 0.0])
def test_fusible_leaky_relu_has_leaky_relu_values_and_gradients(slope):
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]], "float32")
    fusible, plain = FusibleLeakyReLU(negative_slope=slope), keras.layers.LeakyReLU(negative_slope=slope)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(fusible(x)), keras.ops.convert_to_numpy(plain(x)))
    np.testing.assert_array_equal(input_gradient(fusible, x), input_gradient(plain, x))
    # at x = 0 the backends differ (TensorFlow: slope, JAX: 1); the layer follows its backend
    np.testing.assert_allclose(input_gradient(fusible, x)[0, [0, 1, 3, 4]], [slope, slope, 1.0, 1.0], rtol=1e-6)
    assert FusibleLeakyReLU.from_config(fusible.get_config()).negative_slope == slope


def input_gradient(layer, x):
    """d sum(layer(x) * w) / dx for fixed weights w = 1..n, on the active backend."""
    weights = np.arange(1, x.shape[-1] + 1, dtype="float32")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(layer(x) * weights)
        return tape.gradient(y, x).numpy() / weights
    if backend == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        (layer(x) * torch.from_numpy(weights)).sum().backward()
        return x.grad.numpy() / weights
    import jax

    return np.asarray(jax.grad(lambda v: (layer(v) * weights).sum())(x)) / weights


# --- sampling ----------------------------------------------------------------------

def test_epsilon_scale_zero_gives_z_equal_mu(images):
    model = build_model(tiny_model_config(epsilon_scale=0.0), seed=0)
    out = model.encode(images)
    np.testing.assert_array_equal(out["z"], out["mu"])


def test_epsilon_scale_changes_on_a_loaded_model(tmp_path, images):
    model = build_model(tiny_model_config(), seed=0)
    save_model(model, tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    before = loaded.encode(images)
    assert np.abs(before["z"] - before["mu"]).max() > 1e-3
    loaded.set_epsilon_scale(0.0)
    after = loaded.encode(images)
    np.testing.assert_array_equal(after["z"], after["mu"])


def test_epsilon_clip_bounds_the_noise():
    layer = Sampling(seed=0, epsilon_clip=0.5)
    mu = np.zeros((4096, 8), "float32")
    z = keras.ops.convert_to_numpy(layer([mu, mu]))  # logvar 0: z = eps
    assert np.abs(z).max() == pytest.approx(0.5)
    unclipped = keras.ops.convert_to_numpy(Sampling(seed=0, epsilon_clip=None)([mu, mu]))
    assert np.abs(unclipped).max() > 2.5


def test_same_seed_same_noise():
    mu = np.zeros((3, 4), "float32")
    a = keras.ops.convert_to_numpy(Sampling(seed=7)([mu, mu]))
    b = keras.ops.convert_to_numpy(Sampling(seed=7)([mu, mu]))
    np.testing.assert_array_equal(a, b)


# --- serialization -----------------------------------------------------------------

# Every ModelConfig field away from its default, so a field get_config drops shows up.
NON_DEFAULT_MODEL_CONFIG = ModelConfig(
    kind="ae", input_shape=(8, 8, 1), z_dim=3, encoder_filters=(4, 8), encoder_kernels=(3, 3),
    encoder_strides=(2, 2), encoder_padding=("same", "same"), decoder_filters=(6, 1), decoder_kernels=(3, 3),
    decoder_strides=(2, 2), decoder_padding=("same", "same"), activation="selu", batch_norm=True,
    dropout_rate=0.1, encoder_dense_units=8, reconstruction_loss="mse", kl_factor=0.3, kl_method="train_step",
    epsilon_clip=None, logvar_max=8.0, epsilon_scale=0.5, decoder_upsampling="bilinear", residual_blocks=1,
    residual_in="decoder", reconstruction_reduction="mean",
)
# A non-default value for every constructor parameter of every registered zspace class.
NON_DEFAULT_ARGS = {
    ReconstructionLoss: dict(kind="mse", pixel_reduction="mean", name="reco_2"),
    MuKLLoss: dict(kl_factor=0.3, name="mu_kl_2"),
    LogvarKLLoss: dict(kl_factor=0.3, name="logvar_kl_2"),
    Sampling: dict(seed=3, epsilon_clip=None, epsilon_scale=0.5),
    KLDivergenceLoss: dict(kl_factor=2.5),
    SoftUpperClip: dict(max_value=7.0),
    FusibleLeakyReLU: dict(negative_slope=0.2),
    FirstNonFiniteStep: dict(name="first_bad_step"),
    Autoencoder: dict(config=NON_DEFAULT_MODEL_CONFIG, seed=4),
    DecoderLogLikelihood: dict(likelihood="gaussian"),
    LogGamma: dict(initial_value=0.5),
}


def constructor_params(cls):
    return {name: p for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def reported(obj, param):
    """What ``obj.get_config()`` says a constructor parameter was (the ModelConfig for ``config``)."""
    value = obj.get_config()[param]
    return ModelConfig(**value) if param == "config" else value


def test_every_registered_class_has_non_default_test_arguments():
    registered = {cls for key, cls in keras.saving.get_custom_objects().items()
                  if key.startswith("zspace>") and inspect.isclass(cls)}  # functions have no constructor
    assert registered == set(NON_DEFAULT_ARGS)
    for field in dataclasses.fields(ModelConfig):
        assert getattr(NON_DEFAULT_MODEL_CONFIG, field.name) != field.default, field.name


@pytest.mark.parametrize("cls", list(NON_DEFAULT_ARGS), ids=lambda cls: cls.__name__)
def test_config_round_trip_keeps_every_constructor_argument(cls):
    """Built with non-default arguments, a registered class must get each one back from its config."""
    args = NON_DEFAULT_ARGS[cls]
    params = constructor_params(cls)
    assert sorted(params) == sorted(args), "give every constructor parameter a non-default test value"
    for param, value in args.items():
        assert value != params[param].default, param
    obj = cls(**args)
    saved = json.loads(json.dumps(keras.saving.serialize_keras_object(obj)))  # as in a .keras file
    clones = [cls.from_config(obj.get_config()), keras.saving.deserialize_keras_object(saved)]
    for clone in clones:
        assert type(clone) is cls
        for param, value in args.items():
            expected = list(value) if isinstance(value, tuple) else value
            assert reported(obj, param) == expected, f"{cls.__name__}.get_config() lacks {param}={value!r}"
            assert reported(clone, param) == expected, f"{cls.__name__} lost {param}={value!r} in a round trip"


@pytest.mark.parametrize("method", ["layer", "outputs", "add_loss", "train_step"])
def test_save_load_round_trip_with_safe_mode(tmp_path, images, method):
    model = build_model(tiny_model_config(kl_method=method, epsilon_scale=0.0), seed=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.train_on_batch(images, images)
    save_model(model, tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras", compile=True)
    assert loaded.model_config == model.model_config
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(loaded.reconstruct(images), model.reconstruct(images), atol=1e-6)
    assert int(loaded.optimizer.iterations) == 1


def _lambda_model_file(path):
    inputs = keras.Input((3,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    keras.Model(inputs, outputs).save(path)


def test_model_file_with_lambda_is_refused(tmp_path):
    path = tmp_path / "lambda.keras"
    _lambda_model_file(path)
    with pytest.raises(ModelFileError, match="Lambda layer"):
        load_model(path)


def test_model_file_with_foreign_class_is_refused(tmp_path):
    path = tmp_path / "m.keras"
    save_model(build_model(tiny_model_config()), path)
    with zipfile.ZipFile(path) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    config = json.loads(parts["config.json"])
    config["module"] = "os"
    parts["config.json"] = json.dumps(config).encode()
    evil = tmp_path / "evil.keras"
    with zipfile.ZipFile(evil, "w") as z:
        for name, data in parts.items():
            z.writestr(name, data)
    with pytest.raises(ModelFileError, match="module 'os'"):
        load_model(evil)


@pytest.mark.parametrize("name, content, message", [
    ("m.h5", b"\x89HDF", "only .keras model files"),
    ("m.keras", b"not a zip", "not a zip archive"),
])
def test_bad_model_files_are_refused(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_zip_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", b"\0" * (50 * 2**20))
    with pytest.raises(ModelFileError, match="zip bomb"):
        load_model(path)


def test_encoder_and_decoder_work_alone(tmp_path, images):
    model = build_model(tiny_model_config(epsilon_scale=0.0), seed=0)
    save_model(model.encoder, tmp_path / "encoder.keras")
    save_model(model.decoder, tmp_path / "decoder.keras")
    encoder, decoder = load_model(tmp_path / "encoder.keras"), load_model(tmp_path / "decoder.keras")
    z = encoder.predict(images, verbose=0)["z"]
    np.testing.assert_allclose(decoder.predict(z, verbose=0), model.reconstruct(images), atol=1e-6)


def test_compile_refuses_a_loss():
    with pytest.raises(ValueError, match="sets its own loss"):
        build_model(tiny_model_config()).compile(optimizer="adam", loss="mse")


def test_dataclass_replace_keeps_validation():
    with pytest.raises(ValueError, match="z_dim"):
        dataclasses.replace(tiny_model_config(), z_dim=-1)


def test_every_configurable_kl_method_has_its_class():
    import typing

    from zspace.config import KLMethod
    from zspace.models.kl_methods import KL_METHODS, NoKL, kl_method_for

    assert set(KL_METHODS) == set(typing.get_args(KLMethod))
    for name, cls in KL_METHODS.items():
        assert type(kl_method_for(tiny_model_config(kl_method=name))) is cls and cls.name == name
    assert type(kl_method_for(tiny_model_config(kind="ae", kl_method="train_step"))) is NoKL
