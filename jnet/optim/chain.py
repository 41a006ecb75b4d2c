"""`chain` (transformations -> Optimizer) and `scale_by_learning_rate`, the stage that applies
the step size. Every rule in `jnet.optim` is a `chain`, so clipping or weight decay composes
with any of them: `chain(clip_by_global_norm(1.0), adam(1e-3))`."""

from __future__ import annotations

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
    as_schedule,
    learning_rate_at,
    state_dtype,
    to_state_dtype,
)


def scale_by_learning_rate(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    """u ← -α_t u: the descent step. `learning_rate` is a number, a scalar array or a schedule
    `step -> lr` (step = updates already applied)."""
    schedule = as_schedule("scale_by_learning_rate", learning_rate)

    def update(updates, state, params, step):
        lr = learning_rate_at(schedule, step)
        return jax.tree.map(lambda u: -lr * u, updates), state

    return GradientTransformation(lambda params: EmptyState(), update, schedule)


def _check_params(where: str, params: PyTree) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise OptimizerError(
                where, f"parameter {jax.tree_util.keystr(path) or '(root)'} has dtype {dtype}; "
                "optimizers update floating-point arrays only. Keep integer or boolean "
                "constants out of the params pytree (e.g. in the layer state).")


def _check_same_structure(where: str, grads: PyTree, params: PyTree) -> None:
    grads_def, params_def = jax.tree.structure(grads), jax.tree.structure(params)
    if grads_def != params_def:
        raise OptimizerError(
            where, f"`grads` must have the structure of `params`.\n  grads:  {grads_def}\n"
            f"  params: {params_def}\nPass the gradient of the loss with respect to exactly "
            "the params given to `init` (e.g. jax.grad(loss)(params, ...)).")
    for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(params), strict=True):
        if np.shape(g) != np.shape(p):
            raise OptimizerError(where, f"a gradient of shape {np.shape(g)} was given for a "
                                 f"parameter of shape {np.shape(p)}.")


def _logged(schedule, step):
    # float32 whatever the params' dtypes, so the state's structure never changes under jit.
    return learning_rate_at(schedule, step).astype(jnp.float32)


def _apply(param, update):
    dtype = jnp.result_type(param)
    return (jnp.asarray(param, state_dtype(dtype)) + update).astype(dtype)


def chain(*parts: GradientTransformation | Optimizer) -> Optimizer:
    """Compose transformations (and the stages of whole optimizers) into one `Optimizer`.

    The gradient flows through `parts` in order; the result is added to the parameters. One
    stage must apply a learning rate (`scale_by_learning_rate` or a rule such as `adam(...)`);
    the last such stage's rate is what `OptState.learning_rate` records.

    Example (clipped, decoupled-weight-decay Adam that spares biases and norm scales):

        opt = chain(clip_by_global_norm(1.0), scale_by_adam(),
                    add_decayed_weights(1e-4, mask=weights_only), scale_by_learning_rate(1e-3))
    """
    transforms: list[GradientTransformation] = []
    for part in parts:
        if isinstance(part, Optimizer):
            transforms.extend(part.transforms)
        elif isinstance(part, GradientTransformation):
            transforms.append(part)
        else:
            raise OptimizerError("chain", f"expects GradientTransformations or Optimizers, got "
                                 f"{type(part).__name__}: {part!r}.")
    schedules = [t.learning_rate for t in transforms if t.learning_rate is not None]
    if not schedules:
        raise OptimizerError("chain", "no stage applies a learning rate; end the chain with "
                             "scale_by_learning_rate(lr) (use 1.0 if the updates are final).")
    logged = schedules[-1]

    def init(params):
        _check_params("chain.init", params)
        params = to_state_dtype(params)
        return OptState(step=jnp.zeros((), jnp.int32),
                        learning_rate=_logged(logged, jnp.ones((), jnp.int32)),
                        inner=tuple(t.init(params) for t in transforms))

    def update(grads, opt_state, params):
        _check_same_structure("Optimizer.update", grads, params)
        step = opt_state.step + 1
        updates, wide_params = to_state_dtype(grads), to_state_dtype(params)
        inner = []
        for transform, state in zip(transforms, opt_state.inner, strict=True):
            updates, state = transform.update(updates, state, wide_params, step)
            inner.append(state)
        new_params = jax.tree.map(_apply, params, updates)
        return new_params, OptState(step, _logged(logged, step), tuple(inner))

    return Optimizer(init, update, tuple(transforms))
