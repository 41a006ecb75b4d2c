"""Which parameters a stage applies to: masks (one bool per array) and labels (one string per
array), given as a pytree shaped like the params, a function `params -> that pytree` (as
`weights_only` and optax), or a function of each array's key path `(path, param) -> value`.

A key path is a tuple of the dict keys, sequence indices and attribute names leading to the
array: `("dense", "w")` for `params["dense"]["w"]`, `("blocks", 0, "b")` for
`params["blocks"][0]["b"]`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jnet.optim.base import OptimizerError, PyTree, is_tracer

Mask = PyTree | Callable[..., Any] | None
Labels = PyTree | Callable[..., Any]

_MASK_FIX = ("Pass None (every array), a function such as `jnet.optim.weights_only`, a function "
             "`(path, param) -> bool` of the key path (e.g. `lambda path, p: path[-1] != 'b'`) "
             "or a pytree with the params' structure and one bool per array.")
_LABELS_FIX = ("Pass a pytree with the params' structure and one label string per array, or a "
               "function `(path, param) -> label` of the key path (e.g. "
               "`lambda path, p: 'head' if path[0] == 'head' else 'body'`).")


def key_name(entry: Any) -> Any:
    """One entry of a JAX key path as the plain key, index or attribute name it stands for."""
    for field in ("key", "idx", "name"):
        if hasattr(entry, field):
            return getattr(entry, field)
    return str(entry)


def path_tuple(path: tuple) -> tuple:
    """A JAX key path as a tuple of plain keys: `("dense", "w")`."""
    return tuple(key_name(entry) for entry in path)


def _per_leaf(fn: Callable[..., Any]) -> bool:
    """True for a function of (path, param), False for one of the whole params pytree."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin or C function: no signature to read
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.default is p.empty]
    return len(positional) == 2


def _tree(spec: Any, params: PyTree, what: str, fix: str) -> PyTree:
    """`spec` as a pytree with the structure of `params` (checked)."""
    if callable(spec) and _per_leaf(spec):
        # checked below too: a function returning None or a container per array would
        # otherwise leave every array out of every group, silently
        tree = jax.tree_util.tree_map_with_path(lambda path, p: spec(path_tuple(path), p),
                                                params)
    else:
        tree = spec(params) if callable(spec) else spec
    # jaxlib ships no stub for PyTreeDef, so mypy cannot see its __eq__
    if jax.tree.structure(tree) != jax.tree.structure(params):  # type: ignore[operator]
        raise OptimizerError(
            f"{what} must have the structure of the params (one value per array).\n  {what}: "
            f"{jax.tree.structure(tree)}\n  params: {jax.tree.structure(params)}\n{fix}")
    return tree


def _is_bool(leaf: Any) -> bool:
    return is_tracer(leaf) or np.asarray(leaf).dtype == np.bool_


def resolve_mask(mask: Mask, params: PyTree, what: str = "mask") -> PyTree:
    """The mask as a pytree of bools shaped like `params` (None: every array True).

    Raises:
        OptimizerError: the mask (or what the mask function returns) has another structure
            than `params`, or a value that is not a bool.
    """
    if mask is None:
        return jax.tree.map(lambda p: True, params)
    tree = _tree(mask, params, what, _MASK_FIX)
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if not _is_bool(leaf):
            raise OptimizerError(f"{what}{jax.tree_util.keystr(path)} must be a bool, got "
                                 f"{type(leaf).__name__} {leaf!r}. {_MASK_FIX}")
    return tree


def resolve_labels(labels: Labels, params: PyTree, known: tuple[str, ...]) -> PyTree:
    """The labels as a pytree of strings shaped like `params`, each one of `known`.

    Raises:
        OptimizerError: another structure than `params`, a label that is not a string or has
            no optimizer.
    """
    tree = _tree(labels, params, "labels", _LABELS_FIX)
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        where = jax.tree_util.keystr(path) or "(root)"
        if not isinstance(leaf, str):
            raise OptimizerError(f"labels{where} must be a string, got {type(leaf).__name__} "
                                 f"{leaf!r}. {_LABELS_FIX}")
        if leaf not in known:
            raise OptimizerError(f"labels{where} is {leaf!r}, which has no optimizer; the "
                                 f"optimizers are labelled {', '.join(map(repr, known))}. Add "
                                 f"{leaf!r} to the dict or relabel the array.")
    return tree
