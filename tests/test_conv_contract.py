"""The layer contract for the 1-D, grouped and transposed convolutions and the 1-D pools:
shape inference under jax.eval_shape (nothing allocated), jit == no jit, inside `serial` with
mask= passed through, and `summary` rows with hand-computed shapes and counts."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import abstract_init, randn, shapes_of
from _numpy_layers import numpy_apply
from absl.testing import parameterized

import jnet
from jnet import layers as L

pytestmark = pytest.mark.usefixtures("fast_compiling_prng")

KEY = jax.random.key(0)

CASES = [
    ("conv1d", L.Conv1D(4, 3, strides=2, padding="SAME", dilation=1), (9, 2)),
    ("conv1d_groups", L.Conv1D(4, 3, dilation=2, feature_group_count=2, padding=(1, 2)),
     (9, 4)),
    ("conv2d_groups", L.Conv2D(6, 3, feature_group_count=3, padding=1), (5, 4, 3)),
    ("conv_transpose2d", L.ConvTranspose2D(3, 3, strides=2, padding="SAME"), (3, 4, 2)),
    ("conv_transpose2d_op", L.ConvTranspose2D(2, (3, 2), strides=2, padding=1,
                                              output_padding=1), (3, 3, 2)),
    ("maxpool1d", L.MaxPool1D(2), (8, 3)),
    ("maxpool1d_same", L.MaxPool1D(3, 2, "SAME"), (9, 3)),
    ("avgpool1d", L.AvgPool1D(3, 2, 1), (9, 3)),
    ("gap1d", L.GlobalAvgPool1D(), (6, 3)),
    ("gmp1d", L.GlobalMaxPool1D(), (6, 3)),
]


@pytest.mark.parametrize("layer, in_shape", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_eval_shape_init_matches_real_init_and_apply(layer, in_shape):
    abs_out, abs_params, abs_state = abstract_init(layer, KEY, in_shape)
    assert all(isinstance(a, jax.ShapeDtypeStruct) for a in jax.tree.leaves(abs_params))
    out, params, state = layer.init(KEY, in_shape)
    assert abs_out == out
    assert shapes_of(abs_params) == shapes_of(params)
    assert shapes_of(abs_state) == shapes_of(state)
    y, _ = layer.apply(params, state, jnp.asarray(randn(1, (3, *in_shape))))
    assert y.shape == (3, *out)


class JitTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*CASES)
    def test_jit_and_no_jit_match_numpy(self, layer, in_shape):
        # Each variant against the NumPy equations (tests/_numpy_layers.py), not against the
        # other variant: both could be wrong in the same way.
        _, params, state = layer.init(KEY, in_shape)
        x = jnp.asarray(randn(2, (4, *in_shape)))
        want, _ = numpy_apply(layer, params, state, x, train=False)
        got, _ = self.variant(lambda p, x: layer.apply(p, state, x))(params, x)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_serial_passes_mask_to_the_global_pools(mode):
    """A sequence model: Conv1D (SAME, stride 1 keeps the steps aligned with the mask) then
    masked pooling; the model's output equals the pool applied by hand to the real steps."""
    pool = L.GlobalAvgPool1D() if mode == "avg" else L.GlobalMaxPool1D()
    model = L.serial(L.Conv1D(4, 3, padding="SAME"), L.ReLU(), pool)
    _, params, state = model.init(KEY, (7, 2))
    x = jnp.asarray(randn(3, (3, 7, 2)))
    lengths = [7, 3, 1]
    mask = jnp.asarray(np.arange(7)[None] < np.array(lengths)[:, None])
    y, _ = model.apply(params, state, x, mask=mask)
    conv = L.Conv1D(4, 3, padding="SAME")
    h = np.maximum(np.asarray(conv.apply(params["conv1d_0"], {}, x)[0], np.float64), 0)
    reduce = np.mean if mode == "avg" else np.max
    want = np.stack([reduce(h[n, :lengths[n]], axis=0) for n in range(3)])
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    unmasked, _ = model.apply(params, state, x)
    np.testing.assert_allclose(unmasked, reduce(h, axis=1), rtol=1e-5, atol=1e-6)


def test_serial_with_mask_through_every_new_layer():
    """Layers without use for mask= take it and ignore it."""
    x = jnp.asarray(randn(4, (2, 8, 4)))
    mask = jnp.ones((2, 8), bool).at[1, 5:].set(False)
    for layer in (L.Conv1D(4, 3, padding="SAME"), L.MaxPool1D(2), L.AvgPool1D(2)):
        model = L.serial(layer, L.Flatten())
        _, params, state = model.init(KEY, (8, 4))
        y_mask, _ = model.apply(params, state, x, mask=mask)
        y, _ = model.apply(params, state, x)
        np.testing.assert_array_equal(y_mask, y)
    img = jnp.asarray(randn(5, (2, 3, 3, 2)))
    model = L.serial(L.ConvTranspose2D(2, 2, 2), L.Flatten())
    _, params, state = model.init(KEY, (3, 3, 2))
    np.testing.assert_array_equal(model.apply(params, state, img, mask=mask)[0],
                                  model.apply(params, state, img)[0])


def test_summary_shows_the_new_layers():
    model = L.serial(
        L.Input((16, 3)),
        L.Conv1D(8, 3, padding="SAME"), L.MaxPool1D(2), L.AvgPool1D(2, padding="SAME"),
        L.Conv1D(4, 3, feature_group_count=2), L.GlobalMaxPool1D(),
    )
    s = jnet.summary(model)
    rows = {r.path: r for r in s.rows}
    assert rows["conv1d_1"].out_shape == (16, 8) and rows["conv1d_1"].params == 3 * 3 * 8 + 8
    assert rows["max_pool1d_2"].out_shape == (8, 8)
    assert rows["avg_pool1d_3"].out_shape == (4, 8)
    assert rows["conv1d_4"].out_shape == (2, 4) and rows["conv1d_4"].params == 3 * 4 * 4 + 4
    assert rows["global_max_pool1d_5"].out_shape == (4,)
    assert "(N, 16, 8)" in str(s) and "Conv1D" in str(s)
    up = jnet.summary(L.serial(L.ConvTranspose2D(5, 3, strides=2, padding="SAME")),
                      input_shape=(4, 6, 2))
    row = up.rows[-1]
    assert (row.kind, row.out_shape, row.params) == ("ConvTranspose2D", (8, 12, 5),
                                                     3 * 3 * 2 * 5 + 5)
