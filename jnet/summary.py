"""Model summary: a table of layers, output shapes and parameter counts, without allocating.

    print(jnet.summary(model))

Every shape and count comes from `jax.eval_shape` over the layers' `init` functions with an
abstract PRNG key, so summarising a model with billions of parameters allocates nothing.

Trainable parameters are a layer's `params`; non-trainable ones its `state` (BatchNorm's
running mean and variance). Keras counts the same split ("Non-trainable params"); PyTorch has
no built-in summary, and `torchinfo` counts buffers separately from parameters likewise.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax

from jnet.layers.base import Layer, _as_shape

PyTree = Any


class Row(NamedTuple):
    """One layer of a summary.

    Attributes:
        path: the layer's path inside the model, ``"block_1/conv2d_0"``.
        depth: nesting depth (0 for the model's own children).
        kind: the layer type, ``"Conv2D"``.
        out_shape: per-example output shape (no batch axis), or None when the container
            holding the layer does not say how it routes shapes to its children.
        params: number of trainable scalars (``params``), None when unknown.
        state: number of non-trainable scalars (``state``), None when unknown.
    """

    path: str
    depth: int
    kind: str
    out_shape: Any
    params: int | None
    state: int | None


class Summary(str):
    """The summary table (a `str`, so it prints, compares and searches like one) plus numbers.

    Attributes:
        rows: the `Row` of every layer, in model order, containers before their children.
        input_shape / output_shape: per-example shapes of the whole model.
        trainable_params / non_trainable_params / total_params: scalar counts.
        trainable_bytes / non_trainable_bytes / total_bytes: memory of those scalars.
    """

    rows: tuple[Row, ...]
    input_shape: Any
    output_shape: Any
    trainable_params: int
    non_trainable_params: int
    total_params: int
    trainable_bytes: int
    non_trainable_bytes: int
    total_bytes: int

    def __repr__(self) -> str:  # notebooks display the table, not a quoted string
        return str(self)


def _size(tree: PyTree) -> tuple[int, int]:
    """(number of scalars, bytes) of a pytree of `jax.ShapeDtypeStruct`."""
    leaves = jax.tree.leaves(tree)
    count = sum(math.prod(leaf.shape) for leaf in leaves)
    nbytes = sum(math.prod(leaf.shape) * leaf.dtype.itemsize for leaf in leaves)
    return count, nbytes


def abstract_init(layer: Layer, key: Any, in_shape: Any) -> tuple[Any, PyTree, PyTree]:
    """`layer.init` under `jax.eval_shape`: the output shape (Python ints) plus params / state
    as `jax.ShapeDtypeStruct` trees; allocates nothing."""
    out = {}

    def init(k):
        # Shapes are Python ints, not arrays, so they leave the trace through this closure.
        out["shape"], params, state = layer.init(k, in_shape)
        return params, state

    params, state = jax.eval_shape(init, key)
    return out["shape"], params, state


def _child_tree(tree: PyTree, name: str) -> PyTree:
    """A child's part of its container's params or state; None when it cannot be told."""
    if isinstance(tree, dict) and name in tree:
        return tree[name]
    # A container without any params (or state) has none in its children either.
    return {} if tree is not None and not jax.tree.leaves(tree) else None


class _Walker:
    """Collects one `Row` per layer, descending into containers."""

    def __init__(self):
        self.rows: list[Row] = []
        self.key = jax.eval_shape(lambda: jax.random.key(0))  # abstract: no array made

    def row(self, path, depth, layer, out_shape, params, state):
        counts = [None if t is None else _size(t)[0] for t in (params, state)]
        self.rows.append(Row(path, depth, layer.kind, out_shape, *counts))

    def layer(self, layer: Layer, path: str, depth: int, in_shape: Any) -> Any:
        """Add `layer` (and its children) at `path`; returns its output shape."""
        out_shape, params, state = abstract_init(layer, self.key, in_shape)
        self.row(path, depth, layer, out_shape, params, state)
        self.children(layer, path, depth + 1, in_shape, params, state)
        return out_shape

    def children(self, layer, path, depth, in_shape, params, state) -> None:
        """Rows for a container's children, with the shapes the container routes to each."""
        prefix = f"{path}/" if path else ""
        children = layer.children
        if layer.kind == "Serial":
            shape = in_shape
            for name, child in children:
                shape = self.layer(child, prefix + name, depth, shape)
        elif layer.kind == "Parallel":
            for (name, child), shape in zip(children, in_shape, strict=True):
                self.layer(child, prefix + name, depth, shape)
        elif layer.kind == "Residual":
            for name, child in children:
                self.layer(child, prefix + name, depth, in_shape)
        else:
            # A container whose routing we do not know: its children's params and state are
            # still keyed by child name, so counts are exact; output shapes stay unknown.
            for name, child in children:
                p, s = _child_tree(params, name), _child_tree(state, name)
                self.row(prefix + name, depth, child, None, p, s)
                self.children(child, prefix + name, depth + 1, None, p, s)


def _fmt_shape(shape: Any) -> str:
    """A per-example shape with the batch axis shown as N: ``(8, 8, 16)`` -> ``(N, 8, 8, 16)``."""
    if shape is None:
        return "?"
    if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape):
        return "(" + ", ".join(("N", *map(str, shape))) + ")"
    if isinstance(shape, (tuple, list)):
        return "[" + ", ".join(_fmt_shape(s) for s in shape) + "]"
    return str(shape)


def _fmt_count(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _table(rows: list[Row], title: str, footer: list[str]) -> str:
    header = ("Layer", "Type", "Output shape", "Params", "State")
    cells = [(("  " * r.depth) + r.path.rsplit("/", 1)[-1], r.kind, _fmt_shape(r.out_shape),
              _fmt_count(r.params), _fmt_count(r.state)) for r in rows]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]

    def line(c):
        left = "  ".join(v.ljust(w) for v, w in zip(c[:3], widths[:3], strict=True))
        right = "  ".join(v.rjust(w) for v, w in zip(c[3:], widths[3:], strict=True))
        return f"{left}  {right}".rstrip()

    rule = "-" * len(line(header))
    return "\n".join([title, rule, line(header), rule, *map(line, cells), rule, *footer])


def summary(model: Layer, input_shape: Any = None) -> Summary:
    """Summarise `model`: one row per layer with its output shape and parameter counts.

    Nothing is allocated: shapes and counts come from `jax.eval_shape` over `init`.

    Args:
        model: any layer; containers (`serial`, `parallel`, `residual`) list their children,
            indented by nesting depth. "Params" counts trainable scalars (``params``), "State"
            non-trainable ones (``state``, e.g. BatchNorm running statistics).
        input_shape: per-example input shape (no batch axis), e.g. ``(28, 28, 1)``. May be
            omitted when the model starts with `Input(shape)`.

    Returns:
        A `Summary`: a `str` holding the table (print it), with the numbers as attributes
        (`rows`, `total_params`, `trainable_params`, `non_trainable_params`, `total_bytes`...).

    Raises:
        ValueError: no `input_shape` and the model does not start with `Input`.
        LayerError: a layer rejects its input shape (the message names its path).
    """
    if not isinstance(model, Layer):
        raise TypeError(f"jnet.summary: expected a Layer (e.g. `L.serial(...)`), got "
                        f"{type(model).__name__}.")
    if input_shape is None and model.input_shape is None:
        raise ValueError(
            f"jnet.summary: the {model.kind} model does not start with `Input(shape)`, so its "
            "input shape is unknown. Pass the per-example shape (no batch axis), e.g. "
            "`jnet.summary(model, input_shape=(28, 28, 1))`, or start the model with "
            "`L.Input((28, 28, 1))`."
        )
    in_shape = _as_shape(model.input_shape if input_shape is None else input_shape)
    walker = _Walker()
    # The whole model first: its own checks run, and the totals come from its real params.
    out_shape, params, state = abstract_init(model, walker.key, in_shape)
    if model.children:
        walker.children(model, "", 0, in_shape, params, state)
    else:
        walker.row(model.name or model.slug, 0, model, out_shape, params, state)
    (n_params, b_params), (n_state, b_state) = _size(params), _size(state)
    title = f"Model: {model.kind}, input {_fmt_shape(in_shape)} -> output {_fmt_shape(out_shape)}"
    footer = [
        f"Total params: {n_params + n_state:,} ({_fmt_bytes(b_params + b_state)})",
        f"Trainable params: {n_params:,} ({_fmt_bytes(b_params)})",
        f"Non-trainable params: {n_state:,} ({_fmt_bytes(b_state)})",
    ]
    result = Summary(_table(walker.rows, title, footer))
    result.rows = tuple(walker.rows)
    result.input_shape, result.output_shape = in_shape, out_shape
    result.trainable_params, result.non_trainable_params = n_params, n_state
    result.total_params = n_params + n_state
    result.trainable_bytes, result.non_trainable_bytes = b_params, b_state
    result.total_bytes = b_params + b_state
    return result
