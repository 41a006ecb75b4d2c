"""Sharpness-aware minimization as a two-call optimizer wrapper: `sam(base, rho)`."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jnet.optim.base import (
    GradientTransformation,
    Optimizer,
    PyTree,
    api,
    check_hyperparameter,
    zeros_like_state,
)
from jnet.optim.chain import build, frozen_of, logged_schedule, run_stages
from jnet.optim.clip import global_norm
from jnet.optim.groups import check_optimizer


class SamState(NamedTuple):
    """The state of `sam`.

    Attributes:
        perturbation: ε̂ = ρ g / ‖g‖ of the last ascent call (0 after a descent call), shaped
            like the params.
        updates: the number of base updates done (descent calls), int32.
        base: the base optimizer's stage states.
    """

    perturbation: PyTree
    updates: jax.Array
    base: tuple

    def calls_per_batch(self) -> int:
        """The hook of `jnet.make_train_step`: ascent and descent on one batch (Algorithm 1)."""
        return 2


def _sam_stage(base: Optimizer, rho: float, eps: float) -> GradientTransformation:
    stages = base.transforms
    rate = logged_schedule(stages)

    def init(params):
        return SamState(zeros_like_state(params), jnp.zeros((), jnp.int32),
                        tuple(t.init(params) for t in stages))

    def ascend(grads, state, params):
        norm = global_norm(grads)
        scale = rho / (norm + eps)
        e = jax.tree.map(lambda g: (scale * g).astype(g.dtype), grads)
        return e, SamState(e, state.updates, state.base)

    def descend(grads, state, params):
        # The gradient was taken at θ + ε̂: step from θ, the base seeing its own step count.
        theta = jax.tree.map(lambda p, e: p - e, params, state.perturbation)
        u, inner = run_stages(stages, grads, state.base, theta, state.updates + 1)
        u = jax.tree.map(lambda u, e: u - e, u, state.perturbation)
        return u, SamState(jax.tree.map(jnp.zeros_like, state.perturbation), state.updates + 1,
                           inner)

    def update(grads, state, params, step):
        # Odd calls (1, 3, ...) ascend, even calls descend.
        return jax.lax.cond(step % 2 == 1, ascend, descend, grads, state, params)

    def schedule(step):
        # Call c (step = c - 1 here) belongs to base update ⌈c/2⌉: its rate.
        return rate(step // 2)

    return GradientTransformation(init, update, schedule, frozen_of(stages))


@api("jnet.optim.sam")
def sam(base: Optimizer, rho: float = 0.05, eps: float = 1e-12) -> Optimizer:
    """Sharpness-aware minimization around any optimizer, in two calls per update.

        ε̂_t = ρ g_t / ‖g_t‖,            g_t = ∇L(θ_{t-1})               (call 2t-1: ascent)
        θ_t = base(∇L(θ_{t-1} + ε̂_t), θ_{t-1})                          (call 2t: descent)

    The second gradient is obtained by a two-call protocol: the odd call of `update` moves
    the params to θ + ε̂ (and remembers ε̂), the even call takes the gradient computed there,
    steps from θ with `base` and returns θ_t. Its state declares ``calls_per_batch() == 2``, so
    `jnet.make_train_step` (and `jnet.fit`) makes both calls on the same batch inside one
    compiled step: the paper's update, one per batch, with no SAM code in the driver:

        step = jax.jit(jnet.make_train_step(model, jnet.optim.sam(jnet.optim.sgd(0.1))))
        for batch in batches:       # each step: ascent, then descent, on this batch
            params, state, opt_state, metrics = step(params, state, opt_state, batch, key)

    `steps=` counts batches (updates); ``opt_state.step`` counts calls (two per update). The
    logged loss is the one at θ (the first call's). Calling `update` yourself, call it twice
    per batch. ‖·‖ is over the whole pytree. BatchNorm statistics are updated at both points.
    `current_learning_rate` reports the base rate of the update in progress.

    Args:
        base: the `Optimizer` taking the step (`sgd`, `momentum`, `adamw`, ...).
        rho: ρ >= 0, the radius of the neighbourhood.
        eps: ε >= 0, added to ‖g‖ (a zero gradient gives ε̂ = 0).

    Returns:
        An `Optimizer` whose state is an `OptState` holding a `SamState`.

    Raises:
        OptimizerError: `base` is not an Optimizer, or ρ or ε is out of range.

    Defaults:
        rho=0.05 (the paper's for CIFAR), eps=1e-12.

    PyTorch:
        none (the `sam` package's `SAM(params, base_optimizer, rho)`)
        Its `first_step()` / `second_step()` are the two calls.

    Keras:
        none
        Keras 3 has no SAM (TensorFlow had `SharpnessAwareMinimization` as a model wrapper).

    References:
        Foret et al. 2021, "Sharpness-Aware Minimization for Efficiently Improving
        Generalization", Algorithm 1.
    """
    check_optimizer("base", base)
    check_hyperparameter("rho", rho, fix="ρ is the radius of the ascent step; 0.05 is usual.")
    check_hyperparameter("eps", eps, fix="1e-12 is usual.")
    return build("sam", (_sam_stage(base, rho, eps),))
