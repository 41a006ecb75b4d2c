"""Per-example metrics and the weighted means that make padded examples count for nothing.

A metric is a pure function ``fn(outputs, targets) -> per-example values`` of shape ``(batch,)``,
where `outputs` are the model's raw outputs (logits for a classification head). The training
loop averages it over the real examples of each batch and then over the epoch, weighting by
example count, so an epoch's value is the mean over its examples (Keras reports the same; it
differs from averaging per-batch means when the last batch is short).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jnet.errors import ArgumentError, ArgumentTypeError, DataError, check_array, public
from jnet.typing import Metric

_OUTPUTS_FIX = ("accuracy(outputs, targets) takes the model's raw outputs (batch, classes) and "
                "integer labels (batch,) or one-hot targets (batch, classes) of one batch.")


@public("jnet.training.accuracy")
def accuracy(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """1.0 where the predicted class equals the target, else 0.0; shape ``(batch,)``.

    Outputs ``(batch, classes)``: the prediction is the argmax. A single output column
    ``(batch, 1)`` is a binary logit: the prediction is ``outputs > 0``. Targets are integer
    labels ``(batch,)`` or one-hot / soft targets ``(batch, classes)`` (their argmax is the label).
    Per-step outputs ``(batch, T, classes)`` take targets ``(batch, T)`` or ``(batch, T,
    classes)``.

    Raises:
        ArgumentTypeError: outputs that are not an array of rank >= 2 (a batch axis and a class
            axis), targets that are not an array.
        DataError: targets whose shape matches neither the labels nor the outputs.
    """
    check_array("outputs", outputs, _OUTPUTS_FIX, min_ndim=2)
    check_array("targets", targets, _OUTPUTS_FIX)
    if outputs.shape[-1] == 1:
        predicted = (outputs[..., 0] > 0).astype(jnp.int32)
    else:
        predicted = jnp.argmax(outputs, axis=-1)
    if targets.ndim == outputs.ndim and outputs.shape[-1] > 1:
        targets = jnp.argmax(targets, axis=-1)
    if targets.size != predicted.size:
        raise DataError(f"targets of shape {tuple(targets.shape)} match neither the labels "
                        f"{tuple(predicted.shape)} nor the outputs {tuple(outputs.shape)} of "
                        f"this batch. {_OUTPUTS_FIX}")
    targets = jnp.reshape(targets, predicted.shape)
    return (predicted == targets).astype(jnp.float32)


BUILTIN: dict[str, Metric] = {"accuracy": accuracy, "acc": accuracy}


def resolve_metrics(
    metrics: Sequence[Any] | Mapping[str, Metric] | None, task: str | None
) -> dict[str, Metric]:
    """Map the user's ``metrics=`` to ``{name: fn}``.

    None -> accuracy for a classification head, nothing otherwise. Entries are names of
    built-in metrics (``"accuracy"``) or functions (named after ``fn.__name__``); a
    ``{name: fn}`` mapping names its functions itself.
    """
    if metrics is None:
        return {"accuracy": accuracy} if task == "classification" else {}
    if isinstance(metrics, (str,)) or callable(metrics):
        metrics = [metrics]
    named = metrics.items() if isinstance(metrics, Mapping) else [(None, m) for m in metrics]
    resolved: dict[str, Metric] = {}
    for name, m in named:
        if isinstance(m, str):
            if m not in BUILTIN:
                raise ArgumentError(
                    f"unknown metric {m!r}; built-in metrics are {sorted(BUILTIN)}. "
                    "Pass a function fn(outputs, targets) -> per-example values for others."
                )
            fn, default = BUILTIN[m], "accuracy" if m == "acc" else m
        elif callable(m):
            fn, default = m, getattr(m, "__name__", f"metric_{len(resolved)}")
        else:
            raise ArgumentTypeError(
                f"a metric must be a name or a function fn(outputs, targets) -> "
                f"per-example values, got {type(m).__name__}."
            )
        resolved[default if name is None else name] = fn
    if "loss" in resolved:
        raise ArgumentError("'loss' is always reported; do not pass it as a metric.")
    return resolved


def weighted_mean(values: jax.Array, weight: jax.Array) -> jax.Array:
    """``sum(values * weight) / sum(weight)`` (0 for an all-zero weight).

    `weight` is ``(N,)`` per example (then `values` is first averaged over its non-batch axes)
    or ``(N, T)`` per time step (`values` ``(N, T)``: a token-level mean).
    """
    values = jnp.reshape(values, (*weight.shape, -1)).mean(axis=-1)
    total = jnp.sum(weight)
    return jnp.sum(values * weight) / jnp.where(total > 0, total, 1.0)
