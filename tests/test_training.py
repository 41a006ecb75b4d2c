"""jnet.training: the pure step, fit / evaluate / predict, compilation counts, regimes,
scan vs loop, exact resume, early stopping, bad input, history."""

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnet
import jnet.optim
from jnet import layers as L
from jnet.training import TrainingDiverged

N, F, C = 50, 4, 3


def _data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, F)).astype(np.float32)
    w = rng.normal(size=(F, C))
    y = np.argmax(x @ w, axis=1).astype(np.int32)  # learnable labels
    return x, y


def _classifier(dropout=0.0):
    parts = [L.Input((F,)), L.Dense(8), L.Tanh()]
    if dropout:
        parts.append(L.Dropout(dropout))
    return L.serial(*parts, L.Dense(C), L.ClassificationOutput())


def _regressor():
    return L.serial(L.Input((F,)), L.Dense(1), L.RegressionOutput())


_OPTIONS = {f.name for f in dataclasses.fields(jnet.training.Options)}


def _fit(model, x, y, **kw):
    options = {k: kw.pop(k) for k in list(kw) if k in _OPTIONS}
    if options:
        kw["options"] = jnet.training.Options(**options)
    kw.setdefault("epochs", 2)
    kw.setdefault("batch_size", 16)
    kw.setdefault("key", jax.random.key(0))
    kw.setdefault("verbose", 0)
    return jnet.fit(model, kw.pop("optimizer", jnet.optim.sgd(0.1)), x, y, **kw)


def _assert_trees_equal(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


# ---------------------------------------------------------------------------------------------
# The pure step


def test_train_step_sgd_matches_numpy_gradient_of_weighted_mse():
    """One SGD step on a linear model == the hand-derived gradient of the masked MSE."""
    x, _ = _data(8)
    t = np.random.default_rng(1).normal(size=(8,)).astype(np.float32)
    weight = np.array([1, 1, 1, 1, 1, 1, 0, 0], np.float32)  # last two are padding
    model, lr = _regressor(), 0.05
    _, params, state = model.init(jax.random.key(0))
    opt = jnet.optim.sgd(lr)
    step = jax.jit(jnet.make_train_step(model, opt))
    new, _, _, m = step(params, state, opt.init(params), (x, t, weight), jax.random.key(1))

    w0, b0 = np.asarray(params["dense_1"]["w"]), np.asarray(params["dense_1"]["b"])
    r = (x @ w0)[:, 0] + b0[0] - t  # residuals
    mask = weight / weight.sum()
    grad_w = (2 * mask * r) @ x
    grad_b = np.sum(2 * mask * r)
    np.testing.assert_allclose(new["dense_1"]["w"][:, 0], w0[:, 0] - lr * grad_w, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(new["dense_1"]["b"][0], b0[0] - lr * grad_b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m["loss"], np.sum(mask * r**2), rtol=1e-5)
    assert float(m["count"]) == 6.0
    assert "lr" not in m  # read once per epoch from the optimizer state, not logged per step


def test_padded_examples_contribute_nothing():
    x, y = _data(10)
    model = _classifier()
    _, params, state = model.init(jax.random.key(0))
    opt = jnet.optim.sgd(0.3)
    step = jax.jit(jnet.make_train_step(model, opt, metrics={"accuracy": jnet.training.accuracy}))
    real = step(params, state, opt.init(params), (x[:7], y[:7]), None)
    junk_x = np.concatenate([x[:7], 100 * x[7:]])  # wildly different padding rows
    junk_y = np.concatenate([y[:7], (y[7:] + 1) % C])
    w = np.array([1.0] * 7 + [0.0] * 3, np.float32)
    padded = step(params, state, opt.init(params), (junk_x, junk_y, w), None)
    for a, b in zip(jax.tree.leaves(real), jax.tree.leaves(padded), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_no_head_and_no_loss_is_a_clear_error():
    model = L.serial(L.Input((F,)), L.Dense(C))
    with pytest.raises(ValueError, match="no output layer and no loss"):
        jnet.make_train_step(model, jnet.optim.sgd(0.1))


def test_explicit_loss_trains_a_headless_model():
    x, y = _data()
    model = L.serial(L.Input((F,)), L.Dense(C))
    loss = functools.partial(jnet.losses.softmax_cross_entropy, reduction="none")
    r = _fit(model, x, y, loss=loss, epochs=5, optimizer=jnet.optim.adam(0.05))
    assert r.history["loss"][-1] < r.history["loss"][0]
    assert "accuracy" not in r.history  # no head: no task, so no default metric


def test_user_jitted_step_compiles_once_over_batches_with_a_padded_last_batch():
    x, y = _data(50)
    model = _classifier(dropout=0.2)
    _, params, state = model.init(jax.random.key(0))
    opt = jnet.optim.adam(1e-2)
    opt_state = opt.init(params)
    step = jax.jit(jnet.make_train_step(model, opt), donate_argnums=(0, 1, 2))
    key = jax.random.key(5)
    for epoch in range(2):
        for s, batch in enumerate(jnet.data.batches(x, y, 16, key=jax.random.fold_in(key, epoch))):
            params, state, opt_state, m = step(params, state, opt_state, batch,
                                               jax.random.fold_in(key, s))
    assert step._cache_size() == 1
    assert int(opt_state.step) == 8  # 4 batches (the last padded) x 2 epochs
    assert set(m) == {"loss", "accuracy", "count"}  # accuracy: classification head
    assert np.isfinite(float(m["loss"]))


# ---------------------------------------------------------------------------------------------
# fit: compilation, regimes, scan vs loop


class _TraceCounter:
    """A per-example loss that counts how often JAX traces it (one trace = one compilation)."""

    def __init__(self):
        self.traces = 0

    def __call__(self, outputs, targets):
        self.traces += 1
        return jnet.layers.heads.classification_loss(outputs, targets)


@pytest.mark.parametrize("scan", [True, False])
def test_fit_compiles_once_with_a_padded_last_batch(scan):
    x, y = _data(50)  # 50 = 3 x 16 + 2: the last batch is padded
    counts = []
    for epochs in (1, 3):
        loss = _TraceCounter()
        _fit(_classifier(dropout=0.1), x, y, epochs=epochs, loss=loss, scan=scan)
        counts.append(loss.traces)
    assert counts[0] == counts[1] == 1


def test_fit_compiles_once_with_chunked_scan():
    x, y = _data(50)
    loss = _TraceCounter()
    r = _fit(_classifier(), x, y, epochs=2, loss=loss,
             options=jnet.training.Options(steps_per_call=3))  # 4 steps -> 3 + 1 pad
    assert loss.traces == 1
    assert r.step == 8 and int(r.opt_state.step) == 8  # padding steps apply no update


@pytest.mark.parametrize(("batch_size", "steps"), [(None, 1), (1, N), (16, 4), (7, 8)])
def test_regimes_make_the_expected_number_of_steps(batch_size, steps):
    x, y = _data()
    r = _fit(_classifier(), x, y, batch_size=batch_size, epochs=2)
    assert r.step == 2 * steps
    assert int(r.opt_state.step) == 2 * steps


def test_full_batch_gd_equals_hand_rolled_gradient_descent():
    """batch_size=None is plain GD: compare with jax.grad + a hand-written update."""
    x, y = _data()
    model, lr = _classifier(), 0.2
    r = _fit(model, x, y, batch_size=None, epochs=3, optimizer=jnet.optim.sgd(lr))
    _, params, state = model.init(jax.random.split(jax.random.key(0))[0])

    def loss(p):
        logits, _ = model.apply(p, state, x)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    for _ in range(3):
        params = jax.tree.map(lambda p, g: p - lr * g, params, jax.grad(loss)(params))
    for a, b in zip(jax.tree.leaves(r.params), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_scan_and_python_loop_give_the_same_parameters():
    x, y = _data()
    kw = dict(epochs=2, batch_size=16, optimizer=jnet.optim.adam(1e-2))
    a = _fit(_classifier(dropout=0.3), x, y, scan=True, **kw)
    b = _fit(_classifier(dropout=0.3), x, y, scan=False, **kw)
    c = _fit(_classifier(dropout=0.3), jnp.asarray(x), jnp.asarray(y), scan=False, **kw)
    for other in (b, c):
        for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(other.params), strict=True):
            np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(a.history["loss"], other.history["loss"], rtol=1e-6)


def test_iterable_of_batches_trains_and_pads_its_short_last_batch():
    x, y = _data()
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, N, 16)]  # last has 2 examples
    loss = _TraceCounter()
    r = _fit(_classifier(), batches, None, epochs=3, loss=loss)
    assert loss.traces == 1
    assert r.step == 12
    # a function epoch -> iterable works too, and gives the same result
    r2 = _fit(_classifier(), lambda epoch: iter(batches), None, epochs=3)
    _assert_trees_equal(r.params, r2.params)
    # a generator is consumed once: one epoch works (the first batch is not lost) ...
    assert _fit(_classifier(), iter(batches), None, epochs=1).step == 4
    # ... and a second epoch is a clear error
    with pytest.raises(ValueError, match="yielded no batch in epoch 2"):
        _fit(_classifier(), iter(batches), None, epochs=2)


def test_user_params_are_copied_not_donated():
    x, y = _data()
    model = _classifier()
    _, params, state = model.init(jax.random.key(3))
    before = jax.tree.map(np.asarray, params)
    r = _fit(model, x, y, params=params, state=state)
    _assert_trees_equal(params, before)  # still readable and unchanged
    assert not np.array_equal(r.params["dense_1"]["w"], before["dense_1"]["w"])


def test_user_params_without_state_start_from_the_models_initial_state():
    x, y = _data()
    model = L.serial(L.Input((F,)), L.Dense(8), L.BatchNorm(), L.Dense(C),
                     L.ClassificationOutput())
    _, params, state = model.init(jax.random.key(3))
    with_state = _fit(model, x, y, params=params, state=state)
    without_state = _fit(model, x, y, params=params)  # the docstring: instead of model.init
    _assert_trees_equal(without_state.params, with_state.params)
    _assert_trees_equal(without_state.state, with_state.state)


# ---------------------------------------------------------------------------------------------
# evaluate / predict / history


def test_evaluate_and_predict_agree_with_numpy():
    x, y = _data()
    model = _classifier()
    r = _fit(model, x, y, epochs=3, optimizer=jnet.optim.adam(0.05))
    probs = np.asarray(jnet.predict(model, r.params, r.state, x, batch_size=16))
    logits, _ = model.apply(r.params, r.state, x)
    logits = np.asarray(logits, np.float64)
    ref = np.exp(logits - logits.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    np.testing.assert_allclose(probs, ref, rtol=1e-5, atol=1e-6)
    m = jnet.evaluate(model, r.params, r.state, x, y, batch_size=16)
    np.testing.assert_allclose(m["accuracy"], np.mean(ref.argmax(1) == y), rtol=1e-6)
    np.testing.assert_allclose(m["loss"], -np.mean(np.log(ref[np.arange(N), y])), rtol=1e-5)


def test_repeated_evaluate_and_predict_compile_once():
    x, y = _data()
    model = _classifier()
    _, params, state = model.init(jax.random.key(0))
    loss = _TraceCounter()
    first = jnet.evaluate(model, params, state, x, y, loss=loss, batch_size=16)
    again = jnet.evaluate(model, params, state, x, y, loss=loss, batch_size=16)
    assert loss.traces == 1 and first == again
    traces = []

    def apply(*args, **kw):
        traces.append(1)
        return model.apply(*args, **kw)

    # A container's apply_fn cannot be swapped on a copy: wrap the model in a counting leaf.
    counted = L.Layer(model.init, apply, kind="Counted", head=model.head)
    p1 = jnet.predict(counted, params, state, x, batch_size=16)
    p2 = jnet.predict(counted, params, state, x, batch_size=16)
    assert len(traces) == 1
    np.testing.assert_array_equal(p1, p2)


def test_custom_metric_and_validation_logs():
    x, y = _data()

    def top2(outputs, targets):
        return jnp.any(jnp.argsort(outputs, axis=-1)[:, -2:] == targets[:, None], axis=-1)

    r = _fit(_classifier(), x, y, metrics=["accuracy", top2], validation_data=(x, y), epochs=2)
    assert set(r.history) == {"loss", "accuracy", "top2", "lr", "val_loss", "val_accuracy",
                              "val_top2"}
    assert all(len(v) == 2 for v in r.history.values())
    assert all(t >= a for t, a in zip(r.history["val_top2"], r.history["val_accuracy"],
                                      strict=True))
    ev = jnet.evaluate(_classifier(), r.params, r.state, x, y, metrics=["accuracy", top2])
    np.testing.assert_allclose(ev["top2"], r.history["val_top2"][-1], rtol=1e-6)


def test_metrics_as_a_dict_name_their_logs_in_fit_and_evaluate():
    x, y = _data()
    r = _fit(_classifier(), x, y, metrics={"hit": jnet.training.accuracy}, epochs=1,
             validation_data=(x, y))
    assert {"hit", "val_hit"} <= set(r.history)
    ev = jnet.evaluate(_classifier(), r.params, r.state, x, y,
                       metrics={"hit": jnet.training.accuracy})
    np.testing.assert_allclose(ev["hit"], r.history["val_hit"][-1], rtol=1e-6)


def test_history_records_the_scheduled_learning_rate():
    x, y = _data()
    sched = jnet.optim.exponential_decay(0.1, 0.5, transition_steps=4)  # halves every epoch
    r = _fit(_classifier(), x, y, batch_size=16, epochs=3, optimizer=jnet.optim.sgd(sched))
    # the lr of the last update of epoch e (update number 4e, schedule step 4e - 1)
    np.testing.assert_allclose(r.history["lr"], [0.1 * 0.5 ** ((4 * e - 1) / 4)
                                                  for e in (1, 2, 3)], rtol=1e-5)


def test_history_plot_draws_train_and_validation_curves():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x, y = _data()
    r = _fit(_classifier(), x, y, validation_data=(x, y), epochs=3)
    fig = r.history.plot()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "accuracy", "lr"]
    loss_ax = fig.axes[0]
    assert [line.get_label() for line in loss_ax.get_lines()] == ["train", "validation"]
    np.testing.assert_allclose(loss_ax.get_lines()[1].get_ydata(), r.history["val_loss"])
    plt.close(fig)


def test_verbose_one_shows_a_bar_and_zero_is_silent(capsys):
    x, y = _data()
    _fit(_classifier(), x, y, verbose=0)
    assert capsys.readouterr().err == ""
    _fit(_classifier(), x, y, verbose=1, epochs=1)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "loss=" in err and "lr=" in err and "step/s" in err


def test_fit_result_is_a_checkpointable_pytree(tmp_path):
    x, y = _data()
    r = _fit(_classifier(), x, y, validation_data=(x, y))
    jnet.checkpoint.save(tmp_path / "r.safetensors", r)
    back = jnet.checkpoint.load(tmp_path / "r.safetensors", like=r)
    _assert_trees_equal(back.params, r.params)
    _assert_trees_equal(back.opt_state, r.opt_state)
    assert back.history["val_loss"] == pytest.approx(r.history["val_loss"])


# ---------------------------------------------------------------------------------------------
# Bad input


def test_mismatched_lengths_and_out_of_range_labels_are_errors():
    x, y = _data()
    with pytest.raises(ValueError, match="same number of examples"):
        _fit(_classifier(), x, y[:-1])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\).*from 1 to 3"):
        _fit(_classifier(), x, np.where(y == 0, 3, y))
    with pytest.raises(ValueError, match="labels must lie"):
        _fit(_classifier(), x, y, validation_data=(x, y - 1))


def test_nan_in_data_is_caught_before_training():
    x, y = _data()
    x[10, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf.*example 10"):
        _fit(_classifier(), x, y)


def test_batch_size_larger_than_dataset_warns():
    x, y = _data()
    with pytest.warns(UserWarning, match="larger than the dataset"):
        r = _fit(_classifier(), x, y, batch_size=500, epochs=1)
    assert r.step == 1


@pytest.mark.parametrize("scan", [True, False])
def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_params(scan):
    x, _ = _data()
    t = np.random.default_rng(2).normal(size=(N,)).astype(np.float32)
    t[40] = -1.0  # the loss below is NaN there: step 3 of epoch 1 (no shuffle)

    def loss(outputs, targets):
        return (outputs[:, 0] - targets) ** 2 * jnp.where(targets == -1.0, jnp.nan, 1.0)

    kw = dict(batch_size=16, shuffle=False, loss=loss, scan=scan, epochs=3)
    model = L.serial(L.Input((F,)), L.Dense(1))
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 3 of the epoch") as info:
        _fit(model, x, t, **kw)
    assert info.value.result.step == 2
    # the same two good steps, on the good data alone
    good = _fit(model, x[:32], t[:32], **{**kw, "epochs": 1})
    for a, b in zip(jax.tree.leaves(info.value.result.params), jax.tree.leaves(good.params),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_no_recompilation_warning_from_donation_on_cpu():
    x, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _fit(_classifier(), x, y, epochs=1)
