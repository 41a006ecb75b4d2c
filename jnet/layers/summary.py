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

from jnet.errors import ArgumentError, ArgumentTypeError, entry_point
from jnet.layers.base import Layer, abstract_init, abstract_key, as_shape
from jnet.typing import PyTree


class Row(NamedTuple):
    """One layer of a summary.

    Attributes:
        path: the layer's path inside the model, ``"block_1/conv2d_0"``.
        depth: nesting depth (0 for the model's own children).
        kind: the layer type, ``"Conv2D"``.
        out_shape: per-example output shape (no batch axis).
        params: number of trainable scalars (``params``).
        state: number of non-trainable scalars (``state``).
    """

    path: str
    depth: int
    kind: str
    out_shape: Any
    params: int
    state: int


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


class _Walker:
    """Collects one `Row` per layer, descending into containers through their protocol."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.key = abstract_key()

    def row(self, path, depth, layer, out_shape, params, state):
        self.rows.append(Row(path, depth, layer.kind, out_shape, _size(params)[0],
                             _size(state)[0]))

    def layer(self, layer: Layer, path: str, depth: int, in_shape: Any) -> Any:
        """Add `layer` (and its children) at `path`; returns its output shape."""
        out_shape, params, state = abstract_init(layer, self.key, in_shape)
        self.row(path, depth, layer, out_shape, params, state)
        self.children(layer, path, depth + 1, in_shape)
        return out_shape

    def children(self, layer: Layer, path: str, depth: int, in_shape: Any) -> None:
        """Rows for a container's children, each at the input shape the container routes."""
        prefix = f"{path}/" if path else ""
        shapes = layer.child_shapes(in_shape)  # () for a leaf
        for (name, child), shape in zip(layer.children, shapes, strict=True):
            self.layer(child, prefix + name, depth, shape)


def _fmt_shape(shape: Any) -> str:
    """A per-example shape with the batch axis shown as N: ``(8, 8, 16)`` -> ``(N, 8, 8, 16)``."""
    if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape):
        return "(" + ", ".join(("N", *map(str, shape))) + ")"
    if isinstance(shape, (tuple, list)):
        return "[" + ", ".join(_fmt_shape(s) for s in shape) + "]"
    return str(shape)


def _fmt_count(n: int) -> str:
    return f"{n:,}"


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


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
        model: any layer; containers (`serial`, `parallel`, `residual`, `Bidirectional`,
            your own) list their children, indented by nesting depth, each with the shape the
            container's init hands it (`Layer.child_shapes`). "Params" counts trainable scalars
            (``params``), "State" non-trainable ones (``state``, e.g. BatchNorm running statistics).
        input_shape: per-example input shape (no batch axis), e.g. ``(28, 28, 1)``. May be
            omitted when the model starts with `Input(shape)`.

    Returns:
        A `Summary`: a `str` holding the table (print it), with the numbers as attributes
        (`rows`, `total_params`, `trainable_params`, `non_trainable_params`, `total_bytes`...).

    Raises:
        jnet.ArgumentError: no `input_shape` and the model does not start with `Input`.
        jnet.ArgumentTypeError: `model` is not a Layer.
        LayerError: a layer rejects its input shape (the message names its path).
    """
    with entry_point("jnet.summary"):
        return _summary(model, input_shape)


def _summary(model: Layer, input_shape: Any) -> Summary:
    """`summary` (its docstring) without the naming of errors."""
    if not isinstance(model, Layer):
        raise ArgumentTypeError(f"expected a Layer (e.g. `L.serial(...)`), got "
                                f"{type(model).__name__}.", where="jnet.summary")
    if input_shape is None and model.input_shape is None:
        raise ArgumentError(
            f"the {model.kind} model does not start with `Input(shape)`, so its "
            "input shape is unknown. Pass the per-example shape (no batch axis), e.g. "
            "`jnet.summary(model, input_shape=(28, 28, 1))`, or start the model with "
            "`L.Input((28, 28, 1))`.", where="jnet.summary"
        )
    in_shape = as_shape(model.input_shape if input_shape is None else input_shape,
                        model.kind, "input_shape")
    walker = _Walker()
    # The whole model first: its own checks run, and the totals come from its real params.
    out_shape, params, state = abstract_init(model, walker.key, in_shape)
    if model.children:
        walker.children(model, "", 0, in_shape)
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
