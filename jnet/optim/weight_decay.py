"""Weight decay as a transformation: `add_decayed_weights`, and `weights_only`, the mask that
spares biases and normalisation scales."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jnet.optim.base import (
    EmptyState,
    GradientTransformation,
    OptimizerError,
    PyTree,
    api,
    check_hyperparameter,
    is_tracer,
)

Mask = PyTree | Callable[[PyTree], PyTree] | None

_MASK_FIX = ("Pass None (decay every array), a function such as `jnet.optim.weights_only`, or "
             "a pytree with the params' structure and one bool per array.")


def weights_only(params: PyTree) -> PyTree:
    """A weight-decay mask: True for leaves with ndim >= 2 (Dense and Conv kernels), False for
    vectors and scalars (biases, BatchNorm scales and offsets, PReLU slopes).

    Args:
        params: the parameter pytree.

    Returns:
        A pytree of Python bools with the structure of `params`.
    """
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def _is_bool(leaf) -> bool:
    return is_tracer(leaf) or np.asarray(leaf).dtype == np.bool_


def resolve_mask(mask: Mask, params: PyTree) -> PyTree:
    """The mask as a pytree of bools shaped like `params`.

    Raises:
        OptimizerError: the mask (or what the mask function returns) has another structure
            than `params`, or a leaf that is not a bool.
    """
    if mask is None:
        return jax.tree.map(lambda p: True, params)
    tree = mask(params) if callable(mask) else mask
    # jaxlib ships no stub for PyTreeDef, so mypy cannot see its __eq__
    if jax.tree.structure(tree) != jax.tree.structure(params):  # type: ignore[operator]
        raise OptimizerError(
            f"mask must have the structure of the params (one bool per array).\n  mask:   "
            f"{jax.tree.structure(tree)}\n  params: {jax.tree.structure(params)}\n{_MASK_FIX}")
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if not _is_bool(leaf):
            raise OptimizerError(f"mask{jax.tree_util.keystr(path)} must be a bool, got "
                                 f"{type(leaf).__name__} {leaf!r}. {_MASK_FIX}")
    return tree


@api("jnet.optim.add_decayed_weights")
def add_decayed_weights(weight_decay: float | jax.Array = 0.0,
                        mask: Mask = None) -> GradientTransformation:
    """u ← u + λ θ where the mask is True.

    Placed BEFORE an adaptive rule it is L2 regularisation (PyTorch `Adam(weight_decay=)`);
    placed after the rule and before `scale_by_learning_rate` it is decoupled weight decay
    (`adamw`): θ ← θ - α_t λ θ.

    Args:
        weight_decay: λ >= 0.
        mask: None (decay every array), a pytree of bools shaped like the params, or a function
            `params -> that pytree` (e.g. `weights_only`). Its structure is checked at `init`.

    Returns:
        A stateless `GradientTransformation`.

    Raises:
        OptimizerError: a negative, NaN or infinite λ; at `init`, a mask of the wrong
            structure.
    """
    check_hyperparameter("weight_decay", weight_decay,
                         fix="It is λ in θ ← θ - α λ θ; 0 disables it, 1e-4 to 1e-1 is usual.")

    def init(params):
        resolve_mask(mask, params)
        return EmptyState()

    def update(updates, state, params, step):
        keep = resolve_mask(mask, params)
        return jax.tree.map(lambda u, p, m: u + weight_decay * m * p, updates, params, keep), state

    return GradientTransformation(init, update)
