"""Rprop: per-coordinate step sizes adapted from the sign of the gradient only."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jnet.optim.base import (
    GradientTransformation,
    Optimizer,
    OptimizerError,
    PyTree,
    api,
    as_schedule,
    check_hyperparameter,
    map_unzip,
    zeros_like_state,
)
from jnet.optim.chain import build


class RpropState(NamedTuple):
    """The state of `scale_by_rprop`.

    Attributes:
        prev: g_{t-1}, the last gradient (0 where its sign flipped), shaped like the params.
        step_size: Δ_{t-1}, the per-coordinate step sizes (Δ_0 = learning_rate).
    """

    prev: PyTree
    step_size: PyTree


@api("jnet.optim.scale_by_rprop")
def scale_by_rprop(learning_rate: float | jax.Array = 1e-2, eta_minus: float = 0.5,
                   eta_plus: float = 1.2, step_size_min: float = 1e-6,
                   step_size_max: float = 50.0) -> GradientTransformation:
    """The Rprop step, step sizes included (see `rprop`).

    Args:
        learning_rate, eta_minus, eta_plus, step_size_min, step_size_max: as in `rprop`.

    Returns:
        A `GradientTransformation` with an `RpropState`; its updates are the final steps.

    Raises:
        OptimizerError: a hyperparameter out of range, or a schedule as learning_rate.
    """
    if callable(learning_rate):
        raise OptimizerError("learning_rate of rprop is the initial step size Δ_0, a number; "
                             "Rprop adapts the steps itself and takes no schedule. Pass e.g. "
                             "0.01.")
    schedule = as_schedule(learning_rate)
    check_hyperparameter("eta_minus", eta_minus, 0.0, 1.0, low_open=True, high_open=True,
                         fix="η- shrinks a step after a sign flip; 0.5 is usual.")
    check_hyperparameter("eta_plus", eta_plus, 1.0, low_open=True,
                         fix="η+ grows a step while the sign holds; 1.2 is usual.")
    check_hyperparameter("step_size_min", step_size_min, fix="1e-6 is usual.")
    check_hyperparameter("step_size_max", step_size_max, low_open=True, fix="50 is usual.")

    def init(params):
        return RpropState(zeros_like_state(params),
                          jax.tree.map(lambda z: z + learning_rate, zeros_like_state(params)))

    def update(grads, state, params, step):
        def one(g, prev, size):
            agree = g * prev
            factor = jnp.where(agree > 0, eta_plus, jnp.where(agree < 0, eta_minus, 1.0))
            size = jnp.clip(size * factor, step_size_min, step_size_max).astype(size.dtype)
            g = jnp.where(agree < 0, 0.0, g)  # after a flip: no step, and no flip next time
            return -jnp.sign(g) * size, g, size

        u, prev, size = map_unzip(one, 3, grads, state.prev, state.step_size)
        return u, RpropState(prev, size)

    return GradientTransformation(init, update, schedule)


@api("jnet.optim.rprop")
def rprop(learning_rate: float | jax.Array = 1e-2, eta_minus: float = 0.5,
          eta_plus: float = 1.2, step_size_min: float = 1e-6,
          step_size_max: float = 50.0) -> Optimizer:
    """Rprop (resilient backpropagation, the iRprop- variant): step sizes from signs alone.

        s = sign(g_t · g_{t-1})
        Δ_t = clip(Δ_{t-1} · (η+ if s > 0, η- if s < 0, 1 if s = 0), Δ_min, Δ_max)
        g_t ← 0 where s < 0                       (no step after a flip; remembered as 0)
        θ_t = θ_{t-1} - sign(g_t) Δ_t

    Meant for full-batch gradients: mini-batch noise flips signs at random.
    `current_learning_rate` reports Δ_0.

    Args:
        learning_rate: Δ_0 >= 0, the initial step size (a number, not a schedule).
        eta_minus: η- in (0, 1).
        eta_plus: η+ > 1.
        step_size_min: Δ_min >= 0.
        step_size_max: Δ_max > 0.

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: a hyperparameter out of range, or a schedule.

    Defaults:
        learning_rate=1e-2, eta_minus=0.5, eta_plus=1.2, step_size_min=1e-6, step_size_max=50
        (PyTorch `Rprop`).

    PyTorch:
        `Rprop(lr, etas=(eta_minus, eta_plus), step_sizes=(min, max))`
        Same defaults and update.

    Keras:
        none
        Keras has no Rprop.

    References:
        Riedmiller & Braun 1993, "A Direct Adaptive Method for Faster Backpropagation
        Learning: The RPROP Algorithm"; Igel & Hüsken 2000 (iRprop-).
    """
    return build("rprop", (scale_by_rprop(learning_rate, eta_minus, eta_plus, step_size_min,
                                          step_size_max),))
