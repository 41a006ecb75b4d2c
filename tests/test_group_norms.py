"""RMSNorm, GroupNorm and InstanceNorm against NumPy written from the papers' equations, and
against PyTorch (outputs and all gradients in float64, to 1e-10)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import randn
from _transformer_cases import assert_parity, fixture_case, live_case

import jnet
from jnet import interop
from jnet import layers as L
from jnet.layers import LayerError

KEY = jax.random.key(0)


def rmsnorm_ref(x, gamma, eps):
    x = np.asarray(x, np.float64)
    return x / np.sqrt((x ** 2).sum(-1, keepdims=True) / x.shape[-1] + eps) * gamma


def groupnorm_ref(x, groups, gamma, beta, eps, mask=None):
    """Loops over examples and groups; statistics over the group's channels and all positions
    (the real steps only when masked)."""
    x = np.asarray(x, np.float64)
    c = x.shape[-1]
    size = c // groups
    y = np.zeros_like(x)
    for n in range(x.shape[0]):
        for g in range(groups):
            block = x[n, ..., g * size:(g + 1) * size]
            values = block if mask is None else block[np.asarray(mask[n])]
            mu, var = values.mean(), values.var()
            y[n, ..., g * size:(g + 1) * size] = (block - mu) / np.sqrt(var + eps)
    return y * gamma + beta


def test_rmsnorm_matches_numpy_and_keeps_float32():
    layer = L.RMSNorm(eps=1e-5)
    assert layer.keeps_float32
    out, params, state = layer.init(KEY, (4, 6))
    assert out == (4, 6) and state == {} and params["scale"].shape == (6,)
    gamma = randn(1, (6,))
    x = randn(0, (3, 4, 6)) * 3
    y, _ = layer.apply({"scale": jnp.asarray(gamma)}, {}, jnp.asarray(x))
    np.testing.assert_allclose(y, rmsnorm_ref(x, gamma, 1e-5), rtol=1e-5, atol=1e-5)
    assert L.RMSNorm(scale=False).init(KEY, (6,))[1] == {}
    xb = jnp.asarray(x).astype(jnp.bfloat16)
    assert L.RMSNorm(scale=False).apply({}, {}, xb)[0].dtype == jnp.bfloat16


@pytest.mark.parametrize("groups", [1, 2, 6])
@pytest.mark.parametrize("shape", [(2, 5, 6), (2, 4, 3, 6)], ids=["NTC", "NHWC"])
def test_groupnorm_matches_numpy(groups, shape):
    layer = L.GroupNorm(groups, eps=1e-3)
    _, params, _ = layer.init(KEY, shape[1:])
    np.testing.assert_array_equal(params["scale"], np.ones(6))
    gamma, beta = randn(1, (6,)), randn(2, (6,))
    x = randn(0, shape) * 2 + 1
    for train in (False, True):
        y, _ = layer.apply({"scale": jnp.asarray(gamma), "bias": jnp.asarray(beta)}, {},
                           jnp.asarray(x), train=train)
        np.testing.assert_allclose(y, groupnorm_ref(x, groups, gamma, beta, 1e-3),
                                   rtol=1e-4, atol=1e-4)


def test_instancenorm_is_one_group_per_channel_and_masks_steps():
    x = randn(3, (3, 5, 4)) * 2
    gamma, beta = randn(4, (4,)), randn(5, (4,))
    p = {"scale": jnp.asarray(gamma), "bias": jnp.asarray(beta)}
    y, _ = L.InstanceNorm().apply(p, {}, jnp.asarray(x))
    np.testing.assert_allclose(y, groupnorm_ref(x, 4, gamma, beta, 1e-5), rtol=1e-4, atol=1e-4)
    mask = np.asarray([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool)
    junk = np.where(mask[:, :, None], x, 1e3)
    ym, _ = L.InstanceNorm().apply(p, {}, jnp.asarray(junk), mask=jnp.asarray(mask))
    ref = groupnorm_ref(junk, 4, gamma, beta, 1e-5, mask)
    np.testing.assert_allclose(np.asarray(ym)[mask], ref[mask], rtol=1e-4, atol=1e-4)
    # a per-example (N,) mask is no time mask
    y1, _ = L.InstanceNorm().apply(p, {}, jnp.asarray(x), mask=jnp.ones(3, bool))
    np.testing.assert_allclose(y1, y, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("layer", [L.RMSNorm(), L.GroupNorm(2), L.InstanceNorm()],
                         ids=["rms", "group", "instance"])
def test_transformations(layer):
    _, params, _ = layer.init(KEY, (5, 4))
    x = jnp.asarray(randn(6, (2, 5, 4)))
    f = lambda p, x: layer.apply(p, {}, x)[0]  # noqa: E731
    np.testing.assert_allclose(jax.jit(f)(params, x), f(params, x), rtol=1e-6, atol=1e-6)
    g = jax.grad(lambda p, x: jnp.sum(jnp.sin(f(p, x))), (0, 1))(params, x)
    _, t = jax.jvp(lambda x: f(params, x), (x,), (g[1],))
    assert np.isfinite(np.asarray(t)).all()
    v = jax.vmap(lambda x: f(params, x[None])[0])(x)
    np.testing.assert_allclose(v, f(params, x), rtol=1e-5, atol=1e-5)


def test_errors():
    for bad in (0, -1.0, True, "1"):
        with pytest.raises(LayerError, match="eps must be a positive"):
            L.RMSNorm(eps=bad)
    with pytest.raises(LayerError, match="num_groups must be a positive int"):
        L.GroupNorm(0)
    with pytest.raises(LayerError, match="6 channels must split into num_groups = 4"):
        L.GroupNorm(4).init(KEY, (3, 6))
    with pytest.raises(LayerError, match="at least one axis besides the channels"):
        L.InstanceNorm().init(KEY, (6,))
    _, params, _ = L.GroupNorm(2).init(KEY, (3, 6))
    with pytest.raises(LayerError, match="6 channels on the last axis"):
        L.GroupNorm(2).apply(params, {}, jnp.ones((2, 3, 4)))
    with pytest.raises(LayerError, match="mask= applies to"):
        L.GroupNorm(2).apply(params, {}, jnp.ones((2, 3, 3, 6)), mask=jnp.ones((2, 3), bool))
    with pytest.raises(LayerError, match="floating-point"):
        L.RMSNorm().apply({"scale": jnp.ones(3)}, {}, jnp.ones((2, 3), jnp.int32))
    with pytest.raises(jnet.ArgumentError, match="track_running_stats"):
        interop.instancenorm_from_torch({"weight": np.ones(3), "running_mean": np.zeros(3)})
    with pytest.raises(jnet.ArgumentError, match="1-D weight"):
        interop.rmsnorm_from_torch({"weight": np.ones((2, 3))})


CASES = {
    "rmsnorm": (lambda: L.RMSNorm(eps=1e-6), interop.rmsnorm_from_torch),
    "groupnorm": (lambda: L.GroupNorm(2), interop.groupnorm_from_torch),
    "instancenorm": (lambda: L.InstanceNorm(), interop.instancenorm_from_torch),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_parity(name):
    make, convert = CASES[name]
    assert_parity(fixture_case(name), make(), convert)


@pytest.mark.parametrize("name", sorted(CASES))
def test_live_torch_parity(name):
    make, convert = CASES[name]
    assert_parity(live_case(name, 3), make(), convert)
