"""The types of `jnet.optim` and the helpers every rule shares.

Two levels, as in optax but written for jnet's contract:

* A `GradientTransformation` maps updates to updates: `init(params) -> state` and
  `update(updates, state, params, step) -> (updates, state)`, where `step` is the 1-based
  int32 index t of the update being computed. Transformations that apply a step size carry
  its schedule in their `learning_rate` field (None otherwise).
* An `Optimizer` is what users hold: `init(params) -> OptState` and
  `update(grads, opt_state, params) -> (params, opt_state)`. `chain` builds one from
  transformations; every rule (`adam`, `sgd`, ...) is such a chain.

Sign convention: the updates leaving the last transformation are ADDED to the parameters, so
`scale_by_learning_rate` multiplies by -lr and the "scale_by_*" rules return ascent directions.

Dtypes: each state array follows its parameter's dtype, except that parameters stored in fewer
than 32 bits (bfloat16, float16) get float32 state; gradients and parameters are promoted to that
state dtype inside `update`, and the new parameters are cast back to each parameter's own dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
Schedule = Callable[[jax.Array], jax.Array]
ScalarOrSchedule = float | jax.Array | Schedule


class OptimizerError(ValueError):
    """An optimizer was given something it cannot use; the message names the function."""

    def __init__(self, where: str, message: str):
        self.where = where
        super().__init__(f"jnet.optim.{where}: {message}")


class GradientTransformation(NamedTuple):
    """One stage of an optimizer: `init(params) -> state`,
    `update(updates, state, params, step) -> (updates, state)`; `learning_rate` is the
    schedule the stage applies (None when it applies no step size)."""

    init: Callable[[PyTree], PyTree]
    update: Callable[[PyTree, PyTree, PyTree, jax.Array], tuple[PyTree, PyTree]]
    learning_rate: Schedule | None = None


class OptState(NamedTuple):
    """The state of an `Optimizer`: a pytree of arrays (jit, vmap and checkpoint friendly).

    Attributes:
        step: int32 scalar, the number of updates applied so far.
        learning_rate: float32 scalar, the learning rate used by the last update (before the
            first update: the one the first update will use). Read it for logging.
        inner: one state per transformation of the chain, in order.
    """

    step: jax.Array
    learning_rate: jax.Array
    inner: tuple


class Optimizer(NamedTuple):
    """An optimizer: `init(params) -> OptState`,
    `update(grads, opt_state, params) -> (params, opt_state)`; both pure and jit-able.
    `transforms` are the stages it chains (so `chain` can extend it)."""

    init: Callable[[PyTree], OptState]
    update: Callable[[PyTree, OptState, PyTree], tuple[PyTree, OptState]]
    transforms: tuple[GradientTransformation, ...]


class EmptyState(NamedTuple):
    """The state of a stateless transformation."""


def current_learning_rate(opt_state: OptState) -> jax.Array:
    """The learning rate used by the last update (float32 scalar), e.g. for logging."""
    return opt_state.learning_rate


def check_hyperparameter(where: str, name: str, value: Any, low: float, high: float,
                         *, high_open: bool = False) -> None:
    """Raise `OptimizerError` when a concrete number lies outside [low, high] (or [low, high)).

    Arrays (including tracers, e.g. a learning rate vmapped over) are not checked: their
    values may be unknown when the optimizer is built.
    """
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    above = value >= high if high_open else value > high
    if value < low or above or value != value:
        interval = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise OptimizerError(where, f"`{name}` must lie in {interval}, got {value}.")


def as_schedule(where: str, learning_rate: ScalarOrSchedule) -> Schedule:
    """A callable `step -> lr` from a number, an array or a schedule (returned as is)."""
    if callable(learning_rate):
        return learning_rate
    check_hyperparameter(where, "learning_rate", learning_rate, 0.0, float("inf"))
    if isinstance(learning_rate, np.ndarray | jax.Array) and np.ndim(learning_rate) != 0:
        raise OptimizerError(
            where, f"`learning_rate` must be a scalar or a schedule `step -> lr`, got an array "
            f"of shape {np.shape(learning_rate)}; to try several rates at once, jax.vmap over a "
            "function that builds the optimizer from one rate.")
    return lambda step: learning_rate


def learning_rate_at(schedule: Schedule, step: jax.Array) -> jax.Array:
    """The learning rate of update number `step` (1-based): `schedule(step - 1)`.

    Schedules see the number of updates already applied (0 for the first), like optax.
    """
    return jnp.asarray(schedule(step - 1))


def float_step(step: jax.Array) -> jax.Array:
    """The int32 step as JAX's default float (float64 under x64), for powers like β^t."""
    return step.astype(jnp.result_type(float))


def state_dtype(dtype: Any) -> np.dtype:
    """The dtype of the optimizer state for a parameter of `dtype` (float32 below 32 bits)."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype.itemsize < 4 else dtype


def to_state_dtype(tree: PyTree) -> PyTree:
    """`tree` with every leaf cast to its state dtype."""
    return jax.tree.map(lambda x: jnp.asarray(x).astype(state_dtype(jnp.result_type(x))), tree)


def zeros_like_state(params: PyTree) -> PyTree:
    """Zeros shaped like `params`, in each leaf's state dtype."""
    return jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), state_dtype(jnp.result_type(p))),
                        params)


def ema(decay: float | jax.Array, avg: PyTree, x: PyTree, power: int = 1) -> PyTree:
    """avg ← decay·avg + (1 - decay)·x**power, leafwise: the moving average every rule keeps."""
    return jax.tree.map(lambda a, g: decay * a + (1 - decay) * g**power, avg, x)


def bias_correction(decay: float | jax.Array, step: jax.Array) -> jax.Array:
    """1 - decay**t, the factor that unbiases a zero-initialised moving average after t steps."""
    return 1.0 - jnp.power(decay, float_step(step))
