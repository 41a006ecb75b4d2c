"""The hand-laid-out backward passes (`conv_fast`, `conv_transpose_fast`, the CPU default of
Conv1D / Conv2D / ConvTranspose2D) and the autodiff ones (`conv`, `conv_transpose`): values and
gradients equal those of the convolutions written from their definition (an einsum) to float32
rounding, over many shapes (strides, dilation, pads and crops beyond the kernel, unused
trailing input rows, output_padding); the layers to second order against finite differences
and fast_grad=True equal to fast_grad=False."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import randn, to_f64
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from jnet import layers as L
from jnet.layers.conv import conv, conv_fast, conv_transpose, conv_transpose_fast

pytestmark = pytest.mark.usefixtures("fast_compiling_prng")

KEY = jax.random.key(0)


def _taps(size, k, s, d, lo, out, transpose):
    """T[i, u, o] = 1 where input position i meets kernel tap u at output position o:
    i = o*s + u*d - lo for a convolution, o = i*s + u*d - lo for a transposed one."""
    i, u, o = np.ogrid[:size, :k, :out]
    hit = (o == i * s + u * d - lo) if transpose else (i == o * s + u * d - lo)
    return jnp.asarray(hit, jnp.float32)


def definition(x, w, s, pads, d, transpose=False):
    """Either convolution straight from its definition, as a sum over (input position, tap)
    pairs (an einsum with 0/1 tap tensors): its gradients are those of an einsum."""
    n = len(s)
    taps = []
    for m, k, ss, dd, (lo, hi) in zip(x.shape[1:-1], w.shape[:n], s, d, pads, strict=True):
        k_eff = (k - 1) * dd + 1
        out = (m - 1) * ss + k_eff - lo - hi if transpose else (m + lo + hi - k_eff) // ss + 1
        taps.append(_taps(m, k, ss, dd, lo, out, transpose))
    spec = {1: "nac,ucf,auo->nof", 2: "nabc,uvcf,auo,bvp->nopf"}[n]
    return jnp.einsum(spec, x, w, *taps)


def definition_transpose(x, w, s, crops, d):
    return definition(x, w, s, crops, d, transpose=True)


@st.composite
def conv_cases(draw, transpose=False):
    n = draw(st.sampled_from([1, 2]))
    k = tuple(draw(st.integers(1, 4)) for _ in range(n))
    s = tuple(draw(st.integers(1, 3)) for _ in range(n))
    d = tuple(draw(st.integers(1, 2)) for _ in range(n))
    pads = tuple((draw(st.integers(0, 4)), draw(st.integers(0, 4))) for _ in range(n))
    size = tuple(draw(st.integers(1, 7)) for _ in range(n))
    k_eff = [(a - 1) * b + 1 for a, b in zip(k, d, strict=True)]
    if transpose:  # crops must leave an output; hi may be reduced by an output_padding
        pads = tuple((lo, hi - draw(st.integers(0, max(ss, dd) - 1)))
                     for (lo, hi), ss, dd in zip(pads, s, d, strict=True))
        ok = all((m - 1) * ss + ke - lo - hi >= 1
                 for m, ss, ke, (lo, hi) in zip(size, s, k_eff, pads, strict=True))
    else:
        ok = all(m + lo + hi >= ke for m, (lo, hi), ke in zip(size, pads, k_eff, strict=True))
    c, f = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return n, k, s, d, pads, size, c, f, ok


def _compare(fast, reference, case, seed):
    _, k, s, d, pads, size, c, f, ok = case
    assume(ok)
    x = jnp.asarray(randn(seed, (2, *size, c)))
    w = jnp.asarray(randn(seed + 1, (*k, c, f)))
    y, vjp = jax.vjp(lambda x, w: fast(x, w, s, pads, d), x, w)
    y_ref, vjp_ref = jax.vjp(lambda x, w: reference(x, w, s, pads, d), x, w)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    g = jnp.asarray(randn(seed + 2, y.shape))
    for got, want in zip(vjp(g), vjp_ref(g), strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@settings(max_examples=5, deadline=None, derandomize=True, database=None)
@given(conv_cases())
def test_conv_fast_and_autodiff_equal_the_definition(case):
    _compare(conv_fast, definition, case, 0)
    _compare(conv, definition, case, 3)


@settings(max_examples=5, deadline=None, derandomize=True, database=None)
@given(conv_cases(transpose=True))
@example((2, (3, 2), (1, 1), (1, 1), ((3, 1), (1, 1)), (3, 5), 1, 1, True))  # crop > k - 1
@example((1, (2,), (3,), (2,), ((4, -1),), (3,), 2, 1, True))  # output_padding, dilation
def test_conv_transpose_fast_and_autodiff_equal_the_definition(case):
    """Crops beyond the kernel included: there JAX differentiates a negatively padded
    convolution wrongly, which `conv_transpose` avoids by slicing."""
    _compare(conv_transpose_fast, definition_transpose, case, 10)
    _compare(conv_transpose, definition_transpose, case, 13)


@pytest.mark.parametrize("make, in_shape", [
    (lambda fast: L.Conv2D(3, (3, 2), strides=(2, 3), padding="SAME", dilation=(1, 2),
                           fast_grad=fast), (7, 8, 2)),
    (lambda fast: L.Conv2D(2, 3, strides=2, padding=((3, 0), (1, 4)), fast_grad=fast),
     (6, 5, 2)),  # pads beyond the kernel, unused trailing rows
    (lambda fast: L.Conv1D(3, 3, strides=3, dilation=2, padding=1, fast_grad=fast), (11, 2)),
    (lambda fast: L.Conv2D(8, 3, strides=2, padding="SAME", feature_group_count=4,
                           fast_grad=fast), (6, 5, 4)),  # depthwise, depth multiplier 2
    (lambda fast: L.Conv1D(4, 2, dilation=2, feature_group_count=2, fast_grad=fast), (7, 6)),
    (lambda fast: L.ConvTranspose2D(2, (3, 2), strides=(2, 3), padding=1, output_padding=(1, 2),
                                    fast_grad=fast), (3, 3, 2)),
    (lambda fast: L.ConvTranspose2D(2, 2, strides=3, padding="SAME", dilation=2,
                                    fast_grad=fast), (2, 3, 1)),
])
def test_layers_fast_grad_second_order_and_equal_to_autodiff(make, in_shape):
    """Both modes to second order against finite differences, the custom path really taken,
    and the layer's gradients equal to the same layer's with fast_grad=False."""
    fast, slow = make(True), make(False)
    with jax.enable_x64(True):
        _, params, _ = fast.init(KEY, in_shape)
        params = to_f64(params)
        x = jnp.asarray(randn(5, (2, *in_shape), np.float64))
        f = lambda p, x: fast.apply(p, {}, x)[0]  # noqa: E731
        check_grads(f, (params, x), order=2, modes=("fwd", "rev"))
        grad = jax.grad(lambda p, x: jnp.sum(f(p, x)))
        assert "jnet_linear_call" in str(jax.make_jaxpr(grad)(params, x))
        loss = lambda layer: lambda p, x: jnp.sum(jnp.sin(layer.apply(p, {}, x)[0]))  # noqa
        got = jax.grad(loss(fast), argnums=(0, 1))(params, x)
        want = jax.grad(loss(slow), argnums=(0, 1))(params, x)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12),
                     got, want)
