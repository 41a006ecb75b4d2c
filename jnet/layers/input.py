"""The input layer: fixes the per-example shape of a model (MATLAB inputLayer, Keras Input)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from jnet.layers.base import Layer, LayerError, as_shape, parameter_free
from jnet.typing import Shape


def Input(shape: int | Sequence[int], name: str | None = None) -> Layer:
    """Declare the per-example input shape; the identity on data of that shape.

    A model starting with ``Input((28, 28, 1))`` knows its shapes, so ``model.init(key)`` needs
    no ``in_shape`` and summaries work without data. ``apply`` checks that the batch has shape
    ``(N, *shape)`` and raises a `LayerError` saying how to fix it otherwise. A sequence mask
    is not part of the input: pass it as ``model.apply(..., mask=mask)``.

    Args:
        shape: per-example shape, without the batch axis, e.g. ``(28, 28, 1)`` for NHWC images
            or ``(T, F)`` for sequences.
    """
    dims: Shape = as_shape(shape)
    if not all(isinstance(d, int) and d >= 1 for d in dims):
        raise LayerError("Input", f"shape must be positive ints (no batch axis), got {dims!r}.")

    def check(x):
        if isinstance(x, (tuple, list, dict)):
            raise LayerError(
                "Input",
                f"expected one batch array of shape (N, {', '.join(map(str, dims))}), got a "
                f"{type(x).__name__}. A sequence mask is a keyword, not part of x: "
                "`model.apply(params, state, x, mask=mask)`, `jnet.fit(..., mask=mask)`.",
            )
        x_shape = tuple(getattr(x, "shape", ()))
        if x_shape[1:] != dims:
            expected = ", ".join(("N", *map(str, dims)))
            raise LayerError(
                "Input",
                f"expected a batch of shape ({expected}), got {x_shape}. "
                + _fix_hint(x_shape, dims),
            )
        return x

    layer = parameter_free("Input", check, config={"shape": dims}, name=name)
    return dataclasses.replace(layer, input_shape=dims)


def _fix_hint(x_shape: tuple[int, ...], shape: tuple[int, ...]) -> str:
    """The likely slip behind a shape mismatch, and its fix."""
    if shape[-1:] == (1,) and x_shape[1:] == shape[:-1]:
        return "The channel axis is missing: pass `x[..., None]`."
    if x_shape == shape:
        return "This looks like a single example: add a batch axis, `x[None]`."
    return "Reshape the data to (N, *shape), or change Input(shape) to match the data."
