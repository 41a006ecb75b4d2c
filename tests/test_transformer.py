"""TransformerEncoderLayer and TransformerDecoderLayer against PyTorch's
nn.TransformerEncoderLayer (post- and pre-norm, bidirectional and causal; float64 outputs and
all gradients to 1e-10), a NumPy composition of the block's equations, and step-by-step
decoding against the full causal forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import randn
from _transformer_cases import assert_parity, fixture_case, live_case
from test_attention_gqa import gqa_ref

import jnet
from jnet import interop
from jnet import layers as L
from jnet.layers import LayerError

KEY = jax.random.key(0)
NAMES = ["encoder_post_relu", "encoder_pre_gelu", "decoder_pre_gelu", "decoder_post_relu"]


def layer_for(case):
    kind = L.TransformerDecoderLayer if bool(case["causal"]) else L.TransformerEncoderLayer
    return kind(2, 12, dropout=0.1, activation=str(case["activation"]),
                norm_first=bool(case["norm_first"]))


@pytest.mark.parametrize("name", NAMES)
def test_fixture_parity(name):
    case = fixture_case(name)
    assert_parity(case, layer_for(case), interop.transformer_encoder_layer_from_torch)


@pytest.mark.parametrize("name", NAMES)
def test_live_torch_parity(name):
    case = live_case(name, 7)
    assert_parity(case, layer_for(case), interop.transformer_encoder_layer_from_torch)


def block_ref(x, p, heads, kv, causal, norm_first, base=None):
    """The block's equations in NumPy, with the attention reference of test_attention_gqa."""
    def ln(h, q):
        mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        return (h - mu) / np.sqrt(var + 1e-5) * q["scale"] + q["bias"]

    def ff(h):
        return np.maximum(h @ p["linear1"]["w"] + p["linear1"]["b"], 0) @ p["linear2"]["w"] \
            + p["linear2"]["b"]

    def sa(h):
        return gqa_ref(h, p["self_attn"], heads, kv, causal, None, base)

    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    x = np.asarray(x, np.float64)
    if norm_first:
        x = x + sa(ln(x, p["norm1"]))
        return x + ff(ln(x, p["norm2"]))
    x = ln(x + sa(x), p["norm1"])
    return ln(x + ff(x), p["norm2"])


def perturbed_params(layer, in_shape, seed):
    _, params, _ = layer.init(jax.random.key(seed), in_shape)
    leaves, tree = jax.tree.flatten(params)
    return tree.unflatten([a + 0.3 * jnp.asarray(randn(seed + i, a.shape))
                           for i, a in enumerate(leaves)])


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_with_gqa_and_rope_matches_numpy(norm_first):
    layer = L.TransformerDecoderLayer(4, 16, norm_first=norm_first, num_kv_heads=2, rope=True)
    params = perturbed_params(layer, (5, 8), 3)
    x = randn(4, (2, 5, 8))
    y, _ = layer.apply(params, {}, jnp.asarray(x))
    np.testing.assert_allclose(y, block_ref(x, params, 4, 2, True, norm_first, 10000.0),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoding_step_by_step_equals_the_causal_forward(norm_first):
    """In float64, so the two programs' different rounding cannot hide a wrong cache."""
    layer = L.TransformerDecoderLayer(4, 16, norm_first=norm_first, num_kv_heads=1, rope=True)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                              perturbed_params(layer, (6, 8), 5))
        x = jnp.asarray(randn(6, (3, 6, 8)), jnp.float64)
        full, _ = layer.apply(params, {}, x)
        cache = layer.init_cache(params, 3, 6)

        def step(cache, inputs):
            y_t, cache = layer.decode_step(params, cache, *inputs)
            return cache, y_t

        _, ys = jax.jit(lambda c: jax.lax.scan(
            step, c, (jnp.swapaxes(x, 0, 1), jnp.arange(6))))(cache)
        assert ys.dtype == jnp.float64
        np.testing.assert_allclose(jnp.swapaxes(ys, 0, 1), full, rtol=1e-10, atol=1e-12)


def test_dropout_needs_a_key_and_changes_training_outputs_only():
    layer = L.TransformerEncoderLayer(2, 16, dropout=0.3)
    _, params, _ = layer.init(KEY, (5, 8))
    x = jnp.asarray(randn(7, (2, 5, 8)))
    ev1, _ = layer.apply(params, {}, x)
    ev2, _ = layer.apply(params, {}, x, key=jax.random.key(1))
    np.testing.assert_array_equal(ev1, ev2)
    t1, _ = layer.apply(params, {}, x, key=jax.random.key(1), train=True)
    t2, _ = layer.apply(params, {}, x, key=jax.random.key(2), train=True)
    assert not np.allclose(t1, t2) and not np.allclose(t1, ev1)
    with pytest.raises(LayerError, match="needs a PRNG key"):
        layer.apply(params, {}, x, train=True)


def test_in_a_model_and_transformations():
    model = L.serial(L.Input((6,), ), L.Embedding(11, 8),
                     L.TransformerEncoderLayer(2, 16, dropout=0.0, norm_first=True))
    _, params, state = model.init(KEY)
    ids = jnp.asarray(np.random.default_rng(0).integers(0, 11, (3, 6)))
    f = lambda p: model.apply(p, state, ids)[0]  # noqa: E731
    np.testing.assert_allclose(jax.jit(f)(params), f(params), rtol=1e-5, atol=1e-5)
    g = jax.grad(lambda p: jnp.sum(f(p) ** 2))(params)
    assert all(np.isfinite(a).all() for a in jax.tree.leaves(g))
    _, t = jax.jvp(f, (params,), (g,))
    assert np.isfinite(t).all()
    block = L.TransformerDecoderLayer(2, 16)
    shapes = jax.eval_shape(lambda k: block.init(k, (6, 8))[1], KEY)
    assert shapes["linear1"]["w"].shape == (8, 16) and shapes["linear2"]["w"].shape == (16, 8)
    _, bp, _ = block.init(KEY, (6, 8))
    x = jnp.asarray(randn(8, (3, 6, 8)))
    v = jax.vmap(lambda x: block.apply(bp, {}, x[None])[0][0])(x)
    np.testing.assert_allclose(v, block.apply(bp, {}, x)[0], rtol=1e-5, atol=1e-5)


def test_errors():
    with pytest.raises(LayerError, match="dim_feedforward must be a positive int"):
        L.TransformerEncoderLayer(2, 0)
    with pytest.raises(LayerError, match="activation must be one of"):
        L.TransformerEncoderLayer(2, 8, activation="tanh")
    with pytest.raises(LayerError, match=r"TransformerEncoderLayer.*num_heads must be"):
        L.TransformerEncoderLayer(0, 8)
    with pytest.raises(LayerError, match=r"TransformerDecoderLayer.*self_attn: .*divisible"):
        L.TransformerDecoderLayer(3, 8).init(KEY, (5, 8))
    with pytest.raises(LayerError, match="needs a causal layer"):
        L.MultiHeadAttention(2).init_cache({}, 1, 1)
    with pytest.raises(LayerError, match=r"TransformerEncoderLayer.*needs a causal layer"):
        L.TransformerEncoderLayer(2, 8).init_cache({}, 1, 1)
    sd = {f"{k}": v for k, v in fixture_case("encoder_post_relu")["sd"].items()}
    sd["linear2.weight"] = np.zeros((8, 5))
    with pytest.raises(jnet.ArgumentError, match="linear2"):
        interop.transformer_encoder_layer_from_torch(sd)


def test_mixed_precision_keeps_the_block_close_to_float32():
    model = L.serial(L.Input((6, 8)), L.TransformerDecoderLayer(2, 16, dropout=0.0,
                                                                num_kv_heads=1, rope=True),
                     L.GroupNorm(2))
    _, params, state = model.init(KEY)
    x = jnp.asarray(randn(9, (3, 6, 8)))
    y32, _ = model.apply(params, state, x)
    y16, _ = jnet.precision.mixed(model).apply(params, state, x)
    assert y16.dtype == jnp.float32
    rel = float(jnp.linalg.norm(y16 - y32) / jnp.linalg.norm(y32))
    assert 0 < rel < 5e-2
