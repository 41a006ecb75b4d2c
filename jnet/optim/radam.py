"""RAdam: Adam with its adaptive rate's variance rectified (no warmup needed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jnet.optim.adam import AdamState, check_betas
from jnet.optim.base import (
    EmptyState,
    GradientTransformation,
    Optimizer,
    ScalarOrSchedule,
    api,
    bias_correction,
    check_hyperparameter,
    ema,
    float_step,
    zeros_like_state,
)
from jnet.optim.chain import build, scale_by_learning_rate


@api("jnet.optim.scale_by_radam")
def scale_by_radam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   threshold: float = 5.0) -> GradientTransformation:
    """The rectified Adam direction (see `radam`).

    Args:
        b1, b2: β1, β2 in [0, 1).
        eps: ε >= 0.
        threshold: ρ_t above which the adaptive rate is used, >= 4.

    Returns:
        A `GradientTransformation` with an `AdamState` (its `nu_max` empty).

    Raises:
        OptimizerError: a hyperparameter out of range.
    """
    check_betas(b1, b2, eps)
    check_hyperparameter("threshold", threshold, 4.0, fix="The rectification needs ρ_t > 4; "
                         "PyTorch and optax use 5.")

    def init(params):
        return AdamState(zeros_like_state(params), zeros_like_state(params), EmptyState())

    def update(grads, state, params, step):
        t = float_step(step)
        m, v = ema(b1, state.mu, grads), ema(b2, state.nu, grads, 2)
        c1, c2 = bias_correction(b1, step), bias_correction(b2, step)
        rho_inf = 2 / (1 - b2) - 1
        rho = rho_inf - 2 * t * jnp.power(b2, t) / c2
        # The maximum keeps the root real where ρ_t <= 4; that branch is not selected.
        rect = jnp.sqrt(jnp.maximum(rho - 4, 0) * (rho - 2) * rho_inf
                        / ((rho_inf - 4) * (rho_inf - 2) * rho))
        adaptive = rho > threshold
        u = jax.tree.map(lambda m, v: jnp.where(adaptive, rect * jnp.sqrt(c2) / (jnp.sqrt(v) + eps),
                                                1.0) * m / c1, m, v)
        return u, AdamState(m, v, state.nu_max)

    return GradientTransformation(init, update)


@api("jnet.optim.radam")
def radam(learning_rate: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, threshold: float = 5.0) -> Optimizer:
    """RAdam: Adam whose adaptive rate is switched on, rectified, once its variance is finite.

        m_t, v_t as in `adam`,    m̂_t = m_t / (1-β1^t)
        ρ_∞ = 2/(1-β2) - 1,       ρ_t = ρ_∞ - 2 t β2^t / (1-β2^t)
        r_t = √((ρ_t-4)(ρ_t-2)ρ_∞ / ((ρ_∞-4)(ρ_∞-2)ρ_t))
        θ_t = θ_{t-1} - α_t r_t m̂_t √(1-β2^t) / (√v_t + ε)      if ρ_t > threshold
        θ_t = θ_{t-1} - α_t m̂_t                                  otherwise (SGD with momentum)

    ε is added to √v_t (PyTorch's placement), not to √v̂_t.

    Args:
        learning_rate: α_t, a number >= 0 or a schedule `step -> lr`.
        b1, b2: β1, β2 in [0, 1).
        eps: ε >= 0.
        threshold: the ρ_t above which the adaptive step is taken, >= 4 (the paper: 4).

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: a hyperparameter out of range.

    Defaults:
        learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, threshold=5 (PyTorch `RAdam`, optax).

    PyTorch:
        `RAdam(lr, betas, eps)`
        Same defaults and update; `weight_decay=λ` (L2) is
        `chain(add_decayed_weights(λ), radam(lr))`, `decoupled_weight_decay=True` is
        `chain(scale_by_radam(), add_decayed_weights(λ), scale_by_learning_rate(lr))`.

    Keras:
        none
        Keras has no RAdam (TensorFlow Addons had `RectifiedAdam`).

    References:
        Liu et al. 2020, "On the Variance of the Adaptive Learning Rate and Beyond".
    """
    return build("radam", (scale_by_radam(b1, b2, eps, threshold),
                           scale_by_learning_rate(learning_rate)))
