"""Output heads: identity apply, per-example losses and links against NumPy references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnet import layers as L
from jnet.layers import LayerError

RNG = np.random.default_rng(0)


def np_log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


@pytest.mark.parametrize("make", [L.ClassificationOutput, L.RegressionOutput])
def test_apply_is_identity_without_params(make):
    layer = make()
    out_shape, params, state = layer.init(jax.random.key(0), (3, 4))
    assert (out_shape, params, state) == ((3, 4), {}, {})
    x = jnp.asarray(RNG.normal(size=(2, 3, 4)), jnp.float32)
    y, new_state = layer.apply(params, state, x, train=True)
    np.testing.assert_array_equal(y, x)
    assert new_state == {}


def test_names_and_tasks():
    cls, reg = L.ClassificationOutput(), L.RegressionOutput(name="out")
    assert cls.slug == "classification_output" and cls.head.task == "classification"
    assert reg.slug == "regression_output" and reg.head.task == "regression"
    assert [n for n, _ in L.serial(L.Tanh(), reg).children] == ["tanh_0", "out"]


class HeadTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_classification_loss_and_link(self):
        head = L.ClassificationOutput().head
        logits = RNG.normal(size=(5, 4)) * 3
        labels = RNG.integers(0, 4, size=5)
        want = -np.take_along_axis(np_log_softmax(logits), labels[:, None], 1)[:, 0]
        lj = jnp.asarray(logits, jnp.float32)
        by_index = self.variant(head.loss)(lj, jnp.asarray(labels))
        by_onehot = self.variant(head.loss)(lj, jnp.eye(4)[labels])
        assert by_index.shape == (5,)
        np.testing.assert_allclose(by_index, want, rtol=1e-5)
        np.testing.assert_allclose(by_onehot, want, rtol=1e-5)
        probs = self.variant(head.link)(lj)
        np.testing.assert_allclose(probs, np.exp(np_log_softmax(logits)), rtol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_regression_loss_and_link(self):
        head = L.RegressionOutput().head
        pred = RNG.normal(size=(5, 3))
        target = RNG.normal(size=(5, 3))
        got = self.variant(head.loss)(jnp.asarray(pred, jnp.float32),
                                      jnp.asarray(target, jnp.float32))
        np.testing.assert_allclose(got, ((pred - target) ** 2).mean(1), rtol=1e-5)
        p32 = jnp.asarray(pred, jnp.float32)
        np.testing.assert_array_equal(self.variant(head.link)(p32), p32)


def test_classification_loss_per_pixel_is_mean_over_pixels():
    head = L.ClassificationOutput().head
    logits = RNG.normal(size=(2, 3, 3, 4))
    labels = RNG.integers(0, 4, size=(2, 3, 3))
    per_pixel = -np.take_along_axis(np_log_softmax(logits), labels[..., None], -1)[..., 0]
    got = head.loss(jnp.asarray(logits, jnp.float32), jnp.asarray(labels))
    assert got.shape == (2,)
    np.testing.assert_allclose(got, per_pixel.mean((1, 2)), rtol=1e-5)


def test_classification_loss_gradient_and_extremes():
    head = L.ClassificationOutput().head
    logits = jnp.array([[1e4, -1e4, 0.0], [0.5, 0.2, -0.1]])
    labels = jnp.array([1, 2])
    loss = head.loss(logits, labels)
    assert np.all(np.isfinite(loss))
    np.testing.assert_allclose(loss[0], 2e4, rtol=1e-6)
    g = jax.grad(lambda z: jnp.sum(head.loss(z, labels)))(logits)
    p = np.exp(np_log_softmax(np.asarray(logits, np.float64)))
    np.testing.assert_allclose(g, p - np.eye(3)[[1, 2]], atol=1e-6)


def test_regression_loss_accepts_flat_targets_for_single_output():
    head = L.RegressionOutput().head
    pred = jnp.array([[1.0], [2.0], [4.0]])
    np.testing.assert_allclose(head.loss(pred, jnp.array([0.0, 2.0, 1.0])), [1.0, 0.0, 9.0])
    with pytest.raises(ValueError, match=r"mse: expected target of the same shape as pred "
                                         r"\(3, 2\), got \(3,\)"):
        head.loss(jnp.zeros((3, 2)), jnp.zeros(3))


def test_serial_model_carries_head_and_returns_logits():
    model = L.serial(L.Linear(2.0), L.ClassificationOutput())
    assert model.head is not None and model.head.task == "classification"
    _, params, state = model.init(jax.random.key(0), (3,))
    x = jnp.array([[0.1, -0.2, 0.3]])
    logits, _ = model.apply(params, state, x)
    np.testing.assert_allclose(logits, 2 * np.asarray(x), rtol=1e-6)  # not probabilities
    np.testing.assert_allclose(model.head.link(logits).sum(), 1.0, rtol=1e-6)
    assert L.serial(L.Tanh(), L.RegressionOutput()).head.task == "regression"
    assert L.serial(L.ClassificationOutput(), L.Tanh()).head is None  # only the last layer counts


def test_classification_output_needs_two_classes():
    for in_shape in [(1,), ()]:
        with pytest.raises(LayerError, match=r"ClassificationOutput layer: expected per-example "
                                             r"logits \(\.\.\., C\) with C >= 2 classes"):
            L.ClassificationOutput().init(jax.random.key(0), in_shape)


def test_heads_reject_integer_outputs():
    with pytest.raises(LayerError, match="RegressionOutput layer: expected a floating-point"):
        L.RegressionOutput().apply({}, {}, jnp.ones((2, 1), jnp.int32))
