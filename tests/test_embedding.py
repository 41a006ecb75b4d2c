"""Embedding against NumPy indexing, finite differences and PyTorch; the id-range contract."""

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


def ids(seed, shape, high):
    return np.random.default_rng(seed).integers(0, high, shape).astype(np.int32)


@pytest.mark.parametrize("x_shape", [(5,), (3, 4), (2, 3, 2)], ids=["N", "NT", "NTK"])
def test_forward_is_a_row_lookup(x_shape):
    layer = L.Embedding(7, 3)
    out_shape, _, state = layer.init(KEY, x_shape[1:])
    assert out_shape == (*x_shape[1:], 3) and state == {}
    table = randn(1, (7, 3))
    x = ids(0, x_shape, 7)
    y, _ = layer.apply({"embedding": jnp.asarray(table)}, state, jnp.asarray(x))
    ref = np.zeros((*x_shape, 3), np.float32)
    for index in np.ndindex(*x_shape):
        ref[index] = table[x[index]]
    np.testing.assert_array_equal(y, ref)


def test_default_init_is_standard_normal_and_init_is_abstract():
    _, params, _ = L.Embedding(1000, 16).init(KEY, (4,))
    table = np.asarray(params["embedding"])
    assert table.shape == (1000, 16) and table.dtype == np.float32
    assert abs(table.mean()) < 0.02 and abs(table.std() - 1) < 0.02
    assert np.abs(table).max() > 3  # not truncated at two standard deviations
    _, params, _ = L.Embedding(10, 4, embedding_init="zeros").init(KEY, (4,))
    np.testing.assert_array_equal(params["embedding"], np.zeros((10, 4)))
    shapes = jax.eval_shape(lambda k: L.Embedding(10, 4).init(k, (4,))[1], KEY)
    assert isinstance(shapes["embedding"], jax.ShapeDtypeStruct)
    assert shapes["embedding"].shape == (10, 4)


def test_gradient_scatters_into_the_looked_up_rows():
    layer = L.Embedding(6, 2)
    x = np.asarray([[0, 2, 2], [5, 0, 2]], np.int32)
    g = randn(2, (2, 3, 2))
    grad = jax.grad(lambda p: jnp.sum(g * layer.apply(p, {}, jnp.asarray(x))[0]))(
        {"embedding": jnp.asarray(randn(3, (6, 2)))})["embedding"]
    ref = np.zeros((6, 2), np.float32)
    for index in np.ndindex(*x.shape):
        ref[x[index]] += g[index]
    np.testing.assert_allclose(grad, ref, rtol=1e-6)
    assert not np.any(np.asarray(grad)[[1, 3, 4]])
    with jax.enable_x64(True):
        table = to_f64({"embedding": randn(3, (6, 2))})
        check_grads(lambda p: layer.apply(p, {}, jnp.asarray(x))[0], (table,), order=2)


def test_jit_matches_eager():
    layer = L.Embedding(9, 4)
    _, params, state = layer.init(KEY, (5,))
    x = jnp.asarray(ids(4, (3, 5), 9))
    eager, _ = layer.apply(params, state, x)
    jitted, _ = jax.jit(layer.apply)(params, state, x)
    np.testing.assert_array_equal(jitted, eager)


@pytest.mark.parametrize("bad", [9, 12, -1])
def test_out_of_range_ids(bad):
    """Concrete ids out of range are an error naming the range; under jit, where they
    cannot be checked, their rows are NaN (never a clamped or wrapped valid row)."""
    layer = L.Embedding(9, 4)
    _, params, state = layer.init(KEY, (3,))
    x = np.asarray([[1, bad, 8], [0, 3, 3]], np.int32)
    with pytest.raises(LayerError, match=r"ids must lie in \[0, 9\).*got " + str(bad)):
        layer.apply(params, state, x)
    y, _ = jax.jit(layer.apply)(params, state, jnp.asarray(x))
    assert np.all(np.isnan(y[0, 1]))
    valid = np.ones(x.shape, bool)
    valid[0, 1] = False
    np.testing.assert_array_equal(y[valid], np.asarray(params["embedding"])[x[valid]])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32])
def test_every_integer_dtype_reads_its_own_row_and_never_wraps(dtype):
    """num_embeddings = 300 does not fit uint8 / int8: the bound must not wrap (300 -> 44),
    so the dtype's largest id reads its own row when it is < 300 and a NaN row otherwise."""
    layer = L.Embedding(300, 3)
    _, params, state = layer.init(KEY, (3,))
    table = np.asarray(params["embedding"])
    top = int(np.iinfo(dtype).max)
    x = np.asarray([[0, 7, min(top, 299)]], dtype)
    for apply in (layer.apply, jax.jit(layer.apply)):
        y, _ = apply(params, state, x)
        np.testing.assert_array_equal(y[0], table[x[0].astype(np.int64)])
    if top >= 300:
        over = np.asarray([[1, top, 2]], dtype)
        with pytest.raises(LayerError, match=r"ids must lie in \[0, 300\)"):
            layer.apply(params, state, over)
        y, _ = jax.jit(layer.apply)(params, state, over)
        assert np.all(np.isnan(y[0, 1])) and not np.any(np.isnan(y[0, [0, 2]]))
    if np.iinfo(dtype).min < 0:
        neg = np.asarray([[1, -1, 2]], dtype)
        y, _ = jax.jit(layer.apply)(params, state, neg)
        assert np.all(np.isnan(y[0, 1]))


@pytest.mark.parametrize("big", [2**31, 2**32 + 3, 2**40])
def test_int64_ids_beyond_int32_never_read_a_real_row(big):
    """Without x64, JAX would turn 2**32 + 3 into 3: the eager call raises, and the data
    checks of fit / evaluate / predict stop it before it reaches the device."""
    model = L.serial(L.Input((3,)), L.Embedding(10, 2), L.Flatten(),
                     L.Dense(2), L.ClassificationOutput())
    x = np.asarray([[1, 2, big], [0, 1, 2]], np.int64)
    layer = L.Embedding(10, 2)
    _, params, state = layer.init(KEY, (3,))
    with pytest.raises(LayerError, match="ids must lie in"):
        layer.apply(params, state, x)
    _, params, state = model.init(KEY)
    with pytest.raises(jnet.DataError, match=r"x has dtype int64.*outside the range of int32"):
        jnet.predict(model, params, state, x)
    with pytest.raises(jnet.DataError, match=r"x has dtype int64"):
        jnet.fit(model, "sgd", x, np.array([0, 1]), epochs=1, key=0, verbose=0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bool_])
def test_non_integer_ids_are_an_error(dtype):
    layer = L.Embedding(9, 4)
    _, params, state = layer.init(KEY, (3,))
    with pytest.raises(LayerError, match="expected integer ids"):
        layer.apply(params, state, jnp.zeros((2, 3), dtype))


def test_constructor_and_params_errors():
    for bad in (0, -3, 2.0, True):
        with pytest.raises(LayerError, match="must be a positive int"):
            L.Embedding(bad, 4)
    with pytest.raises(LayerError, match="expected params\\['embedding'\\] of shape \\(9, 4\\)"):
        L.Embedding(9, 4).apply({"embedding": jnp.zeros((8, 4))}, {}, jnp.zeros((1, 2), int))
    assert issubclass(LayerError, jnet.Error)


def test_inside_serial_with_mask_and_mixed_precision():
    model = L.serial(L.Input((4,)), L.Embedding(5, 3), L.Dense(2))
    _, params, state = model.init(KEY)
    x = jnp.asarray(ids(5, (2, 4), 5))
    mask = jnp.asarray([[True] * 4, [True, False, False, False]])
    y, _ = model.apply(params, state, x, mask=mask)
    table = np.asarray(params["embedding_1"]["embedding"])
    ref = table[np.asarray(x)] @ params["dense_2"]["w"] + params["dense_2"]["b"]
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    y16, _ = jnet.precision.mixed(model).apply(params, state, x, mask=mask)
    assert y16.dtype == jnp.float32
    np.testing.assert_allclose(y16, ref, rtol=3e-2, atol=3e-2)


def assert_matches_torch(case):
    params = interop.embedding_from_torch(case["sd"])
    num, features = params["embedding"].shape
    y, _ = L.Embedding(num, features).apply(params, {}, case["x"])
    np.testing.assert_array_equal(y, case["y"])


def test_fixture_parity():
    assert_matches_torch(fixture_case("embedding"))


@pytest.mark.parametrize("seed", [1, 2])
def test_live_torch_parity(seed):
    assert_matches_torch(live_case("embedding", seed))


def test_converter_errors():
    with pytest.raises(jnet.ArgumentError, match="pass the right prefix"):
        interop.embedding_from_torch({"tok.weight": np.ones((3, 2))})
    params = interop.embedding_from_torch({"tok.weight": np.ones((3, 2), np.float32)}, "tok.")
    assert params["embedding"].shape == (3, 2) and params["embedding"].dtype == np.float32
    with pytest.raises(ValueError, match="2-D weight"):
        interop.embedding_from_torch({"weight": np.ones(3)})
