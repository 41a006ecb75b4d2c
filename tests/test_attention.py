"""MultiHeadAttention against NumPy loops written from the equations, finite differences and
PyTorch's nn.MultiheadAttention (causal and padded cases included)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import randn, to_f64
from _sequence_fixtures import fixture_case, live_case
from jax.test_util import check_grads

import jnet
from jnet import interop
from jnet import layers as L
from jnet.layers import LayerError

KEY = jax.random.key(0)


def attention_ref(x, params, num_heads, causal=False, mask=None):
    """softmax(Q Kᵀ / sqrt(D) + M) V per head, then the output projection; float64 loops.
    Padded queries give 0; padded keys and (if causal) later keys get no weight."""
    x = np.asarray(x, np.float64)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    n, t, e = x.shape
    d = e // num_heads
    mask = np.ones((n, t), bool) if mask is None else np.asarray(mask)
    y = np.zeros((n, t, e))
    for b in range(n):
        qkv = x[b] @ p["w_qkv"] + p.get("b_qkv", 0.0)
        q, k, v = qkv[:, :e], qkv[:, e:2 * e], qkv[:, 2 * e:]
        heads = np.zeros((t, e))
        for h in range(num_heads):
            cols = slice(h * d, (h + 1) * d)
            for i in range(t):
                keys = [j for j in range(t) if mask[b, j] and not (causal and j > i)]
                logits = np.array([q[i, cols] @ k[j, cols] for j in keys]) / np.sqrt(d)
                w = np.exp(logits - logits.max())
                w /= w.sum()
                heads[i, cols] = sum(wj * v[j, cols] for wj, j in zip(w, keys, strict=True))
        out = heads @ p["w_out"] + p.get("b_out", 0.0)
        y[b] = np.where(mask[b][:, None], out, 0.0)
    return y


def random_params(e, seed=0, bias=True):
    params = {"w_qkv": randn(seed, (e, 3 * e)) * 0.5, "w_out": randn(seed + 1, (e, e)) * 0.5}
    if bias:
        params.update(b_qkv=randn(seed + 2, (3 * e,)), b_out=randn(seed + 3, (e,)))
    return {k: jnp.asarray(v) for k, v in params.items()}


MASK = np.asarray([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool)


@pytest.mark.parametrize("num_heads", [1, 2, 4])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_forward_matches_numpy(num_heads, causal, masked):
    layer = L.MultiHeadAttention(num_heads, causal=causal)
    params = random_params(8)
    x = randn(5, (3, 5, 8))
    mask = MASK if masked else None
    y, state = layer.apply(params, {}, jnp.asarray(x), mask=None if mask is None else
                           jnp.asarray(mask))
    np.testing.assert_allclose(y, attention_ref(x, params, num_heads, causal, mask),
                               rtol=1e-4, atol=1e-5)
    assert state == {}
    if masked:
        np.testing.assert_array_equal(np.asarray(y)[~MASK], 0.0)


def test_einsum_path_matches_numpy():
    """Training with dropout runs its own einsum path; with a drop rate so small that every
    weight is kept it must give the reference too."""
    layer = L.MultiHeadAttention(2, causal=True, dropout=1e-9)
    params = random_params(8, seed=3)
    x = randn(6, (3, 5, 8))
    y, _ = layer.apply(params, {}, jnp.asarray(x), mask=jnp.asarray(MASK), train=True, key=KEY)
    np.testing.assert_allclose(y, attention_ref(x, params, 2, True, MASK), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("train", [False, True])
def test_padded_keys_are_never_attended(train):
    layer = L.MultiHeadAttention(2, dropout=0.3 if train else 0.0)
    params = random_params(8, seed=7)
    x = randn(8, (3, 5, 8))
    junk = np.where(MASK[:, :, None], x, 1e4 * randn(9, x.shape))
    run = [layer.apply(params, {}, jnp.asarray(a), mask=jnp.asarray(MASK), train=train,
                       key=KEY)[0] for a in (x, junk)]
    np.testing.assert_allclose(run[1], run[0], rtol=1e-5, atol=1e-5)


def test_init_shapes_and_abstract_init():
    layer = L.MultiHeadAttention(2)
    out_shape, params, state = layer.init(KEY, (5, 8))
    assert out_shape == (5, 8) and state == {}
    assert {k: v.shape for k, v in params.items()} == {
        "w_qkv": (8, 24), "b_qkv": (24,), "w_out": (8, 8), "b_out": (8,)}
    limit = np.sqrt(6 / (8 + 24))  # glorot over the fused (E, 3E) matrix, as PyTorch draws it
    assert 0.8 * limit < np.abs(params["w_qkv"]).max() <= limit
    np.testing.assert_array_equal(params["b_qkv"], np.zeros(24))
    shapes = jax.eval_shape(lambda k: layer.init(k, (5, 8))[1], KEY)
    assert all(isinstance(a, jax.ShapeDtypeStruct) for a in jax.tree.leaves(shapes))
    assert L.MultiHeadAttention(2, use_bias=False).init(KEY, (5, 8))[1].keys() == {
        "w_qkv", "w_out"}


def test_jit_matches_eager():
    layer = L.MultiHeadAttention(2, causal=True)
    params = random_params(8, seed=11)
    x, mask = jnp.asarray(randn(12, (3, 5, 8))), jnp.asarray(MASK)
    eager, _ = layer.apply(params, {}, x, mask=mask)
    jitted, _ = jax.jit(lambda p, x, m: layer.apply(p, {}, x, mask=m))(params, x, mask)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-6)


def test_gradients_match_finite_differences_of_numpy():
    """The fused path (`jax.nn.dot_product_attention`) always runs its softmax in float32, so
    float64 finite differences of jnet itself would measure float32 noise: its float32
    gradients are checked against central differences of the float64 NumPy reference."""
    layer = L.MultiHeadAttention(2, causal=True)
    mask = MASK[:2, :4]
    params = random_params(4, seed=13)
    x = randn(14, (2, 4, 4))
    w = randn(15, (2, 4, 4))

    def loss(p, x):
        return jnp.sum(w * layer.apply(p, {}, x, mask=jnp.asarray(mask))[0])

    grads = jax.grad(loss, argnums=(0, 1))(params, jnp.asarray(x))
    args = ({k: np.asarray(v, np.float64) for k, v in params.items()}, x.astype(np.float64))
    h = 1e-6
    for (path, value), grad in zip(jax.tree_util.tree_leaves_with_path(args),
                                   jax.tree.leaves(grads), strict=True):
        fd = np.zeros(value.shape)
        for i in np.ndindex(*value.shape):
            old = value[i]
            sums = []
            for shifted in (old + h, old - h):
                value[i] = shifted
                sums.append(np.sum(w * attention_ref(args[1], args[0], 2, True, mask)))
            value[i] = old
            fd[i] = (sums[0] - sums[1]) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-3, atol=1e-4, err_msg=str(path))


def test_dropout_path_gradients_match_finite_differences():
    layer = L.MultiHeadAttention(2, causal=True, dropout=0.25)
    mask = jnp.asarray(MASK[:2, :4])
    with jax.enable_x64(True):
        params = to_f64(random_params(4, seed=13))
        x = jnp.asarray(randn(14, (2, 4, 4)), jnp.float64)
        f = lambda p, x: layer.apply(p, {}, x, mask=mask, train=True, key=KEY)[0]  # noqa: E731
        check_grads(f, (params, x), order=1, modes=("rev",))


def test_dropout_is_keyed_and_unbiased():
    """Inverted dropout on the weights: E[train output] = eval output (the output is linear
    in the weights), the same key gives the same draw, and training needs a key."""
    layer = L.MultiHeadAttention(2, dropout=0.4)
    params = random_params(8, seed=15)
    x, mask = jnp.asarray(randn(16, (2, 5, 8))), jnp.asarray(MASK[:2])
    ev, _ = layer.apply(params, {}, x, mask=mask)
    np.testing.assert_allclose(ev, attention_ref(x, params, 2, False, MASK[:2]), rtol=1e-4,
                               atol=1e-5)
    train = jax.jit(jax.vmap(lambda k: layer.apply(params, {}, x, mask=mask, train=True,
                                                   key=k)[0]))
    ys = np.asarray(train(jax.random.split(KEY, 4000)), np.float64)
    assert not np.allclose(ys[0], ys[1])
    np.testing.assert_allclose(ys[0], train(jax.random.split(KEY, 4000)[:1])[0], rtol=1e-6,
                               atol=1e-6)
    err = np.abs(ys.mean(0) - np.asarray(ev))
    assert np.all(err <= 5 * ys.std(0) / np.sqrt(len(ys)) + 1e-5), err.max()
    with pytest.raises(LayerError, match="needs a PRNG key"):
        layer.apply(params, {}, x, train=True)


def test_inside_serial_with_mask():
    model = L.serial(L.Input((5, 3)), L.Dense(8), L.MultiHeadAttention(2, causal=True),
                     L.LayerNorm())
    _, params, state = model.init(KEY)
    x, mask = randn(17, (3, 5, 3)), MASK
    y, _ = model.apply(params, state, jnp.asarray(x), mask=jnp.asarray(mask))
    h = x @ np.asarray(params["dense_1"]["w"]) + np.asarray(params["dense_1"]["b"])
    h = attention_ref(h, params["multi_head_attention_2"], 2, True, mask)
    mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    np.testing.assert_allclose(y, (h - mu) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-4)


def test_mixed_precision():
    model = L.serial(L.Input((5, 8)), L.MultiHeadAttention(2, causal=True))
    _, params, state = model.init(KEY)
    x, mask = jnp.asarray(randn(18, (3, 5, 8))), jnp.asarray(MASK)
    y32, _ = model.apply(params, state, x, mask=mask)
    y16, _ = jnet.precision.mixed(model).apply(params, state, x, mask=mask)
    assert y16.dtype == jnp.float32
    rel = float(jnp.linalg.norm(y16 - y32) / jnp.linalg.norm(y32))
    assert 0 < rel < 3e-2
    np.testing.assert_array_equal(np.asarray(y16)[~MASK], 0.0)


def test_errors():
    for bad in (0, 2.0, True):
        with pytest.raises(LayerError, match="num_heads must be a positive int"):
            L.MultiHeadAttention(bad)
    with pytest.raises(LayerError, match="0 <= dropout < 1"):
        L.MultiHeadAttention(2, dropout=1.0)
    with pytest.raises(LayerError, match=r"E = 10 .* divisible by num_heads = 4"):
        L.MultiHeadAttention(4).init(KEY, (5, 10))
    with pytest.raises(LayerError, match=r"rank 2 \(T, E\)"):
        L.MultiHeadAttention(2).init(KEY, (8,))
    params = random_params(8)
    x = jnp.zeros((3, 5, 8))
    with pytest.raises(LayerError, match="boolean array of shape"):
        L.MultiHeadAttention(2).apply(params, {}, x, mask=jnp.ones((3, 5), jnp.int32))
    with pytest.raises(LayerError, match=r"\(N, T\) = \(3, 5\)"):
        L.MultiHeadAttention(2).apply(params, {}, x, mask=jnp.ones((3, 4), bool))
    with pytest.raises(LayerError, match="floating-point"):
        L.MultiHeadAttention(2).apply(params, {}, x.astype(jnp.int32))
    with pytest.raises(LayerError, match="8 features on the last axis"):
        L.MultiHeadAttention(2).apply(params, {}, jnp.zeros((3, 5, 6)))


def assert_matches_torch(case):
    params = interop.multihead_attention_from_torch(case["sd"])
    layer = L.MultiHeadAttention(int(case["num_heads"]), causal=bool(case["causal"]))
    mask = np.asarray(case["mask"], bool)
    y, _ = layer.apply(params, {}, jnp.asarray(case["x"]), mask=jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(y)[mask], case["y"][mask], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(y)[~mask], 0.0)


@pytest.mark.parametrize("name", ["mha", "mha_causal"])
def test_fixture_parity(name):
    case = fixture_case(name)
    assert bool(case["causal"]) == (name == "mha_causal") and not case["mask"].all()
    assert np.abs(case["sd"]["in_proj_bias"]).min() > 0  # biases are not PyTorch's zeros
    assert_matches_torch(case)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", ["mha", "mha_causal"])
def test_live_torch_parity(name, seed):
    assert_matches_torch(live_case(name, seed))


def test_live_torch_bias_free_with_prefix():
    torch = pytest.importorskip("torch")
    torch.manual_seed(4)
    model = torch.nn.Sequential()
    model.add_module("attn", torch.nn.MultiheadAttention(6, 3, bias=False, batch_first=True))
    x = torch.randn(2, 4, 6)
    with torch.no_grad():
        want = model.attn(x, x, x, need_weights=False)[0].numpy()
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    params = interop.multihead_attention_from_torch(sd, "attn.")
    assert params.keys() == {"w_qkv", "w_out"}
    y, _ = L.MultiHeadAttention(3, use_bias=False).apply(params, {}, x.numpy())
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_converter_errors():
    sd = {"in_proj_weight": np.zeros((24, 8)), "in_proj_bias": np.zeros(24),
          "out_proj.weight": np.zeros((8, 8)), "out_proj.bias": np.zeros(8)}
    with pytest.raises(jnet.ArgumentError, match="pass the right prefix"):
        interop.multihead_attention_from_torch({"a." + k: v for k, v in sd.items()})
    with pytest.raises(jnet.Error, match="separate q/k/v projections"):
        interop.multihead_attention_from_torch({**sd, "q_proj_weight": np.zeros((8, 8))})
    with pytest.raises(ValueError, match="add_bias_kv"):
        interop.multihead_attention_from_torch({**sd, "bias_k": np.zeros((1, 1, 8))})
    with pytest.raises(ValueError, match="expected in_proj_weight of shape"):
        interop.multihead_attention_from_torch({**sd, "in_proj_weight": np.zeros((16, 8))})
    with pytest.raises(ValueError, match=r"both in_proj_bias and out_proj\.bias"):
        interop.multihead_attention_from_torch({k: v for k, v in sd.items()
                                                if k != "out_proj.bias"})
