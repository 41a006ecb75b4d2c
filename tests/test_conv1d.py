"""Conv1D against a NumPy loop written from the equation (strides, dilation, padding, groups),
gradients against finite differences, PyTorch's nn.Conv1d live, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import randn, same_pads, to_f64
from jax.test_util import check_grads

from jnet import interop
from jnet import layers as L
from jnet.layers import LayerError

pytestmark = pytest.mark.usefixtures("fast_compiling_prng")

KEY = jax.random.key(0)


def conv1d_ref(x, w, b, stride, pads, dilation, groups=1) -> np.ndarray:
    """y[n, i, f] = b[f] + sum_{u, c in group(f)} x_pad[n, i*s + u*d, c] w[u, c - c0(f), f]."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    xp = np.pad(x, ((0, 0), pads, (0, 0)))
    k, cg, f = w.shape
    out = (xp.shape[1] - ((k - 1) * dilation + 1)) // stride + 1
    y = np.zeros((x.shape[0], out, f))
    per_group = f // groups
    for i in range(out):
        for o in range(f):
            c0 = (o // per_group) * cg
            for u in range(k):
                y[:, i, o] += xp[:, i * stride + u * dilation, c0:c0 + cg] @ w[u, :, o]
    return y + (0.0 if b is None else np.asarray(b, np.float64))


# (L, C, filters, kernel, stride, padding, dilation, groups, pads the reference uses)
CONFIGS = [
    (9, 3, 4, 3, 1, "VALID", 1, 1, (0, 0)),
    (10, 2, 3, 4, 3, "SAME", 1, 1, same_pads(10, 4, 3)),
    (7, 2, 2, 2, 1, "SAME", 1, 1, (0, 1)),  # odd pad at the end
    (11, 3, 2, 3, 2, (2, 1), 2, 1, (2, 1)),  # explicit (lo, hi), dilation
    (8, 2, 3, 3, 2, 1, 1, 1, (1, 1)),  # int pad
    (12, 2, 2, 3, 1, "SAME", 3, 1, same_pads(12, 7, 1)),
    (9, 4, 6, 3, 2, 1, 1, 2, (1, 1)),  # groups
    (7, 4, 4, 2, 1, "SAME", 1, 4, (0, 1)),  # depthwise
]
IDS = ["valid", "same_s3", "same_odd", "explicit_dil", "int_pad", "same_dil", "groups",
       "depthwise"]


@pytest.mark.parametrize("n, c, f, k, s, padding, d, g, pads", CONFIGS, ids=IDS)
def test_conv1d_matches_naive_loop(n, c, f, k, s, padding, d, g, pads):
    layer = L.Conv1D(f, k, strides=s, padding=padding, dilation=d, feature_group_count=g)
    out_shape, params, state = layer.init(KEY, (n, c))
    assert params["w"].shape == (k, c // g, f) and params["b"].shape == (f,)
    params = {"w": params["w"], "b": jnp.asarray(randn(7, (f,)))}
    x = randn(1, (2, n, c))
    y, new_state = layer.apply(params, state, jnp.asarray(x))
    ref = conv1d_ref(x, params["w"], params["b"], s, pads, d, g)
    assert y.shape == ref.shape == (2, *out_shape) and new_state == {}
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_conv2d_groups_match_per_group_convolutions():
    """A grouped Conv2D is G independent convolutions of the channel blocks, concatenated."""
    layer = L.Conv2D(6, 3, padding="SAME", feature_group_count=3)
    _, params, _ = layer.init(KEY, (5, 4, 6))
    x = jnp.asarray(randn(2, (2, 5, 4, 6)))
    y, _ = layer.apply(params, {}, x)
    parts = []
    for g in range(3):
        block = L.Conv2D(2, 3, padding="SAME")
        p = {"w": params["w"][..., 2 * g:2 * g + 2], "b": params["b"][2 * g:2 * g + 2]}
        parts.append(block.apply(p, {}, x[..., 2 * g:2 * g + 2])[0])
    np.testing.assert_allclose(y, jnp.concatenate(parts, -1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fast_grad", [True, False])
@pytest.mark.parametrize("s, padding, d, g", [(1, "SAME", 1, 1), (2, (1, 2), 2, 1),
                                              (1, "VALID", 1, 2)])
def test_conv1d_gradients(s, padding, d, g, fast_grad):
    layer = L.Conv1D(4, 3, strides=s, padding=padding, dilation=d, feature_group_count=g,
                     fast_grad=fast_grad)
    with jax.enable_x64(True):
        _, params, _ = layer.init(KEY, (9, 4))
        params = to_f64(params)
        x = jnp.asarray(randn(3, (2, 9, 4), np.float64))
        check_grads(lambda p, x: layer.apply(p, {}, x)[0], (params, x), order=2,
                    modes=("fwd", "rev"))


def test_conv1d_matches_pytorch_live():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    for c, f, k, s, p, d, g in [(3, 4, 3, 1, 0, 1, 1), (4, 6, 5, 2, 3, 2, 2),
                                (2, 2, 2, 3, 1, 1, 1), (4, 4, 3, 1, 1, 1, 4)]:
        module = torch.nn.Conv1d(c, f, k, stride=s, padding=p, dilation=d, groups=g)
        x = torch.randn(3, c, 11)
        with torch.no_grad():
            want = module(x).numpy()
        params = interop.conv1d_from_torch(
            {n: v.detach().numpy() for n, v in module.state_dict().items()})
        layer = L.Conv1D(f, k, strides=s, padding=p, dilation=d, feature_group_count=g)
        y, _ = layer.apply(params, {}, x.numpy().transpose(0, 2, 1))
        np.testing.assert_allclose(np.transpose(y, (0, 2, 1)), want, atol=1e-5, rtol=1e-5)


def test_conv1d_from_torch_errors():
    with pytest.raises(ValueError, match=r"3-D \(O, I, k\)"):
        interop.conv1d_from_torch({"weight": np.zeros((3, 3, 2, 2))})
    with pytest.raises(ValueError, match="expected bias of shape"):
        interop.conv1d_from_torch({"weight": np.zeros((3, 2, 2)), "bias": np.zeros(2)})
    assert interop.conv1d_from_torch({"m.weight": np.zeros((3, 2, 2))}, "m.").keys() == {"w"}


def test_conv1d_errors():
    layer = L.Conv1D(4, 3)
    _, params, _ = layer.init(KEY, (8, 2))
    with pytest.raises(LayerError, match=r"Conv1D.*rank 3.*got shape \(2, 8\).*x\[\.\.\., None"):
        layer.apply(params, {}, jnp.zeros((2, 8)))
    with pytest.raises(LayerError, match=r"Conv1D.*per-example inputs of rank 2 \(L, C\)"):
        layer.init(KEY, (8,))
    with pytest.raises(LayerError, match=r"Conv1D.*2 channels.*got shape \(2, 8, 3\)"):
        layer.apply(params, {}, jnp.zeros((2, 8, 3)))
    with pytest.raises(LayerError, match="smaller than the window"):
        L.Conv1D(4, 5).init(KEY, (3, 1))
    with pytest.raises(LayerError, match=r"padding must be .*\(lo, hi\)"):
        L.Conv1D(4, 3, padding=(1, 2, 3))
    with pytest.raises(LayerError, match="kernel_size must be a positive int or 1 positive"):
        L.Conv1D(4, (3, 3))
    with pytest.raises(LayerError, match=r"filters \(5\) must be a multiple of feature_group"):
        L.Conv1D(5, 3, feature_group_count=2)
    with pytest.raises(LayerError, match=r"3 channels must be a multiple of feature_group"):
        L.Conv1D(4, 3, feature_group_count=2).init(KEY, (8, 3))
    with pytest.raises(LayerError, match="feature_group_count must be a positive int"):
        L.Conv1D(4, 3, feature_group_count=0)
