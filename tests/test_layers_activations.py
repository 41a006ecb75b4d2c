"""Activation layers: shapes, values against NumPy formulas, jit, names, PReLU's learned slope."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jnet import layers as L
from jnet.layers import LayerError


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


# (constructor, NumPy formula, expected default child slug)
CASES = {
    "BinaryStep": (L.BinaryStep, lambda x: (x >= 0).astype(float), "binary_step"),
    "Linear": (lambda: L.Linear(a=-0.5), lambda x: -0.5 * x, "linear"),
    "Sigmoid": (L.Sigmoid, np_sigmoid, "sigmoid"),
    "Tanh": (L.Tanh, np.tanh, "tanh"),
    "ReLU": (L.ReLU, lambda x: np.maximum(x, 0), "relu"),
    "LeakyReLU": (lambda: L.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x), "leaky_relu"),
    "ELU": (lambda: L.ELU(0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(np.minimum(x, 0))),
            "elu"),
    "Swish": (lambda: L.Swish(2.0), lambda x: x * np_sigmoid(2 * x), "swish"),
    "Softmax": (L.Softmax, lambda x: np_softmax(x, -1), "softmax"),
    "Activation": (lambda: L.Activation("leaky_relu", negative_slope=0.3),
                   lambda x: np.where(x > 0, x, 0.3 * x), "activation"),
}

X = np.random.default_rng(0).normal(size=(4, 3, 5)) * 3


class ElementwiseLayersTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_values_shapes_and_no_params(self):
        for kind, (make, ref, _) in CASES.items():
            layer = make()
            out_shape, params, state = layer.init(jax.random.key(0), (3, 5))
            assert (out_shape, params, state) == ((3, 5), {}, {}), kind
            apply = self.variant(lambda p, s, x, layer=layer: layer.apply(p, s, x))
            y, new_state = apply(params, state, jnp.asarray(X, jnp.float32))
            assert y.shape == X.shape and new_state == {}, kind
            np.testing.assert_allclose(y, ref(X), rtol=1e-5, atol=1e-6, err_msg=kind)

    @chex.variants(with_jit=True, without_jit=True)
    def test_prelu_values(self):
        layer = L.PReLU()
        _, params, state = layer.init(jax.random.key(0), (3, 5))
        alpha = np.linspace(0.1, 0.5, 5)
        params = {"alpha": jnp.asarray(alpha, jnp.float32)}
        y, _ = self.variant(layer.apply)(params, state, jnp.asarray(X, jnp.float32))
        np.testing.assert_allclose(y, np.where(X > 0, X, alpha * X), rtol=1e-6)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_default_child_names_read_well(kind):
    make, _, slug = CASES[kind]
    assert make().slug == slug
    model = L.serial(L.Tanh(), make())
    assert [n for n, _ in model.children] == ["tanh_0", f"{slug}_1"]
    assert L.serial(make().named("out")).children[0][0] == "out"


def test_prelu_keeps_the_input_dtype():
    """Like Dense and Conv2D, PReLU computes in its input's dtype (its float32 alpha is cast),
    while the gradient reaches alpha in float32."""
    layer = L.PReLU()
    _, params, state = layer.init(jax.random.key(0), (5,))
    x = jnp.asarray(X, jnp.bfloat16)
    y, _ = layer.apply(params, state, x)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float32),
                               np.where(X > 0, X, 0.25 * X), rtol=1e-2, atol=1e-2)
    grad = jax.grad(lambda p: jnp.sum(layer.apply(p, state, x)[0].astype(jnp.float32)))(params)
    assert grad["alpha"].dtype == jnp.float32


def test_prelu_slug_and_user_name():
    assert L.PReLU().slug == "prelu"
    assert [n for n, _ in L.serial(L.PReLU(), L.ReLU(name="act")).children] == ["prelu_0", "act"]


@pytest.mark.parametrize("kind", sorted(CASES))
def test_integer_input_rejected(kind):
    layer = CASES[kind][0]()
    with pytest.raises(LayerError, match=rf"{kind} layer: expected a floating-point input, got "
                                         r"dtype int32"):
        layer.apply({}, {}, jnp.ones((2, 3), jnp.int32))


def test_binary_step_layer_gradient_zero_or_straight_through():
    x = jnp.array([[-1.0, 0.5, 2.0]])

    def grad_of(layer):
        return jax.grad(lambda v: jnp.sum(layer.apply({}, {}, v)[0]))(x)

    np.testing.assert_array_equal(grad_of(L.BinaryStep()), np.zeros((1, 3)))
    np.testing.assert_array_equal(grad_of(L.BinaryStep(straight_through=True)), np.ones((1, 3)))


def test_softmax_axis_is_per_example():
    layer = L.Softmax(axis=0)  # first per-example axis = batch axis 1
    y, _ = layer.apply({}, {}, jnp.asarray(X, jnp.float32))
    np.testing.assert_allclose(y, np_softmax(X, 1), rtol=1e-5)
    y, _ = L.Softmax(axis=-2).apply({}, {}, jnp.asarray(X, jnp.float32))
    np.testing.assert_allclose(y, np_softmax(X, 1), rtol=1e-5)


def test_softmax_axis_out_of_range():
    with pytest.raises(LayerError, match=r"Softmax layer: axis 2 is out of range for per-example "
                                         r"inputs of shape \(3, 5\) \(valid: -2 to 1\)"):
        L.Softmax(axis=2).init(jax.random.key(0), (3, 5))


def test_activation_by_callable_and_errors():
    y, _ = L.Activation(jnp.sin).apply({}, {}, jnp.asarray(X, jnp.float32))
    np.testing.assert_allclose(y, np.sin(X), rtol=1e-5, atol=1e-6)
    assert L.Activation(jnp.sin).init(jax.random.key(0), (3,))[0] == (3,)
    with pytest.raises(LayerError, match=r"Activation layer: fn_or_name: unknown "
                                         r"activation 'gelux'.*Valid names"):
        L.Activation("gelux")
    with pytest.raises(LayerError, match=r"Activation layer: calling prelu\(x\) failed.*alpha"):
        L.Activation("prelu").init(jax.random.key(0), (3,))
    with pytest.raises(LayerError, match=r"must keep the shape of its input, but maps \(1, 3, 5\) "
                                         r"to \(1, 3\)"):
        L.Activation(lambda x: x.sum(-1)).init(jax.random.key(0), (3, 5))


def test_init_is_free_under_eval_shape():
    for layer in (L.PReLU(), L.Softmax(), L.Activation("elu")):
        _, params, _ = jax.eval_shape(lambda k, layer=layer: layer.init(k, (7, 3)),
                                      jax.random.key(0))
        assert all(isinstance(p, jax.ShapeDtypeStruct) for p in jax.tree.leaves(params))
    _, params, _ = jax.eval_shape(lambda k: L.PReLU().init(k, (7, 3)), jax.random.key(0))
    assert params["alpha"].shape == (3,)


# ---- PReLU ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_shape", "shared_axes", "alpha_shape"),
    [
        ((8, 8, 3), None, (3,)),  # default: one slope per channel (PyTorch num_parameters=C)
        ((8, 8, 3), (), (8, 8, 3)),  # one per element (Keras default)
        ((8, 8, 3), "all", ()),  # one scalar (PyTorch default)
        ((8, 8, 3), (0, 1), (3,)),
        ((8, 8, 3), (-1,), (8, 8, 1)),
        ((6, 4), (1,), (6, 1)),
        ((5,), None, (5,)),
    ],
)
def test_prelu_alpha_shapes(in_shape, shared_axes, alpha_shape):
    layer = L.PReLU(alpha_init=0.1, shared_axes=shared_axes)
    out_shape, params, state = layer.init(jax.random.key(0), in_shape)
    assert out_shape == in_shape and state == {}
    assert params["alpha"].shape == alpha_shape
    np.testing.assert_array_equal(params["alpha"], np.full(alpha_shape, 0.1, np.float32))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, *in_shape)), jnp.float32)
    y, _ = layer.apply(params, state, x)
    np.testing.assert_allclose(y, np.where(x > 0, x, 0.1 * np.asarray(x)), rtol=1e-6)


def test_prelu_default_alpha_init_is_025():
    _, params, _ = L.PReLU().init(jax.random.key(0), (4,))
    np.testing.assert_array_equal(params["alpha"], np.full(4, 0.25, np.float32))


def test_prelu_gradient_wrt_alpha_and_x():
    layer = L.PReLU()
    x = np.random.default_rng(2).normal(size=(6, 4))
    x[np.abs(x) < 0.05] = 0.3  # keep away from the kink for finite differences
    alpha = np.array([0.1, 0.25, -0.3, 0.9])

    def out(a, v):
        return layer.apply({"alpha": a}, {}, v)[0]

    with jax.enable_x64(True):
        check_grads(out, (jnp.asarray(alpha), jnp.asarray(x)), order=1, modes=["fwd", "rev"])
        # ∂Σy/∂α_c = Σ_n x_nc [x_nc ≤ 0]; ∂y/∂x = 1 or α
        g_alpha, g_x = jax.grad(lambda a, v: jnp.sum(out(a, v)), argnums=(0, 1))(
            jnp.asarray(alpha), jnp.asarray(x))
    np.testing.assert_allclose(g_alpha, np.where(x <= 0, x, 0).sum(0), rtol=1e-12)
    np.testing.assert_allclose(g_x, np.where(x > 0, 1.0, alpha[None, :] + 0 * x), rtol=1e-12)


def test_prelu_errors():
    with pytest.raises(LayerError, match=r"PReLU layer: shared_axes \(3,\) has axes \[3\] out of "
                                         r"range for per-example inputs of shape \(4, 5\)"):
        L.PReLU(shared_axes=(3,)).init(jax.random.key(0), (4, 5))
    with pytest.raises(LayerError, match="shared_axes must be None, 'all' or a sequence"):
        L.PReLU(shared_axes="channels")
    _, params, _ = L.PReLU().init(jax.random.key(0), (4,))
    with pytest.raises(LayerError, match=r"PReLU layer: alpha of shape \(4,\) does not fit inputs "
                                         r"of shape \(2, 5\)"):
        L.PReLU().apply(params, {}, jnp.ones((2, 5)))
    model = L.serial(L.ReLU(), L.PReLU())
    _, mparams, mstate = model.init(jax.random.key(0), (4,))
    with pytest.raises(LayerError, match=r"PReLU layer 'prelu_1': alpha of shape"):
        model.apply(mparams, mstate, jnp.ones((2, 3)))
