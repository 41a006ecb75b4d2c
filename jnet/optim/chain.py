"""`chain` (transformations -> Optimizer) and `scale_by_learning_rate`, the stage that applies
the step size. Every rule in `jnet.optim` is a `chain`, so clipping or weight decay composes
with any of them: `chain(clip_by_global_norm(1.0), adam(1e-3))`."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jnet.optim.base import (
    EmptyState,
    GradientTransformation,
    Optimizer,
    OptimizerError,
    OptState,
    PyTree,
    ScalarOrSchedule,
    Schedule,
    api,
    as_schedule,
    check_like,
    check_params,
    learning_rate_at,
    named,
    state_dtype,
    to_state_dtype,
)


@api("jnet.optim.scale_by_learning_rate")
def scale_by_learning_rate(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    """u ← -α_t u: the descent step.

    Args:
        learning_rate: a number >= 0, a scalar array (a tracer under `jax.vmap` is accepted
            unchecked) or a schedule `step -> lr` (step = updates already applied).

    Returns:
        A stateless `GradientTransformation` whose `schedule` is the rate's schedule.

    Raises:
        OptimizerError: a negative, NaN, infinite or non-numeric rate (see `as_schedule`).
    """
    schedule = as_schedule(learning_rate)

    def update(updates, state, params, step):
        lr = learning_rate_at(schedule, step)
        return jax.tree.map(lambda u: -lr.astype(u.dtype) * u, updates), state

    return GradientTransformation(lambda params: EmptyState(), update, schedule)


_GRADS_FIX = ("Pass the gradient of the loss with respect to exactly the params given to `init` "
              "(e.g. jax.grad(loss)(params, ...)).")


def _check_state(opt_state: OptState, expected: PyTree) -> None:
    """Refuse an `opt_state` from another optimizer or other params (a trace-time check: it
    compares tree structures and shapes, no values, so it costs nothing per step under jit)."""
    if not isinstance(opt_state, OptState):
        raise OptimizerError(
            f"opt_state must be the OptState returned by this optimizer's `init` or `update`, "
            f"got {type(opt_state).__name__}. Call `opt_state = opt.init(params)` first.")
    got_def, want_def = jax.tree.structure(opt_state), jax.tree.structure(expected)
    shapes = [np.shape(x) for x in jax.tree.leaves(opt_state)]
    # jaxlib ships no stub for PyTreeDef, so mypy cannot see its __eq__
    same_def = got_def == want_def  # type: ignore[operator]
    if not same_def or shapes != [x.shape for x in jax.tree.leaves(expected)]:
        raise OptimizerError(
            f"opt_state does not come from this optimizer and these params (its structure or "
            f"shapes differ from `init(params)`'s).\n  given:    {got_def}\n  expected: "
            f"{want_def}\nUse the state this optimizer's `init` returned; to switch optimizers, "
            "call the new optimizer's `init(params)`.")


def _logged(schedule, step):
    # float32 whatever the params' dtypes, so the state's structure never changes under jit;
    # a tree map because a partition's schedule gives one rate per group.
    return jax.tree.map(lambda lr: jnp.asarray(lr).astype(jnp.float32), schedule(step - 1))


def _no_step(step):
    return jnp.zeros((), jnp.float32)


def logged_schedule(transforms: tuple[GradientTransformation, ...]) -> Schedule:
    """The schedule `OptState.learning_rate` records: the last stage's that applies a rate;
    a chain that only freezes applies none and records 0.

    Raises:
        OptimizerError: no stage applies a learning rate (and none freezes).
    """
    schedules = [t.schedule for t in transforms if t.schedule is not None]
    if schedules:
        return schedules[-1]
    if any(t.frozen is not None for t in transforms):
        return _no_step
    raise OptimizerError("parts: no stage applies a learning rate; end the chain with "
                         "scale_by_learning_rate(lr) (use 1.0 if the updates are final).")


def frozen_mask(transforms: tuple[GradientTransformation, ...], params: PyTree) -> PyTree:
    """True for the arrays some stage freezes, as a pytree shaped like `params` (None if no
    stage freezes anything)."""
    masks = [t.frozen(params) for t in transforms if t.frozen is not None]
    if not masks:
        return None
    return jax.tree.map(lambda *m: functools.reduce(jnp.logical_or, m) if len(m) > 1 else m[0],
                        *masks)


def frozen_of(transforms: tuple[GradientTransformation, ...]) -> Callable[[PyTree], PyTree] | None:
    """The `frozen` field of a stage wrapping `transforms` (None when none of them freezes)."""
    if not any(t.frozen is not None for t in transforms):
        return None
    return lambda params: frozen_mask(transforms, params)


def hold_frozen(update, frozen):
    # Adding -0.0 is the exact identity of IEEE addition (+0.0 would turn a -0.0 into +0.0),
    # so a frozen parameter comes out bit-identical.
    if isinstance(frozen, bool | np.bool_):
        return jnp.full_like(update, -0.0) if frozen else update
    return jnp.where(frozen, jnp.asarray(-0.0, update.dtype), update)


def run_stages(transforms: tuple[GradientTransformation, ...], updates: PyTree, states: tuple,
               params: PyTree, step: jax.Array) -> tuple[PyTree, tuple]:
    """Pass `updates` through every stage in order; the arrays a stage freezes end at -0.0.

    Returns:
        The final updates (added to the params) and the new state of each stage.
    """
    inner = []
    for transform, state in zip(transforms, states, strict=True):
        updates, state = transform.update(updates, state, params, step)
        inner.append(state)
    frozen = frozen_mask(transforms, params)
    if frozen is not None:
        updates = jax.tree.map(hold_frozen, updates, frozen)
    return updates, tuple(inner)


def _apply(param, update):
    dtype = jnp.result_type(param)
    return (jnp.asarray(param, state_dtype(dtype)) + update).astype(dtype)


def _abstract_key(params: PyTree) -> tuple:
    leaves, treedef = jax.tree.flatten(params)
    return treedef, tuple((np.shape(x), jnp.result_type(x)) for x in leaves)


@api("jnet.optim.chain")
def chain(*parts: GradientTransformation | Optimizer) -> Optimizer:
    """Compose transformations (and the stages of whole optimizers) into one `Optimizer`.

    The gradient flows through `parts` in order; the result is added to the parameters. One
    stage must apply a learning rate (`scale_by_learning_rate` or a rule such as `adam(...)`);
    the last such stage's rate is what `OptState.learning_rate` records.

    Example (clipped, decoupled-weight-decay Adam that spares biases and norm scales):

        opt = chain(clip_by_global_norm(1.0), scale_by_adam(),
                    add_decayed_weights(1e-4, mask=weights_only), scale_by_learning_rate(1e-3))

    Args:
        *parts: `GradientTransformation`s and `Optimizer`s, in the order they apply.

    Returns:
        An `Optimizer`; errors of its `init` and `update` name ``jnet.optim.chain(...).init``
        and ``.update``.

    Raises:
        OptimizerError: a part of another type, or no stage applies a learning rate.
    """
    return build("chain", parts)


def build(rule: str, parts: tuple[GradientTransformation | Optimizer, ...]) -> Optimizer:
    """`chain(*parts)` whose `init` / `update` name ``jnet.optim.<rule>(...)`` in errors."""
    transforms: list[GradientTransformation] = []
    for part in parts:
        if isinstance(part, Optimizer):
            transforms.extend(part.transforms)
        elif isinstance(part, GradientTransformation):
            transforms.append(part)
        else:
            raise OptimizerError(f"parts must be GradientTransformations or Optimizers, got "
                                 f"{type(part).__name__}: {part!r}. Call the constructor, "
                                 "e.g. chain(clip_by_global_norm(1.0), adam(1e-3)).")
    stages = tuple(transforms)
    logged = logged_schedule(stages)

    def init(params):
        with named(f"jnet.optim.{rule}(...).init"):
            check_params(params)
            params = to_state_dtype(params)
            return OptState(step=jnp.zeros((), jnp.int32),
                            learning_rate=_logged(logged, jnp.ones((), jnp.int32)),
                            inner=tuple(t.init(params) for t in stages))

    @functools.lru_cache(maxsize=8)
    def expected_state(key):
        # The state `init` builds for params of this structure, shapes and dtypes.
        treedef, avals = key
        dummies = [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in avals]
        return jax.eval_shape(init, jax.tree.unflatten(treedef, dummies))

    def update(grads, opt_state, params):
        with named(f"jnet.optim.{rule}(...).update"):
            check_params(params)
            check_params(grads, "grads", _GRADS_FIX)
            check_like("grads", grads, "params", params, _GRADS_FIX)
            _check_state(opt_state, expected_state(_abstract_key(params)))
            step = opt_state.step + 1
            updates, wide_params = to_state_dtype(grads), to_state_dtype(params)
            updates, inner = run_stages(stages, updates, opt_state.inner, wide_params, step)
            new_params = jax.tree.map(_apply, params, updates)
            return new_params, OptState(step, _logged(logged, step), inner)

    return Optimizer(init, update, stages)
