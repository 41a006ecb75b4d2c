"""Lion, the sign-momentum rule found by program search."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jnet.optim.adam import BETA_FIX
from jnet.optim.base import (
    GradientTransformation,
    Optimizer,
    PyTree,
    ScalarOrSchedule,
    api,
    check_hyperparameter,
    ema,
    zeros_like_state,
)
from jnet.optim.chain import build, scale_by_learning_rate
from jnet.optim.weight_decay import Mask, add_decayed_weights


class LionState(NamedTuple):
    """The state of `scale_by_lion`.

    Attributes:
        mu: m, the moving average of the gradients (decay β2).
    """

    mu: PyTree


@api("jnet.optim.scale_by_lion")
def scale_by_lion(b1: float = 0.9, b2: float = 0.99) -> GradientTransformation:
    """u = sign(β1 m_{t-1} + (1-β1) g_t), then m_t = β2 m_{t-1} + (1-β2) g_t (see `lion`).

    Args:
        b1: β1 in [0, 1), the interpolation of the update direction.
        b2: β2 in [0, 1), the decay of the momentum.

    Returns:
        A `GradientTransformation` with a `LionState`.

    Raises:
        OptimizerError: a beta out of range.
    """
    check_hyperparameter("b1", b1, 0.0, 1.0, high_open=True, fix=BETA_FIX)
    check_hyperparameter("b2", b2, 0.0, 1.0, high_open=True, fix=BETA_FIX)

    def update(grads, state, params, step):
        u = jax.tree.map(lambda m, g: jnp.sign(b1 * m + (1 - b1) * g), state.mu, grads)
        m = ema(b2, state.mu, grads)
        return u, LionState(m)

    return GradientTransformation(lambda p: LionState(zeros_like_state(p)), update)


@api("jnet.optim.lion")
def lion(learning_rate: ScalarOrSchedule = 1e-4, b1: float = 0.9, b2: float = 0.99,
         weight_decay: float = 0.0, mask: Mask = None) -> Optimizer:
    """Lion, the sign-momentum rule found by program search.

        c_t = β1 m_{t-1} + (1-β1) g_t
        θ_t = θ_{t-1} - α_t (sign(c_t) + λ θ_{t-1})       (λ only where the mask is True)
        m_t = β2 m_{t-1} + (1-β2) g_t

    Use a rate 3-10x smaller than AdamW's and λ 3-10x larger.

    Args:
        learning_rate: α_t, a number >= 0 or a schedule `step -> lr`.
        b1: β1 in [0, 1).
        b2: β2 in [0, 1).
        weight_decay: λ >= 0, decoupled as in `adamw`.
        mask: which arrays decay, as in `adamw` (checked at `init`).

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: a hyperparameter out of range; at `init`, a mask of the wrong
            structure.

    Defaults:
        learning_rate=1e-4 (the paper: 3-10x smaller than AdamW's), b1=0.9, b2=0.99,
        weight_decay=0.

    PyTorch:
        none (lion-pytorch `Lion(lr, betas, weight_decay)`)
        PyTorch has no built-in Lion; lion-pytorch's `Lion(lr=1e-4, betas=(0.9, 0.99),
        weight_decay)` is this rule.

    Keras:
        `Lion(learning_rate, beta_1, beta_2)`
        Keras defaults learning_rate = 1e-3, same betas, `weight_decay=` decoupled: `lion(1e-3)`.

    References:
        Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2.
    """
    return build("lion", (scale_by_lion(b1, b2), add_decayed_weights(weight_decay, mask),
                          scale_by_learning_rate(learning_rate)))
