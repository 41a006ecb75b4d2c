"""Argument checks of `fit` made before any work (jnet.training.setup): keys that are not
one key, population hyperparameters the factory does not take, fit under jax.vmap."""

import jax
import numpy as np
import pytest

import jnet
from jnet import layers as L

N, F, C = 24, 4, 3


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, F)).astype(np.float32)
    return x, rng.integers(0, C, N).astype(np.int32)


def _model():
    return L.serial(L.Input((F,)), L.Dense(C), L.ClassificationOutput())


def _fit(optimizer="sgd", **kw):
    x, y = _data()
    calls = []
    kw = {"epochs": 1, "batch_size": 8, "key": 0, "verbose": 0,
          "callbacks": [lambda epoch, logs, history: calls.append(epoch)], **kw}
    return jnet.fit(_model(), optimizer, x, y, **kw), calls


@pytest.mark.parametrize(("key", "match"), [
    (jax.random.split(jax.random.key(0), 3), r"ONE PRNG key, got a batch of keys of shape \(3,\)"),
    (np.zeros((3, 2), np.uint32), r"ONE raw PRNGKey of shape \(2,\), got uint32 shape \(3, 2\)"),
    ("0", "key must be a PRNG key .* got str"),
    (2**70, "key must be an int seed within 64 bits"),
    (2**63, "key must be an int seed within 64 bits"),
    (-(2**63) - 1, "key must be an int seed within 64 bits"),
])
def test_keys_that_are_not_one_key_are_named_before_any_work(key, match):
    calls = []
    with pytest.raises(jnet.Error, match=match) as err:
        _fit(key=key, callbacks=[lambda epoch, logs, history: calls.append(epoch)])
    assert str(err.value).startswith("jnet.fit: key") and calls == []


def test_a_raw_prng_key_and_the_largest_seeds_still_work():
    a, _ = _fit(key=jax.random.PRNGKey(3))
    b, _ = _fit(key=3)
    assert a.step == b.step == 3
    assert _fit(key=2**63 - 1)[0].step == _fit(key=-(2**63))[0].step == 3


def test_a_population_hyperparameter_the_factory_does_not_take_is_named():
    def make(learning_rate):
        return jnet.optim.sgd(learning_rate)

    calls = []
    with pytest.raises(jnet.ArgumentError, match=r"population names \['momentum'\].*takes "
                       r"\['learning_rate'\]") as err:
        _fit(make, population={"learning_rate": [0.1, 0.2], "momentum": [0.0, 0.9]},
             callbacks=[lambda epoch, logs, history: calls.append(epoch)])
    assert str(err.value).startswith("jnet.fit: ") and calls == []


def test_a_factory_taking_keywords_accepts_any_hyperparameter():
    result, _ = _fit(lambda **hp: jnet.optim.sgd(hp["learning_rate"]),
                     population={"learning_rate": [0.1, 0.2]})
    assert result.params["dense_1"]["w"].shape == (2, F, C)


def test_vmap_of_fit_over_a_hyperparameter_points_to_population():
    x, y = _data()

    def train(learning_rate):
        return jnet.fit(_model(), jnet.optim.sgd(learning_rate), x, y, epochs=1, key=0,
                        verbose=0).params

    with pytest.raises(jnet.Error, match="population=") as err:
        jax.vmap(train)(np.array([0.1, 0.2], np.float32))
    assert str(err.value).startswith("jnet.fit: ")
