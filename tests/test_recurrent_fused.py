"""The hand-written backward pass of unmasked LSTMs and reset-after GRUs (`jnet.layers.fused_rnn`,
the transpose of a custom forward-mode rule) against autodiff of the plain scan
(``fast_grad=False``, the code path masked sequences take): same forward values, same
gradients for params, inputs and initial state in every configuration (hoist, reverse,
return_sequences, unroll); forward mode, second order and vmap through it; each cell's
hand-written ``activate_vjp`` against `jax.vjp` of its forward equations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jnet import layers as L
from jnet.layers import cells

N, T, F, H = 3, 7, 4, 5


def _loss_and_grads(layer, params, x, h0, weights):
    def loss(params, x, h0):
        (y, carry), _ = layer.apply(params, {}, x, initial_state=h0)
        return (jnp.sum(jnp.sin(y) * weights)
                + sum(jnp.sum(jnp.cos(c)) for c in jax.tree.leaves(carry)))

    out = layer.apply(params, {}, x, initial_state=h0)[0]
    value, grads = jax.value_and_grad(loss, argnums=(0, 1, 2))(params, x, h0)
    return out, value, grads


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize(("hoist", "reverse", "sequences", "unroll"), [
    (False, False, True, 1), (True, False, True, 1), (False, True, False, 1),
    (True, True, True, 3), (False, False, False, 2)])
def test_fused_backward_matches_autodiff(kind, hoist, reverse, sequences, unroll):
    make = L.LSTM if kind == "lstm" else L.GRU
    layer, plain_layer = (make(H, return_sequences=sequences, return_state=True, hoist=hoist,
                               reverse=reverse, unroll=unroll, fast_grad=fast)
                          for fast in (True, False))
    rng = np.random.default_rng(0)
    _, params, _ = layer.init(jax.random.key(1), (T, F))
    params = {k: v + 0.3 * jnp.asarray(rng.normal(size=v.shape), jnp.float32)
              for k, v in params.items()}  # non-zero biases: every term of the gradient counts
    x = jnp.asarray(rng.normal(size=(N, T, F)), jnp.float32)
    h = jnp.asarray(rng.normal(size=(N, H)), jnp.float32)
    h0 = (h, 0.5 * h[::-1]) if kind == "lstm" else h
    weights = jnp.asarray(rng.normal(size=(N, T, H) if sequences else (N, H)), jnp.float32)
    fast = _loss_and_grads(layer, params, x, h0, weights)
    plain = _loss_and_grads(plain_layer, params, x, h0, weights)
    for a, b in zip(jax.tree.leaves(fast[0]), jax.tree.leaves(plain[0]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # the same operations
    np.testing.assert_allclose(fast[1], plain[1], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(fast[2]), jax.tree.leaves(plain[2]), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_fast_path_is_taken_and_covers_only_unmasked_reset_after():
    """The fused scan runs for the bench's LSTM / GRU, and reverse mode transposes its tangent
    with the hand-written backward (the linear_call in the gradient); masks, reset-before GRUs
    and fast_grad=False keep autodiff (their tests in test_recurrent.py cover them)."""
    mask = jnp.ones((N, T), bool)
    assert cells.fused_applies(cells.LSTM_CELL, None)
    assert not cells.fused_applies(cells.LSTM_CELL, mask)
    assert not cells.fused_applies(cells.GRU_BEFORE_CELL, None)
    x = jnp.ones((N, T, F))
    for layer, fused in ((L.LSTM(H), True), (L.GRU(H), True), (L.LSTM(H, fast_grad=False), False),
                         (L.GRU(H, reset_after=False), False)):
        params = layer.init(jax.random.key(0), (T, F))[1]
        grad = jax.grad(lambda p, layer=layer: jnp.sum(layer.apply(p, {}, x)[0]))
        assert ("jnet_linear_call" in str(jax.make_jaxpr(grad)(params))) == fused


def _f64_case(kind, **options):
    rng = np.random.default_rng(3)
    make = L.LSTM if kind == "lstm" else L.GRU
    layers = [make(H, return_sequences=True, fast_grad=fast, **options) for fast in (True, False)]
    _, params, _ = layers[0].init(jax.random.key(1), (T, F))
    params = {k: jnp.asarray(v, jnp.float64) + 0.3 * rng.normal(size=v.shape)
              for k, v in params.items()}
    x = jnp.asarray(rng.normal(size=(2, T, F)))
    return [lambda p, x, layer=layer: jnp.sin(layer.apply(p, {}, x)[0]) for layer in layers], \
        params, x


@pytest.mark.parametrize(("kind", "hoist"), [
    ("lstm", False),
    pytest.param("gru", False, marks=pytest.mark.slow),
    pytest.param("lstm", True, marks=pytest.mark.slow),
    pytest.param("gru", True, marks=pytest.mark.slow)])
def test_forward_mode_and_second_order_through_the_fused_scan(kind, hoist):
    """jvp, jacfwd, hessian and vmap-of-grad equal those of the plain scan (float64), and
    both modes to second order match finite differences."""
    with jax.enable_x64(True):
        (fast, plain), params, x = _f64_case(kind, hoist=hoist)
        check_grads(fast, (params, x), order=2, modes=("fwd", "rev"))
        tangents = jax.tree.map(jnp.cos, (params, x))
        close = lambda a, b: jax.tree.map(  # noqa: E731
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12), a, b)
        close(jax.jvp(fast, (params, x), tangents), jax.jvp(plain, (params, x), tangents))
        close(jax.jacfwd(fast)(params, x), jax.jacfwd(plain)(params, x))
        total = lambda f: lambda p, x: jnp.sum(f(p, x) ** 2)  # noqa: E731
        close(jax.hessian(total(fast))(params, x), jax.hessian(total(plain))(params, x))
        per_example = lambda f: jax.vmap(jax.grad(total(f)), (None, 0))(  # noqa: E731
            params, x[:, None])
        close(per_example(fast), per_example(plain))


@pytest.mark.parametrize("cell", [cells.LSTM_CELL, cells.GRU_CELL], ids=["lstm", "gru"])
def test_hand_written_activate_vjp_equals_autodiff_of_the_equations(cell):
    """Each cell's backward of its gate maths, from the activations it saves, against
    `jax.vjp` of its forward function."""
    rng = np.random.default_rng(4)
    with jax.enable_x64(True):
        width = cell.gates * H
        pre = cell.combine(*(jnp.asarray(rng.normal(size=(N, width))) for _ in range(2)))
        before = cell.carry_of(jnp.asarray(rng.normal(size=(N, H))))
        before = jax.tree.map(lambda a: a * rng.uniform(0.5, 1.5, a.shape), before)
        (after, saved), vjp = jax.vjp(cell.activate, pre, before)
        d_after = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), after)
        want = vjp((d_after, jax.tree.map(jnp.zeros_like, saved)))
        got = cell.activate_vjp(saved, before, after, d_after)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14),
                     got, want)
