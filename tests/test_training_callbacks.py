"""The callback protocol of `fit` (jnet.training.callbacks): a typed RunState per epoch,
stopping, v0.2 plain functions, the learning rate of parameter groups, LivePlot."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _toy_data import toy_classification

import jnet
from jnet import layers as L
from jnet.optim import OptState

N, F, C, BATCH = 32, 4, 3, 8  # 4 steps per epoch


def _data(n=N, seed=0):
    return toy_classification(n, F, C, seed)


def _model():
    return L.serial(L.Input((F,)), L.Dense(C), L.ClassificationOutput())


def _fit(optimizer="sgd", **kw):
    x, y = _data()
    kw = {"epochs": 3, "batch_size": BATCH, "key": 0, "verbose": 0, **kw}
    return jnet.fit(_model(), optimizer, x, y, **kw)


class _Recorder(jnet.callbacks.Callback):
    def __init__(self, stop_at=None, by_flag=False):
        self.stop_at, self.by_flag = stop_at, by_flag
        self.seen = []
        self.begun = self.ended = 0

    def on_train_begin(self, run):
        self.begun += 1
        assert run.epoch == 0 and run.step == 0 and run.history.epochs == 0

    def on_epoch_end(self, run):
        w = np.array(run.params["dense_1"]["w"])
        self.seen.append((run.epoch, run.step, dict(run.logs), run.history.epochs, w))
        if run.epoch == self.stop_at:
            if self.by_flag:
                run.stop = True
                return None
            return True
        return False

    def on_train_end(self, run):
        self.ended += 1


def test_a_callback_sees_the_run_state_of_each_epoch():
    rec = _Recorder()
    result = _fit(callbacks=[rec], validation_data=_data(12, seed=1))
    assert rec.begun == rec.ended == 1
    assert [s[:2] for s in rec.seen] == [(1, 4), (2, 8), (3, 12)]
    assert [s[3] for s in rec.seen] == [1, 2, 3]
    assert set(rec.seen[0][2]) == {"loss", "accuracy", "lr", "val_loss", "val_accuracy"}
    assert [s[2]["loss"] for s in rec.seen] == result.history["loss"]
    np.testing.assert_array_equal(rec.seen[-1][4], result.params["dense_1"]["w"])
    assert not np.array_equal(rec.seen[0][4], rec.seen[1][4])


@pytest.mark.parametrize("by_flag", [False, True])
def test_a_callback_stops_training_by_returning_true_or_setting_stop(by_flag):
    rec = _Recorder(stop_at=2, by_flag=by_flag)
    result = _fit(epochs=10, callbacks=[rec])
    assert result.epoch == 2 and result.step == 8 and len(rec.seen) == 2


def test_plain_functions_of_v0_2_keep_working():
    seen = []

    def cb(epoch, logs, history):
        seen.append((epoch, logs["loss"], len(history["loss"])))
        return epoch == 1

    result = _fit(epochs=5, callbacks=[cb])
    assert [(e, n) for e, _, n in seen] == [(0, 1), (1, 2)]
    assert [loss for _, loss, _ in seen] == result.history["loss"]


def test_a_keras_style_function_is_named_before_training():
    with pytest.raises(jnet.ArgumentTypeError, match=r"cb\(epoch, logs, history\)"):
        _fit(callbacks=[lambda epoch, logs: None])
    with pytest.raises(jnet.ArgumentTypeError, match="got int"):
        _fit(callbacks=[3])


def test_early_stopping_as_a_callback_equals_the_keyword():
    stopper = jnet.callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=10.0)
    a = _fit(epochs=10, callbacks=[stopper])
    b = _fit(epochs=10, early_stopping=stopper)
    assert a.epoch == b.epoch == 2
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(u, v)
    first = _fit(epochs=1)  # restore_best_weights: epoch 1 was the best
    np.testing.assert_array_equal(a.params["dense_1"]["w"], first.params["dense_1"]["w"])


def test_the_same_early_stopping_object_serves_two_runs():
    stopper = jnet.callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=10.0)
    assert _fit(epochs=10, callbacks=[stopper]).epoch == 2
    assert _fit(epochs=10, callbacks=[stopper]).epoch == 2


class _GroupSGD:
    """Plain SGD reporting two parameter groups' learning rates, as `jnet.optim.partition`."""

    def init(self, params):
        return OptState(jnp.zeros((), jnp.int32), {"body": jnp.float32(0.1),
                                                   "head": jnp.float32(0.01)}, ())

    def update(self, grads, opt_state, params):
        params = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
        return params, opt_state._replace(step=opt_state.step + 1)


def test_a_learning_rate_per_parameter_group_is_logged_as_lr_slash_group():
    seen = []
    result = _fit(_GroupSGD(), epochs=2, callbacks=[lambda e, logs, h: seen.append(set(logs))])
    assert result.history["lr/body"] == [pytest.approx(0.1)] * 2
    assert result.history["lr/head"] == [pytest.approx(0.01)] * 2
    assert "lr" not in result.history and seen[0] == {"loss", "accuracy", "lr/body", "lr/head"}
    stopper = jnet.callbacks.EarlyStopping(monitor="lr/head", patience=1)
    assert _fit(_GroupSGD(), epochs=5, callbacks=[stopper]).epoch == 2


def test_live_plot_writes_a_png_each_epoch_and_closes_its_figures(tmp_path):
    import matplotlib.pyplot as plt

    path = tmp_path / "run.png"
    sizes = []
    open_before = set(plt.get_fignums())  # figures other tests of this worker left open
    _fit(callbacks=[jnet.callbacks.LivePlot(path),
                    lambda epoch, logs, history: sizes.append(path.stat().st_mtime_ns)])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(sizes) == 3 and set(plt.get_fignums()) == open_before


def test_live_plot_path_must_be_a_path():
    with pytest.raises(jnet.ArgumentTypeError, match="path must be a file path"):
        jnet.callbacks.LivePlot(3)
