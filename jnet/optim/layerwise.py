"""Layer-wise trust ratios for large batches: `lamb` (Adam) and `lars` (momentum SGD)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jnet.optim.adam import scale_by_adam
from jnet.optim.base import (
    EmptyState,
    GradientTransformation,
    Optimizer,
    ScalarOrSchedule,
    api,
    check_hyperparameter,
)
from jnet.optim.chain import build, scale_by_learning_rate
from jnet.optim.masks import Mask, resolve_mask
from jnet.optim.sgd import trace_momentum
from jnet.optim.weight_decay import add_decayed_weights


@api("jnet.optim.scale_by_trust_ratio")
def scale_by_trust_ratio(trust_coefficient: float = 1.0, eps: float = 0.0,
                         mask: Mask = None) -> GradientTransformation:
    """u ← u · η ‖θ‖ / (‖u‖ + ε) per array (1 where ‖θ‖ or ‖u‖ is 0, or outside the mask).

    Args:
        trust_coefficient: η > 0.
        eps: ε >= 0.
        mask: which arrays are rescaled (None: all), as in `add_decayed_weights`.

    Returns:
        A stateless `GradientTransformation`.

    Raises:
        OptimizerError: a hyperparameter out of range; at `init`, a bad mask.
    """
    check_hyperparameter("trust_coefficient", trust_coefficient, low_open=True,
                         fix="η: 1 for LAMB, 0.001 for LARS.")
    check_hyperparameter("eps", eps, fix="0 is usual.")

    def init(params):
        resolve_mask(mask, params)
        return EmptyState()

    def update(updates, state, params, step):
        def one(u, p, on):
            p_norm, u_norm = jnp.linalg.norm(jnp.ravel(p)), jnp.linalg.norm(jnp.ravel(u))
            ratio = trust_coefficient * p_norm / (u_norm + eps)
            return u * jnp.where((p_norm == 0) | (u_norm == 0) | ~jnp.asarray(on), 1.0, ratio)

        return jax.tree.map(one, updates, params, resolve_mask(mask, params)), state

    return GradientTransformation(init, update)


@api("jnet.optim.lamb")
def lamb(learning_rate: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-6, eps_root: float = 0.0, weight_decay: float = 0.0,
         mask: Mask = None) -> Optimizer:
    """LAMB: AdamW's step rescaled per array by the trust ratio ‖θ‖ / ‖step‖.

        m̂_t, v̂_t as in `adam`
        r_t = m̂_t / (√(v̂_t + ε_root) + ε) + λ θ_{t-1}      (λ only where the mask is True)
        θ_t = θ_{t-1} - α_t (‖θ_{t-1}‖ / ‖r_t‖) r_t         (norms per array; ratio 1 if one is 0)

    Args:
        learning_rate: α_t, a number >= 0 or a schedule `step -> lr`.
        b1, b2: β1, β2 in [0, 1).
        eps: ε >= 0.
        eps_root: ε_root >= 0, added to v̂ under the root.
        weight_decay: λ >= 0.
        mask: which arrays decay, as in `adamw` (checked at `init`).

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: a hyperparameter out of range; at `init`, a bad mask.

    Defaults:
        learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-6, eps_root=0, weight_decay=0 (optax
        `lamb`; the paper's φ is the identity).

    PyTorch:
        none
        PyTorch has no built-in LAMB (apex `FusedLAMB` clips the gradient norm first).

    Keras:
        `Lamb(learning_rate, beta_1, beta_2, epsilon)`
        Keras 3 `Lamb` defaults learning_rate = 1e-3 and ε = 1e-6, and has no decay.

    References:
        You et al. 2020, "Large Batch Optimization for Deep Learning: Training BERT in 76
        minutes", Algorithm 2.
    """
    return build("lamb", (scale_by_adam(b1, b2, eps, eps_root),
                          add_decayed_weights(weight_decay, mask), scale_by_trust_ratio(),
                          scale_by_learning_rate(learning_rate)))


@api("jnet.optim.lars")
def lars(learning_rate: ScalarOrSchedule = 1.0, weight_decay: float = 0.0,
         trust_coefficient: float = 1e-3, eps: float = 0.0, momentum: float = 0.9, *,
         nesterov: bool = False, weight_decay_mask: Mask = None,
         trust_ratio_mask: Mask = None) -> Optimizer:
    """LARS: momentum SGD whose step is rescaled per array by η ‖θ‖ / ‖g + λθ‖.

        d_t = g_t + λ θ_{t-1}                               (λ where weight_decay_mask)
        s_t = η ‖θ_{t-1}‖ / (‖d_t‖ + ε) · d_t                (where trust_ratio_mask; ratio 1
                                                              if a norm is 0)
        V_t = γ V_{t-1} + α_t s_t,   θ_t = θ_{t-1} - V_t     (nesterov: - (α_t s_t + γ V_t))

    Exclude biases and norm scales from both with `weight_only`-style masks, as the paper's
    ImageNet runs do.

    Args:
        learning_rate: α_t, a number >= 0 or a schedule `step -> lr`.
        weight_decay: λ >= 0.
        trust_coefficient: η > 0.
        eps: ε >= 0, added to ‖d_t‖.
        momentum: γ in [0, 1).
        nesterov: the Nesterov form of the momentum (keyword only).
        weight_decay_mask: which arrays decay (None: all), as in `adamw` (keyword only).
        trust_ratio_mask: which arrays are rescaled (None: all) (keyword only).

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: a hyperparameter out of range; at `init`, a bad mask.

    Defaults:
        learning_rate=1.0, weight_decay=0, trust_coefficient=1e-3, eps=0, momentum=0.9 (optax
        `lars`, which has no default rate).

    PyTorch:
        none
        PyTorch has no built-in LARS.

    Keras:
        none
        Keras has no LARS.

    References:
        You, Gitman & Ginsburg 2017, "Large Batch Training of Convolutional Networks".
    """
    return build("lars", (add_decayed_weights(weight_decay, weight_decay_mask),
                          scale_by_trust_ratio(trust_coefficient, eps, trust_ratio_mask),
                          trace_momentum(learning_rate, momentum, nesterov=nesterov)))
