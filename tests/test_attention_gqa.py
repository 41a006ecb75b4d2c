"""Grouped-query attention, rotary embeddings and KV-cache decoding of MultiHeadAttention,
against NumPy loops written from the equations and PyTorch's scaled_dot_product_attention
(float64 outputs and gradients to 1e-10)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import randn
from _transformer_cases import assert_parity, fixture_case, live_case

from jnet import layers as L
from jnet.layers import LayerError

KEY = jax.random.key(0)
MASK = np.asarray([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]], bool)


def rope_ref(u, base):
    """Half-split rotation of u (T, D) at positions 0..T-1, one pair (i, i + D/2) at a time."""
    t, d = u.shape
    out = np.empty_like(u)
    for p in range(t):
        for i in range(d // 2):
            angle = p * base ** (-2.0 * i / d)
            c, s = np.cos(angle), np.sin(angle)
            out[p, i] = u[p, i] * c - u[p, i + d // 2] * s
            out[p, i + d // 2] = u[p, i + d // 2] * c + u[p, i] * s
    return out


def gqa_ref(x, params, heads, kv_heads, causal=False, mask=None, base=None):
    """Grouped-query attention in float64 loops: query head h reads key / value head
    h // (heads / kv_heads); padded queries give 0."""
    x = np.asarray(x, np.float64)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    n, t, e = x.shape
    d = e // heads
    mask = np.ones((n, t), bool) if mask is None else np.asarray(mask)
    y = np.zeros((n, t, e))
    for b in range(n):
        qkv = x[b] @ p["w_qkv"] + p.get("b_qkv", 0.0)
        out = np.zeros((t, e))
        for h in range(heads):
            g = h // (heads // kv_heads)
            q = qkv[:, h * d:(h + 1) * d]
            k = qkv[:, (heads + g) * d:(heads + g + 1) * d]
            v = qkv[:, (heads + kv_heads + g) * d:(heads + kv_heads + g + 1) * d]
            if base is not None:
                q, k = rope_ref(q, base), rope_ref(k, base)
            for i in range(t):
                keys = [j for j in range(t) if mask[b, j] and not (causal and j > i)]
                logits = np.array([q[i] @ k[j] for j in keys]) / np.sqrt(d)
                w = np.exp(logits - logits.max())
                w /= w.sum()
                out[i, h * d:(h + 1) * d] = sum(wj * v[j] for wj, j in zip(w, keys, strict=True))
        y[b] = np.where(mask[b][:, None], out @ p["w_out"] + p.get("b_out", 0.0), 0.0)
    return y


def random_params(e, heads, kv_heads, seed=0):
    width = (heads + 2 * kv_heads) * (e // heads)
    return {"w_qkv": jnp.asarray(randn(seed, (e, width)) * 0.5),
            "b_qkv": jnp.asarray(randn(seed + 1, (width,))),
            "w_out": jnp.asarray(randn(seed + 2, (e, e)) * 0.5),
            "b_out": jnp.asarray(randn(seed + 3, (e,)))}


@pytest.mark.parametrize("heads,kv", [(4, 4), (4, 2), (4, 1)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("rope", [False, 100.0])
def test_forward_matches_numpy(heads, kv, causal, rope):
    layer = L.MultiHeadAttention(heads, causal=causal, num_kv_heads=kv, rope=rope)
    _, init_params, _ = layer.init(KEY, (6, 8))
    assert init_params["w_qkv"].shape == (8, (heads + 2 * kv) * 2)
    params = random_params(8, heads, kv)
    x = randn(5, (3, 6, 8))
    y, _ = layer.apply(params, {}, jnp.asarray(x), mask=jnp.asarray(MASK))
    ref = gqa_ref(x, params, heads, kv, causal, MASK, rope or None)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_rope_makes_scores_depend_on_relative_position_only():
    """RoPE's defining property: q·k after rotation depends on the positions only through
    their difference. Shifting the whole sequence cannot be done inside `apply` (positions
    start at 0), so it is checked on the rotation the layer uses, against the reference."""
    from jnet.layers.attention import apply_rope
    u = randn(0, (1, 5, 1, 4)).astype(np.float64)
    with jax.enable_x64(True):
        rot = np.asarray(apply_rope(jnp.asarray(u), jnp.arange(5), 10000.0))
        shifted = np.asarray(apply_rope(jnp.asarray(u), jnp.arange(5) + 7, 10000.0))
    np.testing.assert_allclose(rot[0, :, 0], rope_ref(u[0, :, 0], 10000.0), rtol=1e-12,
                               atol=1e-12)
    q, k = rot[0, :, 0], rot[0, ::-1, 0]
    qs, ks = shifted[0, :, 0], shifted[0, ::-1, 0]
    np.testing.assert_allclose(np.sum(q * k, -1), np.sum(qs * ks, -1), rtol=1e-10, atol=1e-10)


def test_xla_implementation_matches_einsum_on_cpu():
    """The path GPUs run (`jax.nn.dot_product_attention`), forced to its XLA implementation,
    gives the einsum path's values and gradients."""
    x, mask = jnp.asarray(randn(7, (3, 6, 8))), jnp.asarray(MASK)
    params = random_params(8, 4, 2, seed=4)
    outs = []
    for impl in ("einsum", "xla"):
        layer = L.MultiHeadAttention(4, causal=True, num_kv_heads=2, rope=True,
                                     implementation=impl)

        def loss(p, x, layer=layer):
            return jnp.sum(jnp.sin(layer.apply(p, {}, x, mask=mask)[0]))

        outs.append((layer.apply(params, {}, x, mask=mask)[0],
                     jax.grad(loss, (0, 1))(params, x)))
    np.testing.assert_allclose(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(outs[1][1]), jax.tree.leaves(outs[0][1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", [None, "xla"])
def test_decoding_step_by_step_equals_the_causal_forward(impl):
    layer = L.MultiHeadAttention(4, causal=True, num_kv_heads=2, rope=True,
                                 implementation=impl)
    params = random_params(8, 4, 2, seed=9)
    x = jnp.asarray(randn(10, (2, 7, 8)))
    full, _ = layer.apply(params, {}, x)
    cache = layer.init_cache(params, batch_size=2, max_len=10)
    assert cache["k"].shape == (2, 10, 2, 2)
    y0, _ = layer.decode_step(params, cache, x[:, 0], 0)  # eager, Python position
    np.testing.assert_allclose(y0, full[:, 0], rtol=1e-6, atol=1e-6)

    def step(cache, inputs):
        x_t, pos = inputs
        y_t, cache = layer.decode_step(params, cache, x_t, pos)
        return cache, y_t

    _, ys = jax.jit(lambda c: jax.lax.scan(step, c, (jnp.swapaxes(x, 0, 1), jnp.arange(7))))(
        cache)
    np.testing.assert_allclose(jnp.swapaxes(ys, 0, 1), full, rtol=1e-6, atol=1e-6)


def test_a_per_example_mask_is_no_time_mask():
    layer = L.MultiHeadAttention(2)
    params = random_params(8, 2, 2)
    x = jnp.asarray(randn(11, (3, 6, 8)))
    y, _ = layer.apply(params, {}, x)
    y1, _ = layer.apply(params, {}, x, mask=jnp.ones(3, bool))
    np.testing.assert_array_equal(y1, y)


def test_transformations():
    layer = L.MultiHeadAttention(2, causal=True, num_kv_heads=1, rope=True)
    _, params, _ = layer.init(KEY, (6, 8))
    x = jnp.asarray(randn(12, (3, 6, 8)))
    f = lambda p, x: layer.apply(p, {}, x)[0]  # noqa: E731
    np.testing.assert_allclose(jax.jit(f)(params, x), f(params, x), rtol=1e-5, atol=1e-5)
    v = jax.vmap(lambda x: f(params, x[None])[0])(x)
    np.testing.assert_allclose(v, f(params, x), rtol=1e-5, atol=1e-5)
    direction = jnp.asarray(randn(13, x.shape))
    _, tangent = jax.jvp(lambda x: f(params, x), (x,), (direction,))
    eps = 1e-3
    fd = (f(params, x + eps * direction) - f(params, x - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(tangent, fd, rtol=2e-2, atol=2e-2)
    shapes = jax.eval_shape(lambda k: layer.init(k, (6, 8))[1], KEY)
    assert shapes["w_qkv"].shape == (8, 16)


def test_errors():
    with pytest.raises(LayerError, match="num_kv_heads = 3 must divide num_heads = 4"):
        L.MultiHeadAttention(4, num_kv_heads=3)
    with pytest.raises(LayerError, match="num_kv_heads must be a positive int"):
        L.MultiHeadAttention(4, num_kv_heads=0)
    with pytest.raises(LayerError, match="rope must be False, True"):
        L.MultiHeadAttention(4, rope=-1.0)
    with pytest.raises(LayerError, match="implementation must be one of"):
        L.MultiHeadAttention(4, implementation="flash")
    with pytest.raises(LayerError, match="D = E / num_heads = 3 must be even"):
        L.MultiHeadAttention(2, rope=True).init(KEY, (5, 6))
    layer = L.MultiHeadAttention(2)
    _, params, _ = layer.init(KEY, (5, 8))
    with pytest.raises(LayerError, match="needs a causal layer"):
        layer.init_cache(params, 2, 8)
    causal = L.MultiHeadAttention(2, causal=True)
    with pytest.raises(LayerError, match="max_len must be a positive int"):
        causal.init_cache(params, 2, 0)
    cache = causal.init_cache(params, 2, 4)
    with pytest.raises(LayerError, match=r"position must lie in \[0, 4\)"):
        causal.decode_step(params, cache, jnp.zeros((2, 8)), 4)
    with pytest.raises(LayerError, match=r"rank 2 \(N, E\)"):
        causal.decode_step(params, cache, jnp.zeros((2, 1, 8)), 0)


def convert(sd):
    return {"w_qkv": sd["qkv.weight"].T, "b_qkv": sd["qkv.bias"], "w_out": sd["out.weight"].T,
            "b_out": sd["out.bias"]}


def layer_for(case):
    return L.MultiHeadAttention(int(case["num_heads"]), causal=bool(case["causal"]),
                                num_kv_heads=int(case["num_kv_heads"]),
                                rope=float(case["rope"]))


@pytest.mark.parametrize("name", ["gqa_rope", "mqa_rope_causal"])
def test_fixture_parity(name):
    case = fixture_case(name)
    assert not case["mask"].all()
    assert_parity(case, layer_for(case), convert)


@pytest.mark.parametrize("name", ["gqa_rope", "mqa_rope_causal"])
def test_live_torch_parity(name):
    case = live_case(name, 5)
    assert_parity(case, layer_for(case), convert)


def test_the_default_off_the_cpu_falls_back_to_xla_where_cudnn_refuses():
    """Off the CPU, the default asks for cuDNN when the case fits; on this CPU-only machine
    cuDNN refuses while tracing and the XLA implementation must give the einsums' values."""
    from jnet.layers.attention import _attend, _cudnn_or_xla
    q = jnp.asarray(randn(0, (2, 5, 4, 8))).astype(jnp.bfloat16)
    k, v = (jnp.asarray(randn(s, (2, 5, 2, 8))).astype(jnp.bfloat16) for s in (1, 2))
    causal = jnp.tril(jnp.ones((5, 5), bool))[None]
    got = _cudnn_or_xla(q, k, v, causal, True, False)
    want = _attend(q, k, v, causal, 0.0, None)
    np.testing.assert_allclose(got.astype(jnp.float32), want.astype(jnp.float32), atol=3e-2)
