"""Failures after training started keep the work (jnet.training.trainer): whatever raises
once a step has run reaches the user as a jnet.Error whose .result is the run so far, with
the original exception chained."""

import errno
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _toy_data import toy_classification

import jnet
from jnet import layers as L

N, F, C, BATCH = 32, 4, 3, 8  # 4 steps per epoch


def _data(n=N, seed=0):
    return toy_classification(n, F, C, seed)


def _model():
    return L.serial(L.Input((F,)), L.Dense(C), L.ClassificationOutput())


def _batches(x, y):
    return [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(x), BATCH)]


def _fit(x, y=None, **kw):
    kw = {"batch_size": BATCH, "key": 0, "verbose": 0, **kw}
    return jnet.fit(_model(), "sgd", x, y, **kw)


def _same(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_an_exhausted_generator_keeps_the_first_epoch():
    x, y = _data()
    with pytest.raises(jnet.DataError, match="yielded no batch in epoch 2") as err:
        _fit(iter(_batches(x, y)), epochs=2)
    kept = err.value.result
    assert kept.epoch == 1 and kept.step == 4 and len(kept.history["loss"]) == 1
    _same(kept.params, _fit(_batches(x, y), epochs=1).params)


def test_a_generator_that_raises_midway_keeps_the_steps_that_ran():
    x, y = _data()

    def source(epoch):
        for i, batch in enumerate(_batches(x, y)):
            if epoch == 1 and i == 2:
                raise OSError("the data server went away")
            yield batch

    with pytest.raises(jnet.TrainingInterrupted, match="the data server went away") as err:
        _fit(source, epochs=3)
    assert isinstance(err.value.__cause__, OSError)
    kept = err.value.result
    assert kept.step == 6 and kept.epoch == 1  # 4 steps + 2 of the second epoch
    _same(kept.params, _fit(lambda epoch: _batches(x, y), steps=6).params)


def test_a_later_batch_larger_than_the_first_keeps_the_run():
    x, y = _data()
    batches = _batches(x, y)
    batches[3] = (x[:16], y[:16])
    with pytest.raises(jnet.DataError, match="more than the first batch") as err:
        _fit(batches, epochs=1)
    assert err.value.result.step == 3
    _same(err.value.result.params, _fit(batches[:3], epochs=1).params)


def _picky(outputs, targets):
    """A metric that only works on batches of 8 (training), not on the validation pass."""
    return jnp.reshape(jnp.argmax(outputs, -1) == targets, (BATCH,)).astype(jnp.float32)


def test_a_metric_that_fails_on_validation_only_keeps_the_trained_epoch():
    x, y = _data()
    with pytest.raises(jnet.Error) as err:
        _fit(x, y, epochs=2, metrics=[_picky], validation_data=_data(20, seed=1))
    assert err.value.__cause__ is not None and err.value.result.step == 4
    _same(err.value.result.params, _fit(x, y, epochs=1, metrics=[_picky]).params)


def test_validation_targets_of_the_wrong_width_are_found_before_training():
    x, y = _data()
    bad = (np.zeros((6, F), np.float32), np.zeros((6, 2), np.float32))  # 2 columns, 3 classes
    with pytest.raises(jnet.DataError, match="validation y") as err:
        _fit(x, y, epochs=2, validation_data=bad)
    assert err.value.result is None


def test_validation_targets_the_loss_rejects_keep_the_trained_epoch():
    x, _ = _data()
    t = x[:, :1] * 2.0
    loss = functools.partial(jnet.losses.mse, reduction="none")
    model = L.serial(L.Input((F,)), L.Dense(1))
    bad = (np.zeros((6, F), np.float32), np.zeros((6, 2), np.float32))  # 2 targets, 1 output
    kw = dict(batch_size=BATCH, key=0, verbose=0, loss=loss)
    with pytest.raises(jnet.Error) as err:
        jnet.fit(model, "sgd", x, t, epochs=2, validation_data=bad, **kw)
    assert err.value.result.step == 4 and err.value.result.epoch == 0
    _same(err.value.result.params, jnet.fit(model, "sgd", x, t, epochs=1, **kw).params)


def test_a_callback_that_raises_keeps_the_epoch():
    x, y = _data()

    def broken(epoch, logs, history):
        raise KeyError("no such log")

    with pytest.raises(jnet.TrainingInterrupted, match="KeyError") as err:
        _fit(x, y, epochs=3, callbacks=[broken])
    assert isinstance(err.value.__cause__, KeyError)
    kept = err.value.result
    assert kept.epoch == 1 and kept.history["loss"] == _fit(x, y, epochs=1).history["loss"]


def test_a_disk_that_fills_up_during_the_run_keeps_the_training(tmp_path, monkeypatch):
    x, y = _data()
    full = {"now": False}
    real_fsync = os.fsync

    def fsync(fd):
        if full["now"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    def fill_the_disk(epoch, logs, history):
        full["now"] = epoch == 1

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(jnet.checkpoint.CheckpointError, match="ENOSPC") as err:
        _fit(x, y, epochs=3, callbacks=[fill_the_disk, jnet.callbacks.Checkpoint(tmp_path)])
    kept = err.value.result
    assert kept.epoch == 2
    assert "err.result holds the run so far" in "".join(err.value.__notes__)
    _same(kept.params, _fit(x, y, epochs=2).params)


def test_an_error_before_the_first_step_is_left_as_it_is():
    with pytest.raises(jnet.DataError, match="yielded no batch") as err:
        _fit(iter([]), epochs=1)
    assert err.value.result is None
