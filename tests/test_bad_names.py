"""Names and values users type that used to reach a raw KeyError / TypeError / ZeroDivisionError:
each is now a `jnet.Error` naming what was expected and what was given, and the good values
next to them keep working."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnet
from jnet import activations as A
from jnet import layers as L
from jnet import optim
from jnet.interop import dense_from_torch, separable_conv2d_from_torch
from jnet.precision import cast_floating
from jnet.training import History

X = np.linspace(-2.0, 2.0, 9, dtype=np.float32)


# --- History: a missing name is a jnet error that is still a KeyError --------------------------


def test_missing_history_name_is_an_argument_key_error_listing_what_was_logged():
    history = History({"loss": [1.0, 0.5], "accuracy": [0.5, 0.75]})
    with pytest.raises(jnet.ArgumentKeyError, match=r"'val_loss'.*\['accuracy', 'loss'\].*"
                                                    r"validation_data=") as err:
        history["val_loss"]
    assert isinstance(err.value, KeyError) and isinstance(err.value, jnet.Error)
    # the Mapping protocol still reads a missing name as absent
    assert "val_loss" not in history and history.get("val_loss") is None
    assert history["loss"] == [1.0, 0.5]


def test_history_plot_takes_one_name_as_a_string():
    pytest.importorskip("matplotlib")
    history = History({"loss": [1.0, 0.5], "accuracy": [0.5, 0.75]})
    fig = history.plot("loss")
    assert [ax.get_title() for ax in fig.axes] == ["loss"]
    with pytest.raises(jnet.ArgumentError, match=r"\['nope'\]"):
        history.plot("nope")


# --- initializers given as functions -----------------------------------------------------------


def test_an_init_that_requires_a_dtype_gets_float32():
    def init(key, shape, dtype):  # the documented init(key, shape, dtype), dtype required
        return jnp.full(shape, 0.5, dtype)

    _, params, _ = L.Dense(3, w_init=init).init(jax.random.key(0), (2,))
    assert params["w"].dtype == jnp.float32
    np.testing.assert_array_equal(params["w"], np.full((2, 3), 0.5, np.float32))


def test_an_init_of_the_wrong_signature_is_named_when_the_layer_is_built():
    with pytest.raises(jnet.ArgumentTypeError, match=r"w_init must be callable as "
                                                     r"init\(key, shape, dtype"):
        L.Dense(3, w_init=lambda key: 0.0)


# --- precision, interop -------------------------------------------------------------------------


def test_cast_floating_names_a_bad_dtype():
    with pytest.raises(jnet.ArgumentError, match=r"cast_floating: dtype .*'nope'"):
        cast_floating({"w": np.ones(2, np.float32)}, "nope")
    out = cast_floating({"w": np.ones(2, np.float32), "i": np.ones(2, np.int32)}, "bfloat16")
    assert out["w"].dtype == jnp.bfloat16 and out["i"].dtype == np.int32


_SEPARABLE = {"depthwise.weight": np.ones((4, 1, 3, 3), np.float32),
              "pointwise.weight": np.ones((5, 4, 1, 1), np.float32)}


@pytest.mark.parametrize("m", [0, -2, "2", 2.0, True])
def test_separable_conv_depth_multiplier_must_be_a_positive_int(m):
    with pytest.raises(jnet.ArgumentError, match=rf"depth_multiplier .*got {m!r}"):
        separable_conv2d_from_torch(_SEPARABLE, depth_multiplier=m)


def test_separable_conv_prefixes_must_be_strings():
    with pytest.raises(jnet.ArgumentTypeError, match="pointwise must be the module's key prefix"):
        separable_conv2d_from_torch(_SEPARABLE, pointwise=1)
    params = separable_conv2d_from_torch(_SEPARABLE, depth_multiplier=2)
    assert params["depthwise"].shape == (3, 3, 2, 2)  # C·M = 4 split as C = 2, M = 2


def test_a_state_dict_with_non_string_keys_is_reported_not_crashed_on():
    with pytest.raises(jnet.ArgumentError, match=r"no 'weight'.*\['0', '1'\]"):
        dense_from_torch({0: np.ones((2, 2)), 1: np.ones(2)})


# --- activation parameters ----------------------------------------------------------------------


@pytest.mark.parametrize("fn, name", [(A.linear, "a"), (A.leaky_relu, "negative_slope"),
                                      (A.prelu, "alpha"), (A.elu, "alpha"), (A.swish, "beta")])
def test_a_non_numeric_activation_parameter_is_named(fn, name):
    with pytest.raises(jnet.ArgumentTypeError, match=rf"{fn.__name__}: {name} must be a number"):
        fn(X, **{name: "0.1"})


def test_traced_and_array_activation_parameters_still_work():
    # leaky_relu(x) = x for x > 0, slope·x otherwise, with the slope a tracer under jit
    got = jax.jit(lambda s: A.leaky_relu(X, negative_slope=s))(0.2)
    np.testing.assert_allclose(got, np.where(X > 0, X, 0.2 * X), rtol=1e-6)
    alpha = np.full(9, 0.3, np.float32)  # PReLU's per-channel slopes
    np.testing.assert_allclose(A.prelu(X, alpha), np.where(X > 0, X, 0.3 * X), rtol=1e-6)


# --- fit, norms -----------------------------------------------------------------------------


def test_population_values_must_be_numbers():
    x = np.zeros((4, 2), np.float32)
    y = np.zeros(4, np.int32)
    model = L.serial(L.Dense(2), L.ClassificationOutput())
    with pytest.raises(jnet.ArgumentTypeError, match=r"population\['learning_rate'\] must hold "
                                                     r"numbers.*'fast'"):
        jnet.fit(model, lambda learning_rate: optim.sgd(learning_rate), x, y, epochs=1, key=0,
                 verbose=0, population={"learning_rate": ["fast", "slow"]})


@pytest.mark.parametrize("make", [lambda e: L.BatchNorm(eps=e), lambda e: L.LayerNorm(eps=e),
                                  lambda e: L.RMSNorm(eps=e), lambda e: L.GroupNorm(2, eps=e),
                                  lambda e: L.InstanceNorm(eps=e)])
def test_a_nan_eps_is_refused(make):
    with pytest.raises(L.LayerError, match="eps must be a positive number, got nan"):
        make(float("nan"))


# --- jnet.viz ---------------------------------------------------------------------------------


def test_viz_arguments_are_checked():
    viz = pytest.importorskip("jnet.viz")
    start = jnp.array([0.0, 0.0])
    with pytest.raises(jnet.ArgumentError, match="non-empty dict"):
        viz.optimizer_paths(viz.surfaces.rosenbrock, [optim.adam(0.1)], steps=2)
    with pytest.raises(jnet.ArgumentTypeError, match=r"optimizer must have init.*'adam'"):
        viz.descent_path(viz.surfaces.rosenbrock, "adam", start, 2)
    with pytest.raises(jnet.ArgumentTypeError, match="loss_fn must be a function"):
        viz.descent_path("rosenbrock", optim.adam(0.1), start, 2)
    with pytest.raises(jnet.ArgumentTypeError, match="make_optimizer must be a function"):
        viz.sweep_losses("sgd", [0.1], viz.surfaces.rosenbrock, start, 2)
    with pytest.raises(jnet.ArgumentError, match="sequence of numbers, got 'fast'"):
        viz.sweep_losses(optim.sgd, "fast", viz.surfaces.rosenbrock, start, 2)
    with pytest.raises(jnet.ArgumentTypeError, match="activation name or a callable"):
        viz.plot_activation(3)
    with pytest.raises(jnet.ArgumentError, match="x_range must be"):
        viz.plot_activation("relu", x_range=("a", "b"))
    with pytest.raises(jnet.ArgumentTypeError, match="condition_number must be a real number"):
        viz.surfaces.quadratic("10")


# --- inputs that are not arrays, initializer arguments, exported models -------------------------


def test_a_string_input_or_mask_is_named_not_read_as_a_dtype_name():
    model = L.serial(L.Dense(2))
    _, params, state = model.init(jax.random.key(0), (3,))
    with pytest.raises(L.LayerError, match="floating-point input, got str 'abc'"):
        model.apply(params, state, "abc")  # jnp.result_type("abc") would read a dtype name
    mha = L.MultiHeadAttention(2)
    _, p, s = mha.init(jax.random.key(0), (5, 8))
    with pytest.raises(L.LayerError, match=r"mask= as a boolean array .* got str 'm'"):
        mha.apply(p, s, np.ones((2, 5, 8), np.float32), mask="m")  # "m" is timedelta64's code


def test_loss_inputs_and_where_must_hold_numbers():
    logits = np.zeros((2, 3), np.float32)
    with pytest.raises(jnet.DataError, match="labels as an array of numbers"):
        jnet.losses.softmax_cross_entropy(logits, ["a", "b"])
    with pytest.raises(jnet.ArgumentError, match="boolean `where` mask, got str"):
        jnet.losses.mse(logits, logits, where="abc")


@pytest.mark.parametrize("make, name", [
    (lambda: jnet.initializers.constant("0.1"), "constant: value"),
    (lambda: jnet.initializers.normal(stddev="big"), "normal: stddev"),
    (lambda: jnet.initializers.uniform(maxval=None), "uniform: maxval"),
    (lambda: jnet.initializers.orthogonal(scale="1"), "orthogonal: scale"),
])
def test_initializer_arguments_must_be_numbers(make, name):
    with pytest.raises(jnet.ArgumentTypeError, match=f"{name} must be a number"):
        make()


def test_an_init_called_with_a_bad_shape_or_key_says_which():
    init = jnet.initializers.he_normal()
    with pytest.raises(jnet.ArgumentTypeError, match="shape must be a tuple of non-negative"):
        init(jax.random.key(0), "ab")
    with pytest.raises(jnet.ArgumentTypeError, match="key must be a PRNG key"):
        init(3, (2, 2))
    # what a layer passes, and a NumPy shape, still work: constant(0.5) is 0.5 everywhere
    np.testing.assert_array_equal(
        jnet.initializers.constant(0.5)(jax.random.key(0), np.array([2, 3])), np.full((2, 3), 0.5))


def test_an_exported_model_names_the_shape_it_expects(tmp_path):
    model = L.serial(L.Dense(2))
    _, params, state = model.init(jax.random.key(0), (3,))
    exported = jnet.export(model, params, state, np.zeros((2, 3), np.float32))
    with pytest.raises(jnet.ArgumentError, match=r"expected an input float32\[2,3\].*got "
                                                 r"float32\[2,5\]"):
        exported(np.ones((2, 5), np.float32))
    with pytest.raises(jnet.ArgumentTypeError, match="path must be a str"):
        exported.save(3)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(exported(x), x @ np.asarray(params["dense_0"]["w"])
                               + np.asarray(params["dense_0"]["b"]), rtol=1e-6)
