"""BatchNorm against NumPy: batch statistics in training, the running-statistics update over
several steps (both variance conventions), evaluation from running statistics, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import batchnorm_ref, randn, to_f64
from jax.test_util import check_grads

from jnet import layers as L
from jnet.layers import LayerError

pytestmark = pytest.mark.usefixtures("fast_compiling_prng")

KEY = jax.random.key(0)


@pytest.mark.parametrize("x_shape", [(8, 3), (4, 5, 6, 3), (4, 7, 3)], ids=["NC", "NHWC", "NTC"])
@pytest.mark.parametrize("unbiased", [True, False])
def test_training_steps_and_running_statistics(x_shape, unbiased):
    momentum, eps = 0.8, 1e-3
    layer = L.BatchNorm(momentum=momentum, eps=eps, unbiased_running_var=unbiased)
    _, params, state = layer.init(KEY, x_shape[1:])
    np.testing.assert_array_equal(state["mean"], np.zeros(3))
    np.testing.assert_array_equal(state["var"], np.ones(3))
    params = {"scale": jnp.asarray([0.5, 2.0, -1.0]), "bias": jnp.asarray([0.1, 0.0, 3.0])}
    run_mean, run_var = np.zeros(3), np.ones(3)
    axes = tuple(range(len(x_shape) - 1))
    n = np.prod(x_shape[:-1])
    for step in range(3):
        x = randn(step, x_shape) * (step + 1) + step
        y, state = layer.apply(params, state, jnp.asarray(x), train=True)
        mu, var = x.astype(np.float64).mean(axis=axes), x.astype(np.float64).var(axis=axes)
        ref = batchnorm_ref(x, params["scale"], params["bias"], mu, var, eps)
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
        run_mean = momentum * run_mean + (1 - momentum) * mu
        run_var = momentum * run_var + (1 - momentum) * (var * n / (n - 1) if unbiased else var)
        np.testing.assert_allclose(state["mean"], run_mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state["var"], run_var, rtol=1e-5)
    # Evaluation normalises with the running statistics and leaves them alone.
    x = randn(9, x_shape)
    y, new_state = layer.apply(params, state, jnp.asarray(x), train=False)
    ref = batchnorm_ref(x, params["scale"], params["bias"], run_mean, run_var, eps)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    jax.tree.map(np.testing.assert_array_equal, new_state, state)


def test_default_momentum_matches_pytorch_form():
    # jnet momentum 0.9 == PyTorch momentum 0.1: r <- 0.9 r + 0.1 batch_mean.
    x = randn(1, (16, 2)) + 5.0
    _, params, state = L.BatchNorm().init(KEY, (2,))
    _, state = L.BatchNorm().apply(params, state, jnp.asarray(x), train=True)
    np.testing.assert_allclose(state["mean"], 0.1 * x.mean(axis=0), rtol=1e-5)


def test_channel_axis_other_than_last():
    x = randn(2, (4, 3, 5, 5))  # NCHW
    layer = L.BatchNorm(axis=1)
    out, params, state = layer.init(KEY, (3, 5, 5))
    assert out == (3, 5, 5) and params["scale"].shape == (3,) and state["var"].shape == (3,)
    y, state = layer.apply(params, state, jnp.asarray(x), train=True)
    mu = x.mean(axis=(0, 2, 3), keepdims=True)
    ref = (x - mu) / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(state["mean"], 0.1 * mu.ravel(), rtol=1e-5, atol=1e-6)


def test_scale_and_center_flags():
    _, params, _ = L.BatchNorm(scale=False, center=False).init(KEY, (4,))
    assert params == {}
    x = randn(3, (6, 4))
    y, _ = L.BatchNorm(scale=False, center=False).apply(params, {"mean": jnp.zeros(4),
                                                                 "var": jnp.ones(4)},
                                                        jnp.asarray(x), train=True)
    np.testing.assert_allclose(np.asarray(y).mean(0), np.zeros(4), atol=1e-5)
    np.testing.assert_allclose(np.asarray(y).var(0), np.ones(4), rtol=1e-3)


def test_gradients_in_training_mode():
    layer = L.BatchNorm()
    with jax.enable_x64(True):
        _, params, state = layer.init(KEY, (3, 2, 3))
        params = {"scale": jnp.asarray([1.5, -0.5, 2.0]), "bias": jnp.asarray([0.1, 0.2, 0.3])}
        state = to_f64(state)
        x = jnp.asarray(randn(4, (3, 3, 2, 3), np.float64))

        def f(p, x):
            return layer.apply(p, state, x, train=True)[0]

        check_grads(f, (params, x), order=1, eps=1e-4)
        check_grads(lambda p, x: layer.apply(p, state, x, train=False)[0], (params, x), order=1)
        # The running statistics are state, not a path for gradients.
        g = jax.grad(lambda x: layer.apply(params, state, x, train=True)[1]["mean"].sum())(x)
        np.testing.assert_array_equal(g, np.zeros_like(g))


def test_batchnorm_errors():
    layer = L.BatchNorm()
    _, params, state = layer.init(KEY, (4,))
    with pytest.raises(LayerError, match=r"BatchNorm.*more than one value per channel.*\(1, 4\)"):
        layer.apply(params, state, jnp.zeros((1, 4)), train=True)
    y, _ = layer.apply(params, state, jnp.zeros((1, 4)), train=False)  # eval: one example is fine
    assert y.shape == (1, 4)
    with pytest.raises(LayerError, match=r"BatchNorm.*4 channels.*\(2, 5\)"):
        layer.apply(params, state, jnp.zeros((2, 5)), train=True)
    with pytest.raises(LayerError, match=r"BatchNorm.*floating-point.*int32"):
        layer.apply(params, state, jnp.zeros((2, 4), jnp.int32), train=True)
    with pytest.raises(LayerError, match=r"axis=0 must name a channel axis"):
        L.BatchNorm(axis=0).init(KEY, (4,))
    with pytest.raises(LayerError, match="momentum must satisfy"):
        L.BatchNorm(momentum=1.0)


def test_low_precision_inputs_keep_float32_statistics():
    x = (randn(5, (64, 3)) * 0.1 + 4.0).astype(jnp.bfloat16)  # offset: bf16 steps are 1/32 here
    layer = L.BatchNorm(momentum=0.0, unbiased_running_var=False)
    _, params, state = layer.init(KEY, (3,))
    y, state = layer.apply(params, state, jnp.asarray(x), train=True)
    x64 = np.asarray(x, np.float64)
    assert y.dtype == jnp.bfloat16 and state["var"].dtype == jnp.float32
    np.testing.assert_allclose(state["mean"], x64.mean(0), rtol=1e-6)
    np.testing.assert_allclose(state["var"], x64.var(0), rtol=1e-4)
    ref = batchnorm_ref(x64, np.ones(3), np.zeros(3), x64.mean(0), x64.var(0), 1e-5)
    np.testing.assert_allclose(np.asarray(y, np.float64), ref, atol=0.05)


def test_repr_shows_every_option():
    """The repr (and summaries) must tell a BatchNorm without gamma from the default one."""
    layer = L.BatchNorm(scale=False, unbiased_running_var=False)
    assert "scale=False" in repr(layer) and "unbiased_running_var=False" in repr(layer)

