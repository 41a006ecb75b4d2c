"""Every layer constructor of `jnet.layers.__all__`, built at its defaults, with an input its
init and apply accept. The list is derived at test time, so a layer added to `__all__` is
covered without editing this file (a required argument missing from `REQUIRED` fails loudly).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet import layers as L


def _sum_of(children):
    """A container definition for `container`: the sum of its children on one input."""
    items = tuple(children.items())

    def init_fn(key, in_shape):
        params, state = {}, {}
        for (name, layer), k in zip(items, L.split_key(key, len(items)), strict=True):
            out, params[name], state[name] = L.init_child(name, layer, k, in_shape)
        return out, params, state

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        ys, new_state = [], {}
        for (name, layer), k in zip(items, L.split_key(key, len(items)), strict=True):
            y, new_state[name] = L.apply_child(name, layer, params, state, x, key=k,
                                               train=train, mask=mask)
            ys.append(y)
        return sum(ys), new_state

    return L.Layer(init_fn, apply_fn, kind="SumOf")


# Values for required constructor arguments, by parameter name (fresh layers on every call).
REQUIRED: dict[str, Callable[[], Any]] = {
    "units": lambda: 3,
    "filters": lambda: 2,
    "kernel_size": lambda: 2,
    "window": lambda: 2,
    "hidden": lambda: 3,
    "rate": lambda: 0.5,
    "num_embeddings": lambda: 5,
    "features": lambda: 3,
    "num_heads": lambda: 2,
    "shape": lambda: (4,),
    "fn_or_name": lambda: "tanh",
    "num": lambda: 2,
    "kind": lambda: "Double",
    "fn": lambda: (lambda x: 2 * x),
    "layers": lambda: (L.Dense(4), L.serial(L.Dense(4), L.BatchNorm(), L.Dropout(0.5))),
    "layer": lambda: L.serial(L.Dense(4), L.BatchNorm()),
    "forward": lambda: L.LSTM(3, return_sequences=True),
    "define": lambda: _sum_of,
    "children": lambda: {"a": L.Dense(4), "b": L.serial(L.Dense(4), L.BatchNorm())},
    "num_groups": lambda: 2,
    "block": lambda: L.serial(L.Dense(4), L.LayerNorm()),
    "n": lambda: 2,
    "embedding": lambda: L.Embedding(5, 4),
    "body": lambda: L.serial(L.Dense(4), L.RMSNorm()),
}

# In `jnet.layers.__all__` and returning a Layer, but a transformation of a model, not a layer.
NOT_CONSTRUCTORS = {"map_layers"}


def constructors() -> dict[str, Callable[..., L.Layer]]:
    """The names in `jnet.layers.__all__` that build a Layer (return annotation ``Layer``)."""
    found = {}
    for name in L.__all__:
        obj = getattr(L, name)
        if name in NOT_CONSTRUCTORS or isinstance(obj, type) or not callable(obj):
            continue
        if inspect.signature(obj).return_annotation in ("Layer", L.Layer, "DecodingLayer",
                                                        L.DecodingLayer):
            found[name] = obj
    return found


def smooth_and_small(fn: Callable[..., L.Layer]) -> dict[str, Any]:
    """Overrides for checks against finite differences and full Hessians.

    Finite differences are wrong across ReLU's kink, and a feed-forward block of 2048 ReLU units
    always has pre-activations within eps of 0: layers with an ``activation=`` choice take a
    smooth one (their ReLU gradients are checked exactly against PyTorch in
    tests/test_transformer.py). A ``dim_feedforward`` of 8 instead of 2048 keeps the float64
    Hessian of a Transformer block in megabytes (~20 GB at the default).
    """
    params = inspect.signature(fn).parameters
    overrides: dict[str, Any] = {}
    if "activation" in params:
        overrides["activation"] = "gelu"
    if "dim_feedforward" in params:
        overrides["dim_feedforward"] = 8
    return overrides


def build(fn: Callable[..., L.Layer], **overrides: Any) -> L.Layer:
    """`fn` at its defaults, required arguments from `REQUIRED`, plus `overrides`."""
    args, kwargs = [], {}
    for p in inspect.signature(fn).parameters.values():
        if p.name in overrides:
            value = overrides[p.name]
        elif p.kind is p.VAR_POSITIONAL:
            args.extend(REQUIRED[p.name]())
            continue
        elif p.default is p.empty and p.kind is not p.VAR_KEYWORD:
            assert p.name in REQUIRED, (f"{fn.__name__}: add required argument {p.name!r} "
                                        "to tests/_layer_zoo.py REQUIRED")
            value = REQUIRED[p.name]()
        else:
            continue
        if p.kind is p.KEYWORD_ONLY or p.default is not p.empty:
            kwargs[p.name] = value
        else:
            args.append(value)
    return fn(*args, **kwargs)


def _floats(shape, n=3, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, *shape)), jnp.float32)


# (in_shape, batch) candidates, tried in order: sequences, images, vectors, branch tuples,
# integer ids, a recurrent cell's (carry, x_t) pair.
CANDIDATES: list[tuple[Any, Callable[[], Any]]] = [
    ((6, 4), lambda: _floats((6, 4))),
    ((5, 5, 2), lambda: _floats((5, 5, 2))),
    ((4,), lambda: _floats((4,))),
    (((4,), (4,)), lambda: (_floats((4,)), _floats((4,), seed=1))),
    ((6,), lambda: jnp.asarray(np.random.default_rng(0).integers(0, 5, (3, 6)), jnp.int32)),
    ((4,), lambda: (None, _floats((4,)))),
    ((3, 4, 4, 2), lambda: _floats((3, 4, 4, 2))),
]


def input_for(layer: L.Layer) -> tuple[Any, Any]:
    """The first candidate (in_shape, x) that `layer` inits and applies without error (the
    shape of the model's `Input` first, when it has one)."""
    fixed = layer.input_shape
    own = [] if fixed is None else [(fixed, lambda: _floats(fixed))]
    for in_shape, make_x in own + CANDIDATES:
        x = make_x()

        def init_and_apply(key, x, in_shape=in_shape):
            _, params, state = layer.init(key, in_shape)
            return layer.apply(params, state, x)

        try:  # traced only (eval_shape): nothing compiles, so finding inputs stays cheap
            jax.eval_shape(init_and_apply, jax.random.key(0), x)
            return in_shape, x
        except Exception:
            continue
    raise AssertionError(f"no input in tests/_layer_zoo.py CANDIDATES fits {layer!r}")
