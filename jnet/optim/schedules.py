"""Learning-rate schedules: functions `step -> lr`, where `step` is the number of updates
already applied (0 for the first update), an int32 array, so they run inside `jax.jit`.

Pass one wherever a rule takes `learning_rate`: `adam(warmup_cosine_decay_schedule(...))`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jnet.optim.base import OptimizerError, Schedule

Scalar = float | jax.Array


def _check_steps(where: str, name: str, value: int) -> None:
    if not isinstance(value, int) or value <= 0:
        raise OptimizerError(where, f"`{name}` must be a positive int, got {value!r}.")


def constant_schedule(value: Scalar) -> Schedule:
    """lr(step) = value."""
    return lambda step: jnp.full((), value, jnp.float32)


def piecewise_constant_schedule(init_value: Scalar,
                                boundaries_and_scales: dict[int, float]) -> Schedule:
    """lr(step) = init_value · Π scale_b over the boundaries b <= step (optax's form;
    PyTorch `MultiStepLR(milestones, gamma)` is `{m: gamma for m in milestones}`)."""
    items = sorted(boundaries_and_scales.items())

    def schedule(step):
        lr = jnp.asarray(init_value, jnp.float32)
        for boundary, scale in items:
            lr = jnp.where(step >= boundary, lr * scale, lr)
        return lr

    return schedule


def step_decay_schedule(init_value: Scalar, step_size: int, gamma: float = 0.1) -> Schedule:
    """lr(step) = init_value · γ^⌊step / step_size⌋ (PyTorch `StepLR`, counted in updates)."""
    _check_steps("step_decay_schedule", "step_size", step_size)
    return lambda step: init_value * jnp.power(gamma, (step // step_size).astype(jnp.float32))


def exponential_decay(init_value: Scalar, decay_rate: float, transition_steps: int,
                      staircase: bool = False) -> Schedule:
    """lr(step) = init_value · decay_rate^(step / transition_steps), the exponent floored when
    `staircase` (Keras `ExponentialDecay`; PyTorch `ExponentialLR(gamma)` is
    `exponential_decay(lr, gamma, 1)`)."""
    _check_steps("exponential_decay", "transition_steps", transition_steps)

    def schedule(step):
        exponent = step.astype(jnp.float32) / transition_steps
        return init_value * jnp.power(decay_rate, jnp.floor(exponent) if staircase else exponent)

    return schedule


def linear_schedule(init_value: Scalar, end_value: Scalar, transition_steps: int) -> Schedule:
    """Linear from init_value (step 0) to end_value (step >= transition_steps), then constant.
    With init_value = 0 this is a linear warmup (PyTorch `LinearLR`, factors times the rate)."""
    _check_steps("linear_schedule", "transition_steps", transition_steps)

    def schedule(step):
        frac = jnp.clip(step.astype(jnp.float32) / transition_steps, 0.0, 1.0)
        return init_value + frac * (end_value - init_value)

    return schedule


def cosine_decay_schedule(init_value: Scalar, decay_steps: int, alpha: float = 0.0) -> Schedule:
    """lr(step) = init_value · ((1-α)·½(1 + cos(π·min(step, D)/D)) + α) (Loshchilov & Hutter
    2017 without restarts; Keras `CosineDecay`; PyTorch `CosineAnnealingLR(T_max=D,
    eta_min=α·lr)`)."""
    _check_steps("cosine_decay_schedule", "decay_steps", decay_steps)

    def schedule(step):
        frac = jnp.minimum(step.astype(jnp.float32), decay_steps) / decay_steps
        return init_value * ((1 - alpha) * 0.5 * (1 + jnp.cos(jnp.pi * frac)) + alpha)

    return schedule


def warmup_cosine_decay_schedule(init_value: Scalar, peak_value: Scalar, warmup_steps: int,
                                 decay_steps: int, end_value: Scalar = 0.0) -> Schedule:
    """Linear warmup from init_value to peak_value over `warmup_steps`, then cosine decay to
    end_value at step `decay_steps` (which counts the warmup, as in optax), then constant."""
    _check_steps("warmup_cosine_decay_schedule", "warmup_steps", warmup_steps)
    if not isinstance(decay_steps, int) or decay_steps <= warmup_steps:
        raise OptimizerError("warmup_cosine_decay_schedule", f"`decay_steps` must be an int "
                             f"larger than warmup_steps={warmup_steps}, got {decay_steps!r}.")
    warmup = linear_schedule(init_value, peak_value, warmup_steps)
    span = decay_steps - warmup_steps

    def schedule(step):
        frac = jnp.clip((step - warmup_steps).astype(jnp.float32) / span, 0.0, 1.0)
        cosine = end_value + (peak_value - end_value) * 0.5 * (1 + jnp.cos(jnp.pi * frac))
        return jnp.where(step < warmup_steps, warmup(step), cosine)

    return schedule
