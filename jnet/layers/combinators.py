"""Combinators: functions of layers that return layers.

`serial` chains layers, `parallel` runs one layer per input of a tuple, `residual` adds a skip
connection, `FanOut` / `FanInConcat` / `FanInSum` split and merge branches. Containers name
their children (`"dense_0"`, `"conv2d_1"`, or the child's own `name=`) and key `params` and
`state` by those names, so a checkpoint reads like the model. Each container is one
definition of its children (`_serial`, `_parallel`, `_residual`) handed to `container`, which
calls it again whenever the container is rebuilt around new children.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jnet.errors import ArgumentTypeError
from jnet.layers.base import (
    Layer,
    LayerError,
    PyTree,
    apply_child,
    as_shape,
    check_children,
    check_positive_int,
    container,
    init_child,
    is_int,
    parameter_free,
    split_key,
)


def child_names(kind: str, layers: Sequence[Layer]) -> tuple[str, ...]:
    """Names of a container's children: the user's `name=`, else `slug_position`."""
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise LayerError(
                kind,
                f"argument {i} is a {type(layer).__name__}, not a Layer. Call the constructor, "
                "e.g. `L.ReLU()` rather than `L.ReLU`.",
            )
    names = tuple(layer.name or f"{layer.slug}_{i}" for i, layer in enumerate(layers))
    seen = set()
    for name in names:
        if name in seen:
            raise LayerError(
                kind, f"two children are named {name!r}. Give each layer a unique name= .")
        seen.add(name)
    return names


def serial(*layers: Layer, name: str | None = None) -> Layer:
    """Chain layers: the output of each is the input of the next.

    ``params`` and ``state`` are dicts keyed by child name. If the first layer is an `Input`,
    `model.init(key)` needs no shape. If the last layer is an output layer
    (`ClassificationOutput`, `RegressionOutput`), the model carries its `head`. A ``mask=``
    given to `apply` reaches every child.
    """
    if not layers:
        raise LayerError("Serial", "needs at least one layer, got none.")
    return container(_serial, zip(child_names("Serial", layers), layers, strict=True), name=name)


def _serial(children: dict[str, Layer]) -> Layer:
    """The chain of `children`, in order (the definition of `serial`)."""
    names, layers = tuple(children), tuple(children.values())

    def init_fn(key, in_shape):
        shape = in_shape
        params, state = {}, {}
        for child, layer, k in zip(names, layers, split_key(key, len(layers)), strict=True):
            shape, params[child], state[child] = init_child(child, layer, k, shape)
        return shape, params, state

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        check_children("Serial", "params", params, names)
        check_children("Serial", "state", state, names)
        new_state = {}
        for child, layer, k in zip(names, layers, split_key(key, len(layers)), strict=True):
            x, new_state[child] = apply_child(child, layer, params, state, x, key=k,
                                              train=train, mask=mask)
        return x, new_state

    return Layer(init_fn, apply_fn, kind="Serial", input_shape=layers[0].input_shape,
                 head=layers[-1].head, slug="serial")


def parallel(*layers: Layer, name: str | None = None) -> Layer:
    """Apply layer i to input i of a tuple; returns the tuple of outputs (stax's `parallel`).

    Combine with `FanOut(n)` to feed one input to every branch and with `FanInConcat` /
    `FanInSum` to merge the branches back.
    """
    return container(_parallel, zip(child_names("Parallel", layers), layers, strict=True),
                     name=name)


def _parallel(children: dict[str, Layer]) -> Layer:
    """Branch i of `children` on input i (the definition of `parallel`)."""
    names, layers = tuple(children), tuple(children.values())

    def init_fn(key, in_shape):
        if len(in_shape) != len(layers) or not all(isinstance(s, tuple) for s in in_shape):
            raise LayerError(
                "Parallel",
                f"expected a tuple of {len(layers)} input shapes, one per branch, got {in_shape}. "
                f"Put `FanOut({len(layers)})` before it to share one input.",
            )
        shapes, params, state = [], {}, {}
        for child, layer, k, shape in zip(names, layers, split_key(key, len(layers)), in_shape,
                                          strict=True):
            out, params[child], state[child] = init_child(child, layer, k, shape)
            shapes.append(out)
        return tuple(shapes), params, state

    def apply_fn(params, state, xs, *, key=None, train=False, mask=None):
        if not isinstance(xs, (tuple, list)) or len(xs) != len(layers):
            raise LayerError(
                "Parallel",
                f"expected a tuple of {len(layers)} inputs, one per branch, got "
                f"{type(xs).__name__}. Put `FanOut({len(layers)})` before it.",
            )
        check_children("Parallel", "params", params, names)
        check_children("Parallel", "state", state, names)
        ys, new_state = [], {}
        for child, layer, k, x in zip(names, layers, split_key(key, len(layers)), xs,
                                      strict=True):
            y, new_state[child] = apply_child(child, layer, params, state, x, key=k,
                                              train=train, mask=mask)
            ys.append(y)
        return tuple(ys), new_state

    return Layer(init_fn, apply_fn, kind="Parallel", slug="parallel")


def residual(layer: Layer, name: str | None = None) -> Layer:
    """Skip connection: ``y = x + f(x)``; `f` must keep the shape of its input."""
    return container(_residual, zip(child_names("Residual", [layer]), [layer], strict=True),
                     name=name)


def _residual(children: dict[str, Layer]) -> Layer:
    """``x + f(x)`` for the one child `f` (the definition of `residual`)."""
    ((inner, layer),) = children.items()

    def init_fn(key, in_shape):
        out_shape, params, state = init_child(inner, layer, key, in_shape)
        if as_shape(out_shape) != as_shape(in_shape):
            raise LayerError(
                "Residual",
                f"the wrapped layer maps shape {in_shape} to {out_shape}, but y = x + f(x) needs "
                "them equal. Add a projection (e.g. Dense or a 1x1 Conv2D) inside the block.",
            )
        return in_shape, {inner: params}, {inner: state}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        check_children("Residual", "params", params, [inner])
        check_children("Residual", "state", state, [inner])
        fx, new_state = apply_child(inner, layer, params, state, x, key=key, train=train,
                                    mask=mask)
        return x + fx, {inner: new_state}

    return Layer(init_fn, apply_fn, kind="Residual", slug="residual")


def FanOut(num: int, name: str | None = None) -> Layer:
    """Copy the input into a tuple of `num` identical branches (`num` >= 1)."""
    num = check_positive_int("FanOut", "num (the number of branches)", num)
    return parameter_free("FanOut", lambda x: (x,) * num, out_shape=lambda s: (s,) * num,
                          config={"num": num}, name=name)


def _check_branches(kind: str, shapes) -> None:
    """Raise unless `shapes` is a tuple of per-example shapes, one per branch (a merge layer
    needs the tuple a `parallel` or `FanOut` makes)."""
    if not shapes or not all(isinstance(s, tuple) for s in shapes):
        raise LayerError(
            kind,
            f"expected a tuple of branches (one per-example shape each), got in_shape "
            f"{shapes}. Put it after `FanOut(n)` / `parallel(...)`, which make the branches.",
        )


def FanInSum(name: str | None = None) -> Layer:
    """Sum a tuple of same-shape branches."""

    def shape_fn(shapes):
        _check_branches("FanInSum", shapes)
        if len({tuple(s) for s in shapes}) != 1:
            raise LayerError("FanInSum", f"expected branches of one shape, got {shapes}.")
        return shapes[0]

    return parameter_free("FanInSum", lambda xs: sum(xs[1:], xs[0]), out_shape=shape_fn, name=name)


def FanInConcat(axis: int = -1, name: str | None = None) -> Layer:
    """Concatenate a tuple of branches along per-example `axis` (default: the last)."""
    if not is_int(axis):
        raise LayerError("FanInConcat", f"axis must be an int (a per-example axis, the batch "
                                        f"axis not counted), got {axis!r}.")
    axis = int(axis)

    def shape_fn(shapes):
        _check_branches("FanInConcat", shapes)
        rank = len(shapes[0])
        if not -rank <= axis < rank:
            raise LayerError(
                "FanInConcat",
                f"axis {axis} is out of range for branches of per-example shapes {shapes} "
                f"(valid: {-rank} to {rank - 1}; the batch axis is not counted).",
            )
        ax = axis % rank
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

    return parameter_free("FanInConcat", fn, out_shape=shape_fn, config={"axis": axis}, name=name)


def count_params(tree: PyTree) -> int:
    """Total number of scalars in a pytree of arrays (or of `jax.ShapeDtypeStruct`).

    Raises:
        jnet.ArgumentTypeError: `tree` is a Layer (count its params: ``init`` first) or holds
            leaves that are not arrays.
    """
    bad = [leaf for leaf in jax.tree.leaves(tree) if not hasattr(leaf, "shape")]
    if isinstance(tree, Layer) or bad:
        given = type(tree).__name__ if isinstance(tree, Layer) else repr(bad[0])
        raise ArgumentTypeError(
            f"tree must be a pytree of arrays (the params or state from `init`), got a leaf "
            f"{given}. E.g. `count_params(model.init(key, in_shape)[1])`.",
            where="jnet.layers.count_params",
        )
    return sum(math.prod(getattr(leaf, "shape", ())) for leaf in jax.tree.leaves(tree))


_MERGES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "concat": lambda a, b: jnp.concatenate([a, b], axis=-1),
    "sum": jnp.add,
    "mean": lambda a, b: (a + b) / 2,
    "mul": jnp.multiply,
}


def _reverse_steps(mask: Any) -> Any:
    """An (N, T) step mask reversed in time; an (N,) example mask or None as it is."""
    return mask if mask is None or jnp.ndim(mask) < 2 else _reverse_time(mask)


def _reverse_time(tree: Any) -> Any:
    """Flip the time axis (axis 1) of every (N, T, ...) array in `tree`."""
    return jax.tree.map(lambda a: jnp.flip(a, axis=1), tree)


def Bidirectional(forward: Layer, backward: Layer | None = None, merge: str = "concat",
                  name: str | None = None) -> Layer:
    """Run one sequence layer forwards in time and another backwards, and merge the outputs.

    ``Bidirectional(LSTM(64, return_sequences=True))`` or ``Bidirectional(LSTM(64), GRU(32))``.
    Both layers are ordinary forward-running layers; this wrapper feeds `backward` the input
    (and the mask) reversed in time and reverses its per-step outputs back, so both
    directions' outputs are aligned with the input steps. `backward` defaults to the same
    layer as `forward` with parameters of its own: ``{"forward": ..., "backward": ...}``
    (PyTorch's ``*_reverse`` weights are the backward ones). Because padded steps are skipped,
    reversing a right-padded batch runs the backward layer over exactly the real steps.

    With ``return_sequences=False`` the forward half is the state after the last real step
    and the backward half the state after step 0 (PyTorch's ``h_n``). With
    ``return_state=True`` on both layers the output is ``(y, (forward_carry, backward_carry))``
    and ``initial_state=`` must be such a pair.

    Args:
        forward: the layer run forwards, e.g. ``LSTM(64, return_sequences=True)``.
        backward: the layer run backwards (default: `forward` again, with its own params). Do
            not give it ``reverse=True``: the wrapper already reverses its input.
        merge: ``"concat"`` (default, PyTorch and Keras; last axis H_f + H_b), ``"sum"``,
            ``"mean"`` or ``"mul"`` (these need H_f = H_b).

    Raises:
        LayerError: a non-layer or a layer that is not recurrent (one without an
            ``initial_state`` side input, as `LSTM` and `GRU` have), an unknown merge, or
            outputs that do not merge.
    """
    backward = forward if backward is None else backward
    for what, layer in (("forward", forward), ("backward", backward)):
        if not isinstance(layer, Layer):
            raise LayerError("Bidirectional", f"expected a Layer as {what}, got "
                             f"{type(layer).__name__}, e.g. `Bidirectional(L.LSTM(64))`.")
        if "initial_state" not in layer.side_inputs:
            raise LayerError(
                "Bidirectional",
                f"expected a recurrent layer (LSTM, GRU) as {what}, got {layer.kind}, which "
                "carries no state along the time axis, so running it backwards in time changes "
                "nothing. Wrap `L.LSTM(...)` or `L.GRU(...)`; for a per-step layer use it "
                "directly.",
            )
    if merge not in _MERGES:
        raise LayerError("Bidirectional", f"merge must be one of {sorted(_MERGES)}, got {merge!r}.")
    return container(functools.partial(_bidirectional, merge=merge),
                     {"forward": forward, "backward": backward}, name=name)


def _bidirectional(children: dict[str, Layer], *, merge: str) -> Layer:
    """`forward` and `backward` (reversed in time) merged by `merge` (the definition of
    `Bidirectional`)."""
    forward, backward = children["forward"], children["backward"]
    names, merge_fn = ("forward", "backward"), _MERGES[merge]

    def merge_shapes(a, b):
        try:
            return jax.eval_shape(merge_fn, jax.ShapeDtypeStruct(a, jnp.float32),
                                  jax.ShapeDtypeStruct(b, jnp.float32)).shape
        except (TypeError, ValueError):
            raise LayerError("Bidirectional", f"cannot merge outputs of shapes {a} and {b} with "
                             f"{merge!r}; use merge='concat' or equal hidden sizes.") from None

    def init_fn(key, in_shape):
        (shape_f, p_f, s_f), (shape_b, p_b, s_b) = (
            init_child(n, layer, k, in_shape)
            for n, layer, k in zip(names, (forward, backward), split_key(key, 2), strict=True))
        if isinstance(shape_f[0], tuple):  # (y, carry): the layers return their state
            y_shape = merge_shapes(shape_f[0], shape_b[0])
            out_shape = (y_shape, (shape_f[1], shape_b[1]))
        else:
            out_shape = merge_shapes(shape_f, shape_b)
        return out_shape, {"forward": p_f, "backward": p_b}, {"forward": s_f, "backward": s_b}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None, initial_state=None):
        check_children("Bidirectional", "params", params, names)
        check_children("Bidirectional", "state", state, names)
        starts = _initial_state_pair(initial_state)
        k_f, k_b = split_key(key, 2)
        out_f, s_f = apply_child("forward", forward, params, state, x, key=k_f, train=train,
                                 mask=mask, **starts[0])
        out_b, s_b = apply_child("backward", backward, params, state, _reverse_time(x), key=k_b,
                                 train=train, mask=_reverse_steps(mask),
                                 **starts[1])
        new_state = {"forward": s_f, "backward": s_b}
        with_state = isinstance(out_f, tuple)  # (y, carry): the layers return their state
        (y_f, carry_f), (y_b, carry_b) = (out_f, out_b) if with_state else ((out_f, None),
                                                                            (out_b, None))
        if jnp.ndim(y_b) == 3:  # per-step outputs: back in input order
            y_b = _reverse_time(y_b)
        y = merge_fn(y_f, y_b)
        return ((y, (carry_f, carry_b)) if with_state else y), new_state

    return Layer(init_fn, apply_fn, kind="Bidirectional", config={"merge": merge},
                 side_inputs=("initial_state",))


def _initial_state_pair(initial_state: Any) -> tuple[dict, dict]:
    """``initial_state=`` of `Bidirectional` as the keywords of its two children."""
    if initial_state is None:
        return {}, {}
    if not isinstance(initial_state, (tuple, list)) or len(initial_state) != 2:
        raise LayerError(
            "Bidirectional",
            "expected initial_state as a pair (forward_carry, backward_carry), got "
            f"{type(initial_state).__name__}.",
        )
    return {"initial_state": initial_state[0]}, {"initial_state": initial_state[1]}
