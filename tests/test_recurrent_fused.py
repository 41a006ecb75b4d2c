"""The hand-written backward pass of unmasked LSTMs and reset-after GRUs (`jax.custom_vjp` in
`jnet.layers.recurrent`) against autodiff of the plain scan, the code path masked sequences
take: same forward values bit for bit, same gradients for params, inputs and initial state in
every configuration (hoist, reverse, return_sequences, unroll)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnet import layers as L
from jnet.layers import recurrent

N, T, F, H = 3, 7, 4, 5


def _loss_and_grads(layer, params, x, h0, weights, plain: bool, monkeypatch):
    # The private switch, not the public mask=: a mask also takes the autodiff path but
    # rounds differently (1 ulp), and the forward values must be compared bit for bit.
    if plain:  # the autodiff path: what every call took before the custom VJP
        monkeypatch.setattr(recurrent, "_fused_applies", lambda *args: False)

    def loss(params, x, h0):
        (y, carry), _ = layer.apply(params, {}, x, initial_state=h0)
        return (jnp.sum(jnp.sin(y) * weights)
                + sum(jnp.sum(jnp.cos(c)) for c in jax.tree.leaves(carry)))

    out = layer.apply(params, {}, x, initial_state=h0)[0]
    value, grads = jax.value_and_grad(loss, argnums=(0, 1, 2))(params, x, h0)
    monkeypatch.undo()
    return out, value, grads


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize(("hoist", "reverse", "sequences", "unroll"), [
    (False, False, True, 1), (True, False, True, 1), (False, True, False, 1),
    (True, True, True, 3), (False, False, False, 2)])
def test_custom_vjp_matches_autodiff(kind, hoist, reverse, sequences, unroll, monkeypatch):
    make = L.LSTM if kind == "lstm" else L.GRU
    layer = make(H, return_sequences=sequences, return_state=True, hoist=hoist,
                 reverse=reverse, unroll=unroll)
    rng = np.random.default_rng(0)
    _, params, _ = layer.init(jax.random.key(1), (T, F))
    params = {k: v + 0.3 * jnp.asarray(rng.normal(size=v.shape), jnp.float32)
              for k, v in params.items()}  # non-zero biases: every term of the gradient counts
    x = jnp.asarray(rng.normal(size=(N, T, F)), jnp.float32)
    h = jnp.asarray(rng.normal(size=(N, H)), jnp.float32)
    h0 = (h, 0.5 * h[::-1]) if kind == "lstm" else h
    weights = jnp.asarray(rng.normal(size=(N, T, H) if sequences else (N, H)), jnp.float32)
    fast = _loss_and_grads(layer, params, x, h0, weights, False, monkeypatch)
    plain = _loss_and_grads(layer, params, x, h0, weights, True, monkeypatch)
    for a, b in zip(jax.tree.leaves(fast[0]), jax.tree.leaves(plain[0]), strict=True):
        np.testing.assert_array_equal(a, b)  # the forward pass computes the same operations
    np.testing.assert_allclose(fast[1], plain[1], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(fast[2]), jax.tree.leaves(plain[2]), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_fast_path_is_taken_and_covers_only_unmasked_reset_after():
    """The custom VJP runs for the bench's LSTM / GRU; masks and reset-before GRUs keep
    autodiff (their tests in test_recurrent.py cover them)."""
    lstm_params = L.LSTM(H).init(jax.random.key(0), (T, F))[1]
    before = L.GRU(H, reset_after=False).init(jax.random.key(0), (T, F))[1]
    mask = jnp.ones((N, T), bool)
    after = L.GRU(H).init(jax.random.key(0), (T, F))[1]
    x = jnp.ones((N, T, F))

    def fused(layer, params, mask=None):
        jaxpr = jax.make_jaxpr(lambda p: layer.apply(p, {}, x, mask=mask)[0])(params)
        return "custom_vjp_call" in str(jaxpr)

    assert fused(L.LSTM(H), lstm_params) and fused(L.GRU(H), after)
    assert not fused(L.LSTM(H), lstm_params, mask)
    assert not fused(L.GRU(H, reset_after=False), before)
