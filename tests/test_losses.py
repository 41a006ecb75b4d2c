"""jnet.losses against NumPy references written from the definitions."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jnet import losses

RNG = np.random.default_rng(0)


# ---- NumPy references ----------------------------------------------------------------------


def np_log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def np_ce_int(logits, labels):
    return -np.take_along_axis(np_log_softmax(logits), labels[..., None], -1)[..., 0]


def np_ce_soft(logits, targets):
    return -(targets * np_log_softmax(logits)).sum(-1)


def np_bce(logits, y):
    p = 1 / (1 + np.exp(-logits))
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def one_hot(labels, c):
    return np.eye(c)[labels]


# ---- softmax cross-entropy -----------------------------------------------------------------


def test_ce_integer_labels_matches_numpy_all_reductions():
    logits = RNG.normal(size=(6, 4)) * 3
    labels = RNG.integers(0, 4, size=6)
    want = np_ce_int(logits, labels)
    lj, yj = jnp.asarray(logits, jnp.float32), jnp.asarray(labels)
    np.testing.assert_allclose(losses.softmax_cross_entropy(lj, yj, reduction="none"), want,
                               rtol=1e-5)
    np.testing.assert_allclose(losses.softmax_cross_entropy(lj, yj), want.mean(), rtol=1e-5)
    np.testing.assert_allclose(losses.softmax_cross_entropy(lj, yj, reduction="sum"), want.sum(),
                               rtol=1e-5)


def test_ce_integer_and_one_hot_agree_and_soft_targets_match_numpy():
    logits = jnp.asarray(RNG.normal(size=(5, 3)), jnp.float32)
    labels = jnp.array([0, 2, 1, 1, 0])
    by_index = losses.softmax_cross_entropy(logits, labels, reduction="none")
    by_onehot = losses.softmax_cross_entropy(logits, jax.nn.one_hot(labels, 3), reduction="none")
    np.testing.assert_allclose(by_index, by_onehot, rtol=1e-6)
    soft = RNG.dirichlet(np.ones(3), size=5)
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(logits, jnp.asarray(soft, jnp.float32), reduction="none"),
        np_ce_soft(np.asarray(logits, np.float64), soft), rtol=1e-5)
    # bool one-hot targets work too
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(logits, one_hot(np.asarray(labels), 3).astype(bool),
                                     reduction="none"), by_index, rtol=1e-6)


def test_ce_per_pixel_labels():
    logits = RNG.normal(size=(2, 3, 3, 5))
    labels = RNG.integers(0, 5, size=(2, 3, 3))
    got = losses.softmax_cross_entropy(jnp.asarray(logits, jnp.float32), jnp.asarray(labels),
                                       reduction="none")
    assert got.shape == (2, 3, 3)
    np.testing.assert_allclose(got, np_ce_int(logits, labels), rtol=1e-5)


def test_ce_gradient_is_softmax_minus_target():
    logits = RNG.normal(size=(4, 3))
    labels = np.array([2, 0, 1, 2])
    g = jax.grad(lambda z: losses.softmax_cross_entropy(z, jnp.asarray(labels), reduction="sum"))(
        jnp.asarray(logits, jnp.float32))
    np.testing.assert_allclose(g, np.exp(np_log_softmax(logits)) - one_hot(labels, 3), atol=1e-6)


def test_ce_extreme_logits_finite_and_exact():
    logits = jnp.array([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0], [3e37, -3e37, 0.0]])
    labels = jnp.array([0, 1, 2])
    got = losses.softmax_cross_entropy(logits, labels, reduction="none")
    np.testing.assert_allclose(got, [0.0, 2e4, 3e37], rtol=1e-6)
    for target in (labels, jax.nn.one_hot(labels, 3)):
        g = jax.grad(lambda z, t=target: losses.softmax_cross_entropy(z, t))(logits)
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, (np.eye(3)[[0, 0, 0]] - np.eye(3)[[0, 1, 2]]) / 3,
                                   atol=1e-6)


def test_ce_masked_logit_with_zero_target_is_finite():
    logits = jnp.array([[2.0, -jnp.inf, 0.5]])
    for labels in (jnp.array([0]), jnp.array([[1.0, 0.0, 0.0]])):
        loss = losses.softmax_cross_entropy(logits, labels)
        np.testing.assert_allclose(loss, np_ce_int(np.array([[2.0, 0.5]]), np.array([0]))[0],
                                   rtol=1e-6)
        assert np.all(np.isfinite(jax.grad(losses.softmax_cross_entropy)(logits, labels)))


def test_ce_out_of_range_labels_raise_when_concrete():
    logits = jnp.zeros((3, 4))
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: integer labels must lie in "
                                         r"\[0, 4\).*got label 4"):
        losses.softmax_cross_entropy(logits, jnp.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"got label -1 \(2 out of range\)"):
        losses.softmax_cross_entropy(logits, np.array([-1, 2, 7]))


def test_ce_out_of_range_labels_under_jit_give_nan_not_zero():
    got = jax.jit(lambda z, y: losses.softmax_cross_entropy(z, y, reduction="none"))(
        jnp.zeros((3, 4)), jnp.array([0, 4, -1]))
    np.testing.assert_allclose(got[0], np.log(4), rtol=1e-6)
    assert np.isnan(got[1]) and np.isnan(got[2])


def test_ce_shape_errors_name_function_expected_and_given():
    logits = jnp.zeros((4, 3))
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: expected integer labels of "
                                         r"shape \(4,\).*or targets of shape \(4, 3\).*got "
                                         r"integer labels of shape \(5,\)"):
        losses.softmax_cross_entropy(logits, jnp.zeros(5, jnp.int32))
    with pytest.raises(ValueError, match=r"got float32 labels of shape \(4,\).*must be cast to "
                                         r"int"):
        losses.softmax_cross_entropy(logits, jnp.zeros(4, jnp.float32))
    with pytest.raises(ValueError, match="expected floating-point logits"):
        losses.softmax_cross_entropy(jnp.zeros((4, 3), jnp.int32), jnp.zeros(4, jnp.int32))


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, (4, 5), elements=st.floats(-30, 30, width=32)),
       hnp.arrays(np.int32, (4,), elements=st.integers(0, 4)),
       st.floats(-100, 100, width=32))
def test_ce_properties(logits, labels, shift):
    per = np.asarray(losses.softmax_cross_entropy(logits, labels, reduction="none"))
    assert np.all(per >= -1e-6)
    np.testing.assert_allclose(per, np_ce_int(logits.astype(np.float64), labels), rtol=1e-4,
                               atol=1e-4)
    shifted = losses.softmax_cross_entropy(logits + np.float32(shift), labels, reduction="none")
    np.testing.assert_allclose(shifted, per, rtol=1e-4, atol=2e-4)


# ---- masks and reductions ------------------------------------------------------------------


def test_where_mask_means_over_masked_in_examples_only():
    logits = jnp.asarray(RNG.normal(size=(5, 3)), jnp.float32)
    labels = jnp.array([0, 1, 2, 0, 1])
    mask = jnp.array([True, True, False, True, False])
    per = np_ce_int(np.asarray(logits, np.float64), np.asarray(labels))
    got = losses.softmax_cross_entropy(logits, labels, where=mask)
    np.testing.assert_allclose(got, per[[0, 1, 3]].mean(), rtol=1e-5)
    np.testing.assert_allclose(losses.softmax_cross_entropy(logits, labels, where=mask,
                                                            reduction="sum"),
                               per[[0, 1, 3]].sum(), rtol=1e-5)
    none = losses.softmax_cross_entropy(logits, labels, where=mask, reduction="none")
    np.testing.assert_allclose(none, np.where(np.asarray(mask), per, 0), rtol=1e-5)


def test_where_mask_ignores_nan_in_padded_rows_and_all_masked_gives_zero():
    pred = jnp.array([[1.0, 2.0], [jnp.nan, jnp.inf]])
    target = jnp.array([[0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(losses.mse(pred, target, where=jnp.array([True, False])), 2.5)
    np.testing.assert_allclose(losses.mse(pred, target, where=jnp.array([False, False])), 0.0)


def test_where_mask_per_element_and_broadcast_per_example():
    pred = jnp.asarray(RNG.normal(size=(3, 4)), jnp.float32)
    sq = np.asarray(pred, np.float64) ** 2
    ex = jnp.array([True, False, True])
    np.testing.assert_allclose(losses.mse(pred, jnp.zeros((3, 4)), where=ex),
                               sq[[0, 2]].mean(), rtol=1e-5)
    el = np.asarray(RNG.random((3, 4)) > 0.5)
    el[0, 0] = True
    np.testing.assert_allclose(losses.mse(pred, jnp.zeros((3, 4)), where=jnp.asarray(el)),
                               sq[el].mean(), rtol=1e-5)


def test_bad_mask_and_reduction_errors():
    x = jnp.zeros((3, 2))
    with pytest.raises(ValueError, match=r"mse: expected `where` of shape \(3,\).*or \(3, 2\).*"
                                         r"got \(2,\)"):
        losses.mse(x, x, where=jnp.array([True, False]))
    with pytest.raises(ValueError, match="mse: expected a boolean `where` mask, got dtype"):
        losses.mse(x, x, where=jnp.ones(3))
    with pytest.raises(ValueError, match=r"huber: expected reduction in \('mean', 'sum', "
                                         r"'none'\), got 'avg'"):
        losses.huber(x, x, reduction="avg")


class JitTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_masked_losses_same_under_jit(self):
        logits = jnp.asarray(RNG.normal(size=(4, 3)), jnp.float32)
        labels = jnp.array([0, 2, 1, 1])
        mask = jnp.array([True, False, True, True])

        @self.variant
        def all_losses(z, y, m):
            return (losses.softmax_cross_entropy(z, y, where=m),
                    losses.sigmoid_binary_cross_entropy(z, jnp.ones_like(z) * 0.3, where=m),
                    losses.mse(z, jnp.zeros_like(z), where=m, reduction="sum"))

        ce, bce, sq = all_losses(logits, labels, mask)
        keep = np.asarray(mask)
        z64 = np.asarray(logits, np.float64)
        np.testing.assert_allclose(ce, np_ce_int(z64, np.asarray(labels))[keep].mean(), rtol=1e-5)
        np.testing.assert_allclose(bce, np_bce(z64, 0.3)[keep].mean(), rtol=1e-5)
        np.testing.assert_allclose(sq, (z64**2)[keep].sum(), rtol=1e-5)


# ---- binary cross-entropy ------------------------------------------------------------------


def test_bce_matches_numpy_and_gradient():
    logits = RNG.normal(size=(4, 3)) * 4
    y = RNG.random((4, 3))
    lj = jnp.asarray(logits, jnp.float32)
    got = losses.sigmoid_binary_cross_entropy(lj, jnp.asarray(y, jnp.float32), reduction="none")
    np.testing.assert_allclose(got, np_bce(logits, y), rtol=1e-5, atol=1e-6)
    g = jax.grad(lambda z: losses.sigmoid_binary_cross_entropy(z, jnp.asarray(y, jnp.float32),
                                                               reduction="sum"))(lj)
    np.testing.assert_allclose(g, 1 / (1 + np.exp(-logits)) - y, atol=1e-6)


def test_bce_extreme_logits_finite_and_asymptotically_exact():
    logits = jnp.array([1e4, 1e4, -1e4, -1e4, 200.0, -200.0])
    y = jnp.array([0, 1, 0, 1, 0, 1])  # integer labels are accepted
    got = losses.sigmoid_binary_cross_entropy(logits, y, reduction="none")
    np.testing.assert_allclose(got, [1e4, 0, 0, 1e4, 200, 200], rtol=1e-6)
    g = jax.grad(lambda z: losses.sigmoid_binary_cross_entropy(z, y, reduction="sum"))(logits)
    np.testing.assert_allclose(g, [1, 0, 0, -1, 1, -1], atol=1e-6)


def test_bce_shape_mismatch_error():
    with pytest.raises(ValueError, match=r"sigmoid_binary_cross_entropy: expected labels of "
                                         r"the same shape as logits \(4, 1\), got \(4,\)"):
        losses.sigmoid_binary_cross_entropy(jnp.zeros((4, 1)), jnp.zeros(4))


# ---- regression losses ---------------------------------------------------------------------


def test_mse_mae_huber_match_numpy():
    pred = RNG.normal(size=(5, 2)) * 3
    target = RNG.normal(size=(5, 2))
    d = pred - target
    pj, tj = jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32)
    np.testing.assert_allclose(losses.mse(pj, tj), (d**2).mean(), rtol=1e-5)
    np.testing.assert_allclose(losses.mae(pj, tj, reduction="sum"), np.abs(d).sum(), rtol=1e-5)
    for delta in (0.5, 1.0, 2.0):
        want = np.where(np.abs(d) <= delta, 0.5 * d**2, delta * (np.abs(d) - 0.5 * delta))
        np.testing.assert_allclose(losses.huber(pj, tj, delta=delta, reduction="none"), want,
                                   rtol=1e-5, atol=1e-6)


def test_regression_gradients_match_formulas():
    pred = jnp.array([0.3, -2.0, 1.5, 4.0])
    target = jnp.zeros(4)
    d = np.asarray(pred)
    gm = jax.grad(lambda p: losses.mse(p, target, reduction="sum"))(pred)
    np.testing.assert_allclose(gm, 2 * d, rtol=1e-6)
    gh = jax.grad(lambda p: losses.huber(p, target, reduction="sum"))(pred)
    np.testing.assert_allclose(gh, np.where(np.abs(d) <= 1, d, np.sign(d)), rtol=1e-6)


def test_mae_gradient_is_sign_and_zero_at_zero():
    """The documented ∂ℓ/∂pred = sign(pred − target), 0 where pred == target (PyTorch's L1Loss);
    jnp.abs alone would give 1 there."""
    pred = jnp.array([0.3, -2.0, 0.0, 1.5])
    target = jnp.array([0.0, 0.0, 0.0, 1.5])
    g = jax.grad(lambda p: losses.mae(p, target, reduction="sum"))(pred)
    np.testing.assert_array_equal(g, np.sign(np.asarray(pred) - np.asarray(target)))


def test_regression_shape_errors():
    with pytest.raises(ValueError, match=r"mse: expected target of the same shape as pred "
                                         r"\(4, 1\), got \(4,\).*reshape"):
        losses.mse(jnp.zeros((4, 1)), jnp.zeros(4))
    with pytest.raises(ValueError, match=r"huber: expected delta > 0, got 0"):
        losses.huber(jnp.zeros(2), jnp.zeros(2), delta=0)


def test_concrete_labels_closed_over_by_jit():
    """Labels closed over by a jitted function are concrete: the check must not bool() a tracer."""
    logits = jnp.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    labels = jnp.array([0, 2])
    loss = jax.jit(lambda z: losses.softmax_cross_entropy(z, labels))(logits)
    logp = logits - np.log(np.exp(np.asarray(logits)).sum(-1, keepdims=True))
    np.testing.assert_allclose(loss, -(logp[0, 0] + logp[1, 2]) / 2, rtol=1e-6)
