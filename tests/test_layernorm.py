"""LayerNorm against NumPy written from the equation, finite differences and PyTorch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import randn, to_f64
from _sequence_fixtures import fixture_case, live_case
from jax.test_util import check_grads

import jnet
from jnet import interop
from jnet import layers as L
from jnet.layers import LayerError

KEY = jax.random.key(0)


def layernorm_ref(x, gamma, beta, eps):
    """y = γ (x − μ) / sqrt(σ² + eps) + β over the last axis, σ² biased, in float64."""
    x = np.asarray(x, np.float64)
    mu = x.sum(-1, keepdims=True) / x.shape[-1]
    var = ((x - mu) ** 2).sum(-1, keepdims=True) / x.shape[-1]
    y = (x - mu) / np.sqrt(var + eps)
    if gamma is not None:
        y = y * np.asarray(gamma, np.float64)
    if beta is not None:
        y = y + np.asarray(beta, np.float64)
    return y


@pytest.mark.parametrize("x_shape", [(4, 3), (2, 5, 6), (2, 3, 4, 5)], ids=["NC", "NTC", "NHWC"])
@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, False)])
def test_forward_matches_numpy(x_shape, affine):
    scale, center = affine
    layer = L.LayerNorm(eps=1e-3, scale=scale, center=center)
    out_shape, params, state = layer.init(KEY, x_shape[1:])
    assert out_shape == x_shape[1:] and state == {}
    assert set(params) == {k for k, on in (("scale", scale), ("bias", center)) if on}
    c = x_shape[-1]
    if scale:
        np.testing.assert_array_equal(params["scale"], np.ones(c))
        params["scale"] = jnp.asarray(randn(1, (c,)))
    if center:
        np.testing.assert_array_equal(params["bias"], np.zeros(c))
        params["bias"] = jnp.asarray(randn(2, (c,)))
    x = randn(0, x_shape) * 4 + 2
    for train in (False, True):  # no batch statistics: the same in both modes
        y, new_state = layer.apply(params, state, jnp.asarray(x), train=train)
        ref = layernorm_ref(x, params.get("scale"), params.get("bias"), 1e-3)
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
        assert y.dtype == jnp.float32 and new_state == {}


def test_gradients_match_finite_differences():
    layer = L.LayerNorm()
    _, params, _ = layer.init(KEY, (5,))
    params = {"scale": jnp.asarray(randn(1, (5,))), "bias": jnp.asarray(randn(2, (5,)))}
    with jax.enable_x64(True):
        p64, x64 = to_f64(params), jnp.asarray(randn(0, (3, 5)), jnp.float64)
        check_grads(lambda p, x: layer.apply(p, {}, x)[0], (p64, x64), order=2,
                    modes=("rev",))


def test_gradient_is_orthogonal_to_shifts_and_scalings():
    """y does not change when x is shifted or scaled per position (eps aside), so the input
    gradient of any loss is orthogonal to 1 and to x − μ: a property, not a re-derivation."""
    layer = L.LayerNorm(eps=1e-12)
    _, params, _ = layer.init(KEY, (7,))
    x = jnp.asarray(randn(3, (4, 7)))
    w = jnp.asarray(randn(4, (4, 7)))
    g = jax.grad(lambda x: jnp.sum(w * layer.apply(params, {}, x)[0]))(x)
    np.testing.assert_allclose(g.sum(-1), 0, atol=1e-5)
    np.testing.assert_allclose(jnp.sum(g * (x - x.mean(-1, keepdims=True)), -1), 0, atol=1e-5)


def test_jit_matches_eager_and_init_is_abstract():
    layer = L.LayerNorm()
    shapes = jax.eval_shape(lambda k: layer.init(k, (5, 6))[1], KEY)
    assert all(isinstance(a, jax.ShapeDtypeStruct) for a in jax.tree.leaves(shapes))
    assert {k: v.shape for k, v in shapes.items()} == {"scale": (6,), "bias": (6,)}
    _, params, state = layer.init(KEY, (5, 6))
    x = jnp.asarray(randn(5, (2, 5, 6)))
    eager, _ = layer.apply(params, state, x)
    jitted, _ = jax.jit(layer.apply)(params, state, x)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-6)


def test_inside_serial_with_mask():
    """The mask reaches LayerNorm through serial and changes nothing: positions are
    normalised one by one."""
    model = L.serial(L.Input((4, 3)), L.Dense(6), L.LayerNorm(), L.Dense(2))
    _, params, state = model.init(KEY)
    x = jnp.asarray(randn(6, (2, 4, 3)))
    mask = jnp.asarray([[True] * 4, [True, True, False, False]])
    y_masked, _ = model.apply(params, state, x, mask=mask)
    y, _ = model.apply(params, state, x)
    np.testing.assert_array_equal(y_masked, y)
    h = x @ params["dense_1"]["w"] + params["dense_1"]["b"]
    ref = layernorm_ref(h, None, None, 1e-5) @ params["dense_3"]["w"] + params["dense_3"]["b"]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_kept_in_float32_under_mixed_precision():
    """LayerNorm sees the bfloat16-rounded Dense output in float32 and its output is not
    rounded to bfloat16; with keep_float32=() it is."""
    model = L.serial(L.Input((6,)), L.Dense(5), L.LayerNorm())
    assert L.LayerNorm().keeps_float32
    _, params, state = model.init(KEY)
    x = jnp.asarray(randn(7, (8, 6)))
    y, _ = jnet.precision.mixed(model).apply(params, state, x)
    bf = jnp.bfloat16
    h = (x.astype(bf) @ params["dense_1"]["w"].astype(bf) + params["dense_1"]["b"].astype(bf))
    np.testing.assert_allclose(y, layernorm_ref(h.astype(jnp.float32), None, None, 1e-5),
                               rtol=1e-4, atol=1e-4)
    assert not np.array_equal(y, y.astype(bf).astype(jnp.float32))
    y16, _ = jnet.precision.mixed(model, keep_float32=lambda layer: False).apply(params, state, x)
    np.testing.assert_array_equal(y16, y16.astype(bf).astype(jnp.float32))


def test_bfloat16_input_keeps_its_dtype_with_float32_statistics():
    x = jnp.asarray(randn(8, (3, 16)) * 100 + 1000).astype(jnp.bfloat16)
    y, _ = L.LayerNorm(center=False, scale=False).apply({}, {}, x)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(y.astype(jnp.float32), layernorm_ref(x.astype(jnp.float32),
                               None, None, 1e-5), atol=2e-2)


def test_errors():
    with pytest.raises(LayerError, match="eps must be a positive number"):
        L.LayerNorm(eps=0)
    with pytest.raises(LayerError, match="feature axis"):
        L.LayerNorm().init(KEY, ())
    _, params, _ = L.LayerNorm().init(KEY, (4,))
    with pytest.raises(LayerError, match="4 features on the last axis"):
        L.LayerNorm().apply(params, {}, jnp.ones((2, 5)))
    with pytest.raises(LayerError, match="floating-point"):
        L.LayerNorm().apply(params, {}, jnp.ones((2, 4), jnp.int32))
    assert isinstance(LayerError("LayerNorm", ""), jnet.Error)


def assert_matches_torch(case):
    params = interop.layernorm_from_torch(case["sd"])
    y, _ = L.LayerNorm().apply(params, {}, jnp.asarray(case["x"]))
    np.testing.assert_allclose(y, case["y"], rtol=1e-5, atol=1e-5)


def test_fixture_parity():
    case = fixture_case("layernorm")
    assert np.abs(case["sd"]["weight"] - 1).min() > 0 and np.abs(case["sd"]["bias"]).min() > 0
    assert_matches_torch(case)


@pytest.mark.parametrize("seed", [1, 2])
def test_live_torch_parity(seed):
    assert_matches_torch(live_case("layernorm", seed))


def test_converter_variants_and_errors():
    prefixed = {"enc.norm.weight": np.full(3, 2.0), "enc.norm.bias": np.ones(3)}
    params = interop.layernorm_from_torch(prefixed, "enc.norm.")
    np.testing.assert_array_equal(params["scale"], np.full(3, 2.0))
    assert interop.layernorm_from_torch({"weight": np.ones(3)}).keys() == {"scale"}
    with pytest.raises(jnet.ArgumentError, match="pass the right prefix"):
        interop.layernorm_from_torch(prefixed)
    with pytest.raises(ValueError, match="1-D weight"):
        interop.layernorm_from_torch({"weight": np.ones((2, 3))})
    with pytest.raises(ValueError, match="expected bias of shape"):
        interop.layernorm_from_torch({"weight": np.ones(3), "bias": np.ones(4)})
