"""Learning-rate schedules: functions `step -> lr`, where `step` is the number of updates
already applied (0 for the first update), an int32 array, so they run inside `jax.jit`.

Pass one wherever a rule takes `learning_rate`: `adam(warmup_cosine_decay_schedule(...))`.
They compute in JAX's default float dtype: float32, or float64 under `jax_enable_x64`, so a
float64 run follows its schedule to float64 precision (the stage applying the rate casts it
to each parameter's dtype).

The arguments are checked when a schedule is built (tracers, e.g. rates vmapped over, pass
unchecked): rates >= 0 and finite, step counts positive ints.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from jnet.optim.base import OptimizerError, Schedule, api, check_hyperparameter, float_step

Scalar = float | jax.Array

_RATE_FIX = "Learning rates are non-negative finite numbers."


def _check_steps(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise OptimizerError(f"{name} must be a positive int (a number of updates), got "
                             f"{value!r}. Count updates: epochs × batches per epoch.")


def _check_rates(**rates: Scalar) -> None:
    for name, value in rates.items():
        check_hyperparameter(name, value, fix=_RATE_FIX)


@api("jnet.optim.constant_schedule")
def constant_schedule(value: Scalar) -> Schedule:
    """lr(step) = value.

    Args:
        value: the rate, >= 0.

    Returns:
        A `Schedule`.

    Raises:
        OptimizerError: a negative, NaN or infinite value.
    """
    _check_rates(value=value)
    return lambda step: jnp.full((), value, jnp.result_type(float))


@api("jnet.optim.piecewise_constant_schedule")
def piecewise_constant_schedule(init_value: Scalar,
                                boundaries_and_scales: dict[int, float]) -> Schedule:
    """lr(step) = init_value · Π scale_b over the boundaries b <= step.

    optax's form; PyTorch `MultiStepLR(milestones, gamma)` is `{m: gamma for m in milestones}`.

    Args:
        init_value: the rate before the first boundary, >= 0.
        boundaries_and_scales: `{update count: factor >= 0}`.

    Returns:
        A `Schedule`.

    Raises:
        OptimizerError: a negative rate or factor, a boundary that is not a positive int.
    """
    _check_rates(init_value=init_value)
    if not isinstance(boundaries_and_scales, dict):
        raise OptimizerError(f"boundaries_and_scales must be a dict {{step: factor}}, got "
                             f"{type(boundaries_and_scales).__name__}. E.g. {{1000: 0.1}}.")
    for boundary, scale in boundaries_and_scales.items():
        _check_steps("boundaries_and_scales (a boundary)", boundary)
        check_hyperparameter(f"boundaries_and_scales[{boundary}]", scale, fix=_RATE_FIX)
    items = sorted(boundaries_and_scales.items())

    def schedule(step):
        lr = jnp.asarray(init_value, jnp.result_type(float))
        for boundary, scale in items:
            lr = jnp.where(step >= boundary, lr * scale, lr)
        return lr

    return schedule


@api("jnet.optim.step_decay_schedule")
def step_decay_schedule(init_value: Scalar, step_size: int, gamma: float = 0.1) -> Schedule:
    """lr(step) = init_value · γ^⌊step / step_size⌋ (PyTorch `StepLR`, counted in updates).

    Args:
        init_value: the first rate, >= 0.
        step_size: updates between two decays, a positive int.
        gamma: γ >= 0, the factor of each decay.

    Returns:
        A `Schedule`.

    Raises:
        OptimizerError: a bad rate, step count or factor.
    """
    _check_rates(init_value=init_value, gamma=gamma)
    _check_steps("step_size", step_size)
    return lambda step: init_value * jnp.power(gamma, float_step(step // step_size))


@api("jnet.optim.exponential_decay")
def exponential_decay(init_value: Scalar, decay_rate: float, transition_steps: int,
                      staircase: bool = False) -> Schedule:
    """lr(step) = init_value · decay_rate^(step / transition_steps), the exponent floored when
    `staircase` (Keras `ExponentialDecay`; PyTorch `ExponentialLR(gamma)` is
    `exponential_decay(lr, gamma, 1)`).

    Args:
        init_value: the first rate, >= 0.
        decay_rate: the factor per `transition_steps` updates, >= 0.
        transition_steps: a positive int.
        staircase: decay in steps instead of continuously.

    Returns:
        A `Schedule`.

    Raises:
        OptimizerError: a bad rate, factor or step count.
    """
    _check_rates(init_value=init_value, decay_rate=decay_rate)
    _check_steps("transition_steps", transition_steps)

    def schedule(step):
        exponent = float_step(step) / transition_steps
        return init_value * jnp.power(decay_rate, jnp.floor(exponent) if staircase else exponent)

    return schedule


@api("jnet.optim.linear_schedule")
def linear_schedule(init_value: Scalar, end_value: Scalar, transition_steps: int) -> Schedule:
    """Linear from init_value (step 0) to end_value (step >= transition_steps), then constant.
    With init_value = 0 this is a linear warmup (PyTorch `LinearLR`, factors times the rate).

    Args:
        init_value: the rate at step 0, >= 0.
        end_value: the rate from `transition_steps` on, >= 0.
        transition_steps: a positive int.

    Returns:
        A `Schedule`.

    Raises:
        OptimizerError: a bad rate or step count.
    """
    _check_rates(init_value=init_value, end_value=end_value)
    _check_steps("transition_steps", transition_steps)

    def schedule(step):
        frac = jnp.clip(float_step(step) / transition_steps, 0.0, 1.0)
        return init_value + frac * (end_value - init_value)

    return schedule


@api("jnet.optim.cosine_decay_schedule")
def cosine_decay_schedule(init_value: Scalar, decay_steps: int, alpha: float = 0.0, *,
                          periodic: bool = False) -> Schedule:
    """Cosine annealing from init_value to α·init_value over `decay_steps` updates.

        lr(s) = init_value · ((1-α)·½(1 + cos(π·min(s, D)/D)) + α)       (default)
        lr(s) = init_value · ((1-α)·½(1 + cos(π·s/D)) + α)               (periodic=True)

    The default (Loshchilov & Hutter 2017 without restarts, Keras `CosineDecay`, optax) stays
    at α·init_value after D. PyTorch `CosineAnnealingLR(T_max=D, eta_min=α·lr)` agrees only up
    to s = D: PyTorch keeps following the cosine, back up to init_value at 2D and so on (period
    2D); `periodic=True` reproduces it.

    Args:
        init_value: the first rate, >= 0.
        decay_steps: D, a positive int.
        alpha: α in [0, 1], the final rate as a fraction of init_value.
        periodic: follow the cosine past D (PyTorch's `CosineAnnealingLR`).

    Returns:
        A `Schedule`.

    Raises:
        OptimizerError: a bad rate, α or step count.
    """
    _check_rates(init_value=init_value)
    check_hyperparameter("alpha", alpha, 0.0, 1.0, fix="alpha is the final rate as a "
                         "fraction of init_value (eta_min / lr in PyTorch).")
    _check_steps("decay_steps", decay_steps)

    def schedule(step):
        s = float_step(step)
        frac = (s if periodic else jnp.minimum(s, decay_steps)) / decay_steps
        return init_value * ((1 - alpha) * 0.5 * (1 + jnp.cos(jnp.pi * frac)) + alpha)

    return schedule


@api("jnet.optim.warmup_cosine_decay_schedule")
def warmup_cosine_decay_schedule(init_value: Scalar, peak_value: Scalar, warmup_steps: int,
                                 decay_steps: int, end_value: Scalar = 0.0) -> Schedule:
    """Linear warmup from init_value to peak_value over `warmup_steps`, then cosine decay to
    end_value at step `decay_steps` (which counts the warmup, as in optax), then constant.

    Args:
        init_value: the rate at step 0, >= 0.
        peak_value: the rate at the end of the warmup, >= 0.
        warmup_steps: W, a positive int.
        decay_steps: D > W, an int: the step at which end_value is reached.
        end_value: the final rate, >= 0.

    Returns:
        A `Schedule`.

    Raises:
        OptimizerError: a bad rate or step count, D <= W.
    """
    _check_rates(init_value=init_value, peak_value=peak_value, end_value=end_value)
    _check_steps("warmup_steps", warmup_steps)
    _check_steps("decay_steps", decay_steps)
    if decay_steps <= warmup_steps:
        raise OptimizerError(f"decay_steps must be larger than warmup_steps={warmup_steps} "
                             f"(it counts the warmup), got {decay_steps!r}. Pass the total "
                             "number of updates of warmup and decay.")
    warmup = linear_schedule(init_value, peak_value, warmup_steps)
    span = decay_steps - warmup_steps

    def schedule(step):
        frac = jnp.clip(float_step(step - warmup_steps) / span, 0.0, 1.0)
        cosine = end_value + (peak_value - end_value) * 0.5 * (1 + jnp.cos(jnp.pi * frac))
        return jnp.where(step < warmup_steps, warmup(step), cosine)

    return schedule
