"""Dropout: inverted scaling, rate = drop probability, explicit keys, statistics, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import randn
from jax.test_util import check_grads

from jnet import layers as L
from jnet.layers import LayerError

pytestmark = pytest.mark.usefixtures("fast_compiling_prng")

KEY = jax.random.key(0)


def test_identity_in_evaluation_and_at_rate_zero():
    x = jnp.asarray(randn(0, (4, 10)))
    for layer, kwargs in [(L.Dropout(0.5), {}), (L.Dropout(0.5), {"key": KEY}),
                          (L.Dropout(0.0), {"train": True})]:
        y, state = layer.apply({}, {}, x, **kwargs)
        np.testing.assert_array_equal(y, x)
        assert state == {}


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_training_drops_rate_and_keeps_the_expectation(rate):
    x = np.abs(randn(1, (200, 500))) + 0.5  # nonzero, so dropped entries are exactly the zeros
    y = np.asarray(L.Dropout(rate).apply({}, {}, jnp.asarray(x), key=KEY, train=True)[0])
    dropped = y == 0
    # 100k Bernoulli draws: the dropped fraction's s.e. is <= 0.0016.
    assert dropped.mean() == pytest.approx(rate, abs=0.01)
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - rate), rtol=1e-6)
    # E[y] = x: averaged over many keys, each entry's mean approaches x.
    keys = jax.random.split(jax.random.key(1), 400)
    ys = jax.vmap(lambda k: L.Dropout(rate).apply({}, {}, jnp.asarray(x[:5, :20]), key=k,
                                                  train=True)[0])(keys)
    se = x[:5, :20] * np.sqrt(rate / (1 - rate) / 400)
    assert np.all(np.abs(np.asarray(ys).mean(0) - x[:5, :20]) < 5 * se)


def test_keys_decide_the_mask():
    x = jnp.ones((8, 64))
    layer = L.Dropout(0.5)
    a = layer.apply({}, {}, x, key=jax.random.key(1), train=True)[0]
    b = layer.apply({}, {}, x, key=jax.random.key(1), train=True)[0]
    c = layer.apply({}, {}, x, key=jax.random.key(2), train=True)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_gradient_is_the_scaled_mask():
    rate = 0.25
    layer = L.Dropout(rate)
    with jax.enable_x64(True):
        x = jnp.asarray(randn(2, (3, 7), np.float64))

        def f(x):
            return layer.apply({}, {}, x, key=KEY, train=True)[0]

        check_grads(f, (x,), order=2)
        g = jax.grad(lambda x: f(x).sum())(x)
        mask = np.asarray(f(x)) != 0
        np.testing.assert_allclose(g, mask / (1 - rate))


def test_dropout_errors():
    with pytest.raises(LayerError, match=r"Dropout.*needs a PRNG key when train=True.*key="):
        L.Dropout(0.5).apply({}, {}, jnp.ones((2, 3)), train=True)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(LayerError, match=r"probability to drop.*0 <= rate < 1"):
            L.Dropout(bad)
    with pytest.raises(LayerError, match=r"Dropout layer 'dropout_1'.*PRNG key"):
        model = L.serial(L.Dense(3), L.Dropout(0.2))
        _, params, state = model.init(KEY, (2,))
        model.apply(params, state, jnp.ones((1, 2)), train=True)
