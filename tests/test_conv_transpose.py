"""ConvTranspose2D against a scatter-add loop written from its definition, the output sizes of
the padding modes, its relation to Conv2D's input gradient, PyTorch's ConvTranspose2d (live and
the padding / output_padding mapping), gradients and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import randn, to_f64
from jax.test_util import check_grads

from jnet import interop
from jnet import layers as L
from jnet.layers import LayerError

pytestmark = pytest.mark.usefixtures("fast_compiling_prng")

KEY = jax.random.key(0)


def conv_transpose2d_ref(x, w, b, strides, crops, dilation, output_padding=(0, 0)):
    """full[n, i*sh + u*dh, j*sw + v*dw, f] += x[n, i, j, c] w[u, v, c, f]; then crop
    (lo, hi) per axis, hi reduced by output_padding (zeros appended past the full output)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n, h, wd, _ = x.shape
    kh, kw, _, f = w.shape
    (sh, sw), (dh, dw) = strides, dilation
    fh, fw = (h - 1) * sh + (kh - 1) * dh + 1, (wd - 1) * sw + (kw - 1) * dw + 1
    full = np.zeros((n, fh + 8, fw + 8, f))  # room for output_padding past the end
    for i in range(h):
        for j in range(wd):
            for u in range(kh):
                for v in range(kw):
                    full[:, i * sh + u * dh, j * sw + v * dw] += x[:, i, j] @ w[u, v]
    ((t, bt), (le, r)), (oh, ow) = crops, output_padding
    y = full[:, t:fh - bt + oh, le:fw - r + ow]
    return y + (0.0 if b is None else np.asarray(b, np.float64))


def same_crops(k, s):
    total = k - s
    lo = max(total, 0) // 2
    return lo, total - lo


# (in HWC, filters, kernel, strides, padding, output_padding, dilation, crops, out HW)
CONFIGS = [
    ((3, 4, 2), 3, (3, 3), (1, 1), "VALID", 0, (1, 1), ((0, 0), (0, 0)), (5, 6)),
    ((3, 4, 2), 2, (3, 2), (2, 3), "VALID", 0, (1, 1), ((0, 0), (0, 0)), (7, 11)),
    ((3, 4, 2), 2, (4, 3), (2, 2), "SAME", 0, (1, 1), (same_crops(4, 2), same_crops(3, 2)),
     (6, 8)),
    ((3, 2, 1), 2, (2, 1), (3, 2), "SAME", 0, (1, 1), (same_crops(2, 3), same_crops(1, 2)),
     (9, 4)),  # k < s: zeros appended
    ((4, 3, 2), 3, (3, 3), (2, 2), 1, 1, (1, 1), ((1, 1), (1, 1)), (8, 6)),  # PyTorch p, op
    ((3, 3, 2), 2, (3, 2), (2, 1), ((2, 0), (0, 1)), (1, 0), (2, 1), ((2, 0), (0, 1)), (8, 3)),
    ((3, 3, 1), 2, (2, 2), (2, 2), "SAME", 0, (2, 2), (same_crops(3, 2), same_crops(3, 2)),
     (6, 6)),  # dilated, odd crop at the end
]
IDS = ["valid", "valid_s", "same", "same_k_lt_s", "torch_p_op", "explicit_dil", "same_dil"]


@pytest.mark.parametrize("in_shape, f, k, s, padding, op, d, crops, out_hw", CONFIGS, ids=IDS)
def test_conv_transpose_matches_scatter_loop(in_shape, f, k, s, padding, op, d, crops, out_hw):
    layer = L.ConvTranspose2D(f, k, strides=s, padding=padding, output_padding=op, dilation=d)
    out_shape, params, state = layer.init(KEY, in_shape)
    assert out_shape == (*out_hw, f)
    assert params["w"].shape == (*k, in_shape[-1], f)
    params = {"w": params["w"], "b": jnp.asarray(randn(7, (f,)))}
    x = randn(1, (2, *in_shape))
    y, _ = layer.apply(params, state, jnp.asarray(x))
    ops = (op, op) if isinstance(op, int) else op
    ref = conv_transpose2d_ref(x, params["w"], params["b"], s, crops, d, ops)
    assert y.shape == ref.shape == (2, *out_shape)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n", [3, 4, 5])
@pytest.mark.parametrize("k, s", [(3, 2), (4, 2), (2, 2), (1, 3), (5, 1)])
def test_output_sizes(n, k, s):
    same, _, _ = L.ConvTranspose2D(1, k, s, padding="SAME").init(KEY, (n, n + 1, 1))
    valid, _, _ = L.ConvTranspose2D(1, k, s).init(KEY, (n, n + 1, 1))
    assert same == (n * s, (n + 1) * s, 1)
    assert valid == ((n - 1) * s + k, n * s + k, 1)


@pytest.mark.parametrize("padding, z_hw", [("VALID", (7, 9)), ("SAME", (6, 8)),
                                           (((1, 0), (0, 2)), (6, 7))])
def test_is_the_input_gradient_of_conv2d(padding, z_hw):
    """ConvTranspose2D(w) is the transpose of the Conv2D with the same kernel, strides and
    padding (channels swapped): <conv(z), x> = <z, convT(x)> for every z, for sizes z_hw that
    the strided Conv2D covers exactly (else output_padding picks among them)."""
    conv = L.Conv2D(2, 3, strides=2, padding=padding, use_bias=False)
    conv_t = L.ConvTranspose2D(3, 3, strides=2, padding=padding, use_bias=False)
    z_shape = (*z_hw, 3)
    out, params, _ = conv.init(KEY, z_shape)
    x = jnp.asarray(randn(4, (2, *out)))
    z = jnp.asarray(randn(5, (2, *z_shape)))
    _, vjp = jax.vjp(lambda z: conv.apply(params, {}, z)[0], z)
    (want,) = vjp(x)
    got, _ = conv_t.apply({"w": params["w"].swapaxes(2, 3)}, {}, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fast_grad", [True, False])
def test_conv_transpose_gradients(fast_grad):
    layer = L.ConvTranspose2D(2, (3, 2), strides=(2, 1), padding=((3, 0), (0, 1)),
                              output_padding=(1, 0), fast_grad=fast_grad)
    with jax.enable_x64(True):
        _, params, _ = layer.init(KEY, (3, 3, 2))
        params = to_f64(params)
        x = jnp.asarray(randn(3, (2, 3, 3, 2), np.float64))
        check_grads(lambda p, x: layer.apply(p, {}, x)[0], (params, x), order=2,
                    modes=("fwd", "rev"))


# (kernel, stride, PyTorch padding, PyTorch output_padding, dilation, jnet padding): the
# mapping in ConvTranspose2D's docstring.
TORCH_MAPPING = [
    (3, 2, 1, 1, 1, 1),  # p, op carry over (op as output_padding)
    (4, 2, 0, 0, 1, "VALID"),
    (4, 2, 1, 0, 1, "SAME"),  # k - s even: padding (k - s) / 2
    (5, 1, 2, 0, 1, "SAME"),
    (2, 3, 0, 1, 1, "SAME"),  # k < s: padding 0, output_padding s - k
    (3, 2, 2, 1, 2, 2),  # dilated
    (3, 2, 1, 1, 1, ((1, 0), (1, 0))),  # p, op as explicit crops (p, p - op)
]


@pytest.mark.parametrize("k, s, p, op, d, padding", TORCH_MAPPING)
def test_matches_pytorch_live(k, s, p, op, d, padding):
    torch = pytest.importorskip("torch")
    torch.manual_seed(k * 10 + s)
    module = torch.nn.ConvTranspose2d(2, 3, k, stride=s, padding=p, output_padding=op,
                                      dilation=d)
    x = torch.randn(2, 2, 4, 3)
    with torch.no_grad():
        want = module(x).numpy()
    params = interop.conv_transpose2d_from_torch(
        {n: v.detach().numpy() for n, v in module.state_dict().items()})
    jnet_op = op if isinstance(padding, int) else 0
    layer = L.ConvTranspose2D(3, k, s, padding=padding, output_padding=jnet_op, dilation=d)
    y, _ = layer.apply(params, {}, x.numpy().transpose(0, 2, 3, 1))
    np.testing.assert_allclose(np.transpose(y, (0, 3, 1, 2)), want, atol=1e-5, rtol=1e-5)


def test_same_with_odd_crop_is_pytorch_shifted():
    """k - s odd: jnet's SAME crops one more at the end, PyTorch (p = hi, op = 1) one more at
    the start; explicit crops reproduce PyTorch's."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1, output_padding=1,
                                      bias=False)
    x = torch.randn(1, 1, 3, 3)
    with torch.no_grad():
        want = module(x).numpy()[0, 0]
    params = interop.conv_transpose2d_from_torch({"weight": module.weight.detach().numpy()})
    xj = x.numpy().transpose(0, 2, 3, 1)
    same = L.ConvTranspose2D(1, 3, 2, padding="SAME", use_bias=False)
    y_same = np.asarray(same.apply(params, {}, xj)[0])[0, :, :, 0]
    assert y_same.shape == want.shape == (6, 6)
    assert not np.allclose(y_same, want)
    np.testing.assert_allclose(y_same[1:, 1:], want[:-1, :-1], atol=1e-6)
    crops = L.ConvTranspose2D(1, 3, 2, padding=((1, 0), (1, 0)), use_bias=False)
    np.testing.assert_allclose(np.asarray(crops.apply(params, {}, xj)[0])[0, :, :, 0], want,
                               atol=1e-6)


def test_conv_transpose_errors():
    layer = L.ConvTranspose2D(2, 3)
    _, params, _ = layer.init(KEY, (4, 4, 1))
    with pytest.raises(LayerError, match=r"ConvTranspose2D.*rank 4.*x\[\.\.\., None\]"):
        layer.apply(params, {}, jnp.zeros((2, 4, 4)))
    with pytest.raises(LayerError, match=r"ConvTranspose2D.*1 channels"):
        layer.apply(params, {}, jnp.zeros((2, 4, 4, 3)))
    with pytest.raises(LayerError, match="output_padding must be 2 non-negative"):
        L.ConvTranspose2D(2, 3, strides=2, output_padding=2)
    with pytest.raises(LayerError, match="output_padding"):
        L.ConvTranspose2D(2, 3, output_padding=(0, 0, 0))
    with pytest.raises(LayerError, match="leaves nothing"):
        L.ConvTranspose2D(2, 3, padding=3).init(KEY, (1, 1, 1))
    with pytest.raises(ValueError, match=r"4-D \(I, O, kh, kw\)"):
        interop.conv_transpose2d_from_torch({"weight": np.zeros((3, 3, 2))})
    with pytest.raises(ValueError, match="expected bias of shape"):
        interop.conv_transpose2d_from_torch({"weight": np.zeros((2, 3, 2, 2)),
                                             "bias": np.zeros(2)})
