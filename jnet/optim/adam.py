"""Adam and its family: `adam` (with AMSGrad), `adamw`, `nadam`, `adamax`."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jnet.optim.base import (
    EPS_FIX,
    EmptyState,
    GradientTransformation,
    Optimizer,
    OptimizerError,
    PyTree,
    ScalarOrSchedule,
    api,
    bias_correction,
    check_hyperparameter,
    ema,
    float_step,
    zeros_like_state,
)
from jnet.optim.chain import build, scale_by_learning_rate
from jnet.optim.weight_decay import Mask, add_decayed_weights

BETA_FIX = "b1 and b2 are moving-average decay rates; 0.9 and 0.999 are usual."


def check_betas(b1: float, b2: float, eps: float, eps_root: float = 0.0) -> None:
    """β1, β2 in [0, 1), ε >= 0 and ε_root >= 0 (finite), the checks every Adam-like rule
    shares."""
    check_hyperparameter("b1", b1, 0.0, 1.0, high_open=True, fix=BETA_FIX)
    check_hyperparameter("b2", b2, 0.0, 1.0, high_open=True, fix=BETA_FIX)
    check_hyperparameter("eps", eps, fix=EPS_FIX)
    check_hyperparameter("eps_root", eps_root, fix="eps_root is usually 0 (1e-8 to "
                         "differentiate through the update).")


class AdamState(NamedTuple):
    """The state of `scale_by_adam`.

    Attributes:
        mu: m, the moving average of the gradients (shaped like the params).
        nu: v, the moving average of the squared gradients.
        nu_max: the running maximum of v with `amsgrad`, else an `EmptyState`.
    """

    mu: PyTree
    nu: PyTree
    nu_max: PyTree


@api("jnet.optim.scale_by_adam")
def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
                  *, amsgrad: bool = False) -> GradientTransformation:
    """u = m̂ / (√(v̂ + ε_root) + ε) with Adam's bias-corrected moments (see `adam`).

    Args:
        b1, b2: β1, β2 in [0, 1).
        eps, eps_root: ε, ε_root >= 0.
        amsgrad: use the running maximum of v.

    Returns:
        A `GradientTransformation` with an `AdamState`.

    Raises:
        OptimizerError: a hyperparameter out of range.
    """
    check_betas(b1, b2, eps, eps_root)
    if not isinstance(amsgrad, bool):
        raise OptimizerError(f"amsgrad must be True or False, got {type(amsgrad).__name__} "
                             f"{amsgrad!r}.")

    def init(params):
        return AdamState(zeros_like_state(params), zeros_like_state(params),
                         zeros_like_state(params) if amsgrad else EmptyState())

    def update(grads, state, params, step):
        m, v = ema(b1, state.mu, grads), ema(b2, state.nu, grads, 2)
        v_max = jax.tree.map(jnp.maximum, state.nu_max, v) if amsgrad else state.nu_max
        c1, c2 = bias_correction(b1, step), bias_correction(b2, step)
        u = jax.tree.map(lambda m, v: (m / c1) / (jnp.sqrt(v / c2 + eps_root) + eps),
                         m, v_max if amsgrad else v)
        return u, AdamState(m, v, v_max)

    return GradientTransformation(init, update)


@api("jnet.optim.adam")
def adam(learning_rate: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8, eps_root: float = 0.0, *, amsgrad: bool = False) -> Optimizer:
    """Adam, optionally AMSGrad.

        m_t = β1 m_{t-1} + (1-β1) g_t,      v_t = β2 v_{t-1} + (1-β2) g_t²
        m̂_t = m_t / (1-β1^t),               v̂_t = v_t / (1-β2^t)
        θ_t = θ_{t-1} - α_t m̂_t / (√(v̂_t + ε_root) + ε)
        AMSGrad: v_max,t = max(v_max,t-1, v_t) replaces v_t in v̂_t

    AMSGrad takes PyTorch's form: the maximum of the raw second moments, then bias-corrected.
    `eps_root` > 0 keeps the derivative of √ finite at 0 (meta-learning through the update).

    Args:
        learning_rate: α_t, a number >= 0 or a schedule `step -> lr`.
        b1: β1 in [0, 1), the decay of the first moment.
        b2: β2 in [0, 1), the decay of the second moment.
        eps: ε >= 0, added to √v̂.
        eps_root: ε_root >= 0, added to v̂ under the root.
        amsgrad: use AMSGrad's running maximum of v.

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: a hyperparameter out of range.

    Defaults:
        learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, eps_root=0 (the paper, PyTorch `Adam`,
        optax).

    PyTorch:
        `Adam(lr, betas=(b1, b2), eps, amsgrad)`
        Same defaults. PyTorch's `weight_decay=λ` (L2, added to g) is
        `chain(add_decayed_weights(λ), adam(lr))`.

    Keras:
        `Adam(learning_rate, beta_1, beta_2, epsilon, amsgrad)` (ε differs)
        Keras adds ε̂ = 1e-7 to √v_t with the bias correction folded into α: its effective ε is
        ε̂/√(1-β2^t), about 30 times ε̂ at t = 1; `adam(lr, b1, b2, eps=1e-7)` matches once
        v̂ ≫ ε̂².

    References:
        Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", Algorithm 1;
        Reddi et al. 2018, "On the Convergence of Adam and Beyond" (AMSGrad).
    """
    return build("adam", (scale_by_adam(b1, b2, eps, eps_root, amsgrad=amsgrad),
                          scale_by_learning_rate(learning_rate)))


@api("jnet.optim.adamw")
def adamw(learning_rate: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, weight_decay: float = 1e-2, mask: Mask = None, *,
          eps_root: float = 0.0, amsgrad: bool = False) -> Optimizer:
    """AdamW: Adam with decoupled weight decay.

        m̂_t, v̂_t as in `adam`
        θ_t = θ_{t-1} - α_t (m̂_t / (√(v̂_t + ε_root) + ε) + λ θ_{t-1})   (λ where the mask is True)

    `eps_root` > 0 keeps the derivative of √ finite at 0 (meta-learning through the update).
    As in PyTorch, Keras and optax, λ is multiplied by α_t (the paper multiplies it by the
    schedule multiplier only).

    Args:
        learning_rate: α_t, a number >= 0 or a schedule `step -> lr`.
        b1, b2: β1, β2 in [0, 1), as in `adam`.
        eps: ε >= 0.
        weight_decay: λ >= 0.
        mask: which arrays decay: None (all), a pytree of bools shaped like the params, a
            function `params -> that pytree` such as `weights_only`, or a function
            `(path, param) -> bool` of each array's key path (see `add_decayed_weights`);
            checked at `init`.
        eps_root: ε_root >= 0, added to v̂ under the root (keyword only).
        amsgrad: use AMSGrad's running maximum of v.

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: a hyperparameter out of range; at `init`, a mask of the wrong
            structure.

    Defaults:
        learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-2, eps_root=0, every
        array decayed (PyTorch `AdamW`).

    PyTorch:
        `AdamW(lr, betas, eps, weight_decay)`
        Same defaults; PyTorch param groups with `weight_decay=0` are `mask=weights_only`.

    Keras:
        `AdamW(learning_rate, weight_decay, ...)`
        Keras defaults weight_decay = 0.004 and ε = 1e-7 (ε as for `adam`):
        `adamw(lr, b1, b2, 1e-7, weight_decay=0.004)`.

    References:
        Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization".
    """
    return build("adamw", (scale_by_adam(b1, b2, eps, eps_root, amsgrad=amsgrad),
                           add_decayed_weights(weight_decay, mask),
                           scale_by_learning_rate(learning_rate)))


class NadamState(NamedTuple):
    """The state of `scale_by_nadam`.

    Attributes:
        mu: m, the moving average of the gradients.
        nu: v, the moving average of the squared gradients.
        mu_product: Π_{i<=t} μ_i, a scalar in JAX's default float dtype.
    """

    mu: PyTree
    nu: PyTree
    mu_product: jax.Array


@api("jnet.optim.scale_by_nadam")
def scale_by_nadam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   momentum_decay: float | None = 4e-3, *,
                   eps_root: float = 0.0) -> GradientTransformation:
    """The Nesterov-Adam direction (see `nadam`).

    Args:
        b1, b2: β1, β2 in [0, 1).
        eps: ε >= 0.
        momentum_decay: ψ >= 0, or None for a constant μ = β1.
        eps_root: ε_root >= 0, added to v̂ under the root.

    Returns:
        A `GradientTransformation` with a `NadamState`.

    Raises:
        OptimizerError: a hyperparameter out of range.
    """
    check_betas(b1, b2, eps, eps_root)
    if momentum_decay is not None:
        check_hyperparameter("momentum_decay", momentum_decay, fix="4e-3 is PyTorch's; 1.0 "
                             "is Keras's; None keeps μ = β1.")

    def mu_at(t):
        if momentum_decay is None:
            return jnp.asarray(b1)
        return b1 * (1.0 - 0.5 * jnp.power(0.96, t * momentum_decay))

    def init(params):
        return NadamState(zeros_like_state(params), zeros_like_state(params),
                          jnp.ones((), jnp.result_type(float)))

    def update(grads, state, params, step):
        t = float_step(step)
        mu_t, mu_next = mu_at(t), mu_at(t + 1)
        product = state.mu_product * mu_t
        m, v = ema(b1, state.mu, grads), ema(b2, state.nu, grads, 2)
        c2 = bias_correction(b2, step)
        u = jax.tree.map(
            lambda g, m, v: ((1 - mu_t) / (1 - product) * g
                             + mu_next / (1 - product * mu_next) * m)
            / (jnp.sqrt(v / c2 + eps_root) + eps),
            grads, m, v)
        return u, NadamState(m, v, product)

    return GradientTransformation(init, update)


@api("jnet.optim.nadam")
def nadam(learning_rate: ScalarOrSchedule = 2e-3, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, momentum_decay: float | None = 4e-3, *,
          eps_root: float = 0.0) -> Optimizer:
    """NAdam: Adam with Nesterov momentum.

        μ_t = β1 (1 - ½·0.96^(t ψ))          (momentum_decay=None: μ_t = β1)
        m_t = β1 m_{t-1} + (1-β1) g_t,       v_t = β2 v_{t-1} + (1-β2) g_t²
        m̂_t = μ_{t+1} m_t / (1 - Π_{i<=t+1} μ_i) + (1-μ_t) g_t / (1 - Π_{i<=t} μ_i)
        θ_t = θ_{t-1} - α_t m̂_t / (√(v_t / (1-β2^t) + ε_root) + ε)

    `eps_root` > 0 keeps the derivative of √ finite at 0 (meta-learning through the update).

    Args:
        learning_rate: α_t, a number >= 0 or a schedule `step -> lr`.
        b1, b2: β1, β2 in [0, 1).
        eps: ε >= 0.
        momentum_decay: ψ >= 0, the momentum schedule's decay; None for a constant μ = β1
            (optax's `nadam`).
        eps_root: ε_root >= 0, added to v̂ under the root (keyword only).

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: a hyperparameter out of range.

    Defaults:
        learning_rate=2e-3, b1=0.9, b2=0.999, eps=1e-8, momentum_decay=4e-3, eps_root=0
        (PyTorch `NAdam`).

    PyTorch:
        `NAdam(lr, betas, eps, momentum_decay)`
        Same arguments and defaults; `decoupled_weight_decay=True, weight_decay=λ` is
        `chain(scale_by_nadam(...), add_decayed_weights(λ), scale_by_learning_rate(lr))`.

    Keras:
        `Nadam(...)` = `nadam(1e-3, eps=1e-7, momentum_decay=1.0)`
        Keras 3 `Nadam` uses μ_t = β1 (1 - ½·0.96^t), i.e. ψ = 1, with learning_rate = 1e-3
        and ε = 1e-7.

    References:
        Dozat 2016, "Incorporating Nesterov Momentum into Adam", Algorithm 2.
    """
    return build("nadam", (scale_by_nadam(b1, b2, eps, momentum_decay, eps_root=eps_root),
                           scale_by_learning_rate(learning_rate)))


class AdamaxState(NamedTuple):
    """The state of `scale_by_adamax`.

    Attributes:
        mu: m, the moving average of the gradients.
        inf_norm: u, the exponentially weighted infinity norm of the gradients.
    """

    mu: PyTree
    inf_norm: PyTree


@api("jnet.optim.scale_by_adamax")
def scale_by_adamax(b1: float = 0.9, b2: float = 0.999,
                    eps: float = 1e-8) -> GradientTransformation:
    """u = m_t / ((1-β1^t)(u_t + ε)), u_t = max(β2 u_{t-1}, |g_t|) (see `adamax`).

    Args:
        b1, b2: β1, β2 in [0, 1).
        eps: ε >= 0.

    Returns:
        A `GradientTransformation` with an `AdamaxState`.

    Raises:
        OptimizerError: a hyperparameter out of range.
    """
    check_betas(b1, b2, eps)

    def init(params):
        return AdamaxState(zeros_like_state(params), zeros_like_state(params))

    def update(grads, state, params, step):
        m = ema(b1, state.mu, grads)
        u = jax.tree.map(lambda u, g: jnp.maximum(b2 * u, jnp.abs(g)), state.inf_norm, grads)
        c1 = bias_correction(b1, step)
        return jax.tree.map(lambda m, u: m / (c1 * (u + eps)), m, u), AdamaxState(m, u)

    return GradientTransformation(init, update)


@api("jnet.optim.adamax")
def adamax(learning_rate: ScalarOrSchedule = 2e-3, b1: float = 0.9, b2: float = 0.999,
           eps: float = 1e-8) -> Optimizer:
    """AdaMax, Adam under the infinity norm.

        m_t = β1 m_{t-1} + (1-β1) g_t,    u_t = max(β2 u_{t-1}, |g_t|)
        θ_t = θ_{t-1} - α_t m_t / ((1-β1^t)(u_t + ε))

    ε guards u = 0 (the paper has none; Keras adds it to u as here).

    Args:
        learning_rate: α_t, a number >= 0 or a schedule `step -> lr`.
        b1, b2: β1, β2 in [0, 1).
        eps: ε >= 0.

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: a hyperparameter out of range.

    Defaults:
        learning_rate=2e-3, b1=0.9, b2=0.999 (the paper), eps=1e-8.

    PyTorch:
        `Adamax(lr, betas, eps)` (ε inside the max)
        PyTorch `Adamax` (lr = 2e-3) and optax put ε inside the max:
        u_t = max(β2 u_{t-1}, |g_t| + ε); the two agree once |g| ≫ ε.

    Keras:
        `Adamax(learning_rate, beta_1, beta_2, epsilon)`
        Keras defaults learning_rate = 1e-3, ε = 1e-7: `adamax(1e-3, eps=1e-7)`.

    References:
        Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", Algorithm 2.
    """
    return build("adamax", (scale_by_adamax(b1, b2, eps), scale_by_learning_rate(learning_rate)))
