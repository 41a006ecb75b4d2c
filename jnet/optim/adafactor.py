"""Adafactor: second moments of matrices stored as row and column averages."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jnet.optim.base import (
    GradientTransformation,
    Optimizer,
    PyTree,
    ScalarOrSchedule,
    api,
    as_schedule,
    check_hyperparameter,
    float_step,
    learning_rate_at,
    state_dtype,
)
from jnet.optim.chain import build


class Factored(NamedTuple):
    """The factored second moment of one array with ndim >= 2.

    Attributes:
        row: R, the moving average of the mean of g² over the last axis, shape (..., m, 1).
        col: C, the moving average of the mean of g² over the second-to-last axis, (..., 1, n).
    """

    row: jax.Array
    col: jax.Array


class AdafactorState(NamedTuple):
    """The state of `scale_by_adafactor`.

    Attributes:
        moments: per array, a `Factored` (ndim >= 2) or the full moving average of g² (vectors
            and scalars), in a pytree with the params' structure.
    """

    moments: PyTree


def _moment(p) -> Factored | jax.Array:
    shape, dtype = jnp.shape(p), state_dtype(jnp.result_type(p))
    if len(shape) < 2:
        return jnp.zeros(shape, dtype)
    return Factored(jnp.zeros((*shape[:-1], 1), dtype), jnp.zeros((*shape[:-2], 1, shape[-1]),
                                                                   dtype))


def _rms(x):
    return jnp.sqrt(jnp.mean(jnp.square(x))) if jnp.size(x) else jnp.zeros((), x.dtype)


@api("jnet.optim.scale_by_adafactor")
def scale_by_adafactor(learning_rate: ScalarOrSchedule = 1e-2, beta2_decay: float = -0.8,
                       eps1: float | None = None, eps2: float = 1e-3, clip_threshold: float = 1.0,
                       weight_decay: float = 0.0) -> GradientTransformation:
    """The Adafactor step, relative step size included (see `adafactor`).

    Args:
        learning_rate, beta2_decay, eps1, eps2, clip_threshold, weight_decay: as in
            `adafactor`.

    Returns:
        A `GradientTransformation` with an `AdafactorState`; its updates are the final steps.

    Raises:
        OptimizerError: a hyperparameter out of range.
    """
    schedule = as_schedule(learning_rate)
    check_hyperparameter("beta2_decay", beta2_decay, -1.0, 0.0, high_open=True,
                         fix="β̂2_t = 1 - t^c needs c in [-1, 0); -0.8 is the paper's.")
    if eps1 is not None:
        check_hyperparameter("eps1", eps1, fix="None uses the dtype's machine epsilon.")
    check_hyperparameter("eps2", eps2, fix="1e-3 is the paper's.")
    check_hyperparameter("clip_threshold", clip_threshold, low_open=True, fix="d = 1 is usual.")
    check_hyperparameter("weight_decay", weight_decay, fix="0 disables it.")

    def init(params):
        return AdafactorState(jax.tree.map(_moment, params))

    def one(g, moment, p, t, lr):
        e1 = jnp.finfo(g.dtype).eps if eps1 is None else eps1
        w = t**beta2_decay  # 1 - β̂2_t
        alpha = jnp.maximum(eps2, _rms(p)) * jnp.minimum(lr, 1 / jnp.sqrt(t))
        if isinstance(moment, Factored):
            row = moment.row + w * (jnp.mean(g * g, axis=-1, keepdims=True) - moment.row)
            col = moment.col + w * (jnp.mean(g * g, axis=-2, keepdims=True) - moment.col)
            v = row @ col / jnp.maximum(jnp.mean(row, axis=-2, keepdims=True), e1)
            moment = Factored(row.astype(g.dtype), col.astype(g.dtype))
        else:
            moment = (moment + w * (g * g - moment)).astype(g.dtype)
            v = moment
        u = g / jnp.sqrt(jnp.maximum(v, e1 * e1))
        scale = alpha / jnp.maximum(1.0, _rms(u) / clip_threshold)
        return (-(lr * weight_decay) * p - scale * u).astype(g.dtype), moment

    def update(grads, state, params, step):
        t, lr = float_step(step), learning_rate_at(schedule, step)
        treedef = jax.tree.structure(grads)
        moments = treedef.flatten_up_to(state.moments)
        out = [one(g, m, p, t, lr) for g, m, p in zip(
            jax.tree.leaves(grads), moments, jax.tree.leaves(params), strict=True)]
        return (jax.tree.unflatten(treedef, [u for u, _ in out]),
                AdafactorState(jax.tree.unflatten(treedef, [m for _, m in out])))

    return GradientTransformation(init, update, schedule)


@api("jnet.optim.adafactor")
def adafactor(learning_rate: ScalarOrSchedule = 1e-2, beta2_decay: float = -0.8,
              eps1: float | None = None, eps2: float = 1e-3, clip_threshold: float = 1.0,
              weight_decay: float = 0.0) -> Optimizer:
    """Adafactor: Adam-like steps with a sublinear-memory second moment, relative step sizes
    and update clipping (no first moment).

        β̂2_t = 1 - t^c                                    (c = beta2_decay)
        ρ_t = min(α_t, 1/√t),   a_t = max(ε2, RMS(θ_{t-1})) ρ_t
        matrices (ndim >= 2, over the last two axes):
            R_t = β̂2_t R_{t-1} + (1-β̂2_t) mean_cols(g_t²)      (m × 1)
            C_t = β̂2_t C_{t-1} + (1-β̂2_t) mean_rows(g_t²)      (1 × n)
            V̂_t = R_t C_t / max(mean(R_t), ε1)
        vectors and scalars:  V̂_t = β̂2_t V̂_{t-1} + (1-β̂2_t) g_t²
        U_t = g_t / √max(V̂_t, ε1²)
        θ_t = θ_{t-1} - α_t λ θ_{t-1} - a_t U_t / max(1, RMS(U_t) / d)

    Memory: m + n numbers per m × n matrix instead of m·n.

    Args:
        learning_rate: α_t, the cap of the relative step ρ_t, a number >= 0 or a schedule.
        beta2_decay: c in [-1, 0).
        eps1: ε1 >= 0, the floor of the second moment; None: the machine epsilon of the
            state dtype.
        eps2: ε2 >= 0, the floor of RMS(θ).
        clip_threshold: d > 0, the update clipping threshold.
        weight_decay: λ >= 0, decoupled, times α_t.

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: a hyperparameter out of range.

    Defaults:
        learning_rate=1e-2, beta2_decay=-0.8, eps1=None, eps2=1e-3, clip_threshold=1,
        weight_decay=0 (PyTorch `Adafactor`).

    PyTorch:
        `Adafactor(lr, beta2_decay, eps=(eps1, eps2), d, weight_decay)`
        Same defaults and update (factored over the last two axes, no momentum).

    Keras:
        `Adafactor(learning_rate, beta_2_decay, epsilon_1, epsilon_2, clip_threshold)`
        Keras 3 defaults learning_rate = 1e-3 and ε1 = 1e-30.

    References:
        Shazeer & Stern 2018, "Adafactor: Adaptive Learning Rates with Sublinear Memory
        Cost", Algorithms 4 and 5.
    """
    return build("adafactor", (scale_by_adafactor(learning_rate, beta2_decay, eps1, eps2,
                                                  clip_threshold, weight_decay),))
