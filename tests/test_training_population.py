"""Populations: P models in one vmapped program, each member trained exactly as its own fit."""

import jax
import numpy as np
import pytest

import jnet
from jnet import layers as L

N, F, C = 50, 4, 3
LRS = [0.3, 3.0]


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, F)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(F, C)), axis=1).astype(np.int32)
    xv = rng.normal(size=(30, F)).astype(np.float32)
    yv = rng.integers(0, C, 30).astype(np.int32)  # unrelated labels: val_loss turns up
    return x, y, (xv, yv)


def _model(dropout=0.0):
    return L.serial(L.Input((F,)), L.Dense(8), L.Tanh(), L.Dropout(dropout), L.Dense(C),
                    L.ClassificationOutput())


def _adam(learning_rate):
    return jnet.optim.adam(learning_rate)


def _close(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6, atol=1e-7)


def test_each_member_trains_exactly_as_its_own_fit():
    x, y, val = _data()
    lrs = [1e-3, 1e-2, 1e-1]
    kw = dict(epochs=2, batch_size=16, verbose=0, validation_data=val,
              options=jnet.training.Options(scan=True))
    key = jax.random.key(7)
    r = jnet.fit(_model(0.2), _adam, x, y, population={"learning_rate": lrs}, key=key, **kw)
    assert jax.tree.leaves(r.params)[0].shape[0] == 3
    assert np.shape(r.history["loss"][0]) == (3,)
    for i, lr in enumerate(lrs):
        single = jnet.fit(_model(0.2), _adam(lr), x, y, key=jax.random.fold_in(key, i), **kw)
        member = r.member(i)
        _close(member.params, single.params)
        _close(member.opt_state, single.opt_state)
        for name in ("loss", "accuracy", "val_loss", "lr"):
            np.testing.assert_allclose(member.history[name], single.history[name], rtol=1e-6)


def test_early_stopping_waits_for_every_member_and_restores_each_ones_best():
    x, y, val = _data()
    kw = dict(batch_size=16, key=0, verbose=0, validation_data=val)
    make = lambda learning_rate: jnet.optim.sgd(learning_rate)  # noqa: E731
    stop = jnet.EarlyStopping(patience=2)
    r = jnet.fit(_model(), make, x, y, population={"learning_rate": LRS}, epochs=12,
                 early_stopping=stop, **kw)
    table = np.array(r.history["val_loss"])                    # (epochs, P)
    best = np.argmin(table, axis=0)                            # each member's best epoch - 1
    # the run stops at the first epoch where every member has gone `patience` epochs
    # without improving, and not before
    stops = [int(np.argmax([e - np.argmin(table[:e + 1, i]) >= 2 for e in range(len(table))]))
             for i in range(len(LRS))]
    assert len(set(best)) == 2 and r.epoch == max(stops) + 1 < 12
    for i, lr in enumerate(LRS):
        single = jnet.fit(_model(), make(lr), x, y, epochs=int(best[i]) + 1,
                          **dict(kw, key=jax.random.fold_in(jax.random.key(0), i)))
        _close(r.member(i).params, single.params)


def test_population_plot_and_progress_show_every_member(capsys):
    x, y, val = _data()
    r = jnet.fit(_model(), _adam, x, y, population={"learning_rate": LRS}, epochs=2,
                 key=0, verbose=1, validation_data=val)
    err = capsys.readouterr().err
    assert "loss(best)" in err and "loss(median)" in err
    fig = r.history.plot(["loss"])
    assert len(fig.axes[0].lines) == 2 * len(LRS)              # train + validation per member


def test_population_with_an_optimizer_instead_of_a_factory_is_a_clear_error():
    x, y, _ = _data()
    with pytest.raises(jnet.ArgumentTypeError, match="make_optimizer"):
        jnet.fit(_model(), jnet.optim.adam(1e-3), x, y, population={"learning_rate": LRS},
                 epochs=1, key=0, verbose=0)
    with pytest.raises(jnet.ArgumentError, match="one length P"):
        jnet.fit(_model(), _adam, x, y, population={"learning_rate": [1e-3], "b1": [0.9, 0.8]},
                 epochs=1, key=0, verbose=0)


def test_population_checkpoint_and_exact_resume(tmp_path):
    """A population interrupted after 2 of 4 epochs and resumed from its checkpoint ends with
    the parameters, optimizer states and histories of the uninterrupted run, bit for bit."""
    x, y, _ = _data()
    kw = dict(population={"learning_rate": LRS}, batch_size=16, verbose=0, key=3)
    whole = jnet.fit(_model(0.1), _adam, x, y, epochs=4, **kw)
    jnet.fit(_model(0.1), _adam, x, y, epochs=2,
             callbacks=[jnet.callbacks.Checkpoint(tmp_path)], **kw)
    resumed = jnet.fit(_model(0.1), _adam, x, y, epochs=4,
                       callbacks=[jnet.callbacks.Checkpoint(tmp_path, resume=True)], **kw)
    assert resumed.epoch == 4
    for a, b in zip(jax.tree.leaves((whole.params, whole.opt_state)),
                    jax.tree.leaves((resumed.params, resumed.opt_state)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(whole.history["loss"]),
                                  np.asarray(resumed.history["loss"]))
    with pytest.raises(jnet.Error, match="population"):  # another population size: refused
        jnet.fit(_model(0.1), _adam, x, y, epochs=4,
                 callbacks=[jnet.callbacks.Checkpoint(tmp_path, resume=True)],
                 **{**kw, "population": {"learning_rate": [0.1, 0.2, 0.3]}})
