"""Sequence masks through the driver: fit / evaluate / predict with mask=, per-step targets,
batching that keeps mask rows with their x rows, mask_from_lengths and its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnet
from jnet import layers as L
from jnet.layers.base import Layer

T, F = 6, 2


def _sequences(n, seed=0):
    """Class = sign of the sum of feature 0 over the real steps; padding is loud noise."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, T + 1, size=n)
    mask = np.arange(T)[None, :] < lengths[:, None]
    x = rng.normal(size=(n, T, F)).astype(np.float32)
    y = (np.where(mask, x[..., 0], 0.0).sum(1) > 0).astype(np.int32)
    x[~mask] = rng.normal(scale=5.0, size=(int((~mask).sum()), F))
    return x, y, mask, lengths


def _renoise(x, mask, seed):
    x = x.copy()
    x[~mask] = np.random.default_rng(seed).normal(scale=5.0, size=(int((~mask).sum()), F))
    return x


def _lstm():
    return L.serial(L.Input((T, F)), L.LSTM(8), L.Dense(2), L.ClassificationOutput())


def test_mask_from_lengths_matches_its_definition_and_rejects_bad_lengths():
    lengths = np.array([0, 3, 5])
    expected = np.array([[t < n for t in range(5)] for n in lengths])
    np.testing.assert_array_equal(jnet.data.mask_from_lengths(lengths, 5), expected)
    for bad in ([1, 6], [-1, 2]):
        with pytest.raises(jnet.DataError, match=r"lengths must lie in \[0, 5\]"):
            jnet.data.mask_from_lengths(np.array(bad), 5)


def test_masked_lstm_learns_and_ignores_the_padding_noise():
    x, y, mask, _ = _sequences(256)
    model = _lstm()
    r = jnet.fit(model, jnet.optim.adam(2e-2), x, y, mask=mask, epochs=25, batch_size=64,
                 key=0, verbose=0)
    x2 = _renoise(x, mask, seed=9)
    assert not np.array_equal(x, x2)
    got = jnet.evaluate(model, r.params, r.state, x, y, mask=mask)
    assert got["accuracy"] > 0.9
    assert jnet.evaluate(model, r.params, r.state, x2, y, mask=mask) == got
    p1 = jnet.predict(model, r.params, r.state, x, mask=mask)
    p2 = jnet.predict(model, r.params, r.state, x2, mask=mask)
    np.testing.assert_array_equal(p1, p2)
    # without the mask the noise does change the predictions: the mask reached the LSTM
    assert not np.array_equal(jnet.predict(model, r.params, r.state, x), p1)


def _per_step_data(n=12, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, T, F)).astype(np.float32)
    y = rng.normal(size=(n, T)).astype(np.float32)
    mask = np.arange(T)[None, :] < rng.integers(1, T + 1, size=n)[:, None]
    return x, y, mask


def test_per_step_regression_loss_is_the_masked_token_mean():
    x, y, mask = _per_step_data()
    model = L.serial(L.Input((T, F)), L.Dense(1), L.RegressionOutput())
    _, params, state = model.init(jax.random.key(0))
    w, b = np.asarray(params["dense_1"]["w"]), np.asarray(params["dense_1"]["b"])
    r = (x @ w)[..., 0] + b[0] - y                      # (N, T) residuals
    expected = (mask * r**2).sum() / mask.sum()         # padded steps count for nothing
    got = jnet.evaluate(model, params, state, x, y, mask=mask, batch_size=5)
    np.testing.assert_allclose(got["loss"], expected, rtol=1e-5)

    # one SGD step of the pure step == the hand-derived gradient of the masked mean
    weight = np.ones(len(x), np.float32)
    weight[-2:] = 0.0                                   # and padded examples count for nothing
    m = mask * weight[:, None]
    step = jnet.make_train_step(model, jnet.optim.sgd(0.1))
    new, _, _, logs = step(params, state, jnet.optim.sgd(0.1).init(params),
                           jnet.data.Batch(x, y, weight, mask), jax.random.key(1))
    grad_w = np.einsum("nt,ntf->f", 2 * m * r, x) / m.sum()
    grad_b = (2 * m * r).sum() / m.sum()
    np.testing.assert_allclose(new["dense_1"]["w"][:, 0], w[:, 0] - 0.1 * grad_w, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(new["dense_1"]["b"][0], b[0] - 0.1 * grad_b, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], (m * r**2).sum() / m.sum(), rtol=1e-5)
    assert float(logs["count"]) == m.sum()              # real tokens, not examples


def _alignment_checker():
    """Outputs x's row id minus the row id the mask encodes in binary, plus a parameter b:
    zero for every row exactly when mask rows travel with their x rows."""
    bits = 2 ** np.arange(T)

    def init_fn(key, in_shape):
        return (1,), {"b": jnp.zeros((1,))}, {}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        decoded = jnp.sum(jnp.where(mask, bits, 0), axis=1).astype(jnp.float32)
        return x[:, 0, :] - decoded[:, None] + params["b"], state

    return L.serial(L.Input((T, 1)), Layer(init_fn, apply_fn, kind="Check"),
                    L.RegressionOutput())


@pytest.mark.parametrize("scan", [True, False])
def test_batching_and_shuffling_keep_mask_rows_with_their_x_rows(scan):
    n = 23
    ids = np.arange(n)
    x = np.repeat(ids[:, None, None], T, axis=1).astype(np.float32)
    mask = (ids[:, None] >> np.arange(T)[None, :]) & 1 == 1    # row id in binary
    r = jnet.fit(_alignment_checker(), jnet.optim.sgd(0.0), x, np.zeros(n, np.float32),
                 mask=mask, epochs=3, batch_size=5, key=3, verbose=0,
                 options=jnet.training.Options(scan=scan))
    assert r.history["loss"] == [0.0, 0.0, 0.0]
    shifted = np.roll(mask, 1, axis=0)                          # a misaligned mask is seen
    r = jnet.fit(_alignment_checker(), jnet.optim.sgd(0.0), x, np.zeros(n, np.float32),
                 mask=shifted, epochs=1, batch_size=5, key=3, verbose=0,
                 options=jnet.training.Options(scan=scan))
    assert r.history["loss"][0] > 1.0


def test_scan_and_per_step_paths_give_identical_params_with_a_mask():
    x, y, mask, _ = _sequences(40, seed=2)
    kw = dict(mask=mask, epochs=2, batch_size=16, key=1, verbose=0,
              validation_data=(x, y, mask))
    a = jnet.fit(_lstm(), jnet.optim.adam(1e-2), x, y,
                 options=jnet.training.Options(scan=True), **kw)
    b = jnet.fit(_lstm(), jnet.optim.adam(1e-2), x, y,
                 options=jnet.training.Options(scan=False), **kw)
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6, atol=1e-7)
    assert a.history["val_loss"] == pytest.approx(b.history["val_loss"], rel=1e-6)


def test_iterable_of_masked_batches_trains_like_the_arrays():
    x, y, mask = _per_step_data(n=16)
    model = L.serial(L.Input((T, F)), L.Dense(1), L.RegressionOutput())
    batches = [jnet.data.Batch(x[i:i + 8], y[i:i + 8], np.ones(8, np.float32), mask[i:i + 8])
               for i in (0, 8)]
    a = jnet.fit(model, jnet.optim.sgd(0.1), batches, epochs=2, key=0, verbose=0)
    b = jnet.fit(model, jnet.optim.sgd(0.1), x, y, mask=mask, epochs=2, batch_size=8, key=0,
                 shuffle=False, verbose=0)
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6)


@pytest.mark.parametrize(
    ("mask", "match"),
    [(np.ones((12, T), np.float32), "mask must be boolean"),
     (np.ones((12, T + 1), bool), r"mask must have shape \(N, T\)"),
     (np.ones((11, T), bool), r"mask must have shape \(N, T\)")],
)
def test_a_bad_mask_is_a_data_error_before_training(mask, match):
    x, y, _ = _per_step_data()
    model = L.serial(L.Input((T, F)), L.Dense(1), L.RegressionOutput())
    with pytest.raises(jnet.DataError, match=match) as info:
        jnet.fit(model, "sgd", x, y, mask=mask, epochs=1, batch_size=None, key=0, verbose=0)
    assert str(info.value).startswith("jnet.fit: ")
    with pytest.raises(jnet.DataError, match="validation mask"):
        jnet.fit(model, "sgd", x, y, validation_data=(x, y, mask), epochs=1, batch_size=None,
                 key=0, verbose=0)


def _bn_model(momentum):
    return L.serial(L.Input((F,)), L.BatchNorm(momentum=momentum, name="bn"), L.Dense(1),
                    L.RegressionOutput())


def _running_stats_reference(x, batch_size, momentum):
    """NumPy: BatchNorm's running statistics after one unshuffled epoch, each batch's
    statistics over its real examples only (the padding of the short last batch left out)."""
    mean, var = np.zeros(F), np.ones(F)
    for start in range(0, len(x), batch_size):
        rows = x[start:start + batch_size].astype(np.float64)
        n = len(rows)
        mean = momentum * mean + (1 - momentum) * rows.mean(axis=0)
        var = momentum * var + (1 - momentum) * rows.var(axis=0) * n / (n - 1)
    return mean, var


@pytest.mark.parametrize("path", ["scan", "steps", "iterable"])
def test_padding_of_the_last_batch_moves_no_batchnorm_statistic(path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(11, F)).astype(np.float32) * 3 + 2   # 4 + 4 + 3 (+ 1 padding row)
    x[0] = 40.0       # the row repeated as padding is loud: counting it would show
    y = rng.normal(size=(11,)).astype(np.float32)
    model = _bn_model(0.6)
    if path == "iterable":
        data = [(x[i:i + 4], y[i:i + 4]) for i in (0, 4, 8)]
        r = jnet.fit(model, jnet.optim.sgd(0.0), data, epochs=1, key=0, verbose=0)
    else:
        r = jnet.fit(model, jnet.optim.sgd(0.0), x, y, epochs=1, batch_size=4, key=0,
                     shuffle=False, scan=path == "scan", verbose=0)
    mean, var = _running_stats_reference(x, 4, 0.6)
    bn = r.state["bn"]
    np.testing.assert_allclose(bn["mean"], mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn["var"], var, rtol=1e-5)


def _mask_recorder(seen):
    """An identity layer that records, while traced, the mask= the model is given."""

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        seen.append(None if mask is None else (tuple(mask.shape), mask.dtype))
        return x, state

    return Layer(lambda key, in_shape: (in_shape, {}, {}), apply_fn, kind="Recorder")


@pytest.mark.parametrize(("n", "user_mask", "expected"), [
    (12, False, None),                      # batch size divides N: the program of 0.2
    (12, True, ((4, T), jnp.bool_)),        # the user's mask, unchanged
    (10, False, ((4,), jnp.bool_)),         # padding: the real examples
    (10, True, ((4, T), jnp.bool_)),        # padding: AND-ed into the user's rows
])
def test_the_model_gets_an_example_mask_only_when_batches_can_be_padded(n, user_mask, expected):
    seen = []
    model = L.serial(L.Input((T, F)), _mask_recorder(seen), L.Dense(1), L.RegressionOutput())
    x, y, mask = _per_step_data(n)
    jnet.fit(model, jnet.optim.sgd(0.1), x, y, mask=mask if user_mask else None, epochs=1,
             batch_size=4, key=0, verbose=0)
    train_calls = seen[:1]
    assert train_calls == [expected]


def test_padded_rows_are_anded_out_of_the_users_mask():
    step = jnet.make_train_step(L.serial(L.Input((T, F)), L.Dense(1), L.RegressionOutput()),
                                jnet.optim.sgd(0.1))
    from jnet.training.step import model_mask
    x, y, mask = _per_step_data(4)
    weight = np.array([1, 1, 0, 1], np.float32)
    got = model_mask(jnet.data.Batch(x, y, weight, mask))
    np.testing.assert_array_equal(got, mask & (weight > 0)[:, None])
    np.testing.assert_array_equal(model_mask(jnet.data.Batch(x, y, weight)), weight > 0)
    assert model_mask(jnet.data.Batch(x, y)) is None
    assert callable(step)


def _seq_to_vector(head):
    """A sequence-to-vector model whose output width is T, the mask's length by chance."""
    return L.serial(L.Input((T, F)), L.GlobalAvgPool1D(), L.Dense(T), head)


def test_sequence_to_vector_regression_of_width_t_uses_every_target_column():
    x, _, mask = _per_step_data(8)
    y = np.random.default_rng(5).normal(size=(8, T)).astype(np.float32)
    model = _seq_to_vector(L.RegressionOutput())
    _, params, state = model.init(jax.random.key(0))
    pooled = (np.where(mask[..., None], x, 0).sum(1) / mask.sum(1, keepdims=True))
    pred = pooled @ np.asarray(params["dense_2"]["w"]) + np.asarray(params["dense_2"]["b"])
    expected = ((pred - y) ** 2).mean()     # every column: the targets are per sequence
    got = jnet.evaluate(model, params, state, x, y, mask=mask)
    np.testing.assert_allclose(got["loss"], expected, rtol=1e-5)
    step = jnet.make_train_step(model, jnet.optim.sgd(0.1))
    _, _, _, logs = step(params, state, jnet.optim.sgd(0.1).init(params),
                         jnet.data.Batch(x, y, None, mask), jax.random.key(0))
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)


def test_sequence_to_vector_classifier_of_width_t_takes_one_hot_targets_per_sequence():
    x, _, mask = _per_step_data(8)
    labels = np.arange(8) % T
    onehot = np.eye(T, dtype=np.float32)[labels]
    model = _seq_to_vector(L.ClassificationOutput())
    _, params, state = model.init(jax.random.key(0))
    a = jnet.evaluate(model, params, state, x, onehot, mask=mask)
    b = jnet.evaluate(model, params, state, x, labels, mask=mask)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)
    assert a["accuracy"] == pytest.approx(b["accuracy"])
    r = jnet.fit(model, "sgd", x, onehot, mask=mask, epochs=1, batch_size=4, key=0, verbose=0)
    assert np.isfinite(r.history["loss"][0])


def test_per_step_outputs_with_per_sequence_targets_are_a_data_error():
    x, _, mask = _per_step_data(8)
    model = L.serial(L.Input((T, F)), L.Dense(1), L.RegressionOutput())
    with pytest.raises(jnet.DataError, match=r"outputs keep the time axis.*y must have"):
        jnet.fit(model, "sgd", x, np.zeros((8, 3), np.float32), mask=mask, epochs=1, key=0,
                 verbose=0)
