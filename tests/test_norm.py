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



def _masked_reference(x, real, momentum, unbiased):
    """NumPy: mean / biased variance per channel over the values `real` marks (broadcast over
    the non-batch axes), and one running-statistics update from (0, 1)."""
    x = np.asarray(x, np.float64)
    flat = x.reshape(-1, x.shape[-1])
    keep = np.broadcast_to(real.reshape(*real.shape, *(1,) * (x.ndim - 1 - real.ndim)),
                           x.shape[:-1]).reshape(-1)
    vals = flat[keep]
    n = len(vals)
    mu, var = vals.mean(axis=0), vals.var(axis=0)
    stored = var * n / (n - 1) if unbiased else var
    return mu, var, momentum * 0.0 + (1 - momentum) * mu, momentum * 1.0 + (1 - momentum) * stored


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize(("x_shape", "mask_shape"),
                         [((8, 3), (8,)), ((5, 7, 3), (5,)), ((5, 7, 3), (5, 7)),
                          ((4, 4, 5, 3), (4,)), ((6, 3), (6, 4))],
                         ids=["NC-examples", "NTC-examples", "NTC-steps", "NHWC-examples",
                              "NC-steps-any"])
def test_masked_statistics_count_real_values_only(x_shape, mask_shape, unbiased):
    momentum, eps = 0.7, 1e-3
    rng = np.random.default_rng(3)
    x = rng.normal(size=x_shape).astype(np.float32) * 2 + 1
    mask = rng.random(mask_shape) < 0.6
    mask.reshape(mask_shape[0], -1)[0, 0] = True    # at least one real value
    mask.reshape(mask_shape[0], -1)[1, :] = True    # and a second one
    real = mask.any(axis=1) if len(mask_shape) == 2 and len(x_shape) == 2 else mask
    # The padding is loud: were it counted, every statistic would move by a lot.
    pad = ~np.broadcast_to(real.reshape(*real.shape, *(1,) * (len(x_shape) - real.ndim)),
                           x_shape)
    x[pad] = 1e4
    layer = L.BatchNorm(momentum=momentum, eps=eps, unbiased_running_var=unbiased)
    _, params, state = layer.init(KEY, x_shape[1:])
    params = {"scale": jnp.asarray([0.5, 2.0, -1.0]), "bias": jnp.asarray([0.1, 0.0, 3.0])}
    y, new = jax.jit(lambda x, m: layer.apply(params, state, x, train=True, mask=m))(x, mask)
    mu, var, run_mean, run_var = _masked_reference(x, real, momentum, unbiased)
    ref = batchnorm_ref(x, params["scale"], params["bias"], mu, var, eps)
    keep = ~pad
    np.testing.assert_allclose(np.asarray(y)[keep], ref[keep], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(new["mean"], run_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new["var"], run_var, rtol=1e-5)


def test_an_all_true_mask_is_the_unmasked_layer_and_eval_ignores_the_mask():
    x = jnp.asarray(randn(4, (6, 5, 3)))
    layer = L.BatchNorm()
    _, params, state = layer.init(KEY, (5, 3))
    y0, s0 = layer.apply(params, state, x, train=True)
    for mask in (jnp.ones(6, bool), jnp.ones((6, 5), bool)):
        y1, s1 = layer.apply(params, state, x, train=True, mask=mask)
        np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), s1, s0)
    y2, s2 = layer.apply(params, s0, x, train=False, mask=jnp.zeros(6, bool).at[0].set(True))
    np.testing.assert_allclose(y2, layer.apply(params, s0, x, train=False)[0])
    jax.tree.map(np.testing.assert_array_equal, s2, s0)


def test_gradient_does_not_reach_the_padding_through_the_statistics():
    x = jnp.asarray(randn(5, (6, 2)))
    mask = jnp.asarray([True, True, True, True, False, False])
    layer = L.BatchNorm()
    _, params, state = layer.init(KEY, (2,))

    def loss(x):
        y, _ = layer.apply(params, state, x, train=True, mask=mask)
        return jnp.sum(jnp.where(mask[:, None], y, 0) ** 3)

    g = jax.grad(loss)(x)
    np.testing.assert_array_equal(g[4:], 0.0)       # padded rows change no real output
    assert np.abs(np.asarray(g[:4])).sum() > 0


def test_a_batch_without_real_values_keeps_the_running_statistics():
    layer = L.BatchNorm()
    _, params, state = layer.init(KEY, (2,))
    state = {"mean": jnp.asarray([1.0, 2.0]), "var": jnp.asarray([3.0, 4.0])}
    y, new = layer.apply(params, state, jnp.asarray(randn(6, (4, 2))), train=True,
                         mask=jnp.zeros(4, bool))
    jax.tree.map(np.testing.assert_array_equal, new, state)
    assert np.isfinite(np.asarray(y)).all()


@pytest.mark.parametrize(("mask", "match"), [
    (jnp.ones(5, bool), r"shape \(4,\)"),
    (jnp.ones((4, 6), bool), r"shape \(4, 7\)"),
    (jnp.ones(4, jnp.int32), "boolean"),
    (jnp.ones((4, 7, 1), bool), r"shape \(4,\)"),
])
def test_bad_masks_are_layer_errors(mask, match):
    layer = L.BatchNorm()
    _, params, state = layer.init(KEY, (7, 3))
    with pytest.raises(LayerError, match=match):
        layer.apply(params, state, jnp.ones((4, 7, 3)), train=True, mask=mask)
