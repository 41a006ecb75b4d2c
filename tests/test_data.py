"""Batching: the three regimes, fixed shapes, masks, shuffling with an explicit key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnet import data as D


@pytest.mark.parametrize(
    ("batch_size", "steps", "width"),
    [(None, 1, 10), (1, 10, 1), (4, 3, 4), (5, 2, 5), (10, 1, 10)],
)
def test_epoch_plan_regimes_cover_every_example_once(batch_size, steps, width):
    n = 10
    bs = D.resolve_batch_size(batch_size, n)
    idx, w = D.epoch_plan(jax.random.key(1), n, bs)
    assert idx.shape == w.shape == (steps, width)
    real = np.asarray(idx)[np.asarray(w) == 1.0]
    assert sorted(real.tolist()) == list(range(n))  # each example exactly once with weight 1
    assert float(w.sum()) == n


def test_padding_repeats_real_examples_with_zero_weight():
    idx, w = D.epoch_plan(None, 10, 4)
    np.testing.assert_array_equal(np.asarray(idx).ravel(), [*range(10), 0, 1])
    np.testing.assert_array_equal(np.asarray(w).ravel(), [1.0] * 10 + [0.0, 0.0])


def test_drop_remainder_drops_the_short_batch():
    idx, w = D.epoch_plan(None, 10, 4, drop_remainder=True)
    assert idx.shape == (2, 4)
    assert bool(jnp.all(w == 1.0))
    with pytest.raises(ValueError, match="no batch"):
        D.epoch_plan(None, 3, 4, drop_remainder=True)


def test_shuffle_is_a_function_of_the_key():
    a, _ = D.epoch_plan(jax.random.key(0), 50, 7)
    b, _ = D.epoch_plan(jax.random.key(0), 50, 7)
    c, _ = D.epoch_plan(jax.random.key(1), 50, 7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_batches_numpy_stay_on_host_and_have_fixed_shape():
    x = np.arange(22, dtype=np.float32).reshape(11, 2)
    y = np.arange(11)
    out = list(D.batches(x, y, 4, key=jax.random.key(3)))
    assert len(out) == 3
    assert all(isinstance(b.x, np.ndarray) and b.x.shape == (4, 2) for b in out)
    assert all(b.mask is None for b in out)
    seen = np.concatenate([b.y[b.weight == 1] for b in out])
    assert sorted(seen.tolist()) == list(range(11))
    for xb, yb, _, _ in out:  # rows stay paired with their labels
        np.testing.assert_array_equal(xb[:, 0], 2 * yb)


def test_batch_size_larger_than_dataset_warns_and_uses_full_batch():
    with pytest.warns(UserWarning, match="larger than the dataset"):
        assert D.resolve_batch_size(64, 10) == 10


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_batch_size_is_rejected(bad):
    with pytest.raises((ValueError, TypeError), match="batch_size"):
        D.resolve_batch_size(bad, 10)


def test_mismatched_lengths_error_names_both_shapes():
    with pytest.raises(ValueError, match=r"x.shape=\(5, 2\) and y.shape=\(4,\)"):
        D.check_arrays(np.zeros((5, 2)), np.zeros(4))


def test_nan_and_inf_in_data_are_reported_with_their_position():
    x = np.zeros((6, 3), np.float32)
    x[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"x contains 1 NaN/inf.*example 4"):
        D.check_arrays(x, np.zeros(6))
    y = np.zeros(6, np.float32)
    y[2] = np.inf
    with pytest.raises(ValueError, match=r"y contains 1 NaN/inf.*example 2"):
        D.check_arrays(np.zeros((6, 3)), y)
    assert D.check_arrays(x, np.zeros(6), check_finite=False) == 6


def test_pad_batch_pads_to_size_with_zero_weight():
    xb, yb, w, mask = D.pad_batch(D.Batch(np.arange(3.0)[:, None], np.arange(3), np.ones(3)), 5)
    assert mask is None
    np.testing.assert_array_equal(yb, [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(w, [1, 1, 1, 0, 0])
    assert xb.shape == (5, 1)
