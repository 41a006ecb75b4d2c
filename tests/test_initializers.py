"""jnet.initializers: variances against the published formulas, orthogonality, dtypes, tracing."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnet import initializers as I

pytestmark = pytest.mark.usefixtures("fast_compiling_prng")

KEY = jax.random.key(0)
CONV = (3, 3, 64, 128)  # HWIO: fan_in 576, fan_out 1152
DENSE = (256, 512)

# name -> (factory, variance as a function of (fan_in, fan_out)); the formulas from the papers.
VARIANCE = {
    "glorot_uniform": (I.glorot_uniform, lambda fi, fo: 2.0 / (fi + fo)),
    "glorot_normal": (I.glorot_normal, lambda fi, fo: 2.0 / (fi + fo)),
    "he_uniform": (I.he_uniform, lambda fi, fo: 2.0 / fi),
    "he_normal": (I.he_normal, lambda fi, fo: 2.0 / fi),
    "lecun_uniform": (I.lecun_uniform, lambda fi, fo: 1.0 / fi),
    "lecun_normal": (I.lecun_normal, lambda fi, fo: 1.0 / fi),
}
FANS = {CONV: (576, 1152), DENSE: (256, 512)}


@pytest.mark.parametrize("shape, fans", [(CONV, (576, 1152)), (DENSE, (256, 512)),
                                         ((7,), (7, 7)), ((), (1, 1)), ((5, 2, 3), (10, 15))])
def test_compute_fans(shape, fans):
    assert I.compute_fans(shape) == fans


@pytest.mark.parametrize("shape", [CONV, DENSE])
@pytest.mark.parametrize("name", sorted(VARIANCE))
def test_empirical_variance_matches_formula(name, shape):
    factory, formula = VARIANCE[name]
    w = factory()(KEY, shape)
    assert w.shape == shape and w.dtype == jnp.float32
    w = np.asarray(w, np.float64)
    var = formula(*FANS[shape])
    n = w.size
    # Sample mean: 6 standard errors; sample variance: relative s.e. <= sqrt(2/n) (~0.5% here).
    assert abs(w.mean()) < 6 * math.sqrt(var / n)
    assert w.var() == pytest.approx(var, rel=6 * math.sqrt(2 / n))
    std = math.sqrt(var)
    if name.endswith("uniform"):
        limit = math.sqrt(3 * var)
        assert np.abs(w).max() <= limit * (1 + 1e-6)
        assert np.abs(w).max() > 0.99 * limit  # fills the interval
    else:  # truncated at two std of the underlying normal, rescaled by 1/0.8796
        assert np.abs(w).max() <= 2 * std / 0.87962566 * (1 + 1e-5)


def test_untruncated_normal_has_tails_and_right_variance():
    var = 2.0 / 576
    w = np.asarray(I.he_normal(truncated=False)(KEY, CONV), np.float64)
    assert w.var() == pytest.approx(var, rel=0.03)
    # Beyond the truncation bound (2.27 std) an untruncated normal has ~2.3% of its mass.
    frac = np.mean(np.abs(w) > 2.4 * math.sqrt(var))
    assert 0.01 < frac < 0.025


def test_aliases_are_the_same_factories():
    assert I.xavier_uniform is I.glorot_uniform and I.xavier_normal is I.glorot_normal
    assert I.kaiming_uniform is I.he_uniform and I.kaiming_normal is I.he_normal


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (3, 3, 16, 32), (40, 40)])
@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_orthogonal(shape, scale):
    w = np.asarray(I.orthogonal(scale)(KEY, shape), np.float64)
    assert w.shape == shape
    m = w.reshape(-1, shape[-1])
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, scale**2 * np.eye(len(gram)), atol=1e-5)


def test_orthogonal_rejects_vectors():
    with pytest.raises(ValueError, match="at least 2 dims"):
        I.orthogonal()(KEY, (5,))


def test_constant_zeros_ones():
    np.testing.assert_array_equal(I.constant(0.1)(KEY, (2, 3)), np.full((2, 3), 0.1, np.float32))
    np.testing.assert_array_equal(I.zeros()(KEY, (4,)), np.zeros(4))
    np.testing.assert_array_equal(I.ones()(KEY, (4,)), np.ones(4))


def test_uniform_and_normal_ranges():
    u = np.asarray(I.uniform(-0.2, 0.3)(KEY, (20000,)))
    assert u.min() >= -0.2 and u.max() < 0.3 and u.mean() == pytest.approx(0.05, abs=0.01)
    z = np.asarray(I.normal(stddev=0.5, mean=1.0)(KEY, (20000,)))
    assert z.mean() == pytest.approx(1.0, abs=0.03) and z.std() == pytest.approx(0.5, rel=0.03)


ALL_INITS = [I.glorot_uniform(), I.glorot_normal(), I.he_uniform(), I.he_normal(),
             I.lecun_uniform(), I.lecun_normal(), I.orthogonal(), I.zeros(), I.ones(),
             I.constant(3.0), I.uniform(), I.normal(), I.he_normal(truncated=False)]


@pytest.mark.parametrize("init", ALL_INITS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_dtype_and_eval_shape(init, dtype):
    shape = (3, 3, 4, 8)
    abstract = jax.eval_shape(lambda k: init(k, shape, dtype), KEY)
    assert abstract.shape == shape and abstract.dtype == dtype
    w = init(KEY, shape, dtype)
    assert w.shape == shape and w.dtype == dtype
    assert np.all(np.isfinite(np.asarray(w, np.float32)))


@pytest.mark.parametrize("init", ALL_INITS)
def test_deterministic_and_jittable(init):
    a = init(KEY, (6, 5))
    b = jax.jit(lambda k: init(k, (6, 5)))(KEY)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_different_keys_give_different_draws():
    a = I.he_normal()(jax.random.key(1), (10, 10))
    b = I.he_normal()(jax.random.key(2), (10, 10))
    assert not np.allclose(a, b)


def test_get_accepts_names_factories_and_inits():
    w = I.get("he_uniform")(KEY, DENSE)
    assert np.abs(w).max() <= math.sqrt(6 / 256)
    np.testing.assert_array_equal(I.get("ones")(KEY, (3,)), np.ones(3))
    # An uncalled factory is resolved with its defaults (the common slip `w_init=he_normal`).
    np.testing.assert_array_equal(I.get(I.zeros)(KEY, (3,)), np.zeros(3))
    custom = lambda key, shape, dtype=jnp.float32: jnp.full(shape, 7.0, dtype)  # noqa: E731
    # A plain init(key, shape, dtype) is called without the layer's context keywords ...
    np.testing.assert_array_equal(I.get(custom)(KEY, (2,), fan_in=3, summands=2), [7.0, 7.0])
    two_args = lambda key, shape: jnp.full(shape, 5.0)  # noqa: E731
    np.testing.assert_array_equal(I.get(two_args)(KEY, (2,), fan_in=3), [5.0, 5.0])
    # ... one that declares a context keyword gets it, one taking **context gets them all.
    reads = lambda key, shape, dtype=jnp.float32, *, fan_in=None: jnp.full(shape, fan_in)  # noqa
    np.testing.assert_array_equal(I.get(reads)(KEY, (1,), fan_in=3, summands=2), [3])
    takes_all = lambda key, shape, dtype=jnp.float32, **c: jnp.full(shape, c["summands"])  # noqa
    assert I.get(takes_all) is takes_all
    assert I.get(I.constant(2.0))(KEY, (1,))[0] == 2.0


def test_get_errors():
    with pytest.raises(ValueError, match=r"unknown initializer 'he_norml'.*he_normal"):
        I.get("he_norml")
    with pytest.raises(TypeError, match="constant"):
        I.get(0.5)
    with pytest.raises(ValueError, match="mode"):
        I.variance_scaling(1.0, "fan_sum", "uniform")
    with pytest.raises(ValueError, match="distribution"):
        I.variance_scaling(1.0, "fan_in", "laplace")


# PyTorch's default init, by name: layer, in_shape, and per param the bound b of U(±b) and the
# number of summed uniforms, from PyTorch's rule 1/sqrt(fan_in) written out by hand:
# Linear fan_in = in; Conv fan_in = C/groups * prod(k); ConvTranspose fan_in = F * prod(k);
# LSTM / GRU 1/sqrt(hidden) everywhere, the LSTM's b = b_ih + b_hh (two uniforms).
def _torch_init_cases():
    t = dict(w_init="torch", b_init="torch")
    rnn = dict(w_ih_init="torch", w_hh_init="torch", b_init="torch")
    from jnet import layers as L

    return {
        "dense": (L.Dense(2048, **t), (48,), {"w": (48, 1), "b": (48, 1)}),
        "conv1d": (L.Conv1D(2048, 5, **t), (9, 6), {"w": (30, 1), "b": (30, 1)}),
        "conv1d_groups": (L.Conv1D(2048, 3, feature_group_count=2, **t), (9, 8),
                          {"w": (12, 1), "b": (12, 1)}),
        "conv2d": (L.Conv2D(2048, (3, 2), **t), (5, 5, 4), {"w": (24, 1), "b": (24, 1)}),
        "conv_transpose2d": (L.ConvTranspose2D(2048, (2, 3), **t), (3, 3, 5),
                             {"w": (6 * 2048, 1), "b": (6 * 2048, 1)}),
        "lstm": (L.LSTM(512, unit_forget_bias=False, **rnn), (4, 8),
                 {"w_ih": (512, 1), "w_hh": (512, 1), "b": (512, 2)}),
        "gru": (L.GRU(512, **rnn), (4, 8),
                {"w_ih": (512, 1), "w_hh": (512, 1), "b_ih": (512, 1), "b_hh": (512, 1)}),
    }


@pytest.mark.parametrize("case", sorted(_torch_init_cases()))
def test_torch_init_distributions(case):
    """Bounds, mean and variance of each param against U(±1/sqrt(fan_in)) (summed k times:
    variance k / (3 fan_in), support ±k / sqrt(fan_in))."""
    layer, in_shape, expected = _torch_init_cases()[case]
    _, params, _ = layer.init(KEY, in_shape)
    assert set(params) == set(expected)
    for name, (fan_in, summands) in expected.items():
        v = np.asarray(params[name], np.float64).ravel()
        bound = summands / math.sqrt(fan_in)
        var = summands / (3 * fan_in)
        assert np.abs(v).max() <= bound, name
        assert np.abs(v).max() > (0.9 if summands == 1 else 0.6) * bound, name
        assert abs(v.mean()) < 5 * math.sqrt(var / v.size), name
        np.testing.assert_allclose(v.var(), var, rtol=8 * math.sqrt(2 / v.size), err_msg=name)


def test_torch_init_without_context_uses_the_shape():
    w = np.asarray(I.get("torch")(KEY, (400, 300)))
    assert 0.99 / 20 < np.abs(w).max() <= 1 / 20  # fan_in 400
    b = np.asarray(I.torch_default()(KEY, (4000,), fan_in=25, summands=1))
    assert 0.99 / 5 < np.abs(b).max() <= 1 / 5
    assert np.all(np.asarray(I.torch_default()(KEY, (3,), fan_in=0)) == 0)  # PyTorch: bound 0


def test_torch_fan_in_matches_pytorch_modules():
    """The fan_in each layer passes is the one PyTorch itself uses: its freshly initialised
    modules reach (but never pass) the same bounds."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    modules = {
        "dense": torch.nn.Linear(48, 2048),
        "conv1d": torch.nn.Conv1d(6, 2048, 5),
        "conv1d_groups": torch.nn.Conv1d(8, 2048, 3, groups=2),
        "conv2d": torch.nn.Conv2d(4, 2048, (3, 2)),
        "conv_transpose2d": torch.nn.ConvTranspose2d(5, 2048, (2, 3)),
        "lstm": torch.nn.LSTM(8, 512, batch_first=True),
        "gru": torch.nn.GRU(8, 512, batch_first=True),
    }
    for case, (_, _, expected) in _torch_init_cases().items():
        fan_in = next(iter(expected.values()))[0]
        for name, p in modules[case].named_parameters():
            top = p.detach().abs().max().item()
            assert 0.9 / math.sqrt(fan_in) < top <= 1 / math.sqrt(fan_in), (case, name)
