"""Gradient descent and its momentum forms: `sgd`, `momentum`, `nesterov`."""

from __future__ import annotations

from typing import NamedTuple

import jax

from jnet.optim.base import (
    GradientTransformation,
    Optimizer,
    PyTree,
    ScalarOrSchedule,
    as_schedule,
    check_hyperparameter,
    learning_rate_at,
    zeros_like_state,
)
from jnet.optim.chain import chain, scale_by_learning_rate


class VelocityState(NamedTuple):
    velocity: PyTree


def trace_momentum(learning_rate: ScalarOrSchedule, momentum: float = 0.9, *,
                   nesterov: bool = False, pytorch_placement: bool = False,
                   where: str = "trace_momentum") -> GradientTransformation:
    """Heavy-ball or Nesterov momentum, learning rate included (see `momentum`, `nesterov`).

    Textbook placement:  V ← γV + α_t g,  u = -V              (Nesterov: u = -(α_t g + γV))
    PyTorch placement:   b ← γb + g,      u = -α_t b          (Nesterov: u = -α_t (g + γb))
    """
    schedule = as_schedule(where, learning_rate)
    check_hyperparameter(where, "momentum", momentum, 0.0, 1.0, high_open=True)

    def update(grads, state, params, step):
        lr = learning_rate_at(schedule, step)
        inside, outside = (1.0, lr) if pytorch_placement else (lr, 1.0)
        velocity = jax.tree.map(lambda v, g: momentum * v + inside * g, state.velocity, grads)
        if nesterov:
            direction = jax.tree.map(lambda v, g: inside * g + momentum * v, velocity, grads)
        else:
            direction = velocity
        return jax.tree.map(lambda d: -outside * d, direction), VelocityState(velocity)

    return GradientTransformation(lambda p: VelocityState(zeros_like_state(p)), update, schedule)


def sgd(learning_rate: ScalarOrSchedule = 1e-3) -> Optimizer:
    """Gradient descent: θ_t = θ_{t-1} - α_t g_t.

    The same rule is full-batch gradient descent, stochastic (per-example) gradient descent or
    mini-batch SGD: only the batch that `g_t` was computed on differs.

        opt = sgd(0.1); state = opt.init(params)
        g = jax.grad(loss)(params, x, y)                  # full batch: GD
        g = jax.grad(loss)(params, x[i:i+1], y[i:i+1])    # one example: SGD
        g = jax.grad(loss)(params, x[i:i+32], y[i:i+32])  # 32 examples: mini-batch SGD
        params, state = opt.update(g, state, params)

    Defaults: α = 1e-3 (PyTorch `torch.optim.SGD(lr=1e-3)`; Keras `SGD` defaults to 0.01).
    """
    return chain(scale_by_learning_rate(as_schedule("sgd", learning_rate)))


def momentum(learning_rate: ScalarOrSchedule = 1e-3, momentum: float = 0.9, *,
             pytorch_placement: bool = False) -> Optimizer:
    """Heavy-ball momentum (Polyak 1964; Sutskever et al. 2013).

    Textbook form (default; also Keras `SGD(momentum=)` and MATLAB sgdm):
        V_t = γ V_{t-1} + α_t g_t,    θ_t = θ_{t-1} - V_t
    `pytorch_placement=True` (PyTorch `SGD(momentum=)`, optax `sgd(momentum=)`):
        b_t = γ b_{t-1} + g_t,        θ_t = θ_{t-1} - α_t b_t
    With a constant α the two are identical (V = α b). With a schedule they differ: the
    textbook form weights each past gradient by the rate of its own step, PyTorch's rescales the
    whole history by the current rate. Defaults: α = 1e-3, γ = 0.9, V_0 = 0. PyTorch's first
    step sets b_1 = g_1 (same as from b_0 = 0 when dampening is 0).
    """
    return chain(trace_momentum(learning_rate, momentum, pytorch_placement=pytorch_placement,
                                where="momentum"))


def nesterov(learning_rate: ScalarOrSchedule = 1e-3, momentum: float = 0.9, *,
             pytorch_placement: bool = False) -> Optimizer:
    """Nesterov accelerated gradient (Nesterov 1983; Sutskever et al. 2013), reformulated so it
    needs only the gradient at the stored parameters.

    Textbook form, gradient at the look-ahead point:
        V_t = γ V_{t-1} + α_t ∇J(θ_{t-1} - γ V_{t-1}),    θ_t = θ_{t-1} - V_t
    Store φ = θ - γV (the look-ahead point) instead of θ. Then g_t = ∇J(φ_{t-1}) and
        φ_t = θ_t - γV_t = φ_{t-1} + γV_{t-1} - V_t - γV_t = φ_{t-1} - α_t g_t - γ V_t,
    since γV_{t-1} - V_t = -α_t g_t. So this optimizer keeps V_t = γV_{t-1} + α_t g_t and
    updates φ_t = φ_{t-1} - (α_t g_t + γ V_t): the parameters it holds are the LOOK-AHEAD point
    φ_t = θ_t - γV_t (equal to θ at the start, V_0 = 0), as in PyTorch, optax and Keras.

    `pytorch_placement=True` (PyTorch `SGD(momentum=, nesterov=True)`, optax):
        b_t = γ b_{t-1} + g_t,    φ_t = φ_{t-1} - α_t (g_t + γ b_t)
    identical for a constant α. Defaults: α = 1e-3, γ = 0.9. Keras `SGD(nesterov=True)` uses
    the textbook placement.
    """
    return chain(trace_momentum(learning_rate, momentum, nesterov=True,
                                pytorch_placement=pytorch_placement, where="nesterov"))
