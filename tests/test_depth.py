"""remat, repeat and tied_embedding: the same numbers as the unwrapped computation written
out by hand, a program size independent of the depth, decoding through a repeated stack."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import randn

from jnet import layers as L
from jnet.layers import LayerError

KEY = jax.random.key(0)


def test_remat_same_values_and_gradients_and_recomputes():
    block = L.TransformerEncoderLayer(2, 16, dropout=0.2)
    for wrapped in (L.remat(block), L.remat(block, "dots_saveable"),
                    L.remat(block, jax.checkpoint_policies.nothing_saveable)):
        _, params, _ = wrapped.init(KEY, (5, 8))
        mask = jnp.asarray([[True] * 5, [True] * 3 + [False] * 2])

        def loss(layer, p, x, mask=mask):
            y, _ = layer.apply(p, {}, x, key=jax.random.key(3), train=True, mask=mask)
            return jnp.sum(jnp.sin(y))

        with jax.enable_x64(True):  # float64: recomputation's other rounding stays far below
            params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
            x = jnp.asarray(randn(1, (2, 5, 8)), jnp.float64)
            want = jax.value_and_grad(lambda p, x: loss(block, p, x), (0, 1))(params64, x)
            got = jax.value_and_grad(lambda p, x, w=wrapped: loss(w, p, x), (0, 1))(params64, x)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        x = jnp.asarray(randn(1, (2, 5, 8)))
        jaxpr = str(jax.make_jaxpr(lambda p, x, w=wrapped: loss(w, p, x))(params, x))
        assert "checkpoint" in jaxpr or "remat" in jaxpr
    with pytest.raises(LayerError, match="policy must be None"):
        L.remat(block, "no_such_policy")
    with pytest.raises(LayerError, match="expected a Layer"):
        L.remat(L.Dense)


def test_repeat_equals_the_blocks_one_after_another():
    block = L.TransformerDecoderLayer(2, 16, dropout=0.0, norm_first=True)
    stack = L.repeat(block, 3)
    out, params, state = stack.init(KEY, (5, 8))
    assert out == (5, 8) and state == {}
    assert params["linear1"]["w"].shape == (3, 8, 16)
    assert not np.allclose(params["linear1"]["w"][0], params["linear1"]["w"][1])
    x = jnp.asarray(randn(2, (2, 5, 8)))
    y, _ = stack.apply(params, state, x)
    h = x
    for i in range(3):
        h, _ = block.apply(jax.tree.map(lambda a, i=i: a[i], params), {}, h)
    np.testing.assert_allclose(y, h, rtol=1e-5, atol=1e-5)
    shapes = jax.eval_shape(lambda k: stack.init(k, (5, 8))[1], KEY)
    assert shapes["norm1"]["scale"].shape == (3, 8)


def test_repeat_program_size_does_not_grow_with_depth():
    block = L.TransformerDecoderLayer(2, 16)
    sizes = []
    for n in (2, 8):
        stack = L.repeat(block, n)
        _, params, _ = stack.init(KEY, (5, 8))
        x = jnp.zeros((2, 5, 8))
        jaxpr = jax.make_jaxpr(jax.grad(
            lambda p, stack=stack, x=x: jnp.sum(stack.apply(p, {}, x, key=KEY, train=True)[0])))(
            params)
        sizes.append(len(str(jaxpr)))
    assert sizes[0] == sizes[1]


def test_repeat_decodes_step_by_step():
    stack = L.repeat(L.TransformerDecoderLayer(2, 16, num_kv_heads=1, rope=True), 2)
    assert isinstance(stack, L.DecodingLayer)
    _, params, _ = stack.init(KEY, (4, 8))
    x = jnp.asarray(randn(3, (2, 4, 8)))
    full, _ = stack.apply(params, {}, x)
    cache = stack.init_cache(params, 2, 4)
    assert cache["k"].shape == (2, 2, 4, 1, 4)
    for t in range(4):
        y_t, cache = stack.decode_step(params, cache, x[:, t], t)
        np.testing.assert_allclose(y_t, full[:, t], rtol=1e-5, atol=1e-5)
    assert not isinstance(L.repeat(L.Dense(8), 2), L.DecodingLayer)


def test_repeat_errors():
    with pytest.raises(LayerError, match="n must be a positive int"):
        L.repeat(L.Dense(4), 0)
    with pytest.raises(LayerError, match="needs a block that keeps the shape"):
        L.repeat(L.Dense(4), 2).init(KEY, (3,))


def test_tied_embedding_uses_the_table_at_both_ends():
    body = L.serial(L.TransformerDecoderLayer(2, 16, dropout=0.0), L.LayerNorm())
    model = L.tied_embedding(L.Embedding(11, 8), body)
    out, params, state = model.init(KEY, (5,))
    assert out == (5, 11) and set(params) == {"embedding", "body"}
    ids = jnp.asarray(np.random.default_rng(0).integers(0, 11, (2, 5)))
    table = params["embedding"]["embedding"]

    def by_hand(table, p_body):
        h, _ = body.apply(p_body, state["body"], table[ids])
        return h @ table.T

    logits, _ = model.apply(params, state, ids)
    np.testing.assert_allclose(logits, by_hand(table, params["body"]), rtol=1e-5, atol=1e-5)
    g = jax.grad(lambda p: jnp.sum(jnp.sin(model.apply(p, state, ids)[0])))(params)
    g_hand = jax.grad(lambda t: jnp.sum(jnp.sin(by_hand(t, params["body"]))))(table)
    np.testing.assert_allclose(g["embedding"]["embedding"], g_hand, rtol=1e-4, atol=1e-5)
    rebuilt = L.map_layers(lambda layer: None, model)
    assert [n for n, _ in rebuilt.children] == ["embedding", "body"]
    with pytest.raises(LayerError, match="End the body with E features"):
        L.tied_embedding(L.Embedding(11, 8), L.Dense(4)).init(KEY, (5,))
