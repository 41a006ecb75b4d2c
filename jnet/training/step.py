"""The pure training and evaluation steps: everything `jnet.fit` runs, as functions to jit.

    step = jnet.make_train_step(model, optimizer)            # loss from the model's head
    step = jax.jit(step, donate_argnums=(0, 1, 2))
    params, state, opt_state, metrics = step(params, state, opt_state, batch, key)

A batch is ``(x, y)``, ``(x, y, weight)``, ``(x, y, weight, mask)`` or a `jnet.data.Batch`;
the mask (boolean ``(N, T)``, True on real time steps) goes to ``model.apply(..., mask=)``.

Objective of one step, for a batch with per-example weights w (1 for real examples, 0 for the
padding of a short last batch, see `jnet.training.data`):

    L(θ) = Σ_i w_i ℓ(f_θ(x_i), y_i) / Σ_i w_i

so a padded example adds nothing to the loss or the gradient.

Real examples. A weight of 0 means "not a real example": when the batch carries weights (a
padded last batch, an iterable's batches, a ``(x, y, weight)`` tuple) the model gets
``mask=`` the boolean ``(N,)`` array ``weight > 0``, or that AND-ed into the rows of the
user's ``(N, T)`` mask, so that batch statistics (BatchNorm) leave the padding out as well. A
batch without weights (in-memory data whose batch size divides N) passes the user's mask
unchanged: its compiled program is the one it always was.

Per-step targets. When a ``(N, T)`` mask is given and the model's outputs keep the time axis
(rank >= 3 with ``outputs.shape[:2] == (N, T)``; decided from the model, never from the
width of ``y``), the targets are per step: ``y`` must be ``(N, T, ...)``, and the loss and
every metric are evaluated at each step (the per-example function applied to the slices
``[:, t]``, giving ``(N, T)`` values) and averaged with weights ``w_i * mask[i, t]``:

    L(θ) = Σ_{i,t} w_i m_it ℓ(f_θ(x)_it, y_it) / Σ_{i,t} w_i m_it

a token-level mean over the real steps, as PyTorch's ``ignore_index`` with mean reduction:
padded steps count for nothing. Otherwise (one target per sequence) the mask only reaches the
model.

`metrics` holds device arrays: ``loss`` and each metric (weighted means over the batch) and
``count`` = Σ w (Σ w m with per-step targets), so nothing forces a host sync. The learning rate
is not a step log: read it once per epoch with `jnet.optim.current_learning_rate`.

Calls per batch. An optimizer whose state declares ``calls_per_batch() -> k`` on a top-level
stage (`jnet.optim.sam`: 2, ascent then descent) is called k times on each batch inside the one
compiled step: each call takes the gradient at the params the previous call returned, with the
same batch and key. The metrics are the first call's (the loss at the params the step started
from, comparable with any other rule's); the model state is the last call's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jnet.errors import ArgumentError, ArgumentTypeError, DataError, entry_point, public
from jnet.layers.base import Layer
from jnet.optim.wrappers import calls_per_batch
from jnet.training.checks import check_model_trees
from jnet.training.data import Batch, as_batch
from jnet.training.metrics import Metric, resolve_metrics, weighted_mean
from jnet.typing import Loss as LossFn
from jnet.typing import OptimizerLike


def resolve_loss(model: Layer, loss: LossFn | None) -> LossFn:
    """The per-example loss: `loss` if given, else the model's output head.

    Raises:
        ArgumentTypeError: `model` is not a `Layer`; `loss` is not callable.
        ArgumentError: no loss and no output head.
    """
    if not isinstance(model, Layer):
        raise ArgumentTypeError(
            f"model must be a jnet Layer (e.g. `jnet.layers.serial(...)`), got "
            f"{type(model).__name__}. Build the model from jnet.layers; a name such as 'mlp' "
            "is not a model."
        )
    if loss is not None:
        if not callable(loss):
            raise ArgumentTypeError(
                "loss must be a function fn(outputs, targets) -> per-example losses, got "
                f"{type(loss).__name__}."
            )
        return loss
    head = getattr(model, "head", None)
    if head is None:
        raise ArgumentError(
            "the model has no output layer and no loss was given. End the model in "
            "`ClassificationOutput()` / `RegressionOutput()`, or pass loss=fn with "
            "fn(outputs, targets) -> per-example losses, e.g. "
            "`functools.partial(jnet.losses.mse, reduction='none')`."
        )
    return head.loss


def model_metrics(model: Layer, metrics: Any) -> dict[str, Metric]:
    """``metrics=`` as `jnet.fit` takes it, as ``{name: fn}`` (None: accuracy for a
    classification head, see `resolve_metrics`).

    Raises:
        ArgumentTypeError: `metrics` is not a name, a function, a sequence or a mapping of them.
    """
    if not (metrics is None or isinstance(metrics, (str, list, tuple, Mapping))
            or callable(metrics)):
        raise ArgumentTypeError(
            f"metrics must be a name (\"accuracy\"), a function fn(outputs, targets) -> "
            f"per-example values, a list of those or a {{name: fn}} dict, got "
            f"{type(metrics).__name__} {metrics!r:.40}."
        )
    return resolve_metrics(metrics, model.head.task if model.head is not None else None)


def unpack_batch(batch: Any) -> Batch:
    """A step's batch as a `Batch` with a float32 weight (ones when absent)."""
    batch = as_batch(batch)
    weight = jnp.ones(jnp.shape(batch.x)[:1]) if batch.weight is None else batch.weight
    return batch._replace(weight=jnp.asarray(weight, jnp.float32))


def model_mask(batch: Batch) -> Any:
    """The ``mask=`` a training step gives the model: which examples and steps are real.

    A batch without a weight (in-memory data whose batch size divides N, or an ``(x, y)``
    tuple) has no padding: the user's mask, unchanged (so such a model compiles to the same
    program as without this function). With a weight, an example is real when its weight is
    > 0: the boolean ``(N,)`` mask of real examples, or that AND-ed into the rows of the
    user's ``(N, T)`` mask, so that layers with batch statistics (BatchNorm) leave out the
    padding of a short last batch.
    """
    if batch.weight is None:
        return batch.mask
    real = jnp.asarray(batch.weight) > 0
    return real if batch.mask is None else jnp.logical_and(batch.mask, real[:, None])


def per_step(outputs: Any, y: Any, mask: Any) -> bool:
    """Whether targets are per time step: a ``(N, T)`` mask is given and the model's outputs
    keep the time axis (rank >= 3, ``outputs.shape[:2] == mask.shape``). Decided from the
    model, never from `y`, whose width may equal T by chance.

    Raises:
        DataError: the outputs are per step but `y` does not have the ``(N, T)`` leading axes.
    """
    if mask is None or jnp.ndim(mask) != 2 or jnp.ndim(outputs) < 3:
        return False
    steps = tuple(jnp.shape(mask))
    if tuple(jnp.shape(outputs)[:2]) != steps:
        return False
    if y is not None and tuple(jnp.shape(y)[:2]) != steps:
        raise DataError(
            f"the model's outputs keep the time axis (shape {tuple(jnp.shape(outputs))}, "
            f"(N, T) = {steps} as the mask), so the targets are per step and y must have "
            f"shape (N, T, ...) = {steps} + ..., got {tuple(jnp.shape(y))}. Pass one target "
            "per step, or end the model with a sequence-to-vector layer (e.g. "
            "LSTM(return_sequences=False) or GlobalAvgPool1D) for one target per sequence."
        )
    return True


def _values(fn: Callable, name: str, outputs: Any, y: Any, weights: jax.Array) -> jax.Array:
    """``fn`` per example ``(N,)``, or per step ``(N, T)`` when `weights` is ``(N, T)``.

    Raises:
        ArgumentError: `fn` returned something else than one value per example (or step).
    """
    if weights.ndim == 2:  # per-step targets: fn on each step's (N, ...) slice
        values = jax.vmap(fn, in_axes=(1, 1), out_axes=1)(outputs, y)
        expected = tuple(weights.shape)
        got = tuple(jnp.shape(values))
    else:
        values = fn(outputs, y)
        expected, got = (weights.shape[0],), tuple(jnp.shape(values))[:1]
    if got != expected or jnp.ndim(values) == 0:
        raise ArgumentError(
            f"the {name} must return per-example values of shape {expected}, got shape "
            f"{tuple(jnp.shape(values))}. Return one value per example (reduction='none' for "
            "jnet.losses; no mean over the batch)."
        )
    return values


def _weights(batch: Batch, outputs: Any) -> jax.Array:
    """Per-example weights ``(N,)``, or ``weight * mask`` ``(N, T)`` for per-step targets."""
    if per_step(outputs, batch.y, batch.mask):
        return batch.weight[:, None] * jnp.asarray(batch.mask, jnp.float32)
    return batch.weight


def _check_targets(y: Any) -> None:
    """Raise `DataError` when there are no targets to compute a loss against."""
    if y is None:
        raise DataError(
            "y is None, but a loss needs targets. Pass y= (one target per example of x), or "
            "pass x as an iterable of (x, y) batches with y=None."
        )


def _metrics(value: jax.Array, metrics: dict[str, Metric], outputs: Any, y: Any,
             weights: jax.Array) -> dict[str, jax.Array]:
    """The batch's `loss`, each metric (weighted means) and its `count` of real examples."""
    logs = {"loss": value}
    for name, fn in metrics.items():
        logs[name] = weighted_mean(_values(fn, f"metric {name!r}", outputs, y, weights), weights)
    logs["count"] = jnp.sum(weights)
    return logs


def train_step_fn(model: Layer, optimizer: OptimizerLike, loss_fn: LossFn,
                  metrics: dict[str, Metric]) -> Callable:
    """The pure step of `make_train_step` from a resolved loss and metrics; errors raised
    while tracing it carry no `where` (the caller names itself)."""

    def objective(params, state, batch, mask, key):
        outputs, new_state = model.apply(params, state, batch.x, key=key, train=True,
                                         mask=mask)
        weights = _weights(batch, outputs)
        value = weighted_mean(_values(loss_fn, "loss", outputs, batch.y, weights), weights)
        return value, (outputs, new_state, weights)

    def train_step(params, state, opt_state, batch, key):
        check_model_trees(params, state, trainable=True)
        batch = as_batch(batch)
        _check_targets(batch.y)
        mask = model_mask(batch)
        batch = unpack_batch(batch)
        logs = None
        for _ in range(calls_per_batch(opt_state)):  # sam: ascent then descent, one batch
            (value, (outputs, state, weights)), grads = jax.value_and_grad(
                objective, has_aux=True)(params, state, batch, mask, key)
            params, opt_state = optimizer.update(grads, opt_state, params)
            if logs is None:  # the loss at the params the step started from, as for any rule
                logs = _metrics(value, metrics, outputs, batch.y, weights)
        return params, state, opt_state, logs

    return train_step


def make_train_step(
    model: Layer,
    optimizer: OptimizerLike,
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

    Returns:
        The step. Its batch is ``(x, y)``, ``(x, y, weight)``, ``(x, y, weight, mask)`` or a
        `jnet.data.Batch`; the loss is the weighted mean of the module docstring. A batch
        with weights gives the model ``mask=`` the real examples (weight > 0), AND-ed into
        the rows of its ``(N, T)`` mask if it has one (`model_mask`). `key` feeds dropout
        (the model runs with ``train=True``). Returned metrics are device arrays: ``loss``,
        the metrics and ``count``.

    Raises:
        ArgumentError / ArgumentTypeError: no loss, a bad loss or metric; when the step is
            traced, a loss or metric that does not return per-example values.
        DataError: when the step is traced, a malformed batch, no targets (y None), or
            per-sequence targets for outputs that keep the time axis (`per_step`).
    """
    if not hasattr(optimizer, "update"):
        raise ArgumentTypeError(
            f"optimizer must have update(grads, opt_state, params), got "
            f"{type(optimizer).__name__}. Pass e.g. jnet.optim.adam(1e-3).",
            where="jnet.make_train_step",
        )
    with entry_point("jnet.make_train_step"):
        step = train_step_fn(model, optimizer, resolve_loss(model, loss),
                             model_metrics(model, metrics))
    return public("jnet.make_train_step")(step)


def eval_step_fn(model: Layer, loss_fn: LossFn, metrics: dict[str, Metric]) -> Callable:
    """Pure evaluation step ``(params, state, batch) -> metrics`` (``train=False``, no key)."""

    def eval_step(params, state, batch):
        batch = unpack_batch(batch)
        _check_targets(batch.y)
        outputs, _ = model.apply(params, state, batch.x, train=False, mask=batch.mask)
        weights = _weights(batch, outputs)
        value = weighted_mean(_values(loss_fn, "loss", outputs, batch.y, weights), weights)
        return _metrics(value, metrics, outputs, batch.y, weights)

    return eval_step


def make_eval_step(model: Layer, loss: LossFn | None = None, metrics: Any = None) -> Callable:
    """Pure evaluation step ``(params, state, batch) -> metrics`` (``train=False``, no key);
    `loss`, `metrics` and the batch as in `make_train_step`.

    Raises:
        ArgumentError / ArgumentTypeError: as `make_train_step`.
    """
    with entry_point("jnet.make_eval_step"):
        return eval_step_fn(model, resolve_loss(model, loss), model_metrics(model, metrics))
