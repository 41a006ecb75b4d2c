"""`jnet.callbacks.Checkpoint` (jnet.training.checkpointing): saving every k epochs, rotation,
exact resume, a stopped run resumed, and the directory checked before training."""

import shutil

import jax
import numpy as np
import pytest
from _toy_data import toy_classification

import jnet
from jnet import layers as L
from jnet.callbacks import Checkpoint, EarlyStopping

N, F, C = 50, 4, 3


def _data(n=N, seed=0):
    return toy_classification(n, F, C, seed)


def _classifier(dropout=0.0):
    return L.serial(L.Input((F,)), L.Dense(8), L.Tanh(), L.Dropout(dropout), L.Dense(C),
                    L.ClassificationOutput())


def _fit(model=None, *, optimizer=None, **kw):
    x, y = _data()
    kw = {"epochs": 2, "batch_size": 16, "key": 0, "verbose": 0, **kw}
    return jnet.fit(model or _classifier(), optimizer or jnet.optim.sgd(0.1), x, y, **kw)


def _same(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


@pytest.mark.parametrize("scan", [True, False])
def test_resume_is_bit_identical(tmp_path, scan):
    kw = dict(batch_size=8, optimizer=jnet.optim.adam(1e-2), validation_data=_data(),
              options=jnet.training.Options(scan=scan))
    full = _fit(_classifier(dropout=0.3), epochs=4, **kw)
    part = _fit(_classifier(dropout=0.3), epochs=2, callbacks=[Checkpoint(tmp_path)], **kw)
    assert part.epoch == 2
    resumed = _fit(_classifier(dropout=0.3), epochs=4,
                   callbacks=[Checkpoint(tmp_path, resume=True)], **kw)
    assert resumed.epoch == 4 and resumed.step == full.step
    _same(resumed.params, full.params)
    _same(resumed.opt_state, full.opt_state)
    assert resumed.history.history == full.history.history


def test_resume_accepts_a_raw_prng_key(tmp_path):
    key = jax.random.PRNGKey(4)
    full = _fit(key=key, epochs=2)
    _fit(key=key, epochs=1, callbacks=[Checkpoint(tmp_path)])
    _same(_fit(key=key, epochs=2, callbacks=[Checkpoint(tmp_path, resume=True)]).params,
          full.params)


def test_resume_with_another_key_uses_the_checkpoints(tmp_path):
    full = _fit(key=1, epochs=2)
    _fit(key=1, epochs=1, callbacks=[Checkpoint(tmp_path)])
    with pytest.warns(UserWarning, match="different key"):
        resumed = _fit(key=2, epochs=2, callbacks=[Checkpoint(tmp_path, resume=True)])
    _same(resumed.params, full.params)


def test_checkpoints_are_written_every_k_epochs_and_rotated(tmp_path):
    _fit(epochs=5, callbacks=[Checkpoint(tmp_path, every=2, keep=2)])
    manager = jnet.checkpoint.CheckpointManager(tmp_path)
    assert manager.steps() == [4, 5]  # epochs 2, 4 and the last one; 2 kept


def test_keep_keeps_exactly_the_last_ones_with_validation(tmp_path):
    x, y = _data()
    r = _fit(epochs=6, callbacks=[Checkpoint(tmp_path, keep=2)],
             validation_data=(x, (y + 1) % C))  # val_loss rises as the model learns y
    best = int(np.argmin(r.history["val_loss"])) + 1
    assert best < 5  # the best epoch is not among the last two, so it must have been deleted
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [
        "ckpt_000005.safetensors", "ckpt_000006.safetensors"]


def test_resume_may_switch_early_stopping_on_or_off(tmp_path):
    _fit(epochs=2, callbacks=[Checkpoint(tmp_path / "on")])  # written without early stopping
    with pytest.warns(UserWarning, match="no best weights"):
        r = _fit(epochs=3, early_stopping=5, callbacks=[Checkpoint(tmp_path / "on", resume=True)])
    assert r.epoch == 3
    _fit(epochs=2, early_stopping=5, callbacks=[Checkpoint(tmp_path / "off")])  # with best
    plain = _fit(epochs=3)
    r = _fit(epochs=3, callbacks=[Checkpoint(tmp_path / "off", resume=True)])
    _same(r.params, plain.params)  # the last weights, as without early stopping


def test_resuming_a_run_that_early_stopping_ended_warns_and_trains_nothing(tmp_path):
    stopper = EarlyStopping(monitor="loss", patience=1, min_delta=10.0)
    first = _fit(epochs=10, callbacks=[stopper, Checkpoint(tmp_path)])
    assert first.epoch == 2
    with pytest.warns(UserWarning, match="stopped at epoch 2.*trains nothing more"):
        again = _fit(epochs=20, callbacks=[stopper, Checkpoint(tmp_path, resume=True)])
    assert again.epoch == 2 and again.step == first.step
    _same(again.params, first.params)  # the best weights, restored again


def test_resume_past_the_requested_epochs_is_an_error(tmp_path):
    _fit(epochs=3, callbacks=[Checkpoint(tmp_path)])
    with pytest.raises(jnet.ArgumentError, match="past the requested 2 epoch"):
        _fit(epochs=2, callbacks=[Checkpoint(tmp_path, resume=True)])


def test_a_directory_without_room_for_one_checkpoint_fails_before_training(tmp_path,
                                                                          monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: real(path)._replace(free=0))
    calls = []
    with pytest.raises(jnet.checkpoint.CheckpointError,
                       match=r"bytes free, but one checkpoint") as err:
        _fit(callbacks=[lambda e, logs, h: calls.append(e), Checkpoint(tmp_path)])
    assert calls == [] and err.value.result is None


def test_a_directory_in_the_way_of_a_file_fails_before_training(tmp_path):
    (tmp_path / "file").write_text("")
    calls = []
    with pytest.raises(jnet.checkpoint.CheckpointError):
        _fit(callbacks=[lambda e, logs, h: calls.append(e), Checkpoint(tmp_path / "file")])
    assert calls == []


@pytest.mark.parametrize(("kw", "match"), [
    (dict(every=0), "every must be a positive int"),
    (dict(keep=1.5), "keep must be a positive int"),
    (dict(resume="yes"), "resume must be True or False"),
])
def test_bad_checkpoint_arguments_are_named(tmp_path, kw, match):
    with pytest.raises(jnet.ArgumentError, match=match):
        Checkpoint(tmp_path, **kw)


def test_a_checkpoint_that_cannot_be_written_mid_run_keeps_the_training_result(tmp_path):
    """After epoch 1 the checkpoint directory is replaced by a regular file, so epoch 2's
    save fails: the CheckpointError carries the run so far (2 epochs trained), and those
    params are exactly those of an uninterrupted 2-epoch run."""
    directory = tmp_path / "ckpt"

    def break_the_directory(epoch, logs, history):
        if epoch == 1:
            shutil.rmtree(directory)
            directory.write_text("not a directory")

    with pytest.raises(jnet.checkpoint.CheckpointError) as err:
        _fit(epochs=3, callbacks=[break_the_directory, Checkpoint(directory)])
    assert err.value.result.epoch == 2
    assert "err.result holds the run so far" in "".join(err.value.__notes__)
    _same(err.value.result.params, _fit(epochs=2).params)
