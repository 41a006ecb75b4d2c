"""Weight decay as a transformation: `add_decayed_weights`, and `weights_only`, the mask that
spares biases and normalisation scales."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jnet.errors import check_array_tree
from jnet.optim.base import (
    EmptyState,
    GradientTransformation,
    OptimizerError,
    PyTree,
    api,
    check_hyperparameter,
    is_tracer,
)
from jnet.optim.masks import Mask, resolve_mask

__all__ = ["Mask", "add_decayed_weights", "resolve_mask", "weights_only"]


@api("jnet.optim.weights_only")
def weights_only(params: PyTree) -> PyTree:
    """A weight-decay mask: True for leaves with ndim >= 2 (Dense and Conv kernels), False for
    vectors and scalars (biases, BatchNorm scales and offsets, PReLU slopes).

    Args:
        params: the parameter pytree.

    Returns:
        A pytree of Python bools with the structure of `params`.

    Raises:
        OptimizerError: `params` is not a pytree of arrays.
    """
    check_array_tree("params", params, "Pass the params pytree (weights_only is a mask "
                     "function: `mask=jnet.optim.weights_only`, not called).",
                     error=OptimizerError)
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


@api("jnet.optim.add_decayed_weights")
def add_decayed_weights(weight_decay: float | jax.Array = 0.0,
                        mask: Mask = None) -> GradientTransformation:
    """u ← u + λ θ where the mask is True.

    Placed BEFORE an adaptive rule it is L2 regularisation (PyTorch `Adam(weight_decay=)`);
    placed after the rule and before `scale_by_learning_rate` it is decoupled weight decay
    (`adamw`): θ ← θ - α_t λ θ.

    Args:
        weight_decay: λ >= 0.
        mask: None (decay every array), a pytree of bools shaped like the params, a function
            `params -> that pytree` (e.g. `weights_only`), or a function `(path, param) ->
            bool` of each array's key path, e.g. `lambda path, p: path[-1] != "b"` (the path
            is a tuple of keys such as `("dense", "w")`). Its structure is checked at `init`.

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
        if not is_tracer(weight_decay) and weight_decay == 0:
            return updates, state  # λ = 0 (lamb's, lars' default): no pass over the params
        keep = resolve_mask(mask, params)
        return jax.tree.map(lambda u, p, m: u + weight_decay * m * p, updates, params, keep), state

    return GradientTransformation(init, update)
