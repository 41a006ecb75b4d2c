"""`jnet.fit` under `jax.vmap` / `jax.jit` / `jax.grad`: every traced value that reaches it
(traced data, a traced budget, an optimizer, model, loss or population function built from a
traced hyperparameter) is one `jnet.ArgumentError` naming what was traced and where, with the
fix (``population=``), raised before any work (no init, no loss evaluation, no compilation)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnet
from jnet import layers as L
from jnet import optim

N, F, C = 16, 3, 2
X = np.random.default_rng(0).normal(size=(N, F)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int32)
RATES = jnp.asarray([0.1, 0.2])


class _Counted:
    """A model whose init and a loss whose calls are counted: both must stay at zero."""

    def __init__(self):
        self.inits = 0
        self.losses = 0
        dense = L.Dense(C)

        def init_fn(key, in_shape):
            self.inits += 1
            return dense.init_fn(key, in_shape)

        self.model = L.serial(L.Layer(init_fn, dense.apply_fn, kind="Counted"),
                              L.ClassificationOutput())

    def loss(self, outputs, targets):
        self.losses += 1
        return jnet.losses.softmax_cross_entropy(outputs, targets, reduction="none")


def _scaled_by(s):
    """A user's layer y = s·x closing over `s`."""
    return L.Layer(lambda key, in_shape: (in_shape, {}, {}),
                   lambda params, state, x, **kw: (x * s, state), kind="ScaledBy")


def _fit(run, optimizer="sgd", x=X, y=Y, **kw):
    kw = {"epochs": 1, "batch_size": 8, "key": 0, "verbose": 0, "loss": run.loss, **kw}
    return jnet.fit(run.model, optimizer, x, y, **kw).history["loss"][-1]


def _transformed(transform, fn):
    """`fn` of one traced scalar under `transform`, called on a value that suits it."""
    if transform == "vmap":
        return lambda: jax.vmap(fn)(RATES)
    return lambda: getattr(jax, transform)(fn)(RATES[0])


CASES = {
    # name: (fn of the traced scalar s, what the message must name)
    "sgd_learning_rate": (lambda run, s: _fit(run, optim.sgd(s)),
                          r"optimizer holds .*learning_rate"),
    "adam_b1": (lambda run, s: _fit(run, optim.adam(1e-3, b1=s)), r"optimizer holds .*'b1'"),
    "adamw_weight_decay": (lambda run, s: _fit(run, optim.adamw(1e-3, weight_decay=s)),
                           r"optimizer holds .*weight_decay"),
    "chained_clip": (lambda run, s: _fit(run, optim.chain(optim.clip_by_global_norm(s),
                                                          optim.sgd(0.1))),
                     r"optimizer holds .*max_norm"),
    "x": (lambda run, s: _fit(run, x=X * s), r"\bx is a JAX tracer .*float32\[16,3\]"),
    "y_one_hot": (lambda run, s: _fit(run, y=jax.nn.one_hot(Y, C) * s),
                  r"\by is a JAX tracer .*float32\[16,2\]"),
    "validation_x": (lambda run, s: _fit(run, validation_data=(X * s, Y)),
                     r"validation_data\[0\] is a JAX tracer"),
    "loss_closure": (lambda run, s: _fit(run, loss=lambda o, t: run.loss(o, t) * s),
                     r"loss holds .*'s'"),
    "model_layer_closure": (lambda run, s: jnet.fit(
        L.serial(L.Dense(C), _scaled_by(s), L.ClassificationOutput()), "sgd", X, Y, epochs=1,
        key=0, verbose=0).params, r"model holds .*'s'"),
    "population_function": (lambda run, s: _fit(
        run, lambda learning_rate: optim.sgd(learning_rate * s),
        population={"learning_rate": [0.1, 0.2]}), r"optimizer holds .*'s'"),
    "initial_params": (lambda run, s: _fit(run, options=jnet.training.Options(
        params=[{"w": jnp.ones((F, C)) * s, "b": jnp.zeros(C)}, {}])),
                       r"options\.params\[0\]\['w'\] is a JAX tracer"),
}


@pytest.mark.parametrize("transform", ["vmap", "jit", "grad"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_traced_value_is_named_before_any_work(case, transform):
    fn, named = CASES[case]
    run = _Counted()
    with pytest.raises(jnet.ArgumentError) as err:
        _transformed(transform, lambda s: fn(run, s))()
    message = str(err.value)
    assert message.startswith("jnet.fit: ")
    assert "jax.vmap / jax.jit / jax.grad" in message and "population=" in message
    assert err.value.__cause__ is None  # found by the check, not a JAX error caught late
    assert re.search(named, message), message
    assert (run.inits, run.losses) == (0, 0)


@pytest.mark.parametrize("transform", ["vmap", "jit"])
def test_a_traced_epoch_count_is_named(transform):
    run = _Counted()
    make = (lambda: jax.vmap(lambda e: _fit(run, epochs=e))(jnp.asarray([1, 2]))) \
        if transform == "vmap" else (lambda: jax.jit(lambda e: _fit(run, epochs=e))(1))
    with pytest.raises(jnet.ArgumentError, match=r"epochs is a JAX tracer \(\w+ int32\[\]\).*"
                                                 r"population="):
        make()
    assert run.inits == 0


def test_concrete_values_closed_over_still_train():
    """No false alarm: an optimizer and a loss closing over concrete arrays (not tracers)."""
    lr = jnp.asarray(0.1)
    weight = jnp.asarray(2.0)
    model = L.serial(L.Dense(C), L.ClassificationOutput())
    result = jnet.fit(model, optim.adam(lr, b1=jnp.asarray(0.8)),
                      X, Y, epochs=1, batch_size=8, key=0, verbose=0,
                      loss=lambda o, t: weight * jnet.losses.softmax_cross_entropy(
                          o, t, reduction="none"))
    assert np.isfinite(result.history["loss"][-1])


@pytest.mark.parametrize("transform", ["vmap", "jit"])
def test_evaluate_under_a_transformation_points_to_make_eval_step(transform):
    model = L.serial(L.Dense(C), L.ClassificationOutput())
    _, params, state = model.init(jax.random.key(0), (F,))

    def scaled_params(s):
        return jnet.evaluate(model, jax.tree.map(lambda p: p * s, params), state, X, Y)["loss"]

    with pytest.raises(jnet.ArgumentError, match=r"jnet\.evaluate: params\['dense_0'\]\['\w'\] "
                                                 r"is a JAX tracer.*make_eval_step"):
        _transformed(transform, scaled_params)()
