"""`accumulate` (k micro-batches per update equal one large-batch step, one buffer) and `ema`
(averaged params, against a NumPy moving average), inside loops, `jnet.fit` and `jax.vmap`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnet
from jnet import layers as L
from jnet import optim

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 4)).astype(np.float32)
Y = (X[:, 0] + X[:, 1] > 0).astype(np.int32)


def model():
    return L.serial(L.Input((4,)), L.Dense(8), L.Tanh(), L.Dense(2), L.ClassificationOutput())


def init_params():
    _, params, _ = model().init(jax.random.key(0), (4,))
    return params


_, _, STATE = model().init(jax.random.key(0), (4,))


def loss(params, x, y):
    logits, _ = model().apply(params, STATE, x)
    return jnp.mean(jnet.losses.softmax_cross_entropy(logits, y))


grad = jax.jit(jax.grad(loss))


@pytest.mark.parametrize("base", [lambda: optim.sgd(0.1), lambda: optim.adamw(1e-2)],
                         ids=["sgd", "adamw"])
def test_k_micro_batches_equal_one_large_batch_step(base):
    k, big = 4, 32
    acc, ref = optim.accumulate(base(), k), base()
    p_acc = p_ref = init_params()
    s_acc, s_ref = acc.init(p_acc), ref.init(p_ref)
    for update in range(2):
        x, y = X[update * big:(update + 1) * big], Y[update * big:(update + 1) * big]
        p_ref, s_ref = ref.update(grad(p_ref, x, y), s_ref, p_ref)
        before = p_acc
        for i in range(k):
            sl = slice(i * big // k, (i + 1) * big // k)
            p_acc, s_acc = acc.update(grad(p_acc, x[sl], y[sl]), s_acc, p_acc)
            if i < k - 1:  # nothing moves before the k-th micro-batch, to the bit
                for a, b in zip(jax.tree.leaves(p_acc), jax.tree.leaves(before), strict=True):
                    np.testing.assert_array_equal(np.asarray(a).view(np.uint32),
                                                  np.asarray(b).view(np.uint32))
        for a, b in zip(jax.tree.leaves(p_acc), jax.tree.leaves(p_ref), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    assert int(s_acc.step) == 2 * k and int(s_acc.inner[0].updates) == 2
    # One gradient buffer, not k: the state is the base state plus one params-shaped sum.
    n = sum(np.size(x) for x in jax.tree.leaves(p_acc))
    extra = sum(np.size(x) for x in jax.tree.leaves(s_acc)) - sum(
        np.size(x) for x in jax.tree.leaves(s_ref))
    assert extra == n + 2


def test_fit_with_accumulate_equals_fit_with_the_large_batch():
    kw = {"epochs": 2, "key": 0, "verbose": 0, "shuffle": False, "params": init_params()}
    small = jnet.fit(model(), optim.accumulate(optim.sgd(0.1), 4), X, Y, batch_size=8, **kw)
    large = jnet.fit(model(), optim.sgd(0.1), X, Y, batch_size=32, **kw)
    for a, b in zip(jax.tree.leaves(small.params), jax.tree.leaves(large.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


def test_ema_params_follow_a_numpy_moving_average():
    decay, lr = 0.9, 0.1
    opt = optim.ema(optim.sgd(lr), decay)
    p = {"w": jnp.asarray([1.0, -2.0, 0.5])}
    state = opt.init(p)
    theta, average = np.array([1.0, -2.0, 0.5]), np.array([1.0, -2.0, 0.5])
    for t in range(1, 30):
        g = np.sin(theta * t)
        theta = theta - lr * g.astype(np.float32)
        average = decay * average + (1 - decay) * theta
        p, state = opt.update({"w": jnp.sin(p["w"] * t)}, state, p)
        np.testing.assert_allclose(np.asarray(p["w"]), theta, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(optim.ema_params(state)["w"]), average,
                                   rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(average - theta)) > 1e-3  # the average lags: a real difference


def test_wrappers_vmap_over_hyperparameters():
    def final(lr, decay):
        opt = optim.ema(optim.accumulate(optim.momentum(lr, 0.5), 3), decay)
        p = jnp.asarray([1.0, -1.0])

        def body(carry, t):
            p, s = carry
            return opt.update(jnp.cos(p * t), s, p), None

        (p, s), _ = jax.lax.scan(body, (p, opt.init(p)), jnp.arange(1.0, 13.0))
        return p, optim.ema_params(s)

    lrs, decays = jnp.array([0.05, 0.2]), jnp.array([0.5, 0.9])
    batched = jax.vmap(final)(lrs, decays)
    for i in range(2):
        one = final(float(lrs[i]), float(decays[i]))
        for b, o in zip(batched, one, strict=True):
            np.testing.assert_allclose(np.asarray(b[i]), np.asarray(o), rtol=1e-6, atol=1e-7)


def test_wrappers_keep_frozen_arrays_and_log_the_base_rate():
    p = {"a": jnp.ones(2), "b": jnp.ones(2)}
    opt = optim.accumulate(optim.chain(optim.adamw(optim.step_decay_schedule(0.1, 1, 0.5)),
                                       optim.freeze({"a": True, "b": False})), 2)
    s = opt.init(p)
    for _ in range(4):
        p, s = opt.update({"a": jnp.ones(2), "b": jnp.ones(2)}, s, p)
    np.testing.assert_array_equal(np.asarray(p["a"]), np.ones(2))
    assert float(p["b"][0]) < 1.0
    assert float(optim.current_learning_rate(s)) == pytest.approx(0.05)  # update 2's rate


@pytest.mark.parametrize("make, match", [
    (lambda: optim.accumulate(optim.sgd(), 0), "positive int"),
    (lambda: optim.accumulate("sgd", 2), "Optimizer"),
    (lambda: optim.ema(optim.sgd(), 1.0), "decay"),
    (lambda: optim.ema_params(optim.sgd().init(jnp.ones(2))), "ema"),
])
def test_bad_wrapper_arguments(make, match):
    with pytest.raises(optim.OptimizerError, match=match):
        make()
