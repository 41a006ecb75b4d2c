"""Combinators: functions of layers that return layers.

`serial` chains layers, `parallel` runs one layer per input of a tuple, `residual` adds a skip
connection, `FanOut` / `FanInConcat` / `FanInSum` split and merge branches. Containers name
their children (`"dense_0"`, `"conv2d_1"`, or the child's own `name=`) and key `params` and
`state` by those names, so a checkpoint reads like the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jnet.layers.base import Layer, LayerError, PyTree, _as_shape


def child_names(layers: Sequence[Layer]) -> tuple[str, ...]:
    """Names of a container's children: the user's `name=`, else `slug_position`."""
    names = tuple(layer.name or f"{layer.slug}_{i}" for i, layer in enumerate(layers))
    seen = set()
    for name in names:
        if name in seen:
            raise LayerError(
                "serial",
                f"two children are named {name!r}. Give each layer a unique name= .",
            )
        seen.add(name)
    return names


def _split_key(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    return [None] * n if key is None else list(jax.random.split(key, n))


def _check_keys(kind: str, what: str, tree: Any, names: Sequence[str]) -> None:
    """Raise if `tree` (params or state) does not hold exactly the children `names`."""
    if not isinstance(tree, dict):
        raise LayerError(
            kind,
            f"expected {what} as a dict keyed by child name {list(names)}, got "
            f"{type(tree).__name__}. Pass the {what} returned by this model's init.",
        )
    missing = [n for n in names if n not in tree]
    extra = [k for k in tree if k not in names]
    if missing or extra:
        raise LayerError(
            kind,
            f"{what} do not match the model: missing {missing}, unexpected {extra}. "
            f"They were made by a different model; re-run init or load a matching checkpoint.",
        )


def _init_child(name, layer, key, in_shape):
    try:
        return layer.init(key, in_shape)
    except LayerError as e:
        raise e.within(name) from None


def _init_children(names, layers, key, shapes_in):
    """Init each child on its own input shape (for `parallel`)."""
    params, state, shapes_out = {}, {}, []
    for name, layer, k, shape in zip(names, layers, _split_key(key, len(layers)), shapes_in,
                                     strict=True):
        out_shape, params[name], state[name] = _init_child(name, layer, k, shape)
        shapes_out.append(out_shape)
    return shapes_out, params, state


def _apply_child(name, layer, params, state, x, key, train):
    try:
        return layer.apply(params[name], state[name], x, key=key, train=train)
    except LayerError as e:
        raise e.within(name) from None


def serial(*layers: Layer, name: str | None = None) -> Layer:
    """Chain layers: the output of each is the input of the next.

    ``params`` and ``state`` are dicts keyed by child name. If the first layer is an `Input`,
    `model.init(key)` needs no shape. If the last layer is an output layer
    (`ClassificationOutput`, `RegressionOutput`), the model carries its `head`.
    """
    if not layers:
        raise LayerError("serial", "needs at least one layer, got none.")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise LayerError(
                "serial",
                f"argument {i} is a {type(layer).__name__}, not a Layer. Call the constructor, "
                "e.g. `L.ReLU()` rather than `L.ReLU`.",
            )
    names = child_names(layers)

    def init_fn(key, in_shape):
        shape = in_shape
        params, state = {}, {}
        for child, layer, k in zip(names, layers, _split_key(key, len(layers)), strict=True):
            shape, params[child], state[child] = _init_child(child, layer, k, shape)
        return shape, params, state

    def apply_fn(params, state, x, *, key=None, train=False):
        _check_keys("serial", "params", params, names)
        _check_keys("serial", "state", state, names)
        new_state = {}
        for child, layer, k in zip(names, layers, _split_key(key, len(layers)), strict=True):
            x, new_state[child] = _apply_child(child, layer, params, state, x, k, train)
        return x, new_state

    return Layer(
        init_fn,
        apply_fn,
        kind="Serial",
        name=name,
        input_shape=layers[0].input_shape,
        children=tuple(zip(names, layers, strict=True)),
        head=layers[-1].head,
        slug="serial",
    )


def parallel(*layers: Layer, name: str | None = None) -> Layer:
    """Apply layer i to input i of a tuple; returns the tuple of outputs (stax's `parallel`).

    Combine with `FanOut(n)` to feed one input to every branch and with `FanInConcat` /
    `FanInSum` to merge the branches back.
    """
    names = child_names(layers)

    def init_fn(key, in_shape):
        if len(in_shape) != len(layers) or not all(isinstance(s, tuple) for s in in_shape):
            raise LayerError(
                "Parallel",
                f"expected a tuple of {len(layers)} input shapes, one per branch, got {in_shape}. "
                f"Put `FanOut({len(layers)})` before it to share one input.",
            )
        shapes, params, state = _init_children(names, layers, key, in_shape)
        return tuple(shapes), params, state

    def apply_fn(params, state, xs, *, key=None, train=False):
        if not isinstance(xs, (tuple, list)) or len(xs) != len(layers):
            raise LayerError(
                "Parallel",
                f"expected a tuple of {len(layers)} inputs, one per branch, got "
                f"{type(xs).__name__}. Put `FanOut({len(layers)})` before it.",
            )
        _check_keys("Parallel", "params", params, names)
        _check_keys("Parallel", "state", state, names)
        ys, new_state = [], {}
        for child, layer, k, x in zip(names, layers, _split_key(key, len(layers)), xs,
                                      strict=True):
            y, new_state[child] = _apply_child(child, layer, params, state, x, k, train)
            ys.append(y)
        return tuple(ys), new_state

    return Layer(init_fn, apply_fn, kind="Parallel", name=name,
                 children=tuple(zip(names, layers, strict=True)), slug="parallel")


def residual(layer: Layer, name: str | None = None) -> Layer:
    """Skip connection: ``y = x + f(x)``; `f` must keep the shape of its input."""
    inner = layer.name or layer.slug

    def init_fn(key, in_shape):
        out_shape, params, state = _init_child(inner, layer, key, in_shape)
        params, state = {inner: params}, {inner: state}
        if _as_shape(out_shape) != _as_shape(in_shape):
            raise LayerError(
                "Residual",
                f"the wrapped layer maps shape {in_shape} to {out_shape}, but y = x + f(x) needs "
                "them equal. Add a projection (e.g. Dense or a 1x1 Conv2D) inside the block.",
            )
        return in_shape, params, state

    def apply_fn(params, state, x, *, key=None, train=False):
        fx, new_state = _apply_child(inner, layer, params, state, x, key, train)
        return x + fx, {inner: new_state}

    return Layer(init_fn, apply_fn, kind="Residual", name=name,
                 children=((inner, layer),), slug="residual")


def _no_params(kind: str, shape_fn: Callable[[Any], Any], fn: Callable[[Any], Any],
               config: dict | None = None, name: str | None = None) -> Layer:
    def init_fn(key, in_shape):
        return shape_fn(in_shape), {}, {}

    def apply_fn(params, state, x, *, key=None, train=False):
        return fn(x), state

    return Layer(init_fn, apply_fn, kind=kind, name=name, config=config or {})


def FanOut(num: int, name: str | None = None) -> Layer:
    """Copy the input into a tuple of `num` identical branches."""
    return _no_params("FanOut", lambda s: (s,) * num, lambda x: (x,) * num, {"num": num}, name)


def FanInSum(name: str | None = None) -> Layer:
    """Sum a tuple of same-shape branches."""

    def shape_fn(shapes):
        if len({tuple(s) for s in shapes}) != 1:
            raise LayerError("FanInSum", f"expected branches of one shape, got {shapes}.")
        return shapes[0]

    return _no_params("FanInSum", shape_fn, lambda xs: sum(xs[1:], xs[0]), name=name)


def FanInConcat(axis: int = -1, name: str | None = None) -> Layer:
    """Concatenate a tuple of branches along per-example `axis` (default: the last)."""

    def shape_fn(shapes):
        ax = axis % len(shapes[0])
        rest = {tuple(s[:ax]) + tuple(s[ax + 1:]) for s in shapes}
        if len(rest) != 1:
            raise LayerError(
                "FanInConcat",
                f"branches must agree on every axis but {axis}, got shapes {shapes}.",
            )
        out = list(shapes[0])
        out[ax] = sum(s[ax] for s in shapes)
        return tuple(out)

    def fn(xs):
        # `axis` is per-example; shift non-negative axes past the batch axis.
        return jnp.concatenate(xs, axis=axis if axis < 0 else axis + 1)

    return _no_params("FanInConcat", shape_fn, fn, {"axis": axis}, name)


def count_params(tree: PyTree) -> int:
    """Total number of scalars in a pytree of arrays (or of `jax.ShapeDtypeStruct`)."""
    return sum(math.prod(getattr(leaf, "shape", ())) for leaf in jax.tree.leaves(tree))
