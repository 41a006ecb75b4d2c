"""Mixed precision: bfloat16 compute, float32 parameters / state / outputs / gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnet import layers as L
from jnet.precision import cast_floating, mixed


def _mlp():
    return L.serial(L.Input((12,)), L.Dense(32), L.ReLU(), L.Dense(5), L.ClassificationOutput())


def _cnn():
    return L.serial(L.Input((8, 8, 2)), L.Conv2D(4, (3, 3), padding="SAME"), L.BatchNorm(),
                    L.ReLU(), L.MaxPool2D((2, 2)), L.Flatten(), L.Dropout(0.3), L.Dense(3),
                    L.ClassificationOutput())


def _data(shape, n=16, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.standard_normal((n, *shape)), jnp.float32),
            jnp.asarray(rng.integers(0, classes, n), jnp.int32))


def _dtypes(tree):
    return {str(a.dtype) for a in jax.tree.leaves(tree)}


def _train_apply(model):
    return jax.jit(lambda p, s, x, k: model.apply(p, s, x, key=k, train=True))


def _rel_err(a, b):
    return float(jnp.linalg.norm(jnp.ravel(a - b)) / jnp.linalg.norm(jnp.ravel(b)))


@pytest.mark.parametrize("build, shape, classes", [(_mlp, (12,), 5), (_cnn, (8, 8, 2), 3)])
def test_outputs_params_state_and_grads(build, shape, classes):
    model = build()
    model16 = mixed(model)
    key = jax.random.key(0)
    _, params, state = model.init(key)
    _, params16, state16 = model16.init(key)
    # Same init: same names, shapes, values, all float32.
    jax.tree.map(np.testing.assert_array_equal, params16, params)
    assert _dtypes(params16) == {"float32"}
    x, y = _data(shape, classes=classes)

    out32, st32 = _train_apply(model)(params, state, x, key)
    out16, st16 = _train_apply(model16)(params, state16, x, key)
    assert out16.dtype == jnp.float32
    assert _rel_err(out16, out32) < 3e-2  # bfloat16 keeps 8 mantissa bits: ~0.4% per op
    assert _rel_err(out16, out32) > 0  # the computation really changed precision
    assert jax.tree.structure(st16) == jax.tree.structure(st32)
    assert _dtypes(st16) <= {"float32"}
    for a, b in zip(jax.tree.leaves(st16), jax.tree.leaves(st32), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-2, atol=2e-2)

    def loss(m):
        def f(p, y):
            out, _ = m.apply(p, state, x, key=key, train=True)
            return jnp.mean(m.head.loss(out, y))

        return f

    g32 = jax.jit(jax.grad(loss(model)))(params, y)
    g16 = jax.jit(jax.grad(loss(model16)))(params, y)
    assert _dtypes(g16) == {"float32"}
    # Compared as one vector: a conv bias before BatchNorm has a zero gradient in exact
    # arithmetic, so its own relative error is rounding noise over zero.
    flat = lambda g: jnp.concatenate([a.ravel() for a in jax.tree.leaves(g)])  # noqa: E731
    assert _rel_err(flat(g16), flat(g32)) < 5e-2


def test_matmuls_run_in_bfloat16():
    model16 = mixed(_mlp())
    _, params, state = model16.init(jax.random.key(0))
    x, _ = _data((12,))
    jaxpr = jax.make_jaxpr(lambda p, x: model16.apply(p, state, x))(params, x)
    dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
    assert len(dots) == 2
    assert all(v.aval.dtype == jnp.bfloat16 for e in dots for v in e.invars)


def test_batchnorm_kept_in_float32():
    """BatchNorm sees the bfloat16-rounded input in float32, so its output equals a float32
    BatchNorm on that input and is not rounded to bfloat16; with a keep_float32 that keeps
    nothing it is."""
    bn = L.BatchNorm()
    model = L.serial(L.Input((6,)), bn)
    x, _ = _data((6,), n=32)
    _, params, state = model.init(jax.random.key(0))
    y, new_state = _train_apply(mixed(model))(params, state, x, None)
    x_rounded = x.astype(jnp.bfloat16).astype(jnp.float32)
    mean, var = x_rounded.mean(0), x_rounded.var(0)
    np.testing.assert_allclose(y, (x_rounded - mean) / np.sqrt(var + 1e-5), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(new_state["batch_norm_1"]["mean"], 0.1 * mean, rtol=1e-5,
                               atol=1e-7)
    assert new_state["batch_norm_1"]["mean"].dtype == jnp.float32
    assert not np.array_equal(y, y.astype(jnp.bfloat16).astype(jnp.float32))

    keep_none = mixed(model, keep_float32=lambda layer: False)
    y16, state16 = _train_apply(keep_none)(params, state, x, None)
    np.testing.assert_array_equal(y16, y16.astype(jnp.bfloat16).astype(jnp.float32))
    assert state16["batch_norm_1"]["mean"].dtype == jnp.float32  # state keeps its dtype


def test_containers_are_rebuilt_with_the_same_names():
    model = L.serial(
        L.Input((10,)), L.Dense(8),
        L.residual(L.serial(L.Dense(8), L.ReLU())),
        L.FanOut(2), L.parallel(L.Dense(4), L.Dense(4, name="other")), L.FanInSum(),
        L.Dense(3),
    )
    model16 = mixed(model)
    _, params, state = model.init(jax.random.key(1))
    _, params16, _ = model16.init(jax.random.key(1))
    assert jax.tree.structure(params16) == jax.tree.structure(params)
    x, _ = _data((10,))
    out, _ = jax.jit(model.apply)(params, state, x)
    out16, _ = jax.jit(model16.apply)(params, state, x)
    assert out16.dtype == jnp.float32
    assert 0 < _rel_err(out16, out) < 3e-2


def test_jitted_train_step_keeps_float32_and_compiles_once():
    model16 = mixed(_cnn())
    _, params, state = model16.init(jax.random.key(0))
    x, y = _data((8, 8, 2), classes=3)

    @jax.jit
    def step(params, state, key, y):
        def f(p):
            out, new_state = model16.apply(p, state, x, key=key, train=True)
            return jnp.mean(model16.head.loss(out, y)), new_state

        (loss, state), grads = jax.value_and_grad(f, has_aux=True)(params)
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), state, loss

    losses = []
    for i in range(3):
        params, state, loss = step(params, state, jax.random.key(i), y)
        losses.append(float(loss))
    assert step._cache_size() == 1
    assert _dtypes(params) == {"float32"} and _dtypes(state) == {"float32"}
    assert all(np.isfinite(losses))


def test_cast_floating_leaves_integers_and_keys_alone():
    tree = {"w": jnp.ones(3), "n": jnp.arange(3), "k": jax.random.key(0), "s": np.float32(2)}
    out = cast_floating(tree, jnp.bfloat16)
    assert out["w"].dtype == jnp.bfloat16 and out["s"].dtype == jnp.bfloat16
    assert out["n"].dtype == tree["n"].dtype and out["k"] is tree["k"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="loss scaling"):
        mixed(_mlp(), jnp.float16)
    with pytest.raises(ValueError, match="expected a jnet Layer"):
        mixed(lambda x: x)
    x, _ = _data((12,))
    model = _mlp()
    _, params, state = model.init(jax.random.key(0))
    out, _ = jax.jit(mixed(model, jnp.float32).apply)(params, state, x)
    np.testing.assert_allclose(out, jax.jit(model.apply)(params, state, x)[0], rtol=1e-6)
