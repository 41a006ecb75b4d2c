"""Conv2D against a naive NumPy loop convolution; shapes, padding conventions, gradients, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import conv2d_ref, randn, same_pads, to_f64
from jax.test_util import check_grads

from jnet import layers as L
from jnet.layers import LayerError

pytestmark = pytest.mark.usefixtures("fast_compiling_prng")

KEY = jax.random.key(0)

# (in_shape HWC, filters, kernel, strides, padding, dilation, pads the reference should use)
CONFIGS = [
    ((6, 5, 2), 3, (3, 3), (1, 1), "VALID", (1, 1), ((0, 0), (0, 0))),
    ((7, 6, 2), 2, (3, 2), (2, 2), "SAME", (1, 1), (same_pads(7, 3, 2), same_pads(6, 2, 2))),
    ((4, 4, 1), 2, (2, 2), (1, 1), "SAME", (1, 1), ((0, 1), (0, 1))),  # odd pad: bottom/right
    ((8, 7, 3), 2, (3, 3), (1, 2), ((1, 0), (2, 1)), (2, 1), ((1, 0), (2, 1))),
    ((6, 6, 2), 4, (2, 3), (2, 1), 1, (1, 1), ((1, 1), (1, 1))),
    ((9, 8, 1), 2, (3, 3), (1, 1), "SAME", (2, 2), (same_pads(9, 5, 1), same_pads(8, 5, 1))),
    ((5, 7, 2), 3, (1, 4), (3, 2), (0, 2), (1, 1), ((0, 0), (2, 2))),
]
IDS = ["valid", "same_s2_rect", "same_odd", "explicit_dil", "int_pad", "same_dil", "pair_pad"]


@pytest.mark.parametrize("in_shape, f, k, s, padding, d, pads", CONFIGS, ids=IDS)
def test_conv_matches_naive_loop(in_shape, f, k, s, padding, d, pads):
    layer = L.Conv2D(f, k, strides=s, padding=padding, dilation=d)
    out_shape, params, state = layer.init(KEY, in_shape)
    assert params["w"].shape == (*k, in_shape[-1], f) and params["b"].shape == (f,)
    params = {"w": params["w"], "b": jnp.asarray(randn(7, (f,)))}
    x = randn(1, (2, *in_shape))
    y, new_state = layer.apply(params, state, jnp.asarray(x))
    ref = conv2d_ref(x, params["w"], params["b"], s, pads, d)
    assert y.shape == ref.shape == (2, *out_shape)
    assert new_state == {}
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_same_keeps_size_over_stride():
    for n in range(3, 10):
        for s in (1, 2, 3):
            out, _, _ = L.Conv2D(1, 3, strides=s, padding="SAME").init(KEY, (n, n + 1, 1))
            assert out == (-(-n // s), -(-(n + 1) // s), 1)


def test_conv_without_bias():
    layer = L.Conv2D(2, 3, use_bias=False)
    _, params, _ = layer.init(KEY, (5, 5, 1))
    assert set(params) == {"w"}
    x = randn(2, (1, 5, 5, 1))
    y, _ = layer.apply(params, {}, jnp.asarray(x))
    np.testing.assert_allclose(y, conv2d_ref(x, params["w"], None, (1, 1), ((0, 0), (0, 0)),
                                             (1, 1)), rtol=1e-4, atol=1e-5)


def test_conv_default_init_is_glorot_uniform():
    _, params, _ = L.Conv2D(32, 3).init(KEY, (8, 8, 16))
    limit = np.sqrt(6 / (9 * 16 + 9 * 32))
    w = np.asarray(params["w"])
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
    np.testing.assert_array_equal(params["b"], np.zeros(32))


def test_conv_gradients():
    layer = L.Conv2D(2, (2, 3), strides=(2, 1), padding="SAME", dilation=1, fast_grad=False)
    with jax.enable_x64(True):
        _, params, _ = layer.init(KEY, (5, 4, 2))
        params = to_f64(params)
        x = jnp.asarray(randn(3, (2, 5, 4, 2), np.float64))
        check_grads(lambda p, x: layer.apply(p, {}, x)[0], (params, x), order=2)


def test_conv_errors():
    layer = L.Conv2D(4, 3)
    _, params, _ = layer.init(KEY, (8, 8, 1))
    hint = r"x\[\.\.\., None\]"
    with pytest.raises(LayerError, match=r"Conv2D.*rank 4.*got shape \(2, 8, 8\).*" + hint):
        layer.apply(params, {}, jnp.zeros((2, 8, 8)))
    with pytest.raises(LayerError, match=r"Conv2D.*per-example inputs of rank 3.*" + hint):
        layer.init(KEY, (8, 8))
    with pytest.raises(LayerError, match=r"Conv2D.*1 channels.*got shape \(2, 8, 8, 3\)"):
        layer.apply(params, {}, jnp.zeros((2, 8, 8, 3)))
    with pytest.raises(LayerError, match=r"Conv2D.*floating-point.*uint8"):
        layer.apply(params, {}, jnp.zeros((2, 8, 8, 1), jnp.uint8))
    with pytest.raises(LayerError, match=r"smaller than the window.*padding='SAME'"):
        L.Conv2D(4, 5).init(KEY, (3, 3, 1))
    with pytest.raises(LayerError, match="padding must be"):
        L.Conv2D(4, 3, padding="FULL")
    with pytest.raises(LayerError, match="padding must be"):
        L.Conv2D(4, 3, padding=((1, 2, 3), (0, 0)))
    with pytest.raises(LayerError, match="kernel_size must be a positive int"):
        L.Conv2D(4, (3, 0))


@pytest.mark.parametrize("padding", ["SAME", "VALID", ((1, 2), (0, 1))])
def test_conv_fast_grad_matches_finite_differences(padding):
    """The hand-written backward pass (default on CPU): both modes to second order against
    finite differences, and the path really is taken (strided cases: test_conv_fast_grad.py)."""
    layer = L.Conv2D(3, (3, 2), padding=padding, fast_grad=True)
    with jax.enable_x64(True):
        _, params, _ = layer.init(KEY, (5, 6, 2))
        params = to_f64(params)
        x = jnp.asarray(randn(5, (2, 5, 6, 2), np.float64))
        f = lambda p, x: layer.apply(p, {}, x)[0]  # noqa: E731
        check_grads(f, (params, x), order=2, modes=("fwd", "rev"))
        grad = jax.grad(lambda p, x: jnp.sum(f(p, x)))
        assert "jnet_linear_call" in str(jax.make_jaxpr(grad)(params, x))


def test_conv_fast_grad_off_keeps_forward_mode():
    layer = L.Conv2D(3, 3, padding="SAME", fast_grad=False)
    with jax.enable_x64(True):
        _, params, _ = layer.init(KEY, (5, 5, 2))
        params = to_f64(params)
        x = jnp.asarray(randn(6, (2, 5, 5, 2), np.float64))
        check_grads(lambda p, x: layer.apply(p, {}, x)[0], (params, x), order=1, modes=("fwd",))
