"""Schedule-free optimization: `schedule_free_adamw`, `schedule_free_sgd`, and
`schedule_free_eval_params`, the weights to evaluate with."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jnet.errors import check_array_tree
from jnet.optim.adam import BETA_FIX, EPS_FIX
from jnet.optim.base import (
    EVAL_FIX,
    EmptyState,
    GradientTransformation,
    Optimizer,
    OptimizerError,
    OptState,
    PyTree,
    ScalarOrSchedule,
    api,
    as_schedule,
    bias_correction,
    check_hyperparameter,
    check_like,
    ema,
    float_step,
    is_tracer,
    learning_rate_at,
    zeros_like_state,
)
from jnet.optim.chain import build


class ScheduleFreeState(NamedTuple):
    """The state of a schedule-free stage. The params the optimizer holds are y_t, where the
    gradient is taken; x_t (to evaluate with) is `schedule_free_eval_params`.

    Attributes:
        z: z_t, the base iterate (shaped like the params).
        nu: v_t, the moving average of g² (`schedule_free_adamw`), else an `EmptyState`.
        weight_sum: Σ c_i, the sum of the averaging weights so far (scalar).
        lr_max: the largest learning rate so far (scalar).
        b1: β1 (the interpolation between x and z), kept for `schedule_free_eval_params`.
    """

    z: PyTree
    nu: Any
    weight_sum: jax.Array
    lr_max: jax.Array
    b1: jax.Array

    def eval_params(self, params: PyTree) -> PyTree:
        """The evaluation-weights hook (`jnet.optim.eval_params`): x_t from y_t = `params`.

        Raises:
            OptimizerError: `params` do not have the structure and shapes of z.
        """
        check_like("params", params, "the schedule-free state's z", self.z, EVAL_FIX)
        def average(y, z):
            return (jnp.asarray(y, z.dtype) + (1 - 1 / self.b1).astype(z.dtype) * (z - y)
                    ).astype(jnp.result_type(y))

        return jax.tree.map(average, params, self.z)


def _check_warmup(warmup_steps: int) -> None:
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, numbers.Integral) \
            or warmup_steps < 0:
        raise OptimizerError(f"warmup_steps must be an int >= 0 (a number of updates), got "
                             f"{warmup_steps!r}.")


def _warmed(schedule, warmup_steps: int):
    """γ_t = schedule(t-1) · min(1, t / warmup_steps), the schedule-free packages' warmup."""
    if not warmup_steps:
        return schedule
    return lambda step: schedule(step) * jnp.minimum(1.0, float_step(step + 1) / warmup_steps)


def scale_by_schedule_free(learning_rate: ScalarOrSchedule, b1: float, b2: float | None,
                           eps: float, weight_decay: float, warmup_steps: int, r: float,
                           weight_lr_power: float) -> GradientTransformation:
    """The schedule-free step, rate included (`b2=None`: SGD, else the AdamW normalisation)."""
    _check_warmup(warmup_steps)
    check_hyperparameter("weight_decay", weight_decay, fix="0 disables it.")
    check_hyperparameter("r", r, fix="r weights step t by t^r in the average; 0 is usual.")
    check_hyperparameter("weight_lr_power", weight_lr_power, fix="2 is the paper's.")
    schedule = _warmed(as_schedule(learning_rate), warmup_steps)

    def init(params):
        scalar = jnp.result_type(float)  # at init: float64 when x64 is on by then
        return ScheduleFreeState(params, EmptyState() if b2 is None else zeros_like_state(params),
                                 jnp.zeros((), scalar), jnp.zeros((), scalar),
                                 jnp.asarray(b1, scalar))

    def update(grads, state, params, step):
        lr = learning_rate_at(schedule, step)
        lr_max = jnp.maximum(lr, state.lr_max)
        weight = float_step(step) ** r * lr_max**weight_lr_power
        weight_sum = state.weight_sum + weight
        c = jnp.where(weight_sum > 0, weight / jnp.where(weight_sum > 0, weight_sum, 1.0), 0.0)
        nu = state.nu
        if b2 is not None:
            nu = ema(b2, state.nu, grads, 2)
            c2 = bias_correction(b2, step)
            grads = jax.tree.map(lambda g, v: g / (jnp.sqrt(v / c2) + eps), grads, nu)
        d = grads
        if is_tracer(weight_decay) or weight_decay != 0:  # λ = 0: no extra pass over y
            d = jax.tree.map(lambda g, y: g + weight_decay * y, grads, params)
        # y_t from the new z_t (substituting z_{t-1} = z_t + γ d_t): nothing reads z_{t-1} after
        # z_t is written, so XLA updates z in place; the textbook order made it copy z first
        # (an extra read and write of every parameter, 1.3-4x the step time on CPU).
        z = jax.tree.map(lambda z, d: (z - lr * d).astype(z.dtype), state.z, d)
        u = jax.tree.map(lambda y, z, d: (c * (z - y) + lr * (1 - c) * (b1 - 1) * d)
                         .astype(y.dtype), params, z, d)
        return u, ScheduleFreeState(z, nu, weight_sum, lr_max, state.b1)

    return GradientTransformation(init, update, schedule)


@api("jnet.optim.schedule_free_adamw")
def schedule_free_adamw(learning_rate: ScalarOrSchedule = 2.5e-3, b1: float = 0.9,
                        b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                        warmup_steps: int = 0, r: float = 0.0,
                        weight_lr_power: float = 2.0) -> Optimizer:
    """Schedule-free AdamW: no decay schedule needed; evaluate with the average x_t.

        v_t = β2 v_{t-1} + (1-β2) g_t²,   g_t = ∇f(y_{t-1})      (y: the params held)
        d_t = g_t / (√(v_t / (1-β2^t)) + ε) + λ y_{t-1}
        c_t = γ_max,t^p t^r / Σ_{i<=t} γ_max,i^p i^r      (γ_max,t: the largest rate so far)
        y_t = y_{t-1} + c_t (z_{t-1} - y_{t-1}) + γ_t (β1(1 - c_t) - 1) d_t
        z_t = z_{t-1} - γ_t d_t,   z_0 = y_0
        x_t = y_t + (1 - 1/β1)(z_t - y_t)                  (the weights to evaluate with)

    y_t is computed as y_{t-1} + c_t (z_t - y_{t-1}) + γ_t (1 - c_t)(β1 - 1) d_t, the same value
    from the new z_t, so z is updated in place.

    The params this optimizer holds (and `jnet.fit` returns) are y_t, where gradients are
    taken. Evaluate, predict and export with x_t:
    `jnet.evaluate(model, jnet.optim.schedule_free_eval_params(params, opt_state), state, ...)`.
    With BatchNorm, its running statistics were gathered at y: recompute them at x (a pass
    over training batches in train mode) before evaluating, as the paper does. The rate γ_t
    is the schedule's times min(1, t / warmup_steps).

    Args:
        learning_rate: γ, a number >= 0 or a schedule `step -> lr` (usually constant).
        b1: β1 in [0, 1), the interpolation between x and z (the momentum).
        b2: β2 in [0, 1), the decay of the second moment.
        eps: ε >= 0.
        weight_decay: λ >= 0, evaluated at y.
        warmup_steps: W, an int >= 0, the linear warmup of γ.
        r: r >= 0, the power of t in the averaging weights.
        weight_lr_power: p >= 0, the power of γ_max in the averaging weights.

    Returns:
        An `Optimizer` with a `ScheduleFreeState`.

    Raises:
        OptimizerError: a hyperparameter out of range.

    Defaults:
        learning_rate=2.5e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0, warmup_steps=0, r=0,
        weight_lr_power=2 (the `schedulefree` package's `AdamWScheduleFree`).

    PyTorch:
        none (schedulefree `AdamWScheduleFree(lr, betas, eps, weight_decay, warmup_steps)`)
        Same defaults and update; its `optimizer.eval()` swaps x_t into the model,
        `schedule_free_eval_params` returns it instead.

    Keras:
        none
        No Keras counterpart.

    References:
        Defazio et al. 2024, "The Road Less Scheduled".
    """
    check_hyperparameter("b1", b1, 0.0, 1.0, low_open=True, high_open=True, fix=BETA_FIX)
    check_hyperparameter("b2", b2, 0.0, 1.0, high_open=True, fix=BETA_FIX)
    check_hyperparameter("eps", eps, fix=EPS_FIX)
    return build("schedule_free_adamw", (scale_by_schedule_free(
        learning_rate, b1, b2, eps, weight_decay, warmup_steps, r, weight_lr_power),))


@api("jnet.optim.schedule_free_sgd")
def schedule_free_sgd(learning_rate: ScalarOrSchedule = 1e-3, momentum: float = 0.9,
                      weight_decay: float = 0.0, warmup_steps: int = 0, r: float = 0.0,
                      weight_lr_power: float = 2.0) -> Optimizer:
    """Schedule-free SGD: no decay schedule needed; evaluate with the average x_t.

        d_t = ∇f(y_{t-1}) + λ y_{t-1}                      (y: the params held)
        c_t = γ_max,t^p t^r / Σ_{i<=t} γ_max,i^p i^r      (γ_max,t: the largest rate so far)
        y_t = y_{t-1} + c_t (z_{t-1} - y_{t-1}) + γ_t (β(1 - c_t) - 1) d_t
        z_t = z_{t-1} - γ_t d_t,   z_0 = y_0
        x_t = y_t + (1 - 1/β)(z_t - y_t)                   (the weights to evaluate with)

    As in `schedule_free_adamw`, the params held are y_t: evaluate and predict with
    `schedule_free_eval_params(params, opt_state)`.

    Args:
        learning_rate: γ, a number >= 0 or a schedule `step -> lr` (usually constant).
        momentum: β in (0, 1), the interpolation between x and z.
        weight_decay: λ >= 0, evaluated at y.
        warmup_steps: W, an int >= 0, the linear warmup of γ.
        r: r >= 0, the power of t in the averaging weights.
        weight_lr_power: p >= 0, the power of γ_max in the averaging weights.

    Returns:
        An `Optimizer` with a `ScheduleFreeState`.

    Raises:
        OptimizerError: a hyperparameter out of range.

    Defaults:
        learning_rate=1e-3 (`sgd`'s; the package's 1.0 diverges wherever the curvature
        exceeds about 2, e.g. on Rosenbrock), momentum=0.9, weight_decay=0, warmup_steps=0,
        r=0, weight_lr_power=2 (the `schedulefree` package's `SGDScheduleFree`).

    PyTorch:
        none (schedulefree `SGDScheduleFree(lr, momentum, weight_decay, warmup_steps)`)
        Same update and defaults but the rate: pass `learning_rate=1.0` for the package's.

    Keras:
        none
        No Keras counterpart.

    References:
        Defazio et al. 2024, "The Road Less Scheduled".
    """
    check_hyperparameter("momentum", momentum, 0.0, 1.0, low_open=True, high_open=True,
                         fix="momentum is β in (0, 1); 0.9 is usual.")
    return build("schedule_free_sgd", (scale_by_schedule_free(
        learning_rate, momentum, None, 0.0, weight_decay, warmup_steps, r, weight_lr_power),))


@api("jnet.optim.schedule_free_eval_params")
def schedule_free_eval_params(params: PyTree, opt_state: OptState) -> PyTree:
    """The weights to evaluate, predict, export or checkpoint for use with a schedule-free
    optimizer: x_t = y_t + (1 - 1/β)(z_t - y_t).

        result = jnet.fit(model, jnet.optim.schedule_free_adamw(1e-3), x, y, ...)
        eval_params = jnet.optim.schedule_free_eval_params(result.params, result.opt_state)
        jnet.evaluate(model, eval_params, result.state, x_test, y_test)

    Keep training from `result.params` (y), not from these.

    Args:
        params: y_t, the params the optimizer holds (what `update` returned).
        opt_state: its `OptState` (of `schedule_free_adamw` / `schedule_free_sgd`, alone or
            in a `chain`).

    Returns:
        A pytree shaped like `params`, in their dtypes (batched under `jax.vmap` too).

    Raises:
        OptimizerError: `params` is not a pytree of arrays or does not match
            the state's z; `opt_state` has no schedule-free stage (at its top level: not
            inside a `partition` or `masked`).
    """
    check_array_tree("params", params, EVAL_FIX, error=OptimizerError)
    stages = opt_state.inner if isinstance(opt_state, OptState) else ()
    found = [s for s in stages if isinstance(s, ScheduleFreeState)]
    if len(found) != 1:
        raise OptimizerError(
            f"opt_state must be the state of a schedule-free optimizer (schedule_free_adamw or "
            f"schedule_free_sgd, alone or chained), got {type(opt_state).__name__} with "
            f"{len(found)} schedule-free stages. Pass the opt_state its `update` returned.")
    return found[0].eval_params(params)
