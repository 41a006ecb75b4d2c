"""Tests for jnet.summary: shapes and counts against hand-computed numbers, no allocation."""

import jax
import jax.numpy as jnp
import pytest

import jnet
from jnet import layers as L
from jnet.layers.base import Layer, LayerError


def _cnn():
    return L.serial(
        L.Input((8, 8, 1)),
        L.Conv2D(16, (3, 3), padding="SAME"), L.BatchNorm(), L.ReLU(), L.MaxPool2D((2, 2)),
        L.Flatten(), L.Dropout(0.2), L.Dense(10), L.ClassificationOutput(),
    )


def test_small_cnn_counts_by_hand():
    s = jnet.summary(_cnn())
    conv = 3 * 3 * 1 * 16 + 16  # kernel (kh, kw, in, out) + bias = 160
    bn_params, bn_state = 16 + 16, 16 + 16  # scale + bias; running mean + var
    dense = (4 * 4 * 16) * 10 + 10  # after 2x2 pooling: 256 features -> 10 = 2570
    rows = {r.path: r for r in s.rows}
    assert (rows["conv2d_1"].params, rows["conv2d_1"].state) == (160, 0) and conv == 160
    assert (rows["batch_norm_2"].params, rows["batch_norm_2"].state) == (bn_params, bn_state)
    assert rows["dense_7"].params == dense == 2570
    assert rows["max_pool2d_4"].out_shape == (4, 4, 16)
    assert rows["flatten_5"].out_shape == (256,)
    assert s.trainable_params == conv + bn_params + dense
    assert s.non_trainable_params == bn_state
    assert s.total_params == conv + bn_params + dense + bn_state
    assert s.total_bytes == 4 * s.total_params  # all float32
    assert s.output_shape == (10,)
    # The printed table shows the same numbers, batch axis as N.
    text = str(s)
    assert "(N, 8, 8, 16)" in text and "(N, 10)" in text
    assert "Total params: 2,794" in text and "Trainable params: 2,762" in text
    assert "Non-trainable params: 32 (128 B)" in text
    assert isinstance(s, str) and repr(s) == text


def test_nested_containers_paths_depths_and_shapes():
    block = L.serial(L.Dense(4), L.ReLU(), L.Dense(4), name="block")
    model = L.serial(
        L.Dense(4),
        L.residual(block),
        L.FanOut(2),
        L.parallel(L.Dense(3), L.serial(L.Dense(2), L.Dense(5))),
        L.FanInConcat(),
    )
    s = jnet.summary(model, input_shape=(6,))
    got = [(r.path, r.depth, r.kind, r.out_shape, r.params) for r in s.rows]
    assert got == [
        ("dense_0", 0, "Dense", (4,), 6 * 4 + 4),
        ("residual_1", 0, "Residual", (4,), 2 * (4 * 4 + 4)),
        ("residual_1/block", 1, "Serial", (4,), 2 * (4 * 4 + 4)),
        ("residual_1/block/dense_0", 2, "Dense", (4,), 4 * 4 + 4),
        ("residual_1/block/relu_1", 2, "ReLU", (4,), 0),
        ("residual_1/block/dense_2", 2, "Dense", (4,), 4 * 4 + 4),
        ("fan_out_2", 0, "FanOut", ((4,), (4,)), 0),
        ("parallel_3", 0, "Parallel", ((3,), (5,)), (4 * 3 + 3) + (4 * 2 + 2) + (2 * 5 + 5)),
        ("parallel_3/dense_0", 1, "Dense", (3,), 4 * 3 + 3),
        ("parallel_3/serial_1", 1, "Serial", (5,), (4 * 2 + 2) + (2 * 5 + 5)),
        ("parallel_3/serial_1/dense_0", 2, "Dense", (2,), 4 * 2 + 2),
        ("parallel_3/serial_1/dense_1", 2, "Dense", (5,), 2 * 5 + 5),
        ("fan_in_concat_4", 0, "FanInConcat", (8,), 0),
    ]
    assert s.total_params == 28 + 40 + 15 + 10 + 15
    text = str(s)
    assert "\n    dense_0 " in text  # indented two spaces per level
    assert "[(N, 3), (N, 5)]" in text


def test_batchnorm_state_is_non_trainable_inside_containers():
    model = L.serial(L.Input((5, 5, 3)), L.residual(L.serial(L.Conv2D(3, 1), L.BatchNorm())))
    s = jnet.summary(model)
    bn = next(r for r in s.rows if r.kind == "BatchNorm")
    assert (bn.params, bn.state) == (6, 6)
    assert s.trainable_params == (1 * 1 * 3 * 3 + 3) + 6 and s.non_trainable_params == 6


def _probe(units: int, calls: list) -> Layer:
    """A Dense-like layer that records whether its init ran on abstract values only."""

    def init_fn(key, in_shape):
        w = jax.random.normal(key, (in_shape[-1], units))
        count = jnp.zeros((), jnp.int32)
        calls.append(isinstance(key, jax.core.Tracer) and isinstance(w, jax.core.Tracer))
        return (*in_shape[:-1], units), {"w": w}, {"count": count}

    def apply_fn(params, state, x, *, key=None, train=False):
        return x @ params["w"], state

    return Layer(init_fn, apply_fn, kind="Probe")


def test_init_is_only_traced():
    calls = []
    model = L.serial(L.Input((7,)), _probe(3, calls), L.serial(_probe(2, calls)))
    s = jnet.summary(model)
    assert calls and all(calls)  # every init call saw tracers, never concrete arrays
    assert s.trainable_params == 7 * 3 + 3 * 2 and s.non_trainable_params == 2
    assert s.trainable_bytes == 4 * (7 * 3 + 3 * 2) and s.non_trainable_bytes == 2 * 4


def test_huge_model_allocates_nothing():
    # 10^10 float32 parameters (40 GB): only possible if nothing is materialised.
    s = jnet.summary(L.serial(L.Input((100_000,)), L.Dense(100_000)))
    assert s.total_params == 100_000 * 100_000 + 100_000
    assert "37.3 GiB" in str(s)


def test_single_leaf_layer_and_list_input_shape():
    s = jnet.summary(L.Dense(3), input_shape=[4])
    assert [(r.path, r.params) for r in s.rows] == [("dense", 15)]
    assert s.input_shape == (4,)


def test_errors_are_clear():
    with pytest.raises(ValueError, match=r"input_shape=\(28, 28, 1\)"):
        jnet.summary(L.serial(L.Dense(3)))
    with pytest.raises(TypeError, match="expected a Layer"):
        jnet.summary(L.Dense)
    with pytest.raises(LayerError, match="conv2d_0"):
        jnet.summary(L.serial(L.Conv2D(4, 3)), input_shape=(8,))
