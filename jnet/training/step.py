"""The pure training and evaluation steps: everything `jnet.fit` runs, as functions to jit.

    step = jnet.make_train_step(model, optimizer)            # loss from the model's head
    step = jax.jit(step, donate_argnums=(0, 1, 2))
    params, state, opt_state, metrics = step(params, state, opt_state, (x, y, w), key)

Objective of one step, for a batch with per-example weights w (1 for real examples, 0 for the
padding of a short last batch, see `jnet.training.data`):

    L(θ) = Σ_i w_i ℓ(f_θ(x_i), y_i) / Σ_i w_i

so a padded example adds nothing to the loss or the gradient. `metrics` holds device arrays:
``loss`` and each metric (weighted means over the batch), ``count`` = Σ w, and ``lr``, the
learning rate the optimizer used (read from its state), so nothing forces a host sync.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jnet.layers.base import Layer
from jnet.training.metrics import Metric, resolve_metrics, weighted_mean

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def resolve_loss(
    model: Layer, loss: LossFn | None, *, where: str = "jnet.make_train_step"
) -> LossFn:
    """The per-example loss: `loss` if given, else the model's output head, else a clear error."""
    if loss is not None:
        if not callable(loss):
            raise TypeError(
                f"{where}: loss must be a function fn(outputs, targets) -> per-example losses, "
                f"got {type(loss).__name__}."
            )
        return loss
    head = getattr(model, "head", None)
    if head is None:
        raise ValueError(
            f"{where}: the model has no output layer and no loss was given. End the model in "
            "`ClassificationOutput()` / `RegressionOutput()`, or pass loss=fn with "
            "fn(outputs, targets) -> per-example losses, e.g. "
            "`functools.partial(jnet.losses.mse, reduction='none')`."
        )
    return head.loss


def unpack_batch(batch: Any) -> tuple[Any, Any, jax.Array]:
    """``(x, y)`` or ``(x, y, weight)`` -> ``(x, y, weight)`` (weight 1 when absent)."""
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise ValueError(
            "train step: batch must be a tuple (x, y) or (x, y, weight), got "
            f"{type(batch).__name__}."
        )
    x, y = batch[0], batch[1]
    weight = batch[2] if len(batch) == 3 else jnp.ones((jnp.shape(x)[0],), jnp.float32)
    return x, y, jnp.asarray(weight, jnp.float32)


def _per_example(loss_fn: LossFn, outputs: jax.Array, y: Any, n: int) -> jax.Array:
    values = loss_fn(outputs, y)
    if jnp.ndim(values) == 0 or jnp.shape(values)[0] != n:
        raise ValueError(
            f"jnet training: the loss must return per-example values of shape ({n},), got shape "
            f"{tuple(jnp.shape(values))}. Use reduction='none' (jnet.losses) or drop the mean."
        )
    return values


def batch_metrics(
    loss: jax.Array, metrics: dict[str, Metric], outputs: jax.Array, y: Any, weight: jax.Array
) -> dict[str, jax.Array]:
    """The batch's `loss`, each metric (weighted means) and its count of real examples."""
    values = {"loss": loss}
    for name, fn in metrics.items():
        values[name] = weighted_mean(fn(outputs, y), weight)
    values["count"] = jnp.sum(weight)
    return values


def learning_rate(opt_state: Any) -> jax.Array | None:
    """The learning rate recorded in an optimizer state, or None if it records none.

    jnet optimizers keep the rate used at the last step in their state (a field or key named
    ``learning_rate`` or ``lr``); chained transformations nest states, so search depth-first.
    """
    for name in ("learning_rate", "lr"):
        value = _find(opt_state, name)
        if value is not None:
            return value
    return None


def _find(tree: Any, name: str) -> Any:
    if isinstance(tree, dict):
        if name in tree:
            return tree[name]
        children = list(tree.values())
    elif hasattr(tree, "_fields"):  # NamedTuple
        if name in tree._fields:
            return getattr(tree, name)
        children = list(tree)
    elif hasattr(tree, "__dataclass_fields__"):
        if name in tree.__dataclass_fields__:
            return getattr(tree, name)
        children = [getattr(tree, f) for f in tree.__dataclass_fields__]
    elif isinstance(tree, (tuple, list)):
        children = list(tree)
    else:
        return None
    for child in children:
        found = _find(child, name)
        if found is not None:
            return found
    return None


def model_metrics(model: Layer, metrics: Any) -> dict[str, Metric]:
    """``metrics=`` as `jnet.fit` takes it, as ``{name: fn}`` (None: accuracy for a
    classification head, see `resolve_metrics`)."""
    return resolve_metrics(metrics, model.head.task if model.head is not None else None)


def make_train_step(
    model: Layer,
    optimizer: Any,
    loss: LossFn | None = None,
    metrics: Any = None,
) -> Callable:
    """One pure training step ``(params, state, opt_state, batch, key) -> (params, state,
    opt_state, metrics)``, ready for `jax.jit` (donate the first three arguments).

    Args:
        model: a `Layer`; if it ends in an output layer its head gives the loss.
        optimizer: anything with ``update(grads, opt_state, params) -> (params, opt_state)``.
        loss: ``fn(outputs, targets) -> per-example losses``; overrides the head's loss.
        metrics: names (``"accuracy"``), functions ``fn(outputs, targets) -> per-example
            values`` or a ``{name: fn}`` dict, computed on the training batch's outputs (no
            extra forward pass). Default: accuracy for a classification head.

    The batch is ``(x, y)`` or ``(x, y, weight)``; the loss is the weighted mean above. `key`
    feeds dropout (the model runs with ``train=True``). Returned metrics are device arrays:
    ``loss``, the metrics, ``count`` and, when the optimizer state records it, ``lr``.
    """
    loss_fn = resolve_loss(model, loss)
    metrics = model_metrics(model, metrics)

    def objective(params, state, x, y, weight, key):
        outputs, new_state = model.apply(params, state, x, key=key, train=True)
        per_example = _per_example(loss_fn, outputs, y, weight.shape[0])
        return weighted_mean(per_example, weight), (outputs, new_state)

    def train_step(params, state, opt_state, batch, key):
        x, y, weight = unpack_batch(batch)
        (value, (outputs, new_state)), grads = jax.value_and_grad(objective, has_aux=True)(
            params, state, x, y, weight, key
        )
        params, opt_state = optimizer.update(grads, opt_state, params)
        logs = batch_metrics(value, metrics, outputs, y, weight)
        lr = learning_rate(opt_state)
        if lr is not None:
            logs["lr"] = jnp.asarray(lr, jnp.float32)
        return params, new_state, opt_state, logs

    return train_step


def make_eval_step(model: Layer, loss: LossFn | None = None, metrics: Any = None) -> Callable:
    """Pure evaluation step ``(params, state, batch) -> metrics`` (``train=False``, no key);
    `loss` and `metrics` as in `make_train_step`."""
    loss_fn = resolve_loss(model, loss, where="jnet.evaluate")
    metrics = model_metrics(model, metrics)

    def eval_step(params, state, batch):
        x, y, weight = unpack_batch(batch)
        outputs, _ = model.apply(params, state, x, train=False)
        value = weighted_mean(_per_example(loss_fn, outputs, y, weight.shape[0]), weight)
        return batch_metrics(value, metrics, outputs, y, weight)

    return eval_step
