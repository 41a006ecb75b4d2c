"""Per-coordinate step sizes from squared-gradient statistics: `adagrad`, `adadelta`,
`rmsprop`."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jnet.optim.base import (
    EPS_FIX,
    EmptyState,
    GradientTransformation,
    Optimizer,
    PyTree,
    ScalarOrSchedule,
    api,
    check_decay_and_eps,
    check_hyperparameter,
    ema,
    zeros_like_state,
)
from jnet.optim.chain import build, scale_by_learning_rate
from jnet.optim.sgd import trace_momentum


def _root(v: jax.Array, eps: float, eps_in_sqrt: bool) -> jax.Array:
    # Where ε sits matters when ε is not tiny next to v (optax#532): √(v + ε) or √v + ε.
    return jnp.sqrt(v + eps) if eps_in_sqrt else jnp.sqrt(v) + eps


class AdagradState(NamedTuple):
    """The state of `scale_by_adagrad`.

    Attributes:
        sum_of_squares: s, the sum of the squared gradients so far (plus s_0).
    """

    sum_of_squares: PyTree


@api("jnet.optim.scale_by_adagrad")
def scale_by_adagrad(initial_accumulator_value: float = 0.0, eps: float = 1e-10,
                     eps_in_sqrt: bool = False) -> GradientTransformation:
    """s ← s + g², u = g / (√s + ε)  (or g / √(s + ε) with `eps_in_sqrt`); see `adagrad`.

    Args:
        initial_accumulator_value: s_0 >= 0.
        eps: ε >= 0.
        eps_in_sqrt: put ε under the root.

    Returns:
        A `GradientTransformation` with an `AdagradState`.

    Raises:
        OptimizerError: a hyperparameter out of range.
    """
    check_hyperparameter("initial_accumulator_value", initial_accumulator_value,
                         fix="It is s_0, the starting sum of squares: 0 (PyTorch) or 0.1 "
                         "(Keras).")
    check_hyperparameter("eps", eps, fix=EPS_FIX)

    def init(params):
        return AdagradState(jax.tree.map(lambda z: z + initial_accumulator_value,
                                         zeros_like_state(params)))

    def update(grads, state, params, step):
        s = jax.tree.map(lambda s, g: s + g * g, state.sum_of_squares, grads)
        return jax.tree.map(lambda g, s: g / _root(s, eps, eps_in_sqrt), grads, s), AdagradState(s)

    return GradientTransformation(init, update)


@api("jnet.optim.adagrad")
def adagrad(learning_rate: ScalarOrSchedule = 1e-2, initial_accumulator_value: float = 0.0,
            eps: float = 1e-10, *, eps_in_sqrt: bool = False) -> Optimizer:
    """AdaGrad: per-coordinate rates from the sum of squared gradients.

        s_t = s_{t-1} + g_t²,    θ_t = θ_{t-1} - α_t g_t / (√s_t + ε)
        eps_in_sqrt=True:        θ_t = θ_{t-1} - α_t g_t / √(s_t + ε)

    Args:
        learning_rate: α_t, a number >= 0 or a schedule `step -> lr`.
        initial_accumulator_value: s_0 >= 0.
        eps: ε >= 0.
        eps_in_sqrt: put ε under the root (Keras) instead of outside (PyTorch).

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: a hyperparameter out of range.

    Defaults:
        learning_rate=1e-2, initial_accumulator_value=0, eps=1e-10 outside the root (PyTorch
        `Adagrad`).

    PyTorch:
        `Adagrad(lr, initial_accumulator_value, eps=eps)`
        Same defaults; `lr_decay=d` is `learning_rate=lambda s: lr / (1 + s * d)`.

    Keras:
        `Adagrad(...)` = `adagrad(1e-3, 0.1, 1e-7, eps_in_sqrt=True)`
        Keras: learning_rate = 1e-3, initial_accumulator_value = 0.1, ε = 1e-7 inside the root.

    References:
        Duchi, Hazan & Singer 2011, "Adaptive Subgradient Methods for Online Learning and
        Stochastic Optimization".
    """
    return build("adagrad", (scale_by_adagrad(initial_accumulator_value, eps, eps_in_sqrt),
                             scale_by_learning_rate(learning_rate)))


class AdadeltaState(NamedTuple):
    """The state of `scale_by_adadelta`.

    Attributes:
        grad_sq_avg: E[g²], the moving average of the squared gradients.
        delta_sq_avg: E[Δ²], the moving average of the squared (unscaled) steps.
    """

    grad_sq_avg: PyTree
    delta_sq_avg: PyTree


@api("jnet.optim.scale_by_adadelta")
def scale_by_adadelta(rho: float = 0.95, eps: float = 1e-6) -> GradientTransformation:
    """Zeiler's ratio of RMS: returns -Δ_t (see `adadelta`), so a learning rate of 1 gives Δ_t.

    Args:
        rho: ρ in [0, 1).
        eps: ε >= 0.

    Returns:
        A `GradientTransformation` with an `AdadeltaState`.

    Raises:
        OptimizerError: a hyperparameter out of range.
    """
    check_decay_and_eps("rho", rho, 0.95, eps)

    def init(params):
        return AdadeltaState(zeros_like_state(params), zeros_like_state(params))

    def update(grads, state, params, step):
        eg = ema(rho, state.grad_sq_avg, grads, 2)
        d = jax.tree.map(lambda g, a, b: jnp.sqrt(b + eps) / jnp.sqrt(a + eps) * g,
                         grads, eg, state.delta_sq_avg)
        ed = ema(rho, state.delta_sq_avg, d, 2)
        return d, AdadeltaState(eg, ed)

    return GradientTransformation(init, update)


@api("jnet.optim.adadelta")
def adadelta(learning_rate: ScalarOrSchedule = 1.0, rho: float = 0.95,
             eps: float = 1e-6) -> Optimizer:
    """AdaDelta: needs no learning rate (the default 1.0 is the rule).

        E[g²]_t = ρ E[g²]_{t-1} + (1-ρ) g_t²
        Δ_t     = -√(E[Δ²]_{t-1} + ε) / √(E[g²]_t + ε) · g_t
        E[Δ²]_t = ρ E[Δ²]_{t-1} + (1-ρ) Δ_t²
        θ_t     = θ_{t-1} + α_t Δ_t

    Like PyTorch and Keras, α scales the step after the accumulation (E[Δ²] holds the unscaled
    Δ). Unlike optax's `adadelta()` with no learning rate (optax#1242), the default here
    descends.

    Args:
        learning_rate: α_t, a number >= 0 or a schedule `step -> lr`.
        rho: ρ in [0, 1).
        eps: ε >= 0.

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: a hyperparameter out of range.

    Defaults:
        learning_rate=1, rho=0.95, eps=1e-6 (the paper, with α = 1).

    PyTorch:
        `Adadelta(lr, rho, eps)`
        PyTorch defaults lr = 1.0, ρ = 0.9, ε = 1e-6: `adadelta(1.0, 0.9)`.

    Keras:
        `Adadelta(learning_rate, rho, epsilon)`
        Keras defaults learning_rate = 1e-3 (a thousand times smaller steps than the paper),
        ρ = 0.95, ε = 1e-7: `adadelta(1e-3, 0.95, 1e-7)`.

    References:
        Zeiler 2012, "ADADELTA: An Adaptive Learning Rate Method", Algorithm 1.
    """
    return build("adadelta", (scale_by_adadelta(rho, eps), scale_by_learning_rate(learning_rate)))


class RmsState(NamedTuple):
    """The state of `scale_by_rms`.

    Attributes:
        sq_avg: v, the moving average of the squared gradients.
        grad_avg: m, the moving average of the gradients when centered, else an `EmptyState`.
    """

    sq_avg: PyTree
    grad_avg: PyTree


@api("jnet.optim.scale_by_rms")
def scale_by_rms(decay: float = 0.9, eps: float = 1e-8, *, eps_in_sqrt: bool = False,
                 centered: bool = False) -> GradientTransformation:
    """v ← ρv + (1-ρ)g², (centered: m ← ρm + (1-ρ)g, v̄ = v - m²), u = g / (√v̄ + ε).

    Args:
        decay: ρ in [0, 1).
        eps: ε >= 0.
        eps_in_sqrt: put ε under the root.
        centered: subtract the squared mean gradient.

    Returns:
        A `GradientTransformation` with an `RmsState`.

    Raises:
        OptimizerError: a hyperparameter out of range.
    """
    check_decay_and_eps("decay", decay, 0.9, eps)

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


@api("jnet.optim.rmsprop")
def rmsprop(learning_rate: ScalarOrSchedule = 1e-3, decay: float = 0.9, eps: float = 1e-8, *,
            eps_in_sqrt: bool = False, centered: bool = False, momentum: float = 0.0,
            pytorch_placement: bool = False) -> Optimizer:
    """RMSprop, optionally centered, optionally with momentum.

        v_t = ρ v_{t-1} + (1-ρ) g_t²
        v̄_t = v_t                                (centered: m_t = ρ m_{t-1} + (1-ρ) g_t,
                                                    v̄_t = v_t - m_t²)
        r_t = g_t / (√v̄_t + ε)                    (`eps_in_sqrt=True`: g_t / √(v̄_t + ε))
        θ_t = θ_{t-1} - α_t r_t                   (momentum = 0)
        V_t = γ V_{t-1} + α_t r_t, θ_t = θ_{t-1} - V_t   (momentum γ > 0, Keras placement)
        b_t = γ b_{t-1} + r_t,  θ_t = θ_{t-1} - α_t b_t  (`pytorch_placement=True`)

    Where ε sits matters when ε is not tiny next to v (optax#532); optax's ε is inside the root.

    Args:
        learning_rate: α_t, a number >= 0 or a schedule `step -> lr`.
        decay: ρ in [0, 1), the decay of v (PyTorch's `alpha`, Keras's `rho`).
        eps: ε >= 0.
        eps_in_sqrt: put ε under the root (Keras, optax).
        centered: divide by the estimated variance instead of the second moment.
        momentum: γ in [0, 1); 0 keeps no velocity buffer.
        pytorch_placement: with momentum, keep α outside the buffer (PyTorch).

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: a hyperparameter out of range.

    Defaults:
        learning_rate=1e-3, decay=0.9 (Hinton), eps=1e-8 outside the root, momentum=0, v_0 = 0.

    PyTorch:
        `RMSprop(lr, alpha=decay, eps, momentum, centered)` + `pytorch_placement=True`
        PyTorch defaults lr = 1e-2, alpha = 0.99, ε = 1e-8 outside the root, α outside the
        momentum buffer: `rmsprop(1e-2, 0.99, pytorch_placement=True)`.

    Keras:
        `RMSprop(...)` = `rmsprop(1e-3, 0.9, 1e-7, eps_in_sqrt=True)`
        Keras: learning_rate = 1e-3, rho = 0.9, ε = 1e-7 inside the root, α inside the momentum
        buffer (the default placement here).

    References:
        Hinton 2012, "Neural Networks for Machine Learning", Coursera lecture 6e; Graves 2013,
        "Generating Sequences With Recurrent Neural Networks" (the centered form).
    """
    stats = scale_by_rms(decay, eps, eps_in_sqrt=eps_in_sqrt, centered=centered)
    if isinstance(momentum, int | float) and momentum == 0:  # no velocity buffer to carry
        return build("rmsprop", (stats, scale_by_learning_rate(learning_rate)))
    return build("rmsprop", (stats, trace_momentum(learning_rate, momentum,
                                                   pytorch_placement=pytorch_placement)))
