"""Adam and its family: `adam` (with AMSGrad), `adamw`, `nadam`, `adamax`."""

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
    bias_correction,
    check_hyperparameter,
    ema,
    float_step,
    zeros_like_state,
)
from jnet.optim.chain import chain, scale_by_learning_rate
from jnet.optim.weight_decay import Mask, add_decayed_weights


def _check_betas(where: str, b1: float, b2: float, eps: float) -> None:
    check_hyperparameter(where, "b1", b1, 0.0, 1.0, high_open=True)
    check_hyperparameter(where, "b2", b2, 0.0, 1.0, high_open=True)
    check_hyperparameter(where, "eps", eps, 0.0, float("inf"))


class AdamState(NamedTuple):
    mu: PyTree
    nu: PyTree
    nu_max: PyTree  # EmptyState unless amsgrad


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
                  *, amsgrad: bool = False) -> GradientTransformation:
    """u = m̂ / (√(v̂ + ε_root) + ε) with Adam's bias-corrected moments (see `adam`)."""
    _check_betas("adam", b1, b2, eps)
    check_hyperparameter("adam", "eps_root", eps_root, 0.0, float("inf"))

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


def adam(learning_rate: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8, eps_root: float = 0.0, *, amsgrad: bool = False) -> Optimizer:
    """Adam (Kingma & Ba 2015, Algorithm 1), optionally AMSGrad (Reddi et al. 2018).

        m_t = β1 m_{t-1} + (1-β1) g_t,      v_t = β2 v_{t-1} + (1-β2) g_t²
        m̂_t = m_t / (1-β1^t),               v̂_t = v_t / (1-β2^t)
        θ_t = θ_{t-1} - α_t m̂_t / (√(v̂_t + ε_root) + ε)
    AMSGrad: v_max,t = max(v_max,t-1, v_t) replaces v_t in v̂_t (PyTorch's form: the maximum of
    the raw second moments, then bias-corrected).

    Defaults: α = 1e-3, β1 = 0.9, β2 = 0.999, ε = 1e-8, ε_root = 0 (the paper, PyTorch `Adam`,
    optax). `eps_root` > 0 keeps the derivative of √ finite at 0 (meta-learning through the
    update). Keras `Adam` uses ε̂ = 1e-7 added to √v_t with the bias correction folded into α:
    its effective ε is ε̂/√(1-β2^t) (about 30 times ε̂ at t = 1); PyTorch's
    `weight_decay=` (L2, added to g) is `chain(add_decayed_weights(wd), adam(lr))`.
    """
    return chain(scale_by_adam(b1, b2, eps, eps_root, amsgrad=amsgrad),
                 scale_by_learning_rate(learning_rate))


def adamw(learning_rate: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, weight_decay: float = 1e-2, mask: Mask = None, *,
          amsgrad: bool = False) -> Optimizer:
    """AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019).

        θ_t = θ_{t-1} - α_t (m̂_t / (√v̂_t + ε) + λ θ_{t-1})      (where the mask is True)

    Defaults: α = 1e-3, β1 = 0.9, β2 = 0.999, ε = 1e-8, λ = 1e-2, every array decayed (PyTorch
    `AdamW`). Pass `mask=weights_only` to spare biases and normalisation parameters (or any
    pytree / function of bools). As in PyTorch, Keras and optax, λ is multiplied by α_t (the
    paper multiplies it by the schedule multiplier only). Keras `AdamW`: weight_decay = 0.004,
    ε = 1e-7 (see `adam`).
    """
    return chain(scale_by_adam(b1, b2, eps, amsgrad=amsgrad),
                 add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))


class NadamState(NamedTuple):
    mu: PyTree
    nu: PyTree
    mu_product: jax.Array  # Π_{i<=t} μ_i, a scalar in JAX's default float dtype


def scale_by_nadam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   momentum_decay: float | None = 4e-3) -> GradientTransformation:
    """The Nesterov-Adam direction (see `nadam`)."""
    _check_betas("nadam", b1, b2, eps)

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
                             + mu_next / (1 - product * mu_next) * m) / (jnp.sqrt(v / c2) + eps),
            grads, m, v)
        return u, NadamState(m, v, product)

    return GradientTransformation(init, update)


def nadam(learning_rate: ScalarOrSchedule = 2e-3, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, momentum_decay: float | None = 4e-3) -> Optimizer:
    """NAdam: Adam with Nesterov momentum (Dozat 2016, Algorithm 2).

        μ_t = β1 (1 - ½·0.96^(t ψ))          (momentum_decay=None: μ_t = β1)
        m_t = β1 m_{t-1} + (1-β1) g_t,       v_t = β2 v_{t-1} + (1-β2) g_t²
        m̂_t = μ_{t+1} m_t / (1 - Π_{i<=t+1} μ_i) + (1-μ_t) g_t / (1 - Π_{i<=t} μ_i)
        θ_t = θ_{t-1} - α_t m̂_t / (√(v_t / (1-β2^t)) + ε)

    Defaults: α = 2e-3, β1 = 0.9, β2 = 0.999, ε = 1e-8, ψ = 4e-3 (PyTorch `NAdam`, same
    arguments). Keras 3 `Nadam` uses μ_t = β1 (1 - ½·0.96^t), i.e. ψ = 1, with
    learning_rate = 1e-3, ε = 1e-7: `nadam(1e-3, eps=1e-7, momentum_decay=1.0)`.
    `momentum_decay=None` gives optax's `nadam` (constant μ = β1).
    """
    return chain(scale_by_nadam(b1, b2, eps, momentum_decay), scale_by_learning_rate(learning_rate))


class AdamaxState(NamedTuple):
    mu: PyTree
    inf_norm: PyTree


def scale_by_adamax(b1: float = 0.9, b2: float = 0.999,
                    eps: float = 1e-8) -> GradientTransformation:
    """u = m_t / ((1-β1^t)(u_t + ε)), u_t = max(β2 u_{t-1}, |g_t|) (see `adamax`)."""
    _check_betas("adamax", b1, b2, eps)

    def init(params):
        return AdamaxState(zeros_like_state(params), zeros_like_state(params))

    def update(grads, state, params, step):
        m = ema(b1, state.mu, grads)
        u = jax.tree.map(lambda u, g: jnp.maximum(b2 * u, jnp.abs(g)), state.inf_norm, grads)
        c1 = bias_correction(b1, step)
        return jax.tree.map(lambda m, u: m / (c1 * (u + eps)), m, u), AdamaxState(m, u)

    return GradientTransformation(init, update)


def adamax(learning_rate: ScalarOrSchedule = 2e-3, b1: float = 0.9, b2: float = 0.999,
           eps: float = 1e-8) -> Optimizer:
    """AdaMax, Adam under the infinity norm (Kingma & Ba 2015, Algorithm 2).

        m_t = β1 m_{t-1} + (1-β1) g_t,    u_t = max(β2 u_{t-1}, |g_t|)
        θ_t = θ_{t-1} - α_t m_t / ((1-β1^t)(u_t + ε))

    Defaults: α = 2e-3, β1 = 0.9, β2 = 0.999 (the paper), ε = 1e-8 guards u = 0 (the paper has
    none; Keras adds it to u as here). PyTorch `Adamax` (lr = 2e-3) and optax put ε inside the
    max: u_t = max(β2 u_{t-1}, |g_t| + ε). Keras `Adamax`: learning_rate = 1e-3, ε = 1e-7.
    """
    return chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(learning_rate))
