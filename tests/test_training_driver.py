"""Driver habits: optimizers by name, int seeds, steps= budgets, compile timing, live plots to
PNG, a finished bar after early stopping, and argument checks raised before training."""

import jax
import numpy as np
import pytest
from _toy_data import toy_classification

import jnet
from jnet import layers as L

N, F, C = 50, 4, 3


def _data(n=N, seed=0):
    return toy_classification(n, F, C, seed)


def _model():
    return L.serial(L.Input((F,)), L.Dense(8), L.Tanh(), L.Dense(C), L.ClassificationOutput())


def _fit(optimizer="sgd", *, scan=None, **kw):
    x, y = _data()
    kw = {"epochs": 2, "batch_size": 16, "key": 0, "verbose": 0,
          "options": jnet.training.Options(scan=scan), **kw}
    if "steps" in kw:
        kw.pop("epochs")
    return jnet.fit(_model(), optimizer, kw.pop("x", x), kw.pop("y", y), **kw)


def _same(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_optimizer_by_name_and_int_seed_equal_the_explicit_forms():
    a = _fit("adam", key=0)
    b = _fit(jnet.optim.adam(), key=jax.random.key(0))
    _same(a.params, b.params)


@pytest.mark.parametrize(("optimizer", "match"), [
    ("adamm", "'adamm' is not a rule name"),
    (jnet.optim.adam, r"Call it: jnet\.optim\.adam\(\)"),
])
def test_unknown_names_and_uncalled_constructors_are_clear_errors(optimizer, match):
    with pytest.raises(jnet.Error, match=match):
        _fit(optimizer)


def test_key_none_is_a_clear_error():
    with pytest.raises(jnet.ArgumentTypeError, match="key=0"):
        _fit(key=None)


@pytest.mark.parametrize("scan", [True, False])
def test_steps_budget_ends_with_a_partial_epoch(scan):
    r = _fit(steps=6, scan=scan)             # 4 steps per epoch: 4 + 2
    assert r.step == 6 and int(r.opt_state.step) == 6
    assert r.epoch == 2 and len(r.history["loss"]) == 2
    full = _fit(epochs=2, scan=scan)
    assert not np.allclose(r.history["loss"][1], full.history["loss"][1])
    _same(_fit(steps=8, scan=scan).params, full.params)


def test_epochs_and_steps_together_are_an_error():
    x, y = _data()
    with pytest.raises(jnet.ArgumentError, match="exactly one of epochs= and steps="):
        jnet.fit(_model(), "sgd", x, y, epochs=2, steps=3, key=0, verbose=0)


def test_timing_reports_compile_apart_from_training():
    r = _fit()
    assert r.timing.compile_s > 0 and r.timing.train_s >= 0


def test_history_plot_has_whole_epoch_ticks():
    fig = _fit(epochs=3, validation_data=_data(20, seed=1)).history.plot()
    ticks = fig.axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)


def test_early_stopping_ends_the_bar_as_finished(capsys):
    _fit(epochs=30, verbose=1, early_stopping=jnet.EarlyStopping(monitor="loss", patience=1,
                                                                  min_delta=10.0))
    err = capsys.readouterr().err
    assert "100%" in err.splitlines()[-1] or "100%" in err.split("\r")[-1]


def test_compile_time_shows_in_the_bar(capsys):
    _fit(verbose=1)
    assert "compile=" in capsys.readouterr().err


@pytest.mark.parametrize(("kw", "match"), [
    (dict(metrics=[lambda o, t: o.mean()]), "per-example values"),
    (dict(callbacks=[lambda epoch, logs: None]), "cb\\(epoch, logs, history\\)"),
    (dict(validation_data=(np.zeros((5, F + 1), np.float32), np.zeros(5, np.int32))),
     "validation x has per-example shape"),
    (dict(validation_data=(np.zeros((5, F), np.float32), np.full(5, C, np.int32))),
     r"labels must lie in \[0, 3\)"),
    (dict(options=jnet.training.Options(params={"dense_1": {"w": np.zeros((F, 8))}})),
     r"params\['dense_1'\]\['b'\]"),
])
def test_bad_arguments_are_named_before_training(kw, match):
    calls = []
    kw.setdefault("callbacks", [lambda epoch, logs, history: calls.append(epoch)])
    with pytest.raises(jnet.Error, match=match) as info:
        _fit(**kw)
    assert str(info.value).startswith("jnet.fit: ") and calls == []


def test_params_of_the_wrong_shape_name_the_path():
    _, params, _ = _model().init(jax.random.key(0))
    params["dense_3"]["w"] = np.zeros((8, C + 1), np.float32)
    with pytest.raises(jnet.ArgumentError, match=r"params\['dense_3'\]\['w'\] has shape"):
        _fit(options=jnet.training.Options(params=params))


def test_python_lists_are_converted():
    x, y = _data()
    _same(_fit(x=x.tolist(), y=y.tolist()).params, _fit().params)


def test_predict_and_evaluate_check_their_arguments():
    model = _model()
    _, params, state = model.init(jax.random.key(0))
    x, y = _data()
    with pytest.raises(jnet.ArgumentError, match=r"jnet\.predict: batch_size"):
        jnet.predict(model, params, state, x, batch_size=0)
    with pytest.raises(jnet.DataError, match=r"jnet\.evaluate: integer labels must lie"):
        jnet.evaluate(model, params, state, x, y + 1)


def test_vmap_over_fit_says_to_use_population():
    x, y = _data()
    with pytest.raises(jnet.ArgumentError, match="population="):
        jax.vmap(lambda xs: jnet.fit(_model(), "sgd", xs, y, epochs=1, key=0,
                                     verbose=0).params)(np.stack([x, x]))


def test_training_diverged_is_a_jnet_error_and_a_floating_point_error():
    assert issubclass(jnet.TrainingDiverged, jnet.Error)
    assert issubclass(jnet.TrainingDiverged, FloatingPointError)
