"""The checks every layer shares: `LayerError`, shapes, inputs and constructor arguments.

They run on static shapes, dtypes and Python values, so under `jax.jit` they cost nothing after
tracing. `jnet.layers.base` re-exports them; layers import them from either.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet.errors import Error
from jnet.typing import Shape

if TYPE_CHECKING:  # a hint only: jnet does not depend on typing_extensions at run time
    from typing_extensions import TypeIs


class LayerError(Error, ValueError):
    """A layer was given something it cannot use (a `jnet.Error` and a `ValueError`).

    The message names the layer by its path inside the model (``"block_2/conv2d_1"``) and its
    type, says what was expected, what was given, and how to fix it. Containers prepend their
    child's name as the error travels up, so the user sees where in the model it happened.
    """

    def __init__(self, kind: str, message: str, path: Sequence[str] = (), *,
                 where: str | None = None):
        super().__init__(message, where=where)
        self.kind = kind
        self.path = tuple(path)

    def _text(self) -> str:
        at = f" '{'/'.join(self.path)}'" if self.path else ""
        return f"{self.kind} layer{at}: {self.message}"

    def within(self, name: str) -> LayerError:
        """The same error, seen from the container that named this layer `name`."""
        return LayerError(self.kind, self.message, (name, *self.path), where=self.where)


def snake_case(kind: str) -> str:
    """CamelCase kind -> snake_case slug, acronyms whole: MaxPool2D -> max_pool2d, ReLU -> relu."""
    return re.sub(r"(?<=[a-z])(?=[A-Z][a-z])", "_", kind).lower()


def as_shape(shape: Any, kind: str = "Layer", what: str = "in_shape") -> Any:
    """Normalise a shape (or a tuple of shapes, for multi-input layers) to tuples of ints.

    Raises:
        LayerError: anything else (a str, a float size, None), named as `what` of `kind`.
    """
    if is_int(shape):
        return (int(shape),)
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, np.ndarray)):
        raise LayerError(
            kind,
            f"{what} must be a shape, a tuple of int sizes such as (28, 28, 1) (no batch axis), "
            f"or a tuple of such shapes, got {type(shape).__name__} {shape!r}.",
        )
    shape = tuple(shape)
    if all(is_int(d) for d in shape):
        return tuple(int(d) for d in shape)
    return tuple(as_shape(s, kind, what) for s in shape)


# ----------------------------------------------------------------------------------------
# Constructor argument checks: Python and NumPy scalars alike (`np.int64(4)` read from a
# config array is an int), never bools.


def is_int(value: Any) -> TypeIs[int | np.integer]:
    """A Python or NumPy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    """A real Python or NumPy scalar (int or float), not a bool."""
    return is_int(value) or isinstance(value, (float, np.floating))


def check_positive_int(kind: str, what: str, value: Any) -> int:
    """`value` as a Python int >= 1; a `LayerError` naming `what` of `kind` otherwise."""
    if not is_int(value) or value < 1:
        raise LayerError(kind, f"{what} must be a positive int, got {value!r}.")
    return int(value)


# ----------------------------------------------------------------------------------------
# Checks shared by layers. They run on static shapes and dtypes, so under `jax.jit` they cost
# nothing after tracing.


def check_rank(kind: str, x: Any, rank: int, layout: str, fix: str = "") -> None:
    """Raise unless the batch `x` has `rank` dims (batch axis included), e.g. 4 for NHWC."""
    shape = jnp.shape(x)
    if len(shape) != rank:
        raise LayerError(
            kind,
            f"expected a batch of rank {rank} {layout}, got shape {tuple(shape)} "
            f"(rank {len(shape)}). {fix}".rstrip(),
        )


def check_in_shape_rank(kind: str, in_shape: Shape, rank: int, layout: str, fix: str = "") -> None:
    """Raise unless the per-example `in_shape` has `rank` dims, e.g. 3 for (H, W, C)."""
    if len(in_shape) != rank:
        raise LayerError(
            kind,
            f"expected per-example inputs of rank {rank} {layout}, got in_shape "
            f"{tuple(in_shape)}. {fix}".rstrip(),
        )


def _dtype_of(x: Any) -> tuple[Any, str]:
    """``(dtype, how to name it)`` of an input; object for what is not an array (a string is
    data here, not the dtype name `jnp.result_type` would read it as)."""
    try:
        dtype = np.dtype(object) if isinstance(x, (str, bytes)) else jnp.result_type(x)
    except TypeError:
        dtype = np.dtype(object)
    named = f"dtype {dtype}" if dtype != np.dtype(object) else f"{type(x).__name__} {x!r:.40}"
    return dtype, named


def check_float(kind: str, x: Any) -> None:
    """Raise unless `x` is a floating-point array."""
    dtype, given = _dtype_of(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise LayerError(
            kind,
            f"expected a floating-point input, got {given}. "
            "Cast the data first, e.g. `x.astype(jnp.float32)`.",
        )


def check_last_dim(kind: str, x: Any, expected: int, what: str = "features") -> None:
    """Raise unless the last axis of `x` has `expected` entries (the size params were made for)."""
    got = jnp.shape(x)[-1] if jnp.ndim(x) else None
    if got != expected:
        raise LayerError(
            kind,
            f"expected inputs with {expected} {what} on the last axis (the size its params were "
            f"initialised for), got shape {tuple(jnp.shape(x))}. Re-run init with the right "
            "in_shape, or fix the layer before this one.",
        )


def check_mask(kind: str, mask: Any, n: int, t: int) -> jax.Array | None:
    """`mask` as a boolean (N, T) array (None stays None); a `LayerError` for any other shape
    or dtype. Shapes and dtypes are static, so under `jax.jit` this costs nothing."""
    if mask is None:
        return None
    dtype, given = _dtype_of(mask)
    shape = jnp.shape(mask) if dtype != np.dtype(object) else None
    if shape != (n, t) or dtype != jnp.bool_:
        fix = ("Cast it with `mask.astype(bool)`." if shape == (n, t) else
               "Build it with `jnet.data.mask_from_lengths(lengths, T)`.")
        raise LayerError(
            kind,
            f"expected mask= as a boolean array of shape (N, T) = {(n, t)}, True on real steps, "
            f"got {given if shape is None else f'shape {shape} {given}'}. {fix}",
        )
    return jnp.asarray(mask)


def require_key(kind: str, key: jax.Array | None) -> jax.Array:
    """Return `key`, or raise the error every random layer gives in training without one."""
    if key is None:
        raise LayerError(
            kind,
            "needs a PRNG key when train=True, got key=None. Pass one, e.g. "
            "`model.apply(params, state, x, key=jax.random.key(0), train=True)`, "
            "or call with train=False for evaluation.",
        )
    typed = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    raw = hasattr(key, "dtype") and key.dtype == np.uint32 and np.shape(key)[-1:] == (2,)
    if not (typed and key.shape == ()) and not (raw and np.ndim(key) == 1):
        raise LayerError(
            kind,
            f"key must be one PRNG key (`jax.random.key(0)`), got "
            f"{type(key).__name__} {getattr(key, 'shape', '')}. Make one with "
            "jax.random.key(seed) and split it per call.",
        )
    return key
