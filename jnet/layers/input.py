"""The input layer: fixes the per-example shape of a model (MATLAB inputLayer, Keras Input)."""

from __future__ import annotations

from collections.abc import Sequence

from jnet.layers.base import Layer, LayerError, _as_shape


def Input(shape: int | Sequence[int], name: str | None = None) -> Layer:
    """Declare the per-example input shape; the identity on data of that shape.

    A model starting with ``Input((28, 28, 1))`` knows its shapes, so ``model.init(key)`` needs
    no ``in_shape`` and summaries work without data. ``apply`` checks that the batch has shape
    ``(N, *shape)`` and raises a `LayerError` saying how to fix it otherwise.

    Args:
        shape: per-example shape, without the batch axis, e.g. ``(28, 28, 1)`` for NHWC images
            or ``(T, F)`` for sequences.
    """
    shape = _as_shape(shape)
    if not all(isinstance(d, int) and d >= 1 for d in shape):
        raise LayerError("Input", f"shape must be positive ints (no batch axis), got {shape!r}.")

    def init_fn(key, in_shape):
        return shape, {}, {}

    def apply_fn(params, state, x, *, key=None, train=False):
        x_shape = tuple(getattr(x, "shape", ()))
        if x_shape[1:] != shape:
            expected = ", ".join(("N", *map(str, shape)))
            raise LayerError(
                "Input",
                f"expected a batch of shape ({expected}), got {x_shape}. "
                + _fix_hint(x_shape, shape),
            )
        return x, state

    return Layer(init_fn, apply_fn, kind="Input", config={"shape": shape}, name=name,
                 input_shape=shape)


def _fix_hint(x_shape: tuple[int, ...], shape: tuple[int, ...]) -> str:
    """The likely slip behind a shape mismatch, and its fix."""
    if shape[-1:] == (1,) and x_shape[1:] == shape[:-1]:
        return "The channel axis is missing: pass `x[..., None]`."
    if x_shape == shape:
        return "This looks like a single example: add a batch axis, `x[None]`."
    return "Reshape the data to (N, *shape), or change Input(shape) to match the data."
