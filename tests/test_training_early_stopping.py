"""`EarlyStopping` (jnet.training.early_stopping): the rule on fixed histories, stopping and
restoring the best weights in `fit`, a monitor that is not logged."""

import numpy as np
import pytest
from _toy_data import toy_classification

import jnet
from jnet import layers as L
from jnet.callbacks import EarlyStopping

N, F, C = 50, 4, 3


def _data():
    return toy_classification(N, F, C)


def _classifier():
    return L.serial(L.Input((F,)), L.Dense(8), L.Tanh(), L.Dense(C), L.ClassificationOutput())


def test_the_rule_on_a_fixed_history():
    es = EarlyStopping(monitor="val_loss", patience=2).resolved(True)
    assert es.mode == "min"
    assert es.best_epoch([3.0, 2.0, 2.5, 2.1]) == 1
    assert es.should_stop([3.0, 2.0, 2.5, 2.1])
    assert not es.should_stop([3.0, 2.0, 2.5])
    acc = EarlyStopping(monitor="val_accuracy").resolved(True)
    assert acc.mode == "max" and acc.best_epoch([0.5, 0.9, 0.8]) == 1
    assert EarlyStopping(min_delta=0.5).resolved(False).best_epoch([3.0, 2.8, 2.0]) == 2
    assert EarlyStopping().resolved(False).monitor == "loss"


def test_it_stops_and_restores_the_best_weights():
    x, y = _data()
    rng = np.random.default_rng(7)
    xv, yv = x[:20], rng.integers(0, C, size=20).astype(np.int32)  # noise: val loss turns up
    model = _classifier()
    r = jnet.fit(model, jnet.optim.adam(0.05), x, y, epochs=40, batch_size=8, key=0,
                 verbose=0, validation_data=(xv, yv), callbacks=[EarlyStopping(patience=3)])
    val = r.history["val_loss"]
    best = int(np.argmin(val))
    assert r.epoch < 40 and r.epoch == best + 1 + 3  # stopped `patience` epochs after the best
    got = jnet.evaluate(model, r.params, r.state, xv, yv)
    np.testing.assert_allclose(got["loss"], val[best], rtol=1e-5)


def test_a_monitor_that_is_not_logged_names_the_alternatives_before_training():
    x, y = _data()
    with pytest.raises(jnet.ArgumentError, match="'val_loss', which is not logged") as err:
        jnet.fit(_classifier(), "sgd", x, y, epochs=1, key=0, verbose=0,
                 callbacks=[EarlyStopping(monitor="val_loss")])
    assert str(err.value).startswith("jnet.fit: ") and err.value.result is None


@pytest.mark.parametrize(("kw", "match"), [
    (dict(patience="3"), "patience must be an int"),
    (dict(patience=0), "patience must be >= 1"),
    (dict(mode="up"), "mode must be"),
    (dict(monitor=3), "monitor must be a logged name"),
])
def test_bad_arguments_are_named(kw, match):
    with pytest.raises(jnet.ArgumentError, match=match) as err:
        EarlyStopping(**kw)
    assert str(err.value).startswith("EarlyStopping: ")
