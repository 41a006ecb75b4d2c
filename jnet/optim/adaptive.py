"""Per-coordinate step sizes from squared-gradient statistics: `adagrad`, `adadelta`,
`rmsprop`."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jnet.optim.base import (
    EmptyState,
    GradientTransformation,
    Optimizer,
    PyTree,
    ScalarOrSchedule,
    check_hyperparameter,
    ema,
    zeros_like_state,
)
from jnet.optim.chain import chain, scale_by_learning_rate
from jnet.optim.sgd import trace_momentum


def _root(v: jax.Array, eps: float, eps_in_sqrt: bool) -> jax.Array:
    # Where ε sits matters when ε is not tiny next to v (optax#532): √(v + ε) or √v + ε.
    return jnp.sqrt(v + eps) if eps_in_sqrt else jnp.sqrt(v) + eps


class AdagradState(NamedTuple):
    sum_of_squares: PyTree


def scale_by_adagrad(initial_accumulator_value: float = 0.0, eps: float = 1e-10,
                     eps_in_sqrt: bool = False) -> GradientTransformation:
    """s ← s + g², u = g / (√s + ε)  (or g / √(s + ε) with `eps_in_sqrt`)."""
    check_hyperparameter("adagrad", "initial_accumulator_value", initial_accumulator_value,
                         0.0, float("inf"))
    check_hyperparameter("adagrad", "eps", eps, 0.0, float("inf"))

    def init(params):
        return AdagradState(jax.tree.map(lambda z: z + initial_accumulator_value,
                                         zeros_like_state(params)))

    def update(grads, state, params, step):
        s = jax.tree.map(lambda s, g: s + g * g, state.sum_of_squares, grads)
        return jax.tree.map(lambda g, s: g / _root(s, eps, eps_in_sqrt), grads, s), AdagradState(s)

    return GradientTransformation(init, update)


def adagrad(learning_rate: ScalarOrSchedule = 1e-2, initial_accumulator_value: float = 0.0,
            eps: float = 1e-10, *, eps_in_sqrt: bool = False) -> Optimizer:
    """AdaGrad (Duchi, Hazan & Singer 2011).

        s_t = s_{t-1} + g_t²,    θ_t = θ_{t-1} - α_t g_t / (√s_t + ε)

    Defaults (PyTorch `Adagrad`): α = 1e-2, s_0 = 0, ε = 1e-10 outside the root.
    Keras `Adagrad`: α = 1e-3, s_0 = 0.1, ε = 1e-7 inside the root: pass
    `adagrad(1e-3, 0.1, 1e-7, eps_in_sqrt=True)`. PyTorch's `lr_decay` is
    `learning_rate=lambda step: lr / (1 + step * lr_decay)`.
    """
    return chain(scale_by_adagrad(initial_accumulator_value, eps, eps_in_sqrt),
                 scale_by_learning_rate(learning_rate))


class AdadeltaState(NamedTuple):
    grad_sq_avg: PyTree
    delta_sq_avg: PyTree


def scale_by_adadelta(rho: float = 0.95, eps: float = 1e-6) -> GradientTransformation:
    """Zeiler's ratio of RMS: returns -Δ_t (see `adadelta`), so a learning rate of 1 gives Δ_t."""
    check_hyperparameter("adadelta", "rho", rho, 0.0, 1.0, high_open=True)
    check_hyperparameter("adadelta", "eps", eps, 0.0, float("inf"))

    def init(params):
        return AdadeltaState(zeros_like_state(params), zeros_like_state(params))

    def update(grads, state, params, step):
        eg = ema(rho, state.grad_sq_avg, grads, 2)
        d = jax.tree.map(lambda g, a, b: jnp.sqrt(b + eps) / jnp.sqrt(a + eps) * g,
                         grads, eg, state.delta_sq_avg)
        ed = ema(rho, state.delta_sq_avg, d, 2)
        return d, AdadeltaState(eg, ed)

    return GradientTransformation(init, update)


def adadelta(learning_rate: ScalarOrSchedule = 1.0, rho: float = 0.95,
             eps: float = 1e-6) -> Optimizer:
    """AdaDelta (Zeiler 2012, Algorithm 1). Needs no learning rate: the default 1.0 is the rule.

        E[g²]_t = ρ E[g²]_{t-1} + (1-ρ) g_t²
        Δ_t     = -√(E[Δ²]_{t-1} + ε) / √(E[g²]_t + ε) · g_t
        E[Δ²]_t = ρ E[Δ²]_{t-1} + (1-ρ) Δ_t²
        θ_t     = θ_{t-1} + α_t Δ_t

    Defaults: ρ = 0.95, ε = 1e-6 (the paper), α = 1. Like PyTorch and Keras, α scales the step
    after the accumulation (E[Δ²] holds the unscaled Δ). PyTorch `Adadelta`: lr = 1.0, ρ = 0.9,
    ε = 1e-6. Keras `Adadelta`: learning_rate = 0.001 (a thousand times smaller steps than the
    paper), ρ = 0.95, ε = 1e-7. Unlike optax's `adadelta()` with no learning rate (optax#1242),
    the default here descends.
    """
    return chain(scale_by_adadelta(rho, eps), scale_by_learning_rate(learning_rate))


class RmsState(NamedTuple):
    sq_avg: PyTree
    grad_avg: PyTree  # EmptyState unless centered


def scale_by_rms(decay: float = 0.9, eps: float = 1e-8, *, eps_in_sqrt: bool = False,
                 centered: bool = False) -> GradientTransformation:
    """v ← ρv + (1-ρ)g², (centered: m ← ρm + (1-ρ)g, v̄ = v - m²), u = g / (√v̄ + ε)."""
    check_hyperparameter("rmsprop", "decay", decay, 0.0, 1.0, high_open=True)
    check_hyperparameter("rmsprop", "eps", eps, 0.0, float("inf"))

    def init(params):
        return RmsState(zeros_like_state(params),
                        zeros_like_state(params) if centered else EmptyState())

    def update(grads, state, params, step):
        v = ema(decay, state.sq_avg, grads, 2)
        if centered:
            m = ema(decay, state.grad_avg, grads)
            var = jax.tree.map(lambda v, m: v - m * m, v, m)
        else:
            m, var = state.grad_avg, v
        return (jax.tree.map(lambda g, s: g / _root(s, eps, eps_in_sqrt), grads, var),
                RmsState(v, m))

    return GradientTransformation(init, update)


def rmsprop(learning_rate: ScalarOrSchedule = 1e-3, decay: float = 0.9, eps: float = 1e-8, *,
            eps_in_sqrt: bool = False, centered: bool = False, momentum: float = 0.0,
            pytorch_placement: bool = False) -> Optimizer:
    """RMSprop (Hinton, Coursera lecture 6e, 2012; centered form: Graves 2013).

        v_t = ρ v_{t-1} + (1-ρ) g_t²
        v̄_t = v_t                                (centered: m_t = ρ m_{t-1} + (1-ρ) g_t,
                                                    v̄_t = v_t - m_t²)
        r_t = g_t / (√v̄_t + ε)                    (`eps_in_sqrt=True`: g_t / √(v̄_t + ε))
        θ_t = θ_{t-1} - α_t r_t                   (momentum = 0)
        V_t = γ V_{t-1} + α_t r_t, θ_t = θ_{t-1} - V_t   (momentum γ > 0, Keras placement)
        b_t = γ b_{t-1} + r_t,  θ_t = θ_{t-1} - α_t b_t  (`pytorch_placement=True`)

    Defaults: α = 1e-3, ρ = 0.9 (Hinton), ε = 1e-8 outside the root, v_0 = 0, no momentum.
    PyTorch `RMSprop`: lr = 1e-2, alpha (= ρ) = 0.99, ε = 1e-8 outside the root, α outside the
    momentum buffer: `rmsprop(1e-2, 0.99, pytorch_placement=True)`. Keras `RMSprop`:
    learning_rate = 1e-3, rho = 0.9, ε = 1e-7 inside the root, α inside the momentum buffer:
    `rmsprop(1e-3, 0.9, 1e-7, eps_in_sqrt=True)`. optax's ε is inside the root too.
    """
    stats = scale_by_rms(decay, eps, eps_in_sqrt=eps_in_sqrt, centered=centered)
    if isinstance(momentum, int | float) and momentum == 0:  # no velocity buffer to carry
        return chain(stats, scale_by_learning_rate(learning_rate))
    return chain(stats, trace_momentum(learning_rate, momentum,
                                       pytorch_placement=pytorch_placement, where="rmsprop"))
