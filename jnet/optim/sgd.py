"""Gradient descent and its momentum forms: `sgd`, `momentum`, `nesterov`."""

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
    learning_rate_at,
    zeros_like_state,
)
from jnet.optim.chain import build, scale_by_learning_rate

_MOMENTUM_FIX = "momentum is the velocity's decay rate; 0.9 is usual (0 disables it)."


class VelocityState(NamedTuple):
    """The state of `trace_momentum` (`momentum`, `nesterov`, `rmsprop` with momentum).

    Attributes:
        velocity: V (textbook placement, the rate inside) or b (PyTorch placement), shaped
            like the params, V_0 = 0.
    """

    velocity: PyTree


@api("jnet.optim.trace_momentum")
def trace_momentum(learning_rate: ScalarOrSchedule, momentum: float = 0.9, *,
                   nesterov: bool = False,
                   pytorch_placement: bool = False) -> GradientTransformation:
    """Heavy-ball or Nesterov momentum, learning rate included (see `momentum`, `nesterov`).

    Textbook placement:  V ← γV + α_t g,  u = -V              (Nesterov: u = -(α_t g + γV))
    PyTorch placement:   b ← γb + g,      u = -α_t b          (Nesterov: u = -α_t (g + γb))

    Args:
        learning_rate: α, a number >= 0 or a schedule `step -> lr`.
        momentum: γ in [0, 1).
        nesterov: apply the Nesterov look-ahead.
        pytorch_placement: keep the rate outside the buffer (PyTorch) instead of inside.

    Returns:
        A `GradientTransformation` with a `VelocityState`.

    Raises:
        OptimizerError: a bad learning rate or momentum.
    """
    schedule = as_schedule(learning_rate)
    check_hyperparameter("momentum", momentum, 0.0, 1.0, high_open=True, fix=_MOMENTUM_FIX)

    def update(grads, state, params, step):
        lr = learning_rate_at(schedule, step)

        def rates(g):
            # (inside, outside) the buffer, the rate in the gradient's dtype so the velocity
            # keeps its dtype (a float64 schedule must not widen float32 state).
            rate = lr.astype(jnp.result_type(g))
            return (1.0, rate) if pytorch_placement else (rate, 1.0)

        velocity = jax.tree.map(lambda v, g: momentum * v + rates(g)[0] * g, state.velocity,
                                grads)
        if nesterov:
            direction = jax.tree.map(lambda v, g: rates(g)[0] * g + momentum * v, velocity,
                                     grads)
        else:
            direction = velocity
        return (jax.tree.map(lambda d, g: -rates(g)[1] * d, direction, grads),
                VelocityState(velocity))

    return GradientTransformation(lambda p: VelocityState(zeros_like_state(p)), update, schedule)


@api("jnet.optim.sgd")
def sgd(learning_rate: ScalarOrSchedule = 1e-3) -> Optimizer:
    """Gradient descent: full-batch, stochastic or mini-batch.

        θ_t = θ_{t-1} - α_t g_t

    The same rule is full-batch gradient descent, stochastic (per-example) gradient descent or
    mini-batch SGD: only the batch that `g_t` was computed on differs (`jnet.fit(batch_size=)`
    picks it).

        opt = sgd(0.1); state = opt.init(params)
        g = jax.grad(loss)(params, x, y)                  # full batch: GD
        g = jax.grad(loss)(params, x[i:i+1], y[i:i+1])    # one example: SGD
        g = jax.grad(loss)(params, x[i:i+32], y[i:i+32])  # 32 examples: mini-batch SGD
        params, state = opt.update(g, state, params)

    Args:
        learning_rate: α_t, a number >= 0, a scalar array (a tracer under `jax.vmap` passes
            unchecked) or a schedule `step -> lr`.

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: a negative, NaN, infinite or non-numeric learning rate.

    Defaults:
        learning_rate=1e-3 (PyTorch's `SGD` example rate; Keras defaults to 0.01).

    PyTorch:
        `SGD(lr)`
        `torch.optim.SGD(params, lr)` is `sgd(lr)`; its `weight_decay=λ` (L2) is
        `chain(add_decayed_weights(λ), sgd(lr))`.

    Keras:
        `SGD(learning_rate)`
        `keras.optimizers.SGD(learning_rate)` is `sgd(learning_rate)` (Keras default 0.01).

    References:
        Robbins & Monro 1951, "A Stochastic Approximation Method".
    """
    return build("sgd", (scale_by_learning_rate(learning_rate),))


@api("jnet.optim.momentum")
def momentum(learning_rate: ScalarOrSchedule = 1e-3, momentum: float = 0.9, *,
             pytorch_placement: bool = False) -> Optimizer:
    """Heavy-ball momentum.

        V_t = γ V_{t-1} + α_t g_t,    θ_t = θ_{t-1} - V_t          (textbook, the default)
        b_t = γ b_{t-1} + g_t,        θ_t = θ_{t-1} - α_t b_t      (pytorch_placement=True)

    With a constant α the two are identical (V = α b). With a schedule they differ: the
    textbook form weights each past gradient by the rate of its own step, PyTorch's rescales the
    whole history by the current rate.

    Args:
        learning_rate: α_t, a number >= 0 or a schedule `step -> lr`.
        momentum: γ in [0, 1).
        pytorch_placement: the rate outside the buffer, as PyTorch and optax.

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: a bad learning rate or momentum.

    Defaults:
        learning_rate=1e-3, momentum=0.9, V_0 = 0.

    PyTorch:
        `SGD(lr, momentum)` + `pytorch_placement=True`
        `SGD(lr, momentum=γ)` is `momentum(lr, γ, pytorch_placement=True)` (dampening 0; jnet
        has no dampening). PyTorch's first step sets b_1 = g_1, the same as from b_0 = 0.

    Keras:
        `SGD(learning_rate, momentum)`
        `SGD(learning_rate, momentum=γ)` is `momentum(lr, γ)` (textbook placement, as MATLAB
        sgdm).

    References:
        Polyak 1964, "Some methods of speeding up the convergence of iteration methods";
        Sutskever et al. 2013, "On the importance of initialization and momentum in deep
        learning".
    """
    return build("momentum", (trace_momentum(learning_rate, momentum,
                                             pytorch_placement=pytorch_placement),))


@api("jnet.optim.nesterov")
def nesterov(learning_rate: ScalarOrSchedule = 1e-3, momentum: float = 0.9, *,
             pytorch_placement: bool = False) -> Optimizer:
    """Nesterov accelerated gradient, written to need only the gradient at the stored params.

        V_t = γ V_{t-1} + α_t ∇J(θ_{t-1} - γ V_{t-1}),   θ_t = θ_{t-1} - V_t     (textbook)
        g_t = ∇J(φ_{t-1}),  V_t = γ V_{t-1} + α_t g_t,  φ_t = φ_{t-1} - (α_t g_t + γ V_t)
        b_t = γ b_{t-1} + g_t,  φ_t = φ_{t-1} - α_t (g_t + γ b_t)     (pytorch_placement=True)

    Storing φ = θ - γV (the look-ahead point) instead of θ, γV_{t-1} - V_t = -α_t g_t gives
    φ_t = φ_{t-1} - α_t g_t - γ V_t. The parameters this optimizer holds are the LOOK-AHEAD
    point φ_t = θ_t - γV_t (equal to θ at the start, V_0 = 0), as in PyTorch, optax and Keras.

    Args:
        learning_rate: α_t, a number >= 0 or a schedule `step -> lr`.
        momentum: γ in [0, 1).
        pytorch_placement: the rate outside the buffer, as PyTorch and optax.

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: a bad learning rate or momentum.

    Defaults:
        learning_rate=1e-3, momentum=0.9.

    PyTorch:
        `SGD(lr, momentum, nesterov=True)`
        `SGD(lr, momentum=γ, nesterov=True)` is `nesterov(lr, γ, pytorch_placement=True)`;
        identical to the default placement for a constant rate.

    Keras:
        `SGD(learning_rate, momentum, nesterov=True)`
        `SGD(learning_rate, momentum=γ, nesterov=True)` is `nesterov(lr, γ)` (textbook
        placement).

    References:
        Nesterov 1983, "A method for solving the convex programming problem with convergence
        rate O(1/k²)"; Sutskever et al. 2013 (the momentum form).
    """
    return build("nesterov", (trace_momentum(learning_rate, momentum, nesterov=True,
                                             pytorch_placement=pytorch_placement),))
