"""`jnet.lr_find` on linear regression, where the stable range of gradient descent is known:
GD on L(w) = mean((Xw - y)^2) has Hessian H = 2 XᵀX / n and diverges for η > 2 / λ_max(H)."""

from __future__ import annotations

import functools

import jax
import matplotlib
import numpy as np
import pytest

import jnet
from jnet import layers as L
from jnet import optim

matplotlib.use("Agg")

N, D, STEPS = 64, 4, 40
RNG = np.random.default_rng(0)
X = (RNG.normal(size=(N, D)) * np.array([1.0, 2.0, 0.5, 0.3])).astype(np.float32)
Y = (X @ RNG.normal(size=(D, 1))).astype(np.float32)
MSE = functools.partial(jnet.losses.mse, reduction="none")
EDGE = 2 / np.linalg.eigvalsh(2 * X.astype(np.float64).T @ X / N).max()
MODEL = L.serial(L.Input((D,)), L.Dense(1, use_bias=False))


def numpy_gd_loss(w0: np.ndarray, lr: float, steps: int) -> float:
    """The loss fit logs in the last full-batch epoch: at w after steps - 1 updates."""
    x, y, w = X.astype(np.float64), Y.astype(np.float64), w0.astype(np.float64)
    for _ in range(steps - 1):
        w = w - lr * 2 * x.T @ (x @ w - y) / N
    return float(np.mean((x @ w - y) ** 2))


@pytest.fixture(scope="module")
def found() -> jnet.training.lr_find.LRFindResult:
    # Rates log-spaced from 1e-3 to 1, none within 10% of the edge (about 0.31).
    return jnet.lr_find(MODEL, "sgd", X, Y, loss=MSE, batch_size=None, steps=STEPS,
                        min_lr=1e-3, max_lr=1.0, num=16)


def test_curve_is_gradient_descent_at_each_rate_from_one_start(found):
    w0 = np.asarray(found.initial_params["dense_1"]["w"])
    assert found.initial_loss == pytest.approx(np.mean((X @ w0 - Y) ** 2), rel=1e-5)
    np.testing.assert_allclose(found.rates, np.geomspace(1e-3, 1.0, 16))
    for rate, loss in zip(found.rates, found.losses, strict=True):
        want = numpy_gd_loss(w0, rate, STEPS)
        if want < 1e6:
            assert loss == pytest.approx(want, rel=2e-3), rate
        else:
            assert loss > 1e5 or not np.isfinite(loss), rate


def test_blow_up_lands_at_two_over_lambda_max_and_suggestion_is_below(found):
    assert not np.any(np.abs(found.rates / EDGE - 1) < 0.1)  # the grid avoids the edge
    stable = found.rates < EDGE
    assert np.all(found.losses[stable] < found.initial_loss)
    assert np.all(found.losses[~stable] > 1e3 * found.initial_loss)
    assert found.best == pytest.approx(found.rates[stable][-1])  # largest stable rate
    assert found.suggestion == pytest.approx(found.best / 2)
    assert found.suggestion < EDGE


def test_rule_name_and_factory_give_the_same_curve(found):
    again = jnet.lr_find(MODEL, lambda learning_rate: optim.sgd(learning_rate), X, Y, loss=MSE,
                         batch_size=None, steps=STEPS, min_lr=1e-3, max_lr=1.0, num=16)
    np.testing.assert_array_equal(again.losses, found.losses)
    member = found.fit_result.member(3)  # rate 3's own run, its params after the budget
    assert jax.tree.leaves(member.params)[0].shape == (D, 1)


def test_plot_draws_the_curve_and_the_suggestion(found):
    ax = found.plot()
    x_values = np.concatenate([line.get_xdata() for line in ax.get_lines()])
    assert found.suggestion in x_values and found.rates[0] in x_values
    assert ax.get_xscale() == "log"


@pytest.mark.parametrize("kwargs, match", [
    (dict(optimizer=optim.sgd(0.1)), "rate is already fixed"),
    (dict(optimizer="sgdd"), "sgd"),
    (dict(min_lr=1.0, max_lr=0.1), "min_lr < max_lr"),
    (dict(num=1), "num"),
    (dict(steps=0), "steps"),
    (dict(min_lr=10.0, max_lr=100.0), "no rate"),
    (dict(min_lr=1e5, max_lr=1e6, steps=20), "every rate"),  # NaN for every member
])
def test_errors_name_the_argument(kwargs, match):
    args = dict(optimizer="sgd", min_lr=1e-3, max_lr=1.0, num=3, steps=5)
    args.update(kwargs)
    with pytest.raises(jnet.Error, match=match):
        jnet.lr_find(MODEL, args.pop("optimizer"), X, Y, loss=MSE, batch_size=None, **args)
