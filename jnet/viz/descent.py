"""The computations behind the optimizer pictures: pure, jit-able, no matplotlib.

`descent_path` runs one optimizer on one loss as a single `lax.scan` and returns every point
visited with its loss; `sweep_losses` runs the same for a vector of learning rates in one
`jax.vmap`. A run that diverges (the loss becomes non-finite or grows `divergence_factor` times
beyond where it started) is frozen there: later steps record NaN, so plots can stop the curve at
the last finite point instead of drawing overflow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from jax import lax

from jnet.errors import ArgumentError, ArgumentTypeError
from jnet.typing import PyTree

LossFn = Callable[[PyTree], jax.Array]


class Optimizer(Protocol):
    """What `jnet.optim` rules return: pure `init` and `update`."""

    def init(self, params: PyTree) -> PyTree: ...

    def update(self, grads: PyTree, state: PyTree, params: PyTree) -> tuple[PyTree, PyTree]: ...


class Descent(NamedTuple):
    """The trajectory of one optimizer run.

    Attributes:
        path: the parameters visited, each leaf stacked to `(steps + 1, *leaf.shape)`; row 0 is
            the start. NaN after the run diverged.
        losses: `(steps + 1,)` loss at each visited point; NaN after divergence.
    """

    path: PyTree
    losses: jax.Array


def descent_path(
    loss_fn: LossFn,
    optimizer: Optimizer,
    start: PyTree,
    steps: int,
    *,
    divergence_factor: float = 1e6,
) -> Descent:
    """Run `optimizer` from `start` for `steps` updates of full-gradient descent on `loss_fn`.

    One `lax.scan`; pure, so `jax.jit` and `jax.vmap` apply (over `start`, or over anything the
    optimizer closes over such as a traced learning rate).

    Args:
        loss_fn: `params -> scalar`, differentiable.
        optimizer: an object with `init(params)` and `update(grads, state, params)`.
        start: the initial parameters, any pytree of float arrays (a `(2,)` point for surfaces).
        steps: the number of updates (the result has `steps + 1` points).
        divergence_factor: the run counts as diverged once |loss| exceeds
            `divergence_factor * max(|loss(start)|, 1)` or is not finite.

    Returns:
        `Descent(path, losses)`.
    """
    if not isinstance(steps, int) or steps < 0:
        raise ArgumentError(f"descent_path: steps must be a non-negative int, got {steps!r}.")
    _check_problem("descent_path", loss_fn)
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ArgumentTypeError(
            f"descent_path: optimizer must have init(params) and update(grads, state, params), "
            f"got {type(optimizer).__name__} {optimizer!r:.60}. Pass a built optimizer such as "
            "jnet.optim.adam(0.1) (or jnet.optim.get('adam')).")
    start = jax.tree.map(lambda p: jnp.asarray(p, dtype=jnp.result_type(p, float)), start)
    value_and_grad = jax.value_and_grad(loss_fn)
    limit = divergence_factor * jnp.maximum(jnp.abs(loss_fn(start)), 1.0)

    def step(carry, _):
        params, opt_state, alive = carry
        loss, grads = value_and_grad(params)
        alive = alive & jnp.isfinite(loss) & (jnp.abs(loss) <= limit)
        visited = jax.tree.map(lambda p: jnp.where(alive, p, jnp.nan), params)
        new_params, new_state = optimizer.update(grads, opt_state, params)
        # Freeze a diverged run so overflow cannot turn into NaN gradients in later steps.
        params, opt_state = jax.tree.map(
            lambda new, old: jnp.where(alive, new, old),
            (new_params, new_state),
            (params, opt_state),
        )
        return (params, opt_state, alive), (visited, jnp.where(alive, loss, jnp.nan))

    carry = (start, optimizer.init(start), jnp.array(True))
    # steps + 1 iterations record the start and every update's result; the last update is unused.
    _, (path, losses) = lax.scan(step, carry, None, length=steps + 1)
    return Descent(path, losses)


def sweep_losses(
    make_optimizer: Callable[[jax.Array], Optimizer],
    learning_rates: Any,
    loss_fn: LossFn,
    params: PyTree,
    steps: int,
    *,
    divergence_factor: float = 1e6,
) -> jax.Array:
    """Loss curves of one optimizer at several learning rates, in one jit-compiled `jax.vmap`.

    Args:
        make_optimizer: `learning_rate -> optimizer`, e.g. `jnet.optim.sgd`; it receives a traced
            scalar, so it must not branch on the value in Python.
        learning_rates: `(n,)` learning rates.
        loss_fn, params, steps, divergence_factor: as in `descent_path`.

    Returns:
        `(n, steps + 1)` losses; NaN after a run diverged.
    """
    if not callable(make_optimizer) or hasattr(make_optimizer, "update"):
        raise ArgumentTypeError(
            f"sweep_losses: make_optimizer must be a function learning_rate -> optimizer, got "
            f"{type(make_optimizer).__name__} {make_optimizer!r:.60}. Pass e.g. jnet.optim.sgd "
            "or `lambda lr: jnet.optim.momentum(lr, 0.9)`.")
    _check_problem("sweep_losses", loss_fn)
    try:
        rates = jnp.asarray(learning_rates, dtype=float)
    except (TypeError, ValueError):
        rates = jnp.zeros((0,))  # reported below with what was given
    if rates.ndim != 1 or rates.size == 0:
        raise ArgumentError(
            "sweep_losses: learning_rates must be a non-empty 1-D sequence of numbers, got "
            f"{learning_rates!r:.60} (shape {jnp.shape(rates)}).")

    def run(lr):
        return descent_path(
            loss_fn, make_optimizer(lr), params, steps, divergence_factor=divergence_factor
        ).losses

    return jax.jit(jax.vmap(run))(rates)


def _check_problem(where: str, loss_fn: Any) -> None:
    if not callable(loss_fn):
        raise ArgumentTypeError(
            f"{where}: loss_fn must be a function params -> scalar (e.g. "
            f"jnet.viz.surfaces.rosenbrock), got {type(loss_fn).__name__} {loss_fn!r:.60}.")
