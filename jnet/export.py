"""Export a trained model's inference function as StableHLO (`jax.export`): bytes or a file
that a fresh process loads and runs without the model's Python code.

    exported = jnet.export(model, params, state, x[:1])
    exported.save("model.jax")                  # or exported.serialize() -> bytes
    ...
    run = jnet.load_exported("model.jax")       # in another process
    y = run(x_new)

The file holds `jax.export`'s own serialisation, nothing more, so plain JAX loads it too:
``jax.export.deserialize(open("model.jax", "rb").read()).call(x)``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax import export as jax_export

from jnet.errors import ArgumentError, ArgumentTypeError, Error, public
from jnet.layers.base import Layer
from jnet.typing import PyTree


@contextlib.contextmanager
def _serialisation() -> Iterator[None]:
    """jax.export's (de)serialisation, its missing optional dependency said as a jnet.Error."""
    try:
        yield
    except ImportError as e:
        raise Error(f"serialising an exported model needs the 'flatbuffers' package ({e}). "
                    "Install it: `pip install flatbuffers` (a jnet dependency).") from e


class ExportedModel:
    """A model's exported inference function ``x -> y`` (params and state baked in).

    Attributes:
        exported: the underlying `jax.export.Exported`.
    """

    def __init__(self, exported: jax_export.Exported):
        self.exported = exported

    @property
    def in_avals(self) -> tuple[Any, ...]:
        """The input's abstract shape and dtype (a symbolic batch axis ``b`` when exported with
        ``dynamic_batch=True``)."""
        return tuple(self.exported.in_avals)

    @property
    def platforms(self) -> tuple[str, ...]:
        """The backends it was lowered for (``("cpu",)``, ``("cuda",)``, ...)."""
        return tuple(self.exported.platforms)

    def __call__(self, x: Any) -> jax.Array:
        """Run the model on `x` (the exported shape and dtype; any batch size with
        ``dynamic_batch=True``), in evaluation mode.

        Raises:
            ArgumentError: `x` is not an array of the exported shape and dtype.
        """
        try:
            return self.exported.call(x)
        except (TypeError, ValueError) as e:  # jax.export's checks of the argument
            expected = ", ".join(a.str_short() for a in self.in_avals)
            given = (f"{np.dtype(x.dtype).name}[{','.join(map(str, np.shape(x)))}]"
                     if hasattr(x, "dtype")
                     else f"{type(x).__name__} {x!r:.40}")
            raise ArgumentError(
                f"expected an input {expected} (the shape and dtype it was exported for), got "
                f"{given}: {e}. Export again for other shapes, or with dynamic_batch=True for "
                "any batch size.", where="ExportedModel") from None

    def serialize(self) -> bytes:
        """The StableHLO module and its calling convention as bytes (`jax.export`'s format)."""
        with _serialisation():
            return bytes(self.exported.serialize())

    def save(self, path: str | os.PathLike) -> None:
        """Write `serialize()` to `path` (atomically: a temporary file renamed into place).

        Raises:
            ArgumentTypeError: `path` is not a str or os.PathLike.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise ArgumentTypeError(f"path must be a str or os.PathLike, got "
                                    f"{type(path).__name__} {path!r:.40}.",
                                    where="ExportedModel.save")
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "wb") as f:
            f.write(self.serialize())
        os.replace(tmp, path)

    def __repr__(self) -> str:
        return f"ExportedModel(in={self.in_avals}, platforms={self.platforms})"


@public("jnet.export")
def export(model: Layer, params: PyTree, state: PyTree, example: Any, *,
           dynamic_batch: bool = False,
           platforms: Sequence[str] | None = None) -> ExportedModel:
    """Export ``x -> model.apply(params, state, x, train=False)[0]`` through `jax.export`.

    Params and state are baked into the program as constants, so the result needs nothing but
    an input. The function is lowered for the shape and dtype of `example` (a batch with its
    batch axis; its values are not used).

    Args:
        model: the `Layer` (a whole model).
        params, state: its trained params and state.
        example: an input batch (array, or anything with ``shape`` and ``dtype``).
        dynamic_batch: lower with a symbolic batch size, so one export runs any batch size.
        platforms: backends to lower for, e.g. ``("cpu", "cuda")`` (default: the current
            default backend).

    Returns:
        The `ExportedModel`: call it, `serialize()` it or `save(path)` it; load it back with
        `jnet.load_exported`.

    Raises:
        ArgumentTypeError: `model` is not a Layer, or `example` has no shape / dtype.
        ArgumentError: the model cannot be lowered with a symbolic batch size.
    """
    if not isinstance(model, Layer):
        raise ArgumentTypeError(f"model must be a jnet Layer (e.g. a `serial` model), got "
                                f"{type(model).__name__}.")
    if not hasattr(example, "shape") or not hasattr(example, "dtype"):
        raise ArgumentTypeError(f"example must be an input batch (an array with shape and "
                                f"dtype), got {type(example).__name__}. Pass e.g. x[:1].")
    shape = tuple(example.shape)
    if dynamic_batch:
        shape = (*jax_export.symbolic_shape("b"), *shape[1:])

    def infer(x):
        return model.apply(params, state, x, train=False)[0]

    spec = jax.ShapeDtypeStruct(shape, np.dtype(example.dtype))
    try:
        exported = jax_export.export(jax.jit(infer), platforms=platforms)(spec)
    except Exception as e:
        if not dynamic_batch or isinstance(e, ArgumentError):
            raise
        raise ArgumentError(f"the model could not be lowered with a symbolic batch size "
                            f"({type(e).__name__}: {e}). Export with dynamic_batch=False "
                            "(one export per batch size).") from e
    return ExportedModel(exported)


@public("jnet.load_exported")
def load_exported(source: str | os.PathLike | bytes | bytearray) -> ExportedModel:
    """Load what `ExportedModel.save` wrote (a path) or `ExportedModel.serialize` returned
    (bytes); no model code is needed.

    Raises:
        ArgumentError: a missing file, or bytes that are not a `jax.export` serialisation.
    """
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        try:
            with open(source, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ArgumentError(f"cannot read the exported model {source!r}: {e}. Pass the "
                                "path ExportedModel.save wrote, or its bytes.") from e
    try:
        with _serialisation():
            return ExportedModel(jax_export.deserialize(bytearray(data)))
    except Error:
        raise
    except Exception as e:
        raise ArgumentError(f"the data is not an exported model ({type(e).__name__}: {e}). "
                            "Pass what ExportedModel.save / serialize produced.") from e
