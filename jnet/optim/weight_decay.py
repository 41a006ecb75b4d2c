"""Weight decay as a transformation: `add_decayed_weights`, and `weights_only`, the mask that
spares biases and normalisation scales."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jnet.optim.base import (
    EmptyState,
    GradientTransformation,
    OptimizerError,
    PyTree,
    check_hyperparameter,
)

Mask = PyTree | Callable[[PyTree], PyTree] | None


def weights_only(params: PyTree) -> PyTree:
    """A weight-decay mask: True for leaves with ndim >= 2 (Dense and Conv kernels), False for
    vectors and scalars (biases, BatchNorm scales and offsets, PReLU slopes)."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def _resolve_mask(mask: Mask, params: PyTree) -> PyTree:
    if mask is None:
        return jax.tree.map(lambda p: True, params)
    tree = mask(params) if callable(mask) else mask
    if jax.tree.structure(tree) != jax.tree.structure(params):
        raise OptimizerError(
            "add_decayed_weights", f"the mask must have the structure of the params (one bool "
            f"per array).\n  mask:   {jax.tree.structure(tree)}\n  params: "
            f"{jax.tree.structure(params)}\nPass a function such as `weights_only` to build it.")
    return tree


def add_decayed_weights(weight_decay: float | jax.Array = 0.0,
                        mask: Mask = None) -> GradientTransformation:
    """u ← u + λ θ where the mask is True.

    Placed BEFORE an adaptive rule it is L2 regularisation (PyTorch `Adam(weight_decay=)`);
    placed after the rule and before `scale_by_learning_rate` it is decoupled weight decay
    (`adamw`): θ ← θ - α_t λ θ. `mask` is None (decay every array), a pytree of bools shaped
    like the params, or a function `params -> that pytree` (e.g. `weights_only`).
    """
    check_hyperparameter("add_decayed_weights", "weight_decay", weight_decay, 0.0, float("inf"))

    def update(updates, state, params, step):
        keep = _resolve_mask(mask, params)
        return jax.tree.map(lambda u, p, m: u + weight_decay * m * p, updates, params, keep), state

    return GradientTransformation(lambda params: EmptyState(), update)
