"""Wrappers around a whole optimizer: `accumulate` (gradient accumulation over micro-batches)
and `ema` (an exponential moving average of the params, read with `ema_params`), and
`eval_params`, the weights any optimizer's state says to evaluate with.

Two optional hooks let an optimizer change how a driver uses it without the driver knowing the
optimizer (`jnet.fit` reads both; neither is a type switch):

* a stage state with a method ``eval_params(params) -> params`` names the weights to evaluate,
  predict and checkpoint with (`ema`: the average θ̄; the schedule-free rules: x_t);
  `eval_params` applies the hooks of an `OptState`'s top-level stages, in order, and is the
  identity for every other optimizer;
* a stage state with a method ``calls_per_batch() -> k`` asks the train step
  (`jnet.make_train_step`) to call ``update`` k times on each batch (`sam`: 2).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jnet.errors import check_array_tree
from jnet.optim.base import (
    EVAL_FIX,
    GradientTransformation,
    Optimizer,
    OptimizerError,
    OptState,
    PyTree,
    api,
    check_hyperparameter,
    check_like,
    zeros_like_state,
)
from jnet.optim.chain import build, frozen_of, hold_frozen, logged_schedule, run_stages
from jnet.optim.groups import check_optimizer


class AccumulateState(NamedTuple):
    """The state of `accumulate`.

    Attributes:
        grad_sum: the sum of the micro-batch gradients since the last update (params' shape).
        micro: the micro-batches summed so far, int32 in [0, k).
        updates: the updates done, int32 (the wrapped optimizer's step count).
        inner: the wrapped optimizer's stage states.
    """

    grad_sum: PyTree
    micro: jax.Array
    updates: jax.Array
    inner: tuple


@api("jnet.optim.accumulate")
def accumulate(optimizer: Optimizer, k: int) -> Optimizer:
    """Gradient accumulation: one update of `optimizer` every `k` calls, with the mean of the
    k gradients.

        S ← S + g_c                               (every call c; params unchanged)
        θ ← optimizer(S / k, θ),  S ← 0           (every k-th call)

    With equal micro-batches of size B the mean is the gradient of the batch of size kB, so
    k calls equal one large-batch step (to float rounding) with one gradient buffer, not k.
    With BatchNorm they differ: each micro-batch is normalised with its own statistics and the
    running averages move k times; use it with LayerNorm / GroupNorm models for exact
    equivalence. In `jnet.fit`, `batch_size` is the micro-batch and `steps=` counts calls;
    `current_learning_rate` reports the rate of the update in progress.

    Args:
        optimizer: the `Optimizer` to accumulate for.
        k: micro-batches per update, an int >= 1.

    Returns:
        An `Optimizer` whose state holds an `AccumulateState`.

    Raises:
        OptimizerError: `optimizer` is not an Optimizer, or k is not a positive int.
    """
    check_optimizer("optimizer", optimizer)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise OptimizerError(f"k must be a positive int (micro-batches per update), got {k!r}.")
    stages = optimizer.transforms
    rate = logged_schedule(stages)

    def init(params):
        return AccumulateState(zeros_like_state(params), jnp.zeros((), jnp.int32),
                               jnp.zeros((), jnp.int32), tuple(t.init(params) for t in stages))

    def apply(total, state, params):
        mean = jax.tree.map(lambda s: s / k, total)
        u, inner = run_stages(stages, mean, state.inner, params, state.updates + 1)
        return u, AccumulateState(jax.tree.map(jnp.zeros_like, total), jnp.zeros((), jnp.int32),
                                  state.updates + 1, inner)

    def wait(total, state, params):
        hold = jax.tree.map(lambda s: hold_frozen(s, True), total)  # -0.0: θ bit-identical
        return hold, AccumulateState(total, state.micro + 1, state.updates, state.inner)

    def update(grads, state, params, step):
        total = jax.tree.map(jnp.add, state.grad_sum, grads)
        return jax.lax.cond(state.micro + 1 == k, apply, wait, total, state, params)

    return build("accumulate", (GradientTransformation(
        init, update, lambda step: rate(step // k), frozen_of(stages)),))


class EmaState(NamedTuple):
    """The state of `ema`.

    Attributes:
        params: the moving average of the params (in the state dtype), θ̄_0 = θ_0.
        inner: the wrapped optimizer's stage states.
    """

    params: PyTree
    inner: tuple

    def eval_params(self, params: PyTree) -> PyTree:
        """The evaluation-weights hook (`eval_params`): the average θ̄ in `params`' dtypes.

        Raises:
            OptimizerError: `params` do not have the structure and shapes of the average.
        """
        check_like("params", params, "the ema average", self.params, EVAL_FIX)
        return jax.tree.map(lambda a, p: a.astype(jnp.result_type(p)), self.params, params)


@api("jnet.optim.ema")
def ema(optimizer: Optimizer, decay: float = 0.999) -> Optimizer:
    """`optimizer`, plus an exponential moving average of the params in its state.

        θ_t = optimizer(g_t, θ_{t-1})
        θ̄_t = δ θ̄_{t-1} + (1-δ) θ_t,      θ̄_0 = θ_0

    Evaluate, predict and checkpoint with the average: `ema_params(opt_state)`
    (`jnet.evaluate(model, jnet.optim.ema_params(result.opt_state), result.state, x, y)`).
    With BatchNorm the running statistics belong to θ, not θ̄; they are usually close enough,
    or refresh them at θ̄ with a few training batches. Wrap the whole optimizer, clipping and
    schedules included: `ema(chain(clip_by_global_norm(1.0), adamw(1e-3)), 0.999)`.

    Args:
        optimizer: the `Optimizer` taking the steps.
        decay: δ in [0, 1); 0.999 averages over about the last 1000 updates.

    Returns:
        An `Optimizer` whose state holds an `EmaState`.

    Raises:
        OptimizerError: `optimizer` is not an Optimizer, or δ is out of range.
    """
    check_optimizer("optimizer", optimizer)
    check_hyperparameter("decay", decay, 0.0, 1.0, high_open=True,
                         fix="δ = 0.999 or 0.9999 is usual.")
    stages = optimizer.transforms

    def init(params):
        return EmaState(params, tuple(t.init(params) for t in stages))

    def update(grads, state, params, step):
        u, inner = run_stages(stages, grads, state.inner, params, step)
        average = jax.tree.map(lambda a, p, u: (decay * a + (1 - decay) * (p + u)).astype(a.dtype),
                               state.params, params, u)
        return u, EmaState(average, inner)

    return build("ema", (GradientTransformation(init, update, logged_schedule(stages),
                                                frozen_of(stages)),))


@api("jnet.optim.ema_params")
def ema_params(opt_state: OptState) -> PyTree:
    """The averaged params θ̄ of an `ema` optimizer's state (to evaluate, predict, checkpoint).

    Args:
        opt_state: the `OptState` of `ema(...)` (alone or as a stage of a `chain`).

    Returns:
        A pytree shaped like the params, in the state dtype (float32 for bfloat16 params).

    Raises:
        OptimizerError: `opt_state` holds no `ema` stage at its top level.
    """
    stages = opt_state.inner if isinstance(opt_state, OptState) else ()
    found = [s for s in stages if isinstance(s, EmaState)]
    if len(found) != 1:
        raise OptimizerError(f"opt_state must be the state of a jnet.optim.ema optimizer, got "
                             f"{type(opt_state).__name__} with {len(found)} ema stages. Pass "
                             "the opt_state its `update` returned.")
    return found[0].params


@api("jnet.optim.eval_params")
def eval_params(params: PyTree, opt_state: Any) -> PyTree:
    """The weights to evaluate, predict and checkpoint with, as the optimizer declares them.

        θ_eval = h_k(... h_1(θ))     for the top-level stages of `opt_state` with a hook h_i

    `ema`: the moving average θ̄ (`ema_params`); `schedule_free_adamw` / `schedule_free_sgd`:
    x_t (`schedule_free_eval_params`); any other optimizer (or a state that is not an
    `OptState`: an optimizer of your own passed to `jnet.fit`): `params` unchanged. `jnet.fit`
    validates with these weights (see `jnet.training.Options.eval_weights`) and
    ``FitResult.eval_params()`` returns them. Keep training from `params`, not from these. For
    a population (a leading member axis on both trees) map it over the members:
    ``jax.vmap(eval_params)(params, opt_state)``.

    Args:
        params: the params the optimizer holds (what `update` returned), a pytree of arrays.
        opt_state: the optimizer's state.

    Returns:
        A pytree shaped like `params`, in their dtypes.

    Raises:
        OptimizerError: `params` is not a pytree of arrays; `opt_state` is an `OptState` read
            from a checkpoint without ``like=`` (a dict of its fields, whose `ema` /
            schedule-free weights would be silently ignored); the params do not match the
            state's average (`ema`, schedule-free).
    """
    check_array_tree("params", params, EVAL_FIX, error=OptimizerError)
    if isinstance(opt_state, Mapping) and set(opt_state) == set(OptState._fields):
        raise OptimizerError(
            "opt_state is a dict of the fields of an OptState (step, learning_rate, inner), "
            "as jnet.checkpoint.load returns it without like=, so the weights its optimizer "
            "evaluates with (ema, schedule-free) cannot be read from it. Load the checkpoint "
            "with like= a tree of the same structure, e.g. jnet.checkpoint.load(path, "
            "like={'params': params, 'opt_state': opt.init(params)}).")
    for stage in opt_state.inner if isinstance(opt_state, OptState) else ():
        hook = getattr(stage, "eval_params", None)
        if callable(hook):
            params = hook(params)
    return params


def calls_per_batch(opt_state: Any) -> int:
    """How many times the train step calls ``update`` on each batch: the largest
    ``calls_per_batch()`` of a top-level stage state (1 when none declares it)."""
    stages = opt_state.inner if isinstance(opt_state, OptState) else ()
    hooks = [getattr(s, "calls_per_batch", None) for s in stages]
    return max((int(hook()) for hook in hooks if callable(hook)), default=1)
