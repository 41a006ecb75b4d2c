"""Gradient clipping: `clip_by_value`, `clip_by_global_norm` (and `global_norm`)."""

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
)


@api("jnet.optim.global_norm")
def global_norm(tree: PyTree) -> jax.Array:
    """√(Σ_leaves Σ x²): the L2 norm of a whole pytree, as one vector.

    Args:
        tree: a pytree of arrays (gradients, params, updates); an empty one (``{}``, None)
            has norm 0.

    Returns:
        A scalar array.

    Raises:
        OptimizerError: a leaf that is not an array (a string, an object).
    """
    check_array_tree("tree", tree, "Pass a pytree of arrays, such as the gradients.",
                     error=OptimizerError)
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


@api("jnet.optim.clip_by_value")
def clip_by_value(max_value: float | jax.Array) -> GradientTransformation:
    """g ← clip(g, -c, c) elementwise (PyTorch `clip_grad_value_`, Keras `clipvalue=`).

    Args:
        max_value: c > 0.

    Returns:
        A stateless `GradientTransformation`.

    Raises:
        OptimizerError: c <= 0, NaN, infinite or not a number.
    """
    check_hyperparameter("max_value", max_value, low_open=True,
                         fix="It is the largest |gradient| kept, e.g. 1.0; c = 0 would zero "
                         "every gradient.")

    def update(updates, state, params, step):
        return jax.tree.map(lambda g: jnp.clip(g, -max_value, max_value), updates), state

    return GradientTransformation(lambda params: EmptyState(), update)


@api("jnet.optim.clip_by_global_norm")
def clip_by_global_norm(max_norm: float | jax.Array) -> GradientTransformation:
    """g ← g · c / ‖g‖ when ‖g‖ > c (‖·‖ over the whole pytree), else unchanged.

    Keras `global_clipnorm=` and optax do the same; PyTorch `clip_grad_norm_` scales by
    c / (‖g‖ + 1e-6), a difference of ~1e-6 relative.

    Args:
        max_norm: c > 0.

    Returns:
        A stateless `GradientTransformation`.

    Raises:
        OptimizerError: c <= 0, NaN, infinite or not a number.
    """
    check_hyperparameter("max_norm", max_norm, low_open=True,
                         fix="It is the largest global gradient norm kept, e.g. 1.0.")

    def update(updates, state, params, step):
        norm = global_norm(updates)
        # The where keeps the unclipped branch exact and avoids 0/0 when the norm is 0.
        factor = jnp.where(norm > max_norm, max_norm / jnp.where(norm > 0, norm, 1.0), 1.0)
        return jax.tree.map(lambda g: g * factor.astype(g.dtype), updates), state

    return GradientTransformation(lambda params: EmptyState(), update)
