"""The input layer: fixes the per-example shape of a model (MATLAB inputLayer, Keras Input)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jnet.layers.base import Layer, LayerError, _as_shape


def Input(shape: int | Sequence[int], name: str | None = None) -> Layer:
    """Declare the per-example input shape; the identity on data of that shape.

    A model starting with ``Input((28, 28, 1))`` knows its shapes, so ``model.init(key)`` needs
    no ``in_shape`` and summaries work without data. ``apply`` checks that the batch has shape
    ``(N, *shape)`` and raises a `LayerError` saying how to fix it otherwise.

    Inputs that carry extras next to the data pass through whole, with only the data checked:
    the first element of a tuple (``(x, mask)`` or ``(x, lengths)`` for the recurrent layers)
    or the ``"x"`` entry of a dict (``{"x": x, "initial_state": ...}``). So
    ``serial(Input((T, F)), LSTM(8), ...)`` takes masked batches too.

    Args:
        shape: per-example shape, without the batch axis, e.g. ``(28, 28, 1)`` for NHWC images
            or ``(T, F)`` for sequences.
    """
    shape = _as_shape(shape)
    if not all(isinstance(d, int) and d >= 1 for d in shape):
        raise LayerError("Input", f"shape must be positive ints (no batch axis), got {shape!r}.")

    def init_fn(key, in_shape):
        return shape, {}, {}

    def apply_fn(params, state, inputs, *, key=None, train=False):
        x, where = _data_part(inputs)
        x_shape = tuple(getattr(x, "shape", ()))
        if x_shape[1:] != shape:
            expected = ", ".join(("N", *map(str, shape)))
            raise LayerError(
                "Input",
                f"expected a batch of shape ({expected}){where}, got {x_shape}. "
                + _fix_hint(x_shape, shape),
            )
        return inputs, state

    return Layer(init_fn, apply_fn, kind="Input", config={"shape": shape}, name=name,
                 input_shape=shape)


def _data_part(inputs: Any) -> tuple[Any, str]:
    """The data array inside `inputs` (tuple: first element; dict: ``"x"``) and where it sits,
    for the error message."""
    if isinstance(inputs, (tuple, list)):
        if not inputs:
            raise LayerError("Input", "expected a batch array or a tuple (x, ...), got an "
                             f"empty {type(inputs).__name__}.")
        return inputs[0], f" as the first element of the {type(inputs).__name__}"
    if isinstance(inputs, dict):
        if "x" not in inputs:
            raise LayerError(
                "Input",
                f"expected a dict input with the data under 'x', got keys {sorted(inputs)}. "
                "Put the batch array under 'x', e.g. `{'x': x, 'mask': mask}`.",
            )
        return inputs["x"], " under the dict's 'x'"
    return inputs, ""


def _fix_hint(x_shape: tuple[int, ...], shape: tuple[int, ...]) -> str:
    """The likely slip behind a shape mismatch, and its fix."""
    if shape[-1:] == (1,) and x_shape[1:] == shape[:-1]:
        return "The channel axis is missing: pass `x[..., None]`."
    if x_shape == shape:
        return "This looks like a single example: add a batch axis, `x[None]`."
    return "Reshape the data to (N, *shape), or change Input(shape) to match the data."
