"""Conv3D, SeparableConv2D and UpSampling2D against NumPy loops from their definitions and
against PyTorch (nn.Conv3d, a depthwise + pointwise nn.Conv2d pair, nn.Upsample; float64
outputs and all gradients to 1e-10)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import conv2d_ref, randn
from _transformer_cases import assert_parity, fixture_case, live_case

import jnet
from jnet import interop
from jnet import layers as L
from jnet.layers import LayerError

KEY = jax.random.key(0)


def conv3d_ref(x, w, b, strides, pads):
    """y[n,i,j,l,f] = b[f] + Σ x_pad[n, i s + u, j s + v, l s + r, c] w[u, v, r, c, f]."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), *pads, (0, 0)))
    kd, kh, kw, _, f = w.shape
    out = [(x.shape[a + 1] - k) // s + 1
           for a, (k, s) in enumerate(zip((kd, kh, kw), strides, strict=True))]
    y = np.zeros((x.shape[0], *out, f))
    for i, j, l in np.ndindex(*out):
        patch = x[:, i * strides[0]:i * strides[0] + kd, j * strides[1]:j * strides[1] + kh,
                  l * strides[2]:l * strides[2] + kw]
        y[:, i, j, l] = np.einsum("nuvrc,uvrcf->nf", patch, w)
    return y + b


def test_conv3d_matches_numpy():
    layer = L.Conv3D(3, (2, 3, 2), strides=(1, 2, 1), padding=((1, 0), (1, 1), (0, 1)))
    out, params, _ = layer.init(KEY, (4, 5, 3, 2))
    assert params["w"].shape == (2, 3, 2, 2, 3)
    x = randn(0, (2, 4, 5, 3, 2))
    y, _ = layer.apply({"w": params["w"], "b": jnp.asarray(randn(1, (3,)))}, {}, jnp.asarray(x))
    ref = conv3d_ref(x, np.asarray(params["w"]), randn(1, (3,)), (1, 2, 1),
                     ((1, 0), (1, 1), (0, 1)))
    assert out == ref.shape[1:]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    assert L.Conv3D(4, 3, padding="SAME").init(KEY, (5, 6, 7, 2))[0] == (5, 6, 7, 4)


def test_separable_is_depthwise_then_pointwise():
    layer = L.SeparableConv2D(5, 3, padding="SAME", depth_multiplier=2)
    _, params, _ = layer.init(KEY, (6, 5, 3))
    assert {k: v.shape for k, v in params.items()} == {
        "depthwise": (3, 3, 3, 2), "pointwise": (1, 1, 6, 5), "b": (5,)}
    x = randn(2, (2, 6, 5, 3))
    y, _ = layer.apply(params, {}, jnp.asarray(x))
    dw = np.asarray(params["depthwise"])
    z = np.concatenate([conv2d_ref(x[..., c:c + 1], dw[:, :, c:c + 1, :], None, (1, 1),
                                   ((1, 1), (1, 1)), (1, 1)) for c in range(3)], -1)
    ref = z @ np.asarray(params["pointwise"])[0, 0] + np.asarray(params["b"])
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def upsample_ref(x, sh, sw, mode):
    """Per output pixel, from the definition (half-pixel centres for bilinear)."""
    x = np.asarray(x, np.float64)
    n, h, w, c = x.shape
    y = np.zeros((n, h * sh, w * sw, c))
    for i, j in np.ndindex(h * sh, w * sw):
        if mode == "nearest":
            y[:, i, j] = x[:, i // sh, j // sw]
            continue
        si, sj = max((i + 0.5) / sh - 0.5, 0), max((j + 0.5) / sw - 0.5, 0)
        i0, j0 = int(si), int(sj)
        i1, j1 = min(i0 + 1, h - 1), min(j0 + 1, w - 1)
        a, b = si - i0, sj - j0
        y[:, i, j] = ((1 - a) * (1 - b) * x[:, i0, j0] + (1 - a) * b * x[:, i0, j1]
                      + a * (1 - b) * x[:, i1, j0] + a * b * x[:, i1, j1])
    return y


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_upsampling_matches_numpy(mode):
    layer = L.UpSampling2D((2, 3), interpolation=mode)
    out, params, _ = layer.init(KEY, (3, 4, 2))
    assert out == (6, 12, 2) and params == {}
    x = randn(3, (2, 3, 4, 2))
    y, _ = layer.apply({}, {}, jnp.asarray(x))
    np.testing.assert_allclose(y, upsample_ref(x, 2, 3, mode), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer", [L.Conv3D(2, 2), L.SeparableConv2D(2, 2),
                                   L.UpSampling2D(2, "bilinear")], ids=["3d", "sep", "up"])
def test_transformations(layer):
    in_shape = (3, 4, 4, 2) if layer.kind == "Conv3D" else (4, 4, 2)
    _, params, _ = layer.init(KEY, in_shape)
    x = jnp.asarray(randn(4, (2, *in_shape)))
    f = lambda p, x: layer.apply(p, {}, x)[0]  # noqa: E731
    np.testing.assert_allclose(jax.jit(f)(params, x), f(params, x), rtol=1e-5, atol=1e-5)
    v = jax.vmap(lambda x: f(params, x[None])[0])(x)
    np.testing.assert_allclose(v, f(params, x), rtol=1e-5, atol=1e-5)
    g = jax.grad(lambda x: jnp.sum(f(params, x) ** 2))(x)
    _, t = jax.jvp(lambda x: f(params, x), (x,), (g,))
    assert np.isfinite(np.asarray(t)).all()


def test_errors():
    with pytest.raises(LayerError, match="depth_multiplier must be a positive int"):
        L.SeparableConv2D(2, 3, depth_multiplier=0)
    with pytest.raises(LayerError, match="interpolation must be"):
        L.UpSampling2D(2, "bicubic")
    with pytest.raises(LayerError, match="size must be a positive int"):
        L.UpSampling2D(0)
    with pytest.raises(LayerError, match=r"rank 4 \(D, H, W, C\)"):
        L.Conv3D(2, 2).init(KEY, (4, 4, 2))
    with pytest.raises(LayerError, match=r"rank 4 \(N, H, W, C\)"):
        L.UpSampling2D().apply({}, {}, jnp.ones((2, 3, 4)))
    with pytest.raises(jnet.ArgumentError, match="depthwise weight"):
        interop.separable_conv2d_from_torch(
            {"depthwise.weight": np.ones((6, 1, 3, 3)), "pointwise.weight": np.ones((4, 6, 1, 1))},
            depth_multiplier=4)


CASES = {
    "conv3d": (lambda: L.Conv3D(3, (3, 2, 2), strides=(1, 2, 1), padding=1,
                                dilation=(1, 1, 2)), interop.conv3d_from_torch),
    "separable": (lambda: L.SeparableConv2D(4, (3, 2), strides=(2, 1), padding=1,
                                            dilation=(1, 2), depth_multiplier=2),
                  lambda sd: interop.separable_conv2d_from_torch(sd, 2)),
    "upsample_nearest": (lambda: L.UpSampling2D((2, 3)), lambda sd: {}),
    "upsample_bilinear": (lambda: L.UpSampling2D((2, 3), "bilinear"), lambda sd: {}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_parity(name):
    make, convert = CASES[name]
    assert_parity(fixture_case(name), make(), convert)


@pytest.mark.parametrize("name", sorted(CASES))
def test_live_torch_parity(name):
    make, convert = CASES[name]
    assert_parity(live_case(name, 11), make(), convert)


def test_live_torch_depthwise_bias_is_folded():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, groups=2), torch.nn.Conv2d(4, 3, 1))
    x = torch.randn(2, 2, 5, 5)
    with torch.no_grad():
        want = model(x).permute(0, 2, 3, 1).numpy()
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    params = interop.separable_conv2d_from_torch(sd, 2, "0.", "1.")
    y, _ = L.SeparableConv2D(3, 3, depth_multiplier=2).apply(params, {},
                                                             x.permute(0, 2, 3, 1).numpy())
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
