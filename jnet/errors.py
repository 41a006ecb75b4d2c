"""One error base for everything jnet raises on purpose.

    try:
        jnet.fit(model, "adam", x, y, epochs=3, key=0)
    except jnet.Error as err:       # every deliberate jnet error
        ...

Every error jnet raises on purpose is a `jnet.Error`. Each subclass also keeps the built-in base
a Python user would expect (`ValueError` for a bad value, `TypeError` for a value of the wrong
type, `FloatingPointError` for a diverged run), so ``except ValueError`` keeps working.

A message says what was expected, what was given, and how to fix it. Helpers deep inside jnet
raise without knowing who called them; the public entry point the user called adds itself as
the error's `where` on the way out (`entry_point`), so the user reads
``jnet.fit: batch_size must be a positive int ...`` whichever helper found the problem.

The classes:

- `Error`: the base.
- `ArgumentError` (`ValueError`): an argument has a value the function cannot use.
- `ArgumentTypeError` (`ArgumentError`, `TypeError`): an argument has the wrong type.
- `ArgumentKeyError` (`ArgumentError`, `KeyError`): a name that is not there was looked up
  (``result.history["val_loss"]`` of a run without validation data).
- `DataError` (`ValueError`): the data (x, y, mask, labels) cannot be trained on as given.
- `jnet.layers.LayerError`, `jnet.optim.OptimizerError`, `jnet.checkpoint.CheckpointError`
  and `jnet.TrainingDiverged` (`FloatingPointError`) are subclasses too.

`check_array_tree` (a pytree of arrays: params, grads, state) and `check_array` (one array of
a given rank: a matrix, a batch of outputs) are the input checks the optimizers, their helpers
and the training utilities share.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import jax
import numpy as np

__all__ = ["ArgumentError", "ArgumentKeyError", "ArgumentTypeError", "DataError", "Error",
           "check_array", "check_array_tree", "entry_point"]


class Error(Exception):
    """Base class of every error jnet raises on purpose.

    Attributes:
        message: what was expected, what was given, and the fix.
        where: the public function the user called (``"jnet.fit"``), filled in by
            `entry_point` as the error leaves it; None until then.
        result: for an error `jnet.fit` raised after training started, the run so far (a
            `jnet.FitResult`: save it with ``jnet.checkpoint.save(path, err.result)``);
            None otherwise.
    """

    def __init__(self, message: str = "", *, where: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.result: Any = None

    def __str__(self) -> str:
        text = self._text()
        return f"{self.where}: {text}" if self.where else text

    def _text(self) -> str:
        """The message without its `where` prefix (subclasses format their own)."""
        return self.message


class ArgumentError(Error, ValueError):
    """An argument has a value the function cannot use (a `ValueError`)."""


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument has the wrong type (a `TypeError` and a `ValueError`)."""


class ArgumentKeyError(ArgumentError, KeyError):
    """A name that is not there was looked up (a `KeyError`, so ``in`` and ``.get`` of a
    mapping keep working, and a `ValueError`)."""


class DataError(Error, ValueError):
    """The data cannot be used as given: mismatched lengths, NaN / inf, labels out of range,
    a mask of the wrong shape (a `ValueError`)."""


@contextlib.contextmanager
def entry_point(where: str) -> Iterator[None]:
    """Name the public function for any `Error` raised inside the block that has no name yet.

    The innermost public function wins: `jnet.fit` calling `jnet.evaluate` reports errors of
    the validation pass as ``jnet.evaluate``'s only if they arose there first.
    """
    try:
        yield
    except Error as err:
        if err.where is None:
            err.where = where
        raise


F = TypeVar("F", bound=Callable[..., Any])


def public(where: str, *,
           context: Callable[[str], contextlib.AbstractContextManager[None]] = entry_point
           ) -> Callable[[F], F]:
    """Decorator form of `entry_point` (or of another naming `context`): errors leaving the
    function name it as `where`."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with context(where):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _given(leaf: Any, floating: bool) -> str | None:
    """How to name `leaf` in a message when it is not an array (with `floating`: not a
    floating-point one); None when it is.

    A JAX array (a tracer too), a NumPy array or scalar of a numeric, bool or JAX key dtype,
    or a Python number (with `floating`: a float) is an array here; strings, objects and
    arrays of strings are not.
    """
    if isinstance(leaf, bool | int | float | complex):
        return None if not floating or type(leaf) is float else f"{type(leaf).__name__} {leaf!r}"
    dtype = getattr(leaf, "dtype", None)
    if dtype is None or not hasattr(leaf, "shape"):
        return f"{type(leaf).__name__} {leaf!r:.40}"
    issubdtype = jax.dtypes.issubdtype
    if floating:
        ok = issubdtype(dtype, np.floating)
    else:
        ok = any(issubdtype(dtype, kind) for kind in (np.number, np.bool_, jax.dtypes.extended))
    return None if ok else f"an array of dtype {dtype}"


def check_array_tree(name: str, tree: Any, fix: str, *, floating: bool = False,
                     error: type[Error] = ArgumentTypeError) -> None:
    """Raise `error` unless every leaf of the pytree `tree` is an array (or a Python number);
    with `floating`, a floating-point one.

    It reads types and dtypes only, never values: under `jax.jit` it runs once, at trace time,
    on the tracers, and costs nothing per step.

    Args:
        name: the argument's name, as the user wrote it (``"params"``).
        tree: what was given.
        fix: how to fix it (ends the message).
        floating: require a floating-point dtype.
        error: the `Error` subclass to raise (`ArgumentTypeError` by default).

    Raises:
        error: naming the first bad leaf by its key path, what it is, and `fix`.
    """
    kind = "floating-point arrays" if floating else "arrays"
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        given = _given(leaf, floating)
        if given is not None:
            raise error(f"{name} must be a pytree of {kind} (a dict, list or tuple of them, or "
                        f"one array), but {name}{jax.tree_util.keystr(path)} is {given}. "
                        f"{fix}".rstrip())


def check_array(name: str, value: Any, fix: str, *, floating: bool = False,
                ndim: int | None = None, min_ndim: int = 0,
                error: type[Error] = ArgumentTypeError) -> None:
    """Raise `error` unless `value` is one array (a JAX array or tracer, a NumPy array) of a
    numeric dtype (with `floating`: a floating-point one) and of rank `ndim` (or at least
    `min_ndim`). Like `check_array_tree` it reads types, shapes and dtypes only.

    Raises:
        error: naming `name`, what was expected, what was given (its type, or its shape and
            dtype) and `fix`.
    """
    kind = "a floating-point array" if floating else "an array"
    rank = f" of rank {ndim}" if ndim is not None else (
        f" of rank >= {min_ndim}" if min_ndim else "")
    if not hasattr(value, "shape") or getattr(value, "dtype", None) is None:
        given = f"{type(value).__name__} {value!r:.40}"
    elif (_given(value, floating) is not None or len(value.shape) < min_ndim
          or (ndim is not None and len(value.shape) != ndim)):
        given = f"an array of shape {tuple(value.shape)} and dtype {value.dtype}"
    else:
        return
    raise error(f"{name} must be {kind}{rank}, got {given}. {fix}".rstrip())
