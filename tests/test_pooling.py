"""Pooling against naive NumPy loops: values, both average-padding conventions, the reshape fast
path (same values and gradients as reduce_window, ties included), gradients and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import max_pool_grad_ref, pool_ref, randn, same_pads
from jax.test_util import check_grads

from jnet import layers as L
from jnet.layers import LayerError
from jnet.layers.pooling import avg_pool, max_pool

pytestmark = pytest.mark.usefixtures("fast_compiling_prng")

KEY = jax.random.key(0)

# (in_shape HWC, window, strides (None = window), padding, pads the reference should use)
CONFIGS = [
    ((6, 4, 2), (2, 2), None, "VALID", ((0, 0), (0, 0))),  # fast path
    ((6, 6, 1), (3, 2), None, "VALID", ((0, 0), (0, 0))),  # fast path, rectangular
    ((7, 5, 2), (2, 2), None, "VALID", ((0, 0), (0, 0))),  # window does not divide: general
    ((7, 6, 2), (3, 3), (2, 2), "VALID", ((0, 0), (0, 0))),  # overlapping
    ((7, 5, 1), (3, 2), (2, 1), "SAME", (same_pads(7, 3, 2), same_pads(5, 2, 1))),
    ((5, 5, 2), (2, 2), None, "SAME", ((0, 1), (0, 1))),  # odd extra pad at bottom/right
    ((6, 7, 2), (3, 3), (2, 2), 1, ((1, 1), (1, 1))),
    ((5, 6, 1), (3, 2), (1, 2), ((2, 0), (0, 1)), ((2, 0), (0, 1))),
]
IDS = ["fast", "fast_rect", "nondividing", "overlap", "same_rect", "same_odd", "int_pad",
       "explicit"]


def _out_shape(layer, in_shape):
    return layer.init(KEY, in_shape)[0]


@pytest.mark.parametrize("in_shape, window, strides, padding, pads", CONFIGS, ids=IDS)
def test_max_pool_matches_naive_loop(in_shape, window, strides, padding, pads):
    layer = L.MaxPool2D(window, strides, padding)
    x = randn(0, (2, *in_shape))
    y, _ = layer.apply({}, {}, jnp.asarray(x))
    ref = pool_ref(x, window, strides or window, pads, "max")
    assert y.shape == ref.shape == (2, *_out_shape(layer, in_shape))
    np.testing.assert_allclose(y, ref, rtol=1e-6)


@pytest.mark.parametrize("include", [False, True], ids=["real_count", "include_pad"])
@pytest.mark.parametrize("in_shape, window, strides, padding, pads", CONFIGS, ids=IDS)
def test_avg_pool_matches_naive_loop(in_shape, window, strides, padding, pads, include):
    layer = L.AvgPool2D(window, strides, padding, count_include_pad=include)
    x = randn(1, (2, *in_shape))
    y, _ = layer.apply({}, {}, jnp.asarray(x))
    ref = pool_ref(x, window, strides or window, pads, "avg_all" if include else "avg_real")
    assert y.shape == ref.shape == (2, *_out_shape(layer, in_shape))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_avg_pool_padding_conventions_differ_only_at_the_border():
    x = jnp.ones((1, 4, 4, 1))
    real, _ = L.AvgPool2D(3, 1, padding="SAME").apply({}, {}, x)
    incl, _ = L.AvgPool2D(3, 1, padding="SAME", count_include_pad=True).apply({}, {}, x)
    np.testing.assert_allclose(real, np.ones((1, 4, 4, 1)), rtol=1e-6)  # true means of the data
    assert float(incl[0, 0, 0, 0]) == pytest.approx(4 / 9)  # corner: 4 real of 9
    np.testing.assert_allclose(incl[0, 1:3, 1:3], np.ones((2, 2, 1)), rtol=1e-6)


# ----------------------------------------------------------------------------------------
# The reshape fast path


FAST_CASES = [((2, 6, 4, 3), (2, 2)), ((1, 6, 6, 2), (3, 2)), ((2, 4, 6, 1), (1, 3))]


@pytest.mark.parametrize("shape, window", FAST_CASES)
def test_max_fast_path_equals_reduce_window_with_ties(shape, window):
    # Small integers: most windows hold ties, like zeros after a ReLU.
    x = np.random.default_rng(0).integers(-1, 2, shape).astype(np.float32)
    g = randn(1, (shape[0], shape[1] // window[0], shape[2] // window[1], shape[3]))
    no_pad = ((0, 0), (0, 0))
    outs, grads = [], []
    for fast in (True, False):
        y, vjp = jax.vjp(lambda x, fast=fast: max_pool(x, window, window, no_pad, fast), x)
        outs.append(np.asarray(y))
        grads.append(np.asarray(vjp(jnp.asarray(g))[0]))
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(grads[0], grads[1])
    np.testing.assert_allclose(outs[0], pool_ref(x, window, window, no_pad, "max"))
    np.testing.assert_allclose(grads[0], max_pool_grad_ref(x, window, window, no_pad, g),
                               rtol=1e-6)
    # Forward mode agrees too (the fast path is a custom JVP, so jacfwd / jvp work).
    t = randn(2, shape)
    jvps = [jax.jvp(lambda x, f=f: max_pool(x, window, window, no_pad, f), (x,), (t,))[1]
            for f in (True, False)]
    np.testing.assert_array_equal(jvps[0], jvps[1])


@pytest.mark.parametrize("shape, window", FAST_CASES)
def test_avg_fast_path_equals_reduce_window(shape, window):
    x = randn(3, shape)
    g = randn(4, (shape[0], shape[1] // window[0], shape[2] // window[1], shape[3]))
    no_pad = ((0, 0), (0, 0))
    results = []
    for fast in (True, False):
        y, vjp = jax.vjp(lambda x, fast=fast: avg_pool(x, window, window, no_pad, False, fast), x)
        results.append((np.asarray(y), np.asarray(vjp(jnp.asarray(g))[0])))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6, atol=1e-7)
    # Each input's gradient is its window's cotangent / window size.
    expected = np.repeat(np.repeat(g, window[0], axis=1), window[1], axis=2) / np.prod(window)
    np.testing.assert_allclose(results[0][1], expected, rtol=1e-6)


@pytest.mark.parametrize("layer_fn", [L.MaxPool2D, L.AvgPool2D])
def test_fast_path_is_chosen_automatically(layer_fn):
    def jaxpr(layer, shape):
        return str(jax.make_jaxpr(lambda x: layer.apply({}, {}, x)[0])(jnp.zeros(shape)))

    assert "reduce_window" not in jaxpr(layer_fn(2), (1, 4, 6, 1))
    assert "reduce_window" in jaxpr(layer_fn(2), (1, 5, 6, 1))  # 2 does not divide 5
    assert "reduce_window" in jaxpr(layer_fn(2, strides=1), (1, 4, 6, 1))
    assert "reduce_window" in jaxpr(layer_fn(2, padding="SAME"), (1, 5, 5, 1))


# ----------------------------------------------------------------------------------------
# Gradients (finite differences, both modes, second order)


@pytest.mark.parametrize("layer", [
    L.MaxPool2D(2), L.MaxPool2D(3, 2, padding="SAME"), L.AvgPool2D(2),
    L.AvgPool2D(3, 2, padding=1), L.AvgPool2D(2, 1, padding="SAME", count_include_pad=True),
    L.GlobalAvgPool2D(),
], ids=["max_fast", "max_same", "avg_fast", "avg_pad", "avg_incl", "gap"])
def test_pool_gradients(layer):
    with jax.enable_x64(True):
        x = jnp.asarray(randn(5, (2, 4, 6, 2), np.float64))  # distinct values: no ties
        check_grads(lambda x: layer.apply({}, {}, x)[0], (x,), order=2, eps=1e-4)


def test_global_avg_pool():
    x = randn(6, (3, 4, 5, 2))
    y, _ = L.GlobalAvgPool2D().apply({}, {}, jnp.asarray(x))
    np.testing.assert_allclose(y, x.mean(axis=(1, 2)), rtol=1e-6)
    assert L.GlobalAvgPool2D().init(KEY, (4, 5, 2))[0] == (2,)


def test_pool_errors():
    with pytest.raises(LayerError, match=r"MaxPool2D.*rank 4.*x\[\.\.\., None\]"):
        L.MaxPool2D(2).apply({}, {}, jnp.zeros((1, 4, 4)))
    with pytest.raises(LayerError, match=r"AvgPool2D.*per-example inputs of rank 3"):
        L.AvgPool2D(2).init(KEY, (4, 4))
    with pytest.raises(LayerError, match=r"MaxPool2D.*smaller than the window"):
        L.MaxPool2D(5).init(KEY, (4, 4, 1))
    with pytest.raises(LayerError, match=r"AvgPool2D.*padding .* must be smaller than the window"):
        L.AvgPool2D(2, padding=2)
    with pytest.raises(LayerError, match=r"MaxPool2D.*floating-point.*int32"):
        L.MaxPool2D(2).apply({}, {}, jnp.zeros((1, 4, 4, 1), jnp.int32))
    with pytest.raises(LayerError, match=r"GlobalAvgPool2D.*rank 4"):
        L.GlobalAvgPool2D().apply({}, {}, jnp.zeros((2, 3)))
    with pytest.raises(LayerError, match="strides must be a positive int"):
        L.MaxPool2D(2, strides=0)
