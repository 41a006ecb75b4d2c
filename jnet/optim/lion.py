"""Lion, the sign-momentum rule found by program search."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jnet.optim.base import (
    GradientTransformation,
    Optimizer,
    PyTree,
    ScalarOrSchedule,
    check_hyperparameter,
    ema,
    zeros_like_state,
)
from jnet.optim.chain import chain, scale_by_learning_rate
from jnet.optim.weight_decay import Mask, add_decayed_weights


class LionState(NamedTuple):
    mu: PyTree


def scale_by_lion(b1: float = 0.9, b2: float = 0.99) -> GradientTransformation:
    """u = sign(β1 m_{t-1} + (1-β1) g_t), then m_t = β2 m_{t-1} + (1-β2) g_t."""
    check_hyperparameter("lion", "b1", b1, 0.0, 1.0)
    check_hyperparameter("lion", "b2", b2, 0.0, 1.0)

    def update(grads, state, params, step):
        u = jax.tree.map(lambda m, g: jnp.sign(b1 * m + (1 - b1) * g), state.mu, grads)
        m = ema(b2, state.mu, grads)
        return u, LionState(m)

    return GradientTransformation(lambda p: LionState(zeros_like_state(p)), update)


def lion(learning_rate: ScalarOrSchedule = 1e-4, b1: float = 0.9, b2: float = 0.99,
         weight_decay: float = 0.0, mask: Mask = None) -> Optimizer:
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2).

        c_t = β1 m_{t-1} + (1-β1) g_t
        θ_t = θ_{t-1} - α_t (sign(c_t) + λ θ_{t-1})
        m_t = β2 m_{t-1} + (1-β2) g_t

    Defaults: α = 1e-4 (the paper: 3-10x smaller than AdamW's), β1 = 0.9, β2 = 0.99, λ = 0
    (decoupled, masked like `adamw`). PyTorch has no built-in Lion (lion-pytorch: lr = 1e-4,
    same betas). Keras `Lion`: learning_rate = 1e-3, same betas, `weight_decay=` decoupled.
    """
    return chain(scale_by_lion(b1, b2), add_decayed_weights(weight_decay, mask),
                 scale_by_learning_rate(learning_rate))
