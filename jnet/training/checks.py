"""Checks `fit`, `evaluate` and `predict` run once, before any training or compilation.

Each raises a `jnet.Error` subclass naming the argument, what was expected, what was given and
the fix; the public function adds its own name on the way out (`jnet.errors.entry_point`).
"""

from __future__ import annotations

import functools
import os
import types
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet.errors import ArgumentError, ArgumentTypeError, DataError, check_array_tree
from jnet.layers.base import Layer
from jnet.typing import PyTree


def positive_int(name: str, value: Any, *, allow_none: bool = False) -> None:
    """Raise unless `value` is an int >= 1 (or None when `allow_none`)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        none = " or None" if allow_none else ""
        raise ArgumentTypeError(f"{name} must be a positive int{none}, got {value!r}.")
    if value < 1:
        raise ArgumentError(f"{name} must be a positive int (>= 1), got {value}.")


FIT_FIX = ("fit is a Python driver (progress bar, checkpoints) and cannot be transformed. To "
           "train several models at once, pass population= (e.g. population={'learning_rate': "
           "[1e-3, 1e-2]} with a function that builds the optimizer); to compile your own "
           "loop, use jnet.make_train_step.")
EVALUATE_FIX = ("evaluate is a Python driver (it batches x and reads the metrics back as "
                "floats) and cannot be transformed; inside a transformation call the pure step "
                "of jnet.training.make_eval_step(model, loss, metrics) on the batch.")


def no_tracers(driver: str, fix: str, /, **arguments: Any) -> None:
    """Raise when a JAX tracer reaches the Python `driver` (``"jnet.fit"``): it was called
    under `jax.vmap` / `jax.jit` / `jax.grad`. Searched: the arguments, their containers,
    dataclass and object attributes, and the variables functions close over (an optimizer
    built from a traced learning rate keeps it in the closures of its ``update``).

    Raises:
        ArgumentError: naming the argument, where the tracer sits in it, and `fix`.
    """
    for name, value in arguments.items():
        found = _find_tracer(name, value)
        if found is None:
            continue
        where, tracer = found
        tracer_is = f"a JAX tracer ({_describe_tracer(tracer)})"
        given = (f"{where} is {tracer_is}" if where.startswith(name)
                 else f"{name} holds {tracer_is} in {where}")
        raise ArgumentError(
            f"{given}: {driver} was called inside jax.vmap / jax.jit / jax.grad. {fix}")


# Values that hold no tracer (concrete arrays included: a Tracer is checked before them).
_ATOMS = (str, bytes, int, float, complex, type(None), np.ndarray, np.generic, jax.Array,
          type, types.ModuleType, types.BuiltinFunctionType)
# Objects searched before giving up: a model of a few hundred layers takes some thousands.
_SEARCH_LIMIT = 50_000


def _find_tracer(name: str, value: Any) -> tuple[str, jax.core.Tracer] | None:
    """``(where, tracer)`` for the first tracer reachable from `value` (depth first), where
    `where` is a path such as ``validation_data[0]`` or, inside a closure, ``'b1' (a
    variable of scale_by_adam.<locals>.update)``; None when there is none."""
    stack: list[tuple[str, Any]] = [(name, value)]
    seen: set[int] = set()
    while stack and len(seen) < _SEARCH_LIMIT:
        where, obj = stack.pop()
        if isinstance(obj, jax.core.Tracer):
            return where, obj
        if isinstance(obj, _ATOMS) or id(obj) in seen:
            continue
        seen.add(id(obj))
        stack.extend(reversed(_inside(where, obj)))
    return None


def _inside(where: str, obj: Any) -> list[tuple[str, Any]]:
    """The values `obj` holds, each with its path."""
    if isinstance(obj, dict):
        return [(f"{where}[{k!r}]", v) for k, v in obj.items()]
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a NamedTuple
        return [(f"{where}.{f}", getattr(obj, f)) for f in obj._fields]
    if isinstance(obj, (list, tuple)):
        return [(f"{where}[{i}]", v) for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        return [(where, v) for v in obj]
    if isinstance(obj, functools.partial):
        return [(where, obj.func), (where, obj.args), (where, obj.keywords)]
    if isinstance(obj, types.MethodType):
        return [(where, obj.__self__), (where, obj.__func__)]
    if isinstance(obj, types.FunctionType):
        cells = zip(obj.__code__.co_freevars, obj.__closure__ or (), strict=True)
        owner = f"(a variable of {obj.__qualname__})"
        return [(f"{var!r} {owner}", _cell_value(cell)) for var, cell in cells] + [
            (f"a default of {obj.__qualname__}", d)
            for d in (*(obj.__defaults__ or ()), *(obj.__kwdefaults__ or {}).values())]
    attributes = getattr(obj, "__dict__", None)
    if isinstance(attributes, dict):
        return [(f"{where}.{k}", v) for k, v in attributes.items()]
    return []


def _cell_value(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # a variable not assigned yet
        return None


def _describe_tracer(tracer: jax.core.Tracer) -> str:
    str_short = getattr(getattr(tracer, "aval", None), "str_short", None)
    return f"{type(tracer).__name__}{f' {str_short()}' if callable(str_short) else ''}"


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
    # jaxlib ships no stub for PyTreeDef, so mypy cannot see its __eq__
    if jax.tree.structure(given) != jax.tree.structure(expected):  # type: ignore[operator]
        raise ArgumentError(f"{name} does not match the model: same entries, different "
                            f"container types ({jax.tree.structure(given)} vs "
                            f"{jax.tree.structure(expected)}). {fix}")


_TREES_FIX = ("Pass the params and state the model's init returned (`_, params, state = "
              "model.init(key, in_shape)`), or result.params and result.state of jnet.fit.")


def check_model_trees(params: PyTree, state: PyTree, *, trainable: bool = False) -> None:
    """Raise unless `params` and `state` are pytrees of arrays (with `trainable`, params of
    floating-point arrays: a train step differentiates with respect to them). Types and
    dtypes only, so inside a jitted step it runs once, at trace time.

    Raises:
        ArgumentTypeError: naming the first leaf that is not an array.
    """
    check_array_tree("params", params, _TREES_FIX, floating=trainable)
    check_array_tree("state", state, _TREES_FIX)


def check_writable(directory: str | os.PathLike) -> None:
    """Prove that checkpoints can be written to `directory` before any training is done."""
    from jnet import checkpoint

    checkpoint.check_writable(directory)
