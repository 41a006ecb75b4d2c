"""Layer constructor arguments and `apply`'s `train`: NumPy scalars are numbers (a config read
from an array gives `np.int64(4)`), and a traced `train` is a clear `jnet.Error`.

Every int / float argument of every constructor in `jnet.layers.__all__` (derived at test
time from the signatures) is passed as a NumPy scalar; the layer must equal the one built from
the same Python number: same params, same outputs, same output dtype on bfloat16 inputs (a
NumPy float32 hyperparameter must not promote bfloat16 activations to float32).
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_zoo import REQUIRED, build, constructors, input_for

import jnet
from jnet import layers as L
from jnet.layers import LayerError

# Example values for int / float arguments whose default is None or not a number.
EXAMPLES = {"strides": 1, "shared_axes": (0,)}


def _numeric(value) -> bool:
    if isinstance(value, tuple):
        return bool(value) and all(_numeric(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_numpy(value):
    if isinstance(value, tuple):
        return tuple(_as_numpy(v) for v in value)
    return np.int64(value) if isinstance(value, int) else np.float32(value)


def _as_python(value):
    """The Python number a NumPy scalar stands for (so both layers hold the same value)."""
    if isinstance(value, tuple):
        return tuple(_as_python(v) for v in value)
    return value.item()


def _numeric_arguments():
    """(constructor, argument, value) for every int / float argument of every layer."""
    cases = []
    for name, fn in constructors().items():
        for p in inspect.signature(fn).parameters.values():
            annotation = str(p.annotation)
            if "int" not in annotation and "float" not in annotation:
                continue
            # A required argument missing from REQUIRED fails in `build` with its fix.
            value = (p.default if p.default is not p.empty else
                     REQUIRED[p.name]() if p.name in REQUIRED else None)
            value = value if _numeric(value) else EXAMPLES.get(p.name)
            if _numeric(value):
                cases.append(pytest.param(name, p.name, value, id=f"{name}-{p.name}"))
    return cases


CASES = _numeric_arguments()


def test_the_derived_cases_cover_the_arguments_of_the_issue():
    ids = {c.id for c in CASES}
    assert {"Dense-units", "Conv2D-kernel_size", "Dropout-rate", "Conv2D-filters",
            "LSTM-hidden", "Embedding-num_embeddings", "MaxPool2D-window", "ELU-alpha",
            "BatchNorm-momentum", "MultiHeadAttention-num_heads", "FanOut-num"} <= ids


def _run(layer, in_shape, x):
    _, params, state = layer.init(jax.random.key(0), in_shape)
    y, _ = layer.apply(params, state, x, key=jax.random.key(1), train=True)
    return params, y


def _bfloat16(x):
    return jax.tree.map(lambda a: a.astype(jnp.bfloat16)
                        if jnp.issubdtype(a.dtype, jnp.floating) else a, x)


@pytest.mark.parametrize("name, argument, value", CASES)
def test_numpy_scalar_arguments_build_the_same_layer(name, argument, value):
    fn = constructors()[name]
    np_value = _as_numpy(value)
    layer = build(fn, **{argument: np_value})
    reference = build(fn, **{argument: _as_python(np_value)})
    in_shape, x = input_for(reference)
    for a, b in zip(_run(layer, in_shape, x), _run(reference, in_shape, x), strict=True):
        jax.tree.map(np.testing.assert_array_equal, a, b)
    _, y16 = _run(layer, in_shape, _bfloat16(x))
    _, ref16 = _run(reference, in_shape, _bfloat16(x))
    assert jax.tree.map(lambda a: a.dtype, y16) == jax.tree.map(lambda a: a.dtype, ref16)


def test_numpy_ints_inside_tuples_and_padding():
    conv = L.Conv2D(np.int64(4), (np.int64(3), 3), strides=(1, np.int64(1)),
                    padding=np.int64(1))
    _, params, _ = conv.init(jax.random.key(0), (5, 5, 2))
    assert params["w"].shape == (3, 3, 2, 4)
    pool = L.MaxPool2D((np.int64(2), np.int64(2)), padding=((0, np.int64(1)), (0, 1)))
    assert pool.init(jax.random.key(0), (5, 5, 2))[0] == (3, 3, 2)
    assert L.Conv1D(2, 3, padding=(np.int64(1), np.int64(1))).init(
        jax.random.key(0), (6, 2))[0] == (6, 2)


@pytest.mark.parametrize("bad", [True, 2.0, "3", np.float32(3), None])
def test_non_int_sizes_are_still_refused(bad):
    with pytest.raises(LayerError, match="must be a positive int") as err:
        L.Dense(bad)
    assert isinstance(err.value, jnet.Error)


def test_traced_train_is_a_clear_error():
    model = L.serial(L.Dense(3), L.Dropout(0.5))
    _, params, state = model.init(jax.random.key(0), (4,))
    x = jnp.ones((2, 4))
    step = jax.jit(lambda p, s, x, train: model.apply(p, s, x, key=jax.random.key(0),
                                                      train=train))
    with pytest.raises(LayerError, match=r"train must be a Python bool.*static_argnames") as err:
        step(params, state, x, True)
    assert isinstance(err.value, jnet.Error)
    assert "Serial" in str(err.value)  # raised by the model's own Layer.apply, first thing
    static = jax.jit(lambda p, s, x, train: model.apply(p, s, x, key=jax.random.key(0),
                                                        train=train),
                     static_argnames="train")
    y_train, _ = static(params, state, x, True)
    y_eval, _ = static(params, state, x, False)
    np.testing.assert_array_equal(y_eval, model.apply(params, state, x)[0])
    assert not np.array_equal(y_train, y_eval)  # dropout ran


@pytest.mark.parametrize("train", [np.bool_(True), jnp.asarray(True)])
def test_concrete_numpy_and_jax_bools_are_bools(train):
    layer = L.Dropout(0.5)
    _, params, state = layer.init(jax.random.key(0), (8,))
    y, _ = layer.apply(params, state, jnp.ones((4, 8)), key=jax.random.key(0), train=train)
    ref, _ = layer.apply(params, state, jnp.ones((4, 8)), key=jax.random.key(0), train=True)
    np.testing.assert_array_equal(y, ref)
