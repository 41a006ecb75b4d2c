"""The optimizer hooks `fit` uses without knowing the optimizer: evaluation weights
(`jnet.optim.eval_params`: ema's average, schedule-free's x_t) and calls per batch (sam's
ascent and descent on one batch), checked against NumPy written from the papers' equations."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_optim_rules import ref_schedule_free

import jnet
from jnet import layers as L
from jnet import optim
from jnet.training import Options

N, D = 32, 3
RNG = np.random.default_rng(1)
X = RNG.normal(size=(N, D)).astype(np.float32)
Y = (X @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * RNG.normal(size=(N, 1))).astype(np.float32)
XV = RNG.normal(size=(16, D)).astype(np.float32)
YV = (XV @ np.array([[1.0], [-2.0], [0.5]])).astype(np.float32)
MSE = functools.partial(jnet.losses.mse, reduction="none")
MODEL = L.serial(L.Input((D,)), L.Dense(1, use_bias=False))
_, PARAMS, STATE = MODEL.init(jax.random.key(3), None)
W0 = np.asarray(jax.tree.leaves(PARAMS)[0], np.float64)


def grad(w, x=X, y=Y):
    x, y = x.astype(np.float64), y.astype(np.float64)
    return 2 * x.T @ (x @ w - y) / len(x)


def loss(w, x=XV, y=YV):
    return float(np.mean((x.astype(np.float64) @ w - y) ** 2))


def run(optimizer, epochs, **kwargs):
    kwargs.setdefault("options", Options(params=PARAMS, state=STATE))
    return jnet.fit(MODEL, optimizer, X, Y, loss=MSE, batch_size=None, epochs=epochs, key=0,
                    verbose=0, validation_data=(XV, YV), **kwargs)


def leaf(tree):
    return np.asarray(jax.tree.leaves(tree)[0], np.float64)


@pytest.mark.parametrize("eval_weights", ["optimizer", "params"])
def test_ema_validates_with_the_average_on_request(eval_weights):
    lr, decay, epochs = 0.05, 0.8, 6
    result = run(optim.ema(optim.sgd(lr), decay), epochs,
                 options=Options(params=PARAMS, state=STATE, eval_weights=eval_weights))
    w, average, want = W0.copy(), W0.copy(), []
    for _ in range(epochs):  # θ_t = θ_{t-1} - η g_t;  θ̄_t = δ θ̄_{t-1} + (1-δ) θ_t
        w = w - lr * grad(w)
        average = decay * average + (1 - decay) * w
        want.append(loss(average if eval_weights == "optimizer" else w))
    np.testing.assert_allclose(result.history["val_loss"], want, rtol=1e-5)
    np.testing.assert_allclose(leaf(result.eval_params()), average, rtol=1e-5)
    np.testing.assert_allclose(leaf(result.params), w, rtol=1e-5)  # training holds θ


def test_schedule_free_validates_and_returns_x():
    lr, epochs, state = 0.05, 5, {}
    result = run(optim.schedule_free_sgd(lr, momentum=0.9), epochs)
    step, y, want = ref_schedule_free(beta=0.9), W0.copy(), []
    for t in range(1, epochs + 1):  # Defazio et al. 2024: x_t = y_t + (1 - 1/β)(z_t - y_t)
        y = step(y, grad(y), state, t, lr)
        x = y + (1 - 1 / 0.9) * (state["z"] - y)
        want.append(loss(x))
    np.testing.assert_allclose(result.history["val_loss"], want, rtol=1e-5)
    np.testing.assert_allclose(leaf(result.eval_params()), x, rtol=1e-5)
    np.testing.assert_allclose(leaf(result.params), y, rtol=1e-5)


def test_population_eval_params_are_per_member():
    decays, lr, epochs = [0.5, 0.9], 0.05, 4
    tile = lambda tree: jax.tree.map(lambda a: jnp.stack([a, a]), tree)  # noqa: E731
    result = run(lambda decay: optim.ema(optim.sgd(lr), decay), epochs,
                 population={"decay": decays},
                 options=Options(params=tile(PARAMS), state=tile(STATE)))
    got = leaf(result.eval_params())
    for i, decay in enumerate(decays):
        w, average = W0.copy(), W0.copy()
        for _ in range(epochs):
            w = w - lr * grad(w)
            average = decay * average + (1 - decay) * w
        np.testing.assert_allclose(got[i], average, rtol=1e-5)
        assert result.history["val_loss"][-1][i] == pytest.approx(loss(average), rel=1e-5)


def test_other_optimizers_evaluate_their_params():
    params = {"w": jnp.arange(3.0)}
    opt = optim.adam(1e-2)
    assert optim.eval_params(params, opt.init(params)) is params
    assert optim.eval_params(params, None) is params


def test_sam_in_fit_is_the_papers_update_on_each_batch():
    # Mini-batches in order (shuffle=False): both gradients of each update on one batch.
    lr, rho, batch, epochs = 0.1, 0.05, 8, 2
    result = jnet.fit(MODEL, optim.sam(optim.sgd(lr), rho), X, Y, loss=MSE, batch_size=batch,
                      epochs=epochs, key=0, verbose=0, shuffle=False,
                      options=Options(params=PARAMS, state=STATE))
    w, logged = W0.copy(), []
    for _ in range(epochs):
        losses = []
        for i in range(0, N, batch):  # Foret et al. 2021, Algorithm 1
            xb, yb = X[i:i + batch], Y[i:i + batch]
            losses.append(loss(w, xb, yb))
            g = grad(w, xb, yb)
            e = rho * g / np.linalg.norm(g)
            w = w - lr * grad(w + e, xb, yb)
        logged.append(np.mean(losses))
    np.testing.assert_allclose(leaf(result.params), w, rtol=1e-5)
    np.testing.assert_allclose(result.history["loss"], logged, rtol=1e-5)  # loss at θ
    assert result.step == epochs * N // batch
    assert int(result.opt_state.step) == 2 * result.step  # two calls per update


def test_make_train_step_calls_sam_twice_per_batch():
    step = jax.jit(jnet.make_train_step(MODEL, optim.sam(optim.sgd(0.1), 0.05), loss=MSE))
    opt_state = optim.sam(optim.sgd(0.1), 0.05).init(PARAMS)
    params, _, opt_state, _ = step(PARAMS, STATE, opt_state, (X, Y), jax.random.key(0))
    g = grad(W0)
    want = W0 - 0.1 * grad(W0 + 0.05 * g / np.linalg.norm(g))
    np.testing.assert_allclose(leaf(params), want, rtol=1e-5)
    assert int(opt_state.step) == 2


def test_eval_weights_option_is_checked():
    with pytest.raises(jnet.Error, match="eval_weights"):
        Options(eval_weights="ema")
