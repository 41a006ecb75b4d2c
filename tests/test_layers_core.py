"""Core layers: Input, Dense, Flatten, Reshape, plus contract checks shared by every core layer
(shape inference under jax.eval_shape, jit == no jit, errors naming the layer's path)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import abstract_init, randn, shapes_of, to_f64
from _numpy_layers import numpy_apply
from absl.testing import parameterized
from jax.test_util import check_grads

from jnet import initializers
from jnet import layers as L
from jnet.layers import LayerError

pytestmark = pytest.mark.usefixtures("fast_compiling_prng")

KEY = jax.random.key(0)

# (id, layer, per-example input shape): every core layer, in several configurations.
CASES = [
    ("input", L.Input((4, 5, 2)), (4, 5, 2)),
    ("dense", L.Dense(3), (5,)),
    ("dense_seq", L.Dense(3, use_bias=False), (4, 5)),
    ("conv_same_s2", L.Conv2D(3, (3, 2), strides=2, padding="SAME"), (7, 6, 2)),
    ("conv_dil_pad", L.Conv2D(2, 3, dilation=2, padding=((1, 0), (2, 1))), (8, 7, 3)),
    ("maxpool_fast", L.MaxPool2D(2), (6, 4, 2)),
    ("maxpool_same", L.MaxPool2D((3, 2), strides=(2, 1), padding="SAME"), (7, 5, 2)),
    ("avgpool_pad", L.AvgPool2D(3, 2, padding=1), (7, 6, 2)),
    ("avgpool_incl", L.AvgPool2D(2, 1, padding="SAME", count_include_pad=True), (5, 5, 1)),
    ("gap", L.GlobalAvgPool2D(), (4, 3, 5)),
    ("batchnorm_img", L.BatchNorm(), (4, 3, 5)),
    ("batchnorm_vec", L.BatchNorm(momentum=0.5, scale=False), (6,)),
    ("dropout", L.Dropout(0.3), (4, 6)),
    ("flatten", L.Flatten(), (3, 4, 2)),
    ("reshape", L.Reshape((-1, 4)), (3, 4, 2)),
]


@pytest.mark.parametrize("layer, in_shape", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_eval_shape_init_matches_real_init_and_apply(layer, in_shape):
    abs_out, abs_params, abs_state = abstract_init(layer, KEY, in_shape)
    out, params, state = layer.init(KEY, in_shape)
    assert abs_out == out
    assert shapes_of(abs_params) == shapes_of(params)
    assert shapes_of(abs_state) == shapes_of(state)
    x = jnp.asarray(randn(1, (3, *in_shape)))
    for train in (False, True):
        y, _ = layer.apply(params, state, x, key=KEY, train=train)
        assert y.shape == (3, *out)


class JitTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*CASES)
    def test_jit_and_no_jit_match_numpy(self, layer, in_shape):
        # Each variant against the NumPy equations (tests/_numpy_layers.py), not against the
        # other variant: both could be wrong in the same way.
        _, params, state = layer.init(KEY, in_shape)
        x = jnp.asarray(randn(2, (4, *in_shape)))
        for train in (False, True):
            run = self.variant(lambda p, s, x, k, t=train: layer.apply(p, s, x, key=k, train=t))
            y, new_state = run(params, state, x, KEY)
            y_ref, state_ref = numpy_apply(layer, params, state, x, train, y_got=y)
            np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
            chex.assert_trees_all_close(new_state, state_ref, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------
# Input


def test_input_is_identity_and_fixes_the_shape():
    model = L.serial(L.Input((3, 2)), L.Dense(4))
    out, params, _ = model.init(KEY)  # no in_shape needed
    assert out == (3, 4) and params["dense_1"]["w"].shape == (2, 4)
    x = jnp.asarray(randn(0, (5, 3, 2)))
    y, _ = L.Input((3, 2)).apply({}, {}, x)
    np.testing.assert_array_equal(y, x)


def test_input_shape_mismatch_errors_say_how_to_fix():
    inp = L.Input((8, 8, 1))
    expected = r"Input.*\(N, 8, 8, 1\).*got \(2, 8, 8\).*x\[\.\.\., None\]"
    with pytest.raises(LayerError, match=expected):
        inp.apply({}, {}, jnp.zeros((2, 8, 8)))
    with pytest.raises(LayerError, match=r"single example.*x\[None\]"):
        inp.apply({}, {}, jnp.zeros((8, 8, 1)))
    with pytest.raises(LayerError, match=r"got \(2, 9, 8, 1\).*change Input\(shape\)"):
        inp.apply({}, {}, jnp.zeros((2, 9, 8, 1)))
    with pytest.raises(LayerError, match="positive ints"):
        L.Input((8, 0))


# ----------------------------------------------------------------------------------------
# Dense


def test_dense_values_on_last_axis():
    layer = L.Dense(3)
    _, params, _ = layer.init(KEY, (2, 5))
    assert set(params) == {"w", "b"} and params["w"].shape == (5, 3)
    params = {"w": jnp.asarray(randn(1, (5, 3))), "b": jnp.asarray(randn(2, (3,)))}
    x = randn(3, (4, 2, 5))
    y, _ = layer.apply(params, {}, jnp.asarray(x))
    w, b = np.asarray(params["w"], np.float64), np.asarray(params["b"], np.float64)
    ref = np.einsum("ntf,fo->nto", x.astype(np.float64), w) + b
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_dense_without_bias_and_custom_inits():
    _, params, _ = L.Dense(2, use_bias=False).init(KEY, (3,))
    assert set(params) == {"w"}
    _, params, _ = L.Dense(2, w_init=initializers.constant(0.5), b_init="ones").init(KEY, (3,))
    np.testing.assert_array_equal(params["w"], np.full((3, 2), 0.5))
    np.testing.assert_array_equal(params["b"], np.ones(2))
    _, params, _ = L.Dense(64, w_init="he_uniform").init(KEY, (100,))
    assert np.abs(params["w"]).max() <= np.sqrt(6 / 100)


def test_dense_gradients():
    layer = L.Dense(3)
    with jax.enable_x64(True):
        _, params, _ = layer.init(KEY, (4,))
        params = to_f64(params)
        x = jnp.asarray(randn(4, (2, 4), np.float64))
        check_grads(lambda p, x: layer.apply(p, {}, x)[0], (params, x), order=2)


def test_dense_errors():
    layer = L.Dense(3)
    _, params, _ = layer.init(KEY, (4,))
    with pytest.raises(LayerError, match=r"Dense.*4 features.*got shape \(2, 5\)"):
        layer.apply(params, {}, jnp.zeros((2, 5)))
    with pytest.raises(LayerError, match=r"Dense.*floating-point.*int32.*astype"):
        layer.apply(params, {}, jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(LayerError, match="units must be a positive int"):
        L.Dense(0)


# ----------------------------------------------------------------------------------------
# Flatten, Reshape


def test_flatten_and_reshape_values():
    x = randn(5, (2, 3, 4, 2))
    y, _ = L.Flatten().apply({}, {}, jnp.asarray(x))
    np.testing.assert_array_equal(y, x.reshape(2, 24))
    out, _, _ = L.Reshape((4, -1)).init(KEY, (3, 4, 2))
    assert out == (4, 6)
    y, _ = L.Reshape((4, -1)).apply({}, {}, jnp.asarray(x))
    np.testing.assert_array_equal(y, x.reshape(2, 4, 6))


def test_reshape_errors():
    with pytest.raises(LayerError, match=r"Reshape.*\(3, 4, 2\) \(24 values\) to \(5, 5\)"):
        L.Reshape((5, 5)).init(KEY, (3, 4, 2))
    with pytest.raises(LayerError, match="whole number"):
        L.Reshape((5, -1)).apply({}, {}, jnp.zeros((2, 3, 4, 2)))
    with pytest.raises(LayerError, match="at most one -1"):
        L.Reshape((-1, -1))


# ----------------------------------------------------------------------------------------
# Errors travel up through containers with the child's path.


def test_error_inside_serial_names_the_child_path():
    model = L.serial(L.Conv2D(4, 3), L.Conv2D(5, 3), L.Flatten())
    _, params, state = model.init(KEY, (9, 9, 2))
    params["conv2d_1"]["w"] = jnp.zeros((3, 3, 7, 5))  # made for 7 input channels, gets 4
    with pytest.raises(LayerError, match=r"Conv2D layer 'conv2d_1'.*7 channels"):
        model.apply(params, state, jnp.zeros((1, 9, 9, 2)))
    nested = L.serial(L.serial(L.Dense(3), name="block"))
    _, params, state = nested.init(KEY, (2,))
    with pytest.raises(LayerError, match=r"Dense layer 'block/dense_0'.*floating-point"):
        nested.apply(params, state, jnp.zeros((1, 2), jnp.int32))
