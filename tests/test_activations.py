"""jnet.activations against NumPy implementations of the formulas and their derivatives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.test_util import check_grads

from jnet import activations as A

# Many points, including the extremes where naive formulas overflow.
EXTREMES = [-1e4, -1000.0, -100.0, -30.0, -1.0, -1e-6, 0.0, 1e-6, 1.0, 30.0, 100.0, 1000.0, 1e4]
POINTS = np.concatenate([np.linspace(-12, 12, 97), EXTREMES])


# ---- NumPy references, written from the formulas (float64, overflow silenced) --------------


def np_sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def np_elu(x, alpha=1.0):
    with np.errstate(over="ignore"):
        return np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1))


REFERENCES = {
    # name: (jnet call, value f(x), derivative f'(x)) as written in the docstrings
    "binary_step": (A.binary_step, lambda x: (x >= 0).astype(float), lambda x: 0 * x),
    "linear": (lambda x: A.linear(x, a=2.5), lambda x: 2.5 * x, lambda x: 2.5 + 0 * x),
    "sigmoid": (A.sigmoid, np_sigmoid, lambda x: np_sigmoid(x) * (1 - np_sigmoid(x))),
    "tanh": (A.tanh, np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "relu": (A.relu, lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float)),
    "leaky_relu": (
        lambda x: A.leaky_relu(x, negative_slope=0.1),
        lambda x: np.where(x > 0, x, 0.1 * x),
        lambda x: np.where(x > 0, 1.0, 0.1),
    ),
    "prelu": (
        lambda x: A.prelu(x, 0.25),
        lambda x: np.where(x > 0, x, 0.25 * x),
        lambda x: np.where(x > 0, 1.0, 0.25),
    ),
    "elu": (
        lambda x: A.elu(x, alpha=1.5),
        lambda x: np_elu(x, 1.5),
        lambda x: np.where(x > 0, 1.0, np_elu(x, 1.5) + 1.5),  # f(x) + α for x ≤ 0
    ),
    "swish": (
        lambda x: A.swish(x, beta=1.7),
        lambda x: x * np_sigmoid(1.7 * x),
        lambda x: np_sigmoid(1.7 * x) + 1.7 * x * np_sigmoid(1.7 * x) * (1 - np_sigmoid(1.7 * x)),
    ),
    "softplus": (A.softplus, lambda x: np.logaddexp(0, x), np_sigmoid),
    "log_sigmoid": (A.log_sigmoid, lambda x: -np.logaddexp(0, -x), lambda x: np_sigmoid(-x)),
}


def elementwise_grad(fn):
    return jax.vmap(jax.grad(lambda t: fn(t)))


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_value_matches_numpy_formula(name):
    fn, ref, _ = REFERENCES[name]
    got = np.asarray(fn(jnp.asarray(POINTS, jnp.float32)), np.float64)
    want = ref(POINTS.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_gradient_matches_documented_derivative(name):
    fn, _, deriv = REFERENCES[name]
    got = np.asarray(elementwise_grad(fn)(jnp.asarray(POINTS, jnp.float32)), np.float64)
    want = deriv(POINTS.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_value_and_gradient_finite_at_extremes(name):
    fn, _, _ = REFERENCES[name]
    x = jnp.array([-1e4, -1000.0, -88.8, 88.8, 1000.0, 1e4], jnp.float32)
    assert np.all(np.isfinite(fn(x)))
    assert np.all(np.isfinite(elementwise_grad(fn)(x)))


SMOOTH = ["sigmoid", "tanh", "swish", "softplus", "log_sigmoid", "linear"]


@pytest.mark.parametrize("name", SMOOTH)
def test_check_grads_smooth(name):
    fn = REFERENCES[name][0]
    with jax.enable_x64(True):
        x = jnp.array([-6.0, -1.3, -0.2, 0.0, 0.4, 2.2, 7.0])
        check_grads(fn, (x,), order=2, modes=["fwd", "rev"])


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "prelu", "elu"])
def test_check_grads_away_from_the_kink(name):
    fn = REFERENCES[name][0]
    with jax.enable_x64(True):
        x = jnp.array([-6.0, -1.3, -0.2, 0.4, 2.2, 7.0])
        check_grads(fn, (x,), order=1, modes=["fwd", "rev"])


# ---- the two textbook errata (docs/activations.md) -----------------------------------------


def test_erratum_swish_is_x_times_sigmoid_not_textbook_formula():
    # Right: -2 / (1 + e^2) = -0.2384058...; the textbook's -2 / (1 - e^2) would be +0.313.
    assert float(A.swish(-2.0)) == pytest.approx(-0.23840584404423515, rel=1e-6)
    assert float(A.swish(-2.0)) < 0
    assert float(A.swish(0.0)) == 0.0  # the textbook formula is 0/0 here


def test_erratum_elu_derivative_is_one_for_positive_x():
    x = jnp.array([1e-3, 0.5, 2.0, 7.0, 1000.0])
    np.testing.assert_array_equal(elementwise_grad(A.elu)(x), np.ones(5))
    # x <= 0: α·e^x = f(x) + α (not x)
    xn = jnp.array([-3.0, -0.5, 0.0])
    for alpha in (1.0, 0.3):
        g = elementwise_grad(lambda t, a=alpha: A.elu(t, alpha=a))(xn)
        np.testing.assert_allclose(g, alpha * np.exp(np.asarray(xn)), rtol=1e-6)
        np.testing.assert_allclose(g, A.elu(xn, alpha) + alpha, rtol=1e-6)


def test_elu_large_inputs_finite_and_exact():
    x = jnp.array([1000.0, -1000.0, 1e4, -1e4])
    np.testing.assert_array_equal(A.elu(x), [1000.0, -1.0, 1e4, -1.0])
    np.testing.assert_array_equal(elementwise_grad(A.elu)(x), [1.0, 0.0, 1.0, 0.0])


# ---- binary step ----------------------------------------------------------------------------


def test_binary_step_values_and_zero_gradient():
    x = jnp.array([-2.0, -1e-30, 0.0, 1e-30, 3.0])
    np.testing.assert_array_equal(A.binary_step(x), [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(elementwise_grad(A.binary_step)(x), np.zeros(5))


def test_binary_step_straight_through_same_value_identity_gradient():
    x = jnp.array([-2.0, -0.1, 0.0, 0.3, 3.0])
    st_fn = lambda t: A.binary_step(t, straight_through=True)  # noqa: E731
    np.testing.assert_array_equal(st_fn(x), A.binary_step(x))
    np.testing.assert_array_equal(elementwise_grad(st_fn)(x), np.ones(5))


def test_integer_input_gives_float32():
    x = jnp.arange(-3, 4)
    for fn in (A.binary_step, A.sigmoid, A.softmax, A.elu, A.swish):
        assert fn(x).dtype == jnp.float32
    np.testing.assert_allclose(A.sigmoid(x), np_sigmoid(np.arange(-3.0, 4.0)), rtol=1e-6)


@pytest.mark.parametrize("name", ["sigmoid", "elu", "swish", "relu", "tanh"])
def test_dtype_preserved(name):
    fn = REFERENCES[name][0]
    assert fn(jnp.ones(3, jnp.bfloat16)).dtype == jnp.bfloat16


# ---- softmax / log_softmax -----------------------------------------------------------------


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_softmax_matches_numpy_and_axis():
    x = np.random.default_rng(0).normal(size=(3, 4, 5)) * 5
    for axis in (-1, 0, 1):
        np.testing.assert_allclose(A.softmax(jnp.asarray(x), axis=axis), np_softmax(x, axis),
                                   rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(A.log_softmax(jnp.asarray(x), axis=axis),
                                   np.log(np_softmax(x, axis)), rtol=1e-5, atol=1e-5)


def test_softmax_jacobian_matches_formula():
    x = jnp.array([0.3, -1.2, 2.0, 0.0])
    s = np_softmax(np.asarray(x, np.float64))
    want = np.diag(s) - np.outer(s, s)  # ∂s_i/∂x_j = s_i(δ_ij − s_j)
    np.testing.assert_allclose(jax.jacobian(A.softmax)(x), want, atol=1e-6)
    np.testing.assert_allclose(jax.jacobian(A.log_softmax)(x), np.eye(4) - s[None, :], atol=1e-6)


def test_softmax_extreme_logits_finite_value_and_grad():
    x = jnp.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e38, 0.0, -1e38]])
    for fn in (A.softmax, A.log_softmax):
        assert np.all(np.isfinite(fn(x)))
        jac = jax.vmap(jax.jacobian(fn))(x)
        assert np.all(np.isfinite(jac))
    np.testing.assert_allclose(A.softmax(x)[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(A.softmax(x)[1], [1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(A.log_softmax(x)[0], [0.0, -2e4, -1e4])


def test_softmax_with_masked_minus_inf_entries():
    x = jnp.array([1.0, -jnp.inf, 3.0, -jnp.inf])
    p = A.softmax(x)
    np.testing.assert_allclose(p, [*np_softmax(np.array([1.0, 3.0]))[:1], 0,
                                   np_softmax(np.array([1.0, 3.0]))[1], 0], rtol=1e-6)
    jac = jax.jacobian(A.softmax)(x)
    assert np.all(np.isfinite(jac))
    np.testing.assert_array_equal(jac[:, 1], 0.0)  # masked entries get no gradient
    ls = A.log_softmax(x)
    assert ls[1] == -jnp.inf and np.isfinite(ls[0])
    assert np.all(np.isfinite(jax.grad(lambda t: A.log_softmax(t)[0])(x)))


def test_softmax_fully_masked_row_is_nan_as_documented():
    # No distribution exists; PyTorch also returns NaN. The other rows are unaffected.
    p = A.softmax(jnp.array([[-jnp.inf, -jnp.inf], [0.0, 0.0]]))
    assert np.all(np.isnan(p[0]))
    np.testing.assert_allclose(p[1], [0.5, 0.5])


finite_rows = hnp.arrays(np.float32, (3, 6),
                         elements=st.floats(-1e3, 1e3, width=32, allow_subnormal=False))


@settings(max_examples=60, deadline=None)
@given(finite_rows, st.floats(-1e3, 1e3, width=32))
def test_softmax_properties(x, shift):
    p = np.asarray(A.softmax(jnp.asarray(x)), np.float64)
    assert np.all(p >= 0) and np.all(p <= 1)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    # shift invariance, in float32: the shift is exact relative to the spread of the logits
    shifted = np.asarray(A.softmax(jnp.asarray(x) + np.float32(shift)), np.float64)
    np.testing.assert_allclose(shifted, p, atol=2e-3)
    ls = np.asarray(A.log_softmax(jnp.asarray(x)), np.float64)
    assert np.all(ls <= 0) and np.all(np.isfinite(ls))
    ok = p > 1e-30  # where softmax has not underflowed, log_softmax == log(softmax)
    np.testing.assert_allclose(ls[ok], np.log(p[ok]), rtol=1e-4, atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, (8,), elements=st.floats(-50, 50, width=32)))
def test_sigmoid_symmetry_and_range(x):
    s = np.asarray(A.sigmoid(jnp.asarray(x)), np.float64)
    assert np.all((s >= 0) & (s <= 1))
    np.testing.assert_allclose(s + np.asarray(A.sigmoid(-jnp.asarray(x))), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(A.tanh(jnp.asarray(x))),
                               2 * np.asarray(A.sigmoid(2 * jnp.asarray(x))) - 1, atol=2e-6)


# ---- registry -------------------------------------------------------------------------------


SEED = ["binary_step", "linear", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu",
        "swish", "softmax"]


def test_registry_holds_every_seed_activation():
    for name in SEED:
        assert A.ALL[name] is getattr(A, name)
        assert A.get(name) is getattr(A, name)


def test_get_is_forgiving_about_case_and_dashes_and_passes_callables():
    assert A.get("Leaky-ReLU") is A.leaky_relu
    assert A.get(" ELU ") is A.elu
    assert A.get(jnp.sin) is jnp.sin


def test_get_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'.*Valid names: .*leaky_relu"):
        A.get("gelu")
    with pytest.raises(TypeError, match="expected an activation name or a callable, got int"):
        A.get(3)


@pytest.mark.parametrize("name", sorted(A.ALL))
def test_nan_propagates_through_every_activation(name):
    """NaN in, NaN out (as jax.nn and PyTorch): a NaN input must never turn into a finite
    value, or broken data and diverged activations would vanish silently."""
    fn = A.ALL[name]
    x = jnp.array([[-2.0, np.nan, 0.0, 3.0]])
    y = fn(x, jnp.full((4,), 0.25)) if name == "prelu" else fn(x)
    if name in ("softmax", "log_softmax"):
        assert np.isnan(np.asarray(y)).all()  # the whole row depends on the NaN
    else:
        np.testing.assert_array_equal(np.isnan(np.asarray(y)), [[False, True, False, False]])


def test_relu_gradient_is_zero_at_zero_and_one_above():
    grad = jax.grad(lambda v: jnp.sum(A.relu(v)))
    np.testing.assert_array_equal(grad(jnp.array([-1.0, 0.0, 2.0])), [0.0, 0.0, 1.0])
