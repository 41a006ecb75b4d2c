"""Gradient clipping: `clip_by_value`, `clip_by_global_norm` (and `global_norm`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jnet.optim.base import EmptyState, GradientTransformation, PyTree, check_hyperparameter


def global_norm(tree: PyTree) -> jax.Array:
    """√(Σ_leaves Σ x²): the L2 norm of a whole pytree, as one vector."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def clip_by_value(max_value: float | jax.Array) -> GradientTransformation:
    """g ← clip(g, -c, c) elementwise (PyTorch `clip_grad_value_`, Keras `clipvalue=`)."""
    check_hyperparameter("clip_by_value", "max_value", max_value, 0.0, float("inf"))

    def update(updates, state, params, step):
        return jax.tree.map(lambda g: jnp.clip(g, -max_value, max_value), updates), state

    return GradientTransformation(lambda params: EmptyState(), update)


def clip_by_global_norm(max_norm: float | jax.Array) -> GradientTransformation:
    """g ← g · c / ‖g‖ when ‖g‖ > c (‖·‖ over the whole pytree), else unchanged.

    Keras `global_clipnorm=` and optax do the same; PyTorch `clip_grad_norm_` scales by
    c / (‖g‖ + 1e-6), a difference of ~1e-6 relative.
    """
    check_hyperparameter("clip_by_global_norm", "max_norm", max_norm, 0.0, float("inf"))

    def update(updates, state, params, step):
        norm = global_norm(updates)
        # The where keeps the unclipped branch exact and avoids 0/0 when the norm is 0.
        factor = jnp.where(norm > max_norm, max_norm / jnp.where(norm > 0, norm, 1.0), 1.0)
        return jax.tree.map(lambda g: g * factor.astype(g.dtype), updates), state

    return GradientTransformation(lambda params: EmptyState(), update)
