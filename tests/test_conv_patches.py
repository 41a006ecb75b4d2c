"""The weight gradient's patch-matrix path (`_weight_grad_patches`, taken for 2-D inputs with
at most `PATCHES_MAX_CHANNELS` channels) and its guard: its values equal the convolution's
definition (an einsum, `test_conv_fast_grad.definition`) and the convolution path it replaces,
in float64; the guard falls back on more channels, groups, 1-D inputs and patch matrices over
`PATCHES_MAX_BYTES`. Conv3D's opt-in fast_grad equals autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import randn, to_f64
from test_conv_fast_grad import definition

from jnet import layers as L
from jnet.layers import conv as C

pytestmark = pytest.mark.usefixtures("fast_compiling_prng")


def _case(shape, k, s, pads, d, f=4):
    """x, the cotangent g of conv(x, w) and the exact pads `_weight_grad` is called with."""
    x = jnp.asarray(randn(0, shape, np.float64))
    w = jnp.zeros((*k, shape[-1], f), jnp.float64)
    y = C.conv(x, w, s, pads, d)
    g = jnp.asarray(randn(1, y.shape, np.float64))
    exact = C._end_pads(shape[1:-1], y.shape[1:-1], k, s, pads, d)
    return x, w, g, exact


CASES = [  # (input shape, kernel, strides, pads, dilation)
    ((2, 9, 8, 1), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),  # the bench CNN's first layer
    ((3, 9, 8, 3), (3, 2), (1, 2), ((1, 2), (0, 1)), (1, 2)),  # RGB, strided and dilated
    ((2, 7, 7, 1), (4, 4), (2, 2), ((1, 1), (1, 1)), (1, 1)),  # the strided CNN's first layer
    ((2, 6, 5, 2), (1, 3), (3, 1), ((4, 0), (2, -1)), (2, 1)),  # pads beyond k, a crop
    ((2, 8, 9, 3), (2, 2), (3, 2), ((0, 0), (0, 0)), (1, 1)),  # unused trailing rows
]


@pytest.mark.parametrize("shape, k, s, pads, d", CASES)
def test_patches_equal_definition_and_convolution(shape, k, s, pads, d, monkeypatch):
    with jax.enable_x64(True):
        x, w, g, exact = _case(shape, k, s, pads, d)
        cropped, nonneg = C._crop(x, exact)
        assert C._patches_pay(cropped, g, s, nonneg, d, 1)
        got = C._weight_grad(x, g, s, exact, d)
        want = jax.vjp(lambda w: definition(x, w, s, pads, d), w)[1](g)[0]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        monkeypatch.setattr(C, "PATCHES_MAX_CHANNELS", 0)  # the convolution path
        np.testing.assert_allclose(C._weight_grad(x, g, s, exact, d), want, rtol=1e-12,
                                   atol=1e-12)


def _takes_patches(x, g, s=(1, 1), pads=((1, 1), (1, 1)), d=(1, 1), groups=1) -> bool:
    jaxpr = str(jax.make_jaxpr(lambda x, g: C._weight_grad(x, g, s, pads, d, groups))(x, g))
    assert ("conv_general_dilated" in jaxpr) != ("dot_general" in jaxpr)
    return "dot_general" in jaxpr


def test_guard_takes_the_convolution_beyond_its_limits(monkeypatch):
    f32 = jax.ShapeDtypeStruct
    g = f32((128, 28, 28, 32), jnp.float32)
    assert _takes_patches(f32((128, 28, 28, 1), jnp.float32), g)
    assert _takes_patches(f32((128, 28, 28, 3), jnp.float32), g)
    assert not _takes_patches(f32((128, 28, 28, 4), jnp.float32), g)  # more channels
    assert not _takes_patches(f32((128, 28, 28, 2), jnp.float32), g, groups=2)
    assert not _takes_patches(f32((128, 28, 1), jnp.float32), f32((128, 28, 32), jnp.float32),
                              (1,), ((1, 1),), (1,))  # 1-D: XLA runs the convolution well
    # 9 taps x 3 channels x 128 x 784 rows x 4 bytes = 10.8 MB of patches
    monkeypatch.setattr(C, "PATCHES_MAX_BYTES", 9 * 3 * 128 * 784 * 4)
    assert _takes_patches(f32((128, 28, 28, 3), jnp.float32), g)
    monkeypatch.setattr(C, "PATCHES_MAX_BYTES", 9 * 3 * 128 * 784 * 4 - 1)
    assert not _takes_patches(f32((128, 28, 28, 3), jnp.float32), g)


def test_conv3d_fast_grad_opt_in_equals_autodiff():
    fast, default = L.Conv3D(2, (2, 3, 2), strides=(1, 2, 1), padding="SAME", fast_grad=True), \
        L.Conv3D(2, (2, 3, 2), strides=(1, 2, 1), padding="SAME")
    with jax.enable_x64(True):
        _, params, _ = default.init(jax.random.key(0), (3, 5, 4, 2))
        params = to_f64(params)
        x = jnp.asarray(randn(2, (2, 3, 5, 4, 2), np.float64))

        def grad(layer):
            return jax.grad(lambda p, x: jnp.sum(jnp.sin(layer.apply(p, {}, x)[0])),
                            argnums=(0, 1))

        assert "jnet_linear_call" in str(jax.make_jaxpr(grad(fast))(params, x))
        assert "jnet_linear_call" not in str(jax.make_jaxpr(grad(default))(params, x))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12),
                     grad(fast)(params, x), grad(default)(params, x))
