"""1-D pooling against NumPy loops written from the definitions (both average divisors), the
masked global pools (fully padded rows included), gradients, PyTorch live, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import randn, same_pads
from jax.test_util import check_grads

from jnet import layers as L
from jnet.layers import LayerError
from jnet.layers.pooling import avg_pool, max_pool

pytestmark = pytest.mark.usefixtures("fast_compiling_prng")

KEY = jax.random.key(0)


def pool1d_ref(x, k, s, pads, mode):
    """y[n, i, c] = max / mean of x_pad[n, i*s : i*s + k, c]; "avg_real" divides by the real
    positions under the window, "avg_all" by k; max pads with -inf."""
    x = np.asarray(x, np.float64)
    lo, hi = pads
    xp = np.pad(x, ((0, 0), (lo, hi), (0, 0)),
                constant_values=-np.inf if mode == "max" else 0.0)
    real = np.pad(np.ones(x.shape[1]), (lo, hi))
    out = (xp.shape[1] - k) // s + 1
    y = np.zeros((x.shape[0], out, x.shape[2]))
    for i in range(out):
        win = xp[:, i * s:i * s + k]
        if mode == "max":
            y[:, i] = win.max(axis=1)
        elif mode == "avg_all":
            y[:, i] = win.sum(axis=1) / k
        else:
            y[:, i] = win.sum(axis=1) / real[i * s:i * s + k].sum()
    return y


# (L, window, strides (None = window), padding, pads the reference uses)
CONFIGS = [
    (8, 2, None, "VALID", (0, 0)),  # reshape fast path
    (9, 2, None, "VALID", (0, 0)),  # window does not divide: general path
    (9, 3, 2, "VALID", (0, 0)),  # overlapping
    (10, 3, 2, "SAME", same_pads(10, 3, 2)),
    (7, 2, None, "SAME", (0, 1)),
    (9, 3, 2, 1, (1, 1)),
    (8, 4, 1, (3, 0), (3, 0)),
]
IDS = ["fast", "nondividing", "overlap", "same", "same_odd", "int_pad", "explicit"]


@pytest.mark.parametrize("n, k, s, padding, pads", CONFIGS, ids=IDS)
def test_max_pool1d_matches_loop(n, k, s, padding, pads):
    layer = L.MaxPool1D(k, s, padding)
    x = randn(0, (2, n, 3))
    y, _ = layer.apply({}, {}, jnp.asarray(x))
    ref = pool1d_ref(x, k, s or k, pads, "max")
    assert y.shape == ref.shape == (2, *layer.init(KEY, (n, 3))[0])
    np.testing.assert_allclose(y, ref, rtol=1e-6)


@pytest.mark.parametrize("include", [False, True], ids=["real_count", "include_pad"])
@pytest.mark.parametrize("n, k, s, padding, pads", CONFIGS, ids=IDS)
def test_avg_pool1d_matches_loop(n, k, s, padding, pads, include):
    layer = L.AvgPool1D(k, s, padding, count_include_pad=include)
    x = randn(1, (2, n, 3))
    y, _ = layer.apply({}, {}, jnp.asarray(x))
    ref = pool1d_ref(x, k, s or k, pads, "avg_all" if include else "avg_real")
    assert y.shape == ref.shape == (2, *layer.init(KEY, (n, 3))[0])
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_fast_path_equals_reduce_window_with_ties():
    """Values and gradients of the reshape path equal reduce_window's, ties included (the first
    maximum of a window gets the gradient)."""
    x = jnp.asarray(np.round(randn(2, (2, 12, 3)), 0))  # many ties
    g = jnp.asarray(randn(3, (2, 4, 3)))
    for pool in (max_pool, avg_pool):
        def f(x, fast, pool=pool):
            return jnp.sum(pool(x, (3,), (3,), ((0, 0),), fast=fast) * g)
        np.testing.assert_array_equal(f(x, True), f(x, False))
        np.testing.assert_array_equal(jax.grad(f)(x, True), jax.grad(f)(x, False))
    grad = np.asarray(jax.grad(lambda x: jnp.sum(max_pool(x, (3,), (3,), ((0, 0),)) * g))(x))
    xn = np.asarray(x)
    want = np.zeros_like(xn)
    for n in range(2):
        for i in range(4):
            for c in range(3):
                want[n, 3 * i + np.argmax(xn[n, 3 * i:3 * i + 3, c]), c] += g[n, i, c]
    np.testing.assert_array_equal(grad, want)


def test_pool1d_gradients():
    with jax.enable_x64(True):
        x = jnp.asarray(randn(4, (2, 9, 2), np.float64))
        for layer in (L.AvgPool1D(3, 2, "SAME"), L.AvgPool1D(3, 2, 1, count_include_pad=True),
                      L.MaxPool1D(3, 2, "SAME")):
            check_grads(lambda x, layer=layer: layer.apply({}, {}, x)[0], (x,), order=2)


def masked_global_ref(x, mask, mode):
    """Per row: mean / max over the steps where mask is True; 0 when there is none."""
    x = np.asarray(x, np.float64)
    y = np.zeros((x.shape[0], x.shape[2]))
    for n in range(x.shape[0]):
        real = x[n, np.asarray(mask[n])]
        if len(real):
            y[n] = real.mean(axis=0) if mode == "avg" else real.max(axis=0)
    return y


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_masked_global_pools(mode):
    layer = L.GlobalAvgPool1D() if mode == "avg" else L.GlobalMaxPool1D()
    x = jnp.asarray(randn(5, (4, 6, 3)) - 3.0)  # all negative: a max over pads (0) would win
    lengths = np.array([6, 2, 0, 4])
    mask = jnp.asarray(np.arange(6)[None] < lengths[:, None])
    assert layer.init(KEY, (6, 3))[0] == (3,)
    y, _ = layer.apply({}, {}, x, mask=mask)
    np.testing.assert_allclose(y, masked_global_ref(x, mask, mode), rtol=1e-6)
    np.testing.assert_array_equal(y[2], 0.0)  # the fully padded row
    unmasked, _ = layer.apply({}, {}, x)
    full = np.ones((4, 6), bool)
    np.testing.assert_allclose(unmasked, masked_global_ref(x, full, mode), rtol=1e-6)
    # Padded steps get no gradient, the fully padded row none at all, and nothing is NaN.
    grad = jax.grad(lambda x: jnp.sum(layer.apply({}, {}, x, mask=mask)[0]))(x)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(np.asarray(grad)[~np.asarray(mask)], 0.0)
    if mode == "avg":
        np.testing.assert_allclose(grad[1, :2], np.full((2, 3), 0.5))


def test_masked_global_avg_gradients():
    mask = jnp.asarray(np.arange(5)[None] < np.array([[5], [3], [0]]))
    with jax.enable_x64(True):
        x = jnp.asarray(randn(6, (3, 5, 2), np.float64))
        f = lambda x: L.GlobalAvgPool1D().apply({}, {}, x, mask=mask)[0]  # noqa: E731
        check_grads(f, (x,), order=2)


def test_pool1d_matches_pytorch_live():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11)
    xj = x.numpy().transpose(0, 2, 1)
    cases = [(torch.nn.MaxPool1d(3, 2, 1), L.MaxPool1D(3, 2, 1)),
             (torch.nn.MaxPool1d(2), L.MaxPool1D(2)),
             (torch.nn.AvgPool1d(3, 2, 1), L.AvgPool1D(3, 2, 1, count_include_pad=True)),
             (torch.nn.AvgPool1d(3, 2, 1, count_include_pad=False), L.AvgPool1D(3, 2, 1))]
    for module, layer in cases:
        want = module(x).numpy()
        y, _ = layer.apply({}, {}, xj)
        np.testing.assert_allclose(np.transpose(y, (0, 2, 1)), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(L.GlobalAvgPool1D().apply({}, {}, xj)[0], x.mean(-1).numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(L.GlobalMaxPool1D().apply({}, {}, xj)[0], x.amax(-1).numpy())


def test_pool1d_errors():
    with pytest.raises(LayerError, match=r"MaxPool1D.*rank 3.*x\[\.\.\., None\]"):
        L.MaxPool1D(2).apply({}, {}, jnp.zeros((2, 8)))
    with pytest.raises(LayerError, match=r"AvgPool1D.*per-example inputs of rank 2"):
        L.AvgPool1D(2).init(KEY, (8, 3, 1))
    with pytest.raises(LayerError, match="smaller than the window"):
        L.MaxPool1D(3, padding=3)
    with pytest.raises(LayerError, match="window must be a positive int or 1"):
        L.MaxPool1D((2, 2))
    with pytest.raises(LayerError, match=r"GlobalMaxPool1D.*mask=.*\(N, T\) = \(2, 8\)"):
        L.GlobalMaxPool1D().apply({}, {}, jnp.zeros((2, 8, 3)), mask=jnp.ones((2, 7), bool))
    with pytest.raises(LayerError, match=r"GlobalAvgPool1D.*astype\(bool\)"):
        L.GlobalAvgPool1D().apply({}, {}, jnp.zeros((2, 8, 3)), mask=jnp.ones((2, 8)))
    with pytest.raises(LayerError, match=r"GlobalAvgPool1D.*rank 3"):
        L.GlobalAvgPool1D().apply({}, {}, jnp.zeros((2, 8, 3, 1)))
