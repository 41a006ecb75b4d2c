"""Checks `fit`, `evaluate` and `predict` run once, before any training or compilation.

Each raises a `jnet.Error` subclass naming the argument, what was expected, what was given and
the fix; the public function adds its own name on the way out (`jnet.errors.entry_point`).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet.errors import ArgumentError, ArgumentTypeError, DataError
from jnet.layers.base import Layer

PyTree = Any


def positive_int(name: str, value: Any, *, allow_none: bool = False) -> None:
    """Raise unless `value` is an int >= 1 (or None when `allow_none`)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        none = " or None" if allow_none else ""
        raise ArgumentTypeError(f"{name} must be a positive int{none}, got {value!r}.")
    if value < 1:
        raise ArgumentError(f"{name} must be a positive int (>= 1), got {value}.")


def no_tracers(**arrays: Any) -> None:
    """Raise when an argument is a JAX tracer: `fit` was called under `jax.vmap` / `jit`."""
    for name, value in arrays.items():
        leaves = jax.tree.leaves(value) if isinstance(value, (dict, list, tuple)) else [value]
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            raise ArgumentError(
                f"{name} is a JAX tracer: jnet.fit was called inside jax.vmap / jax.jit / "
                "jax.grad. fit is a Python driver (progress bar, checkpoints) and cannot be "
                "transformed. To train several models at once, pass population= (e.g. "
                "population={'learning_rate': [1e-3, 1e-2]} with a function that builds the "
                "optimizer); to compile your own loop, use jnet.make_train_step."
            )


def check_labels(model: Layer, out_shape: Any, y: Any, name: str = "y") -> None:
    """Integer labels must lie in [0, classes) and one-hot targets must have `classes` columns.

    Raises:
        DataError: labels out of range, or one-hot targets of the wrong width.
    """
    if model.head is None or model.head.task != "classification" or y is None:
        return
    classes = int(out_shape[-1])
    if jnp.issubdtype(jnp.result_type(y), jnp.integer):
        lo, hi = int(np.min(y)), int(np.max(y))
        if lo < 0 or hi >= classes:
            raise DataError(
                f"integer labels must lie in [0, {classes}) for a model with {classes} "
                f"outputs, got labels from {lo} to {hi} in {name}. Re-encode the labels (e.g. "
                "`np.unique(y, return_inverse=True)[1]`) or give the last Dense more units."
            )
    elif jnp.ndim(y) >= 2 and jnp.shape(y)[-1] != classes:
        raise DataError(
            f"one-hot / soft targets ({name}) must have {classes} columns (the model's "
            f"outputs), got {name}.shape={tuple(jnp.shape(y))}."
        )


def _describe(leaf: Any) -> str:
    return f"{tuple(jnp.shape(leaf))} {jnp.result_type(leaf)}"


def check_tree(name: str, given: PyTree, expected: PyTree, lead: tuple[int, ...] = ()) -> None:
    """Raise unless `given` has the structure of `expected` and the same shapes (each with the
    leading axes `lead`, the population axis), naming the first path that differs.

    Raises:
        ArgumentError: a missing or extra entry, or a shape that differs.
    """
    got = dict(jax.tree_util.tree_flatten_with_path(given)[0])
    want = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
    fix = (f"Pass the {name} made by this model's init (or by the optimizer's init for "
           "opt_state), or load a checkpoint of this model.")
    for path, leaf in want.items():
        where = jax.tree_util.keystr(path) or "(root)"
        if path not in got:
            raise ArgumentError(f"{name} does not match the model: {name}{where} is missing "
                                f"(expected {_describe(leaf)}). {fix}")
        shape = (*lead, *jnp.shape(leaf))
        if tuple(jnp.shape(got[path])) != shape:
            raise ArgumentError(
                f"{name} does not match the model: {name}{where} has shape "
                f"{tuple(jnp.shape(got[path]))}, expected {shape}. {fix}")
    extra = [p for p in got if p not in want]
    if extra:
        raise ArgumentError(f"{name} does not match the model: unexpected entry "
                            f"{name}{jax.tree_util.keystr(extra[0])}. {fix}")
    if jax.tree.structure(given) != jax.tree.structure(expected):
        raise ArgumentError(f"{name} does not match the model: same entries, different "
                            f"container types ({jax.tree.structure(given)} vs "
                            f"{jax.tree.structure(expected)}). {fix}")


def check_writable(directory: str | os.PathLike) -> None:
    """Prove that checkpoints can be written to `directory` before any training is done."""
    from jnet import checkpoint

    checkpoint.check_writable(directory)
