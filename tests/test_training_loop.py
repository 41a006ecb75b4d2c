"""The guarded step of `jnet.fit` (jnet.training.loop): a step whose loss is finite but whose
gradient, update or optimizer state is NaN / inf commits nothing; fit raises TrainingDiverged
with the parameters from before that step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnet
from jnet import layers as L

N, F, BATCH = 24, 3, 8  # 3 steps per epoch, no shuffle: batch k holds examples 8k..8k+7


@jax.custom_vjp
def _nan_gradient(v):
    return v


_nan_gradient.defvjp(lambda v: (v, None), lambda _, g: (jnp.where(g != 0, jnp.nan, 0.0),))


def _loss(outputs, targets):
    """Squared error; the examples with target 99 have a finite value and a NaN gradient."""
    per = (outputs[:, 0] - targets) ** 2
    return jnp.where(targets > 50, _nan_gradient(per), per)


def _data(poison_batch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, F)).astype(np.float32)
    t = rng.normal(size=(N,)).astype(np.float32)
    if poison_batch is not None:
        t[BATCH * poison_batch] = 99.0
    return x, t


def _fit(x, t, **kw):
    model = L.serial(L.Input((F,)), L.Dense(1))
    kw = {"batch_size": BATCH, "key": 0, "verbose": 0, "shuffle": False, "loss": _loss, **kw}
    return jnet.fit(model, jnet.optim.sgd(0.1), x, t, **kw)


@pytest.mark.parametrize("scan", [True, False])
def test_a_finite_loss_with_a_nan_gradient_stops_with_the_last_finite_params(scan):
    x, t = _data(poison_batch=2)  # the third step of each epoch has NaN gradients
    options = jnet.training.Options(scan=scan)
    with pytest.raises(jnet.TrainingDiverged, match=r"epoch 1, step 3 of the epoch") as err:
        _fit(x, t, epochs=3, options=options)
    kept = err.value.result
    assert kept.step == 2
    clean = _fit(x, t, steps=2, options=options)  # the same first 2 steps, never poisoned
    for a, b in zip(jax.tree.leaves(kept.params), jax.tree.leaves(clean.params), strict=True):
        assert np.all(np.isfinite(a))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_nan_gradient_on_the_very_last_step_is_not_returned_as_a_success():
    x, t = _data(poison_batch=2)  # the last step of the run
    with pytest.raises(jnet.TrainingDiverged, match="global step 3") as err:
        _fit(x, t, epochs=1)
    assert err.value.result.step == 2
    assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(err.value.result.params))


class _NanStateOptimizer:
    """SGD whose optimizer state becomes NaN at its third update (the params stay finite)."""

    def init(self, params):
        return {"count": jnp.zeros((), jnp.int32), "trace": jnp.zeros((), jnp.float32)}

    def update(self, grads, opt_state, params):
        count = opt_state["count"] + 1
        trace = jnp.where(count == 3, jnp.nan, opt_state["trace"] + 1.0)
        params = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
        return params, {"count": count, "trace": trace}


def test_a_nan_optimizer_state_is_divergence_too():
    x, t = _data(poison_batch=None)
    model = L.serial(L.Input((F,)), L.Dense(1))
    with pytest.raises(jnet.TrainingDiverged, match="global step 3") as err:
        jnet.fit(model, _NanStateOptimizer(), x, t, epochs=2, batch_size=BATCH, key=0,
                 verbose=0, loss=_loss)
    kept = err.value.result
    assert kept.step == 2 and int(kept.opt_state["count"]) == 2
    assert float(kept.opt_state["trace"]) == 2.0
