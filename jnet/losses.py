"""Losses from logits (classification) or raw values (regression), stable for extreme inputs.

Every loss has the signature

    loss(outputs, targets, *, reduction="mean", where=None) -> array

- ``reduction="none"`` returns the per-element losses: shape ``logits.shape[:-1]`` for
  `softmax_cross_entropy` (one loss per example, or per pixel for (N, H, W, C) logits), the
  shape of the inputs for the elementwise losses. ``"sum"`` adds them up, ``"mean"`` averages.
- ``where`` is an optional boolean mask for padded batches: shape (N,) (one flag per example,
  broadcast over the remaining axes) or the full per-element loss shape. Masked-out elements
  count as 0 and are left out of the mean, so ``"mean"`` is the mean over the masked-in
  elements (0 when none is). With ``"none"`` masked-out entries are set to 0. Masking uses
  `jnp.where`, so NaN or inf in padded rows does not leak into the result.

Classification losses take logits, never probabilities: working in log space (log_softmax,
softplus) keeps them finite for logits of any size, where log(softmax(x)) would give −inf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet.activations import _non_numeric_dtype, log_softmax, softplus
from jnet.errors import ArgumentError, DataError, public

ArrayLike = Any
REDUCTIONS = ("mean", "sum", "none")


def _shape(x: ArrayLike) -> tuple[int, ...]:
    return tuple(jnp.shape(x))


def _check_same_shape(a_name: str, a: ArrayLike, b_name: str, b: ArrayLike) -> None:
    for name, value in ((a_name, a), (b_name, b)):
        _check_numeric(name, value)
    if _shape(a) != _shape(b):
        raise DataError(
            f"expected {b_name} of the same shape as {a_name} {_shape(a)}, got "
            f"{_shape(b)}. jnet does not broadcast targets; reshape them to match."
        )


def _check_numeric(name: str, value: ArrayLike) -> None:
    """Raise unless `value` is an array of numbers or bools (or converts to one)."""
    if _non_numeric_dtype(value) is not None:
        raise DataError(
            f"expected {name} as an array of numbers, got {type(value).__name__} {value!r:.80}. "
            "Pass a NumPy or JAX array.")


def _reduce(losses: jax.Array, reduction: str, where: ArrayLike | None) -> jax.Array:
    """Apply the optional per-example mask `where`, then `reduction` (module docstring)."""
    if reduction not in REDUCTIONS:
        raise ArgumentError(f"expected reduction in {REDUCTIONS}, got {reduction!r}.")
    if where is not None:
        if _non_numeric_dtype(where) is not None:
            raise ArgumentError(f"expected a boolean `where` mask, got {type(where).__name__} "
                                f"{where!r:.60}. Pass an array of bools.")
        mask = jnp.asarray(where)
        loss_shape = losses.shape
        if mask.shape != loss_shape[: mask.ndim] or mask.ndim == 0:
            raise ArgumentError(
                f"expected `where` of shape {loss_shape[:1]} (one flag per example) or "
                f"{loss_shape} (one per element), got {mask.shape}."
            )
        if mask.dtype != jnp.bool_:
            raise ArgumentError(
                f"expected a boolean `where` mask, got dtype {mask.dtype}. "
                "Use e.g. `where=mask.astype(bool)`."
            )
        mask = jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (losses.ndim - mask.ndim)),
                                loss_shape)
        losses = jnp.where(mask, losses, jnp.zeros_like(losses))
    if reduction == "none":
        return losses
    total = jnp.sum(losses)
    if reduction == "sum":
        return total
    if where is None:
        return total / losses.size
    # max(count, 1): an all-padding batch gives 0, not 0/0.
    return total / jnp.maximum(jnp.sum(mask), 1).astype(losses.dtype)


def _check_labels_in_range(labels: ArrayLike, num_classes: int) -> None:
    """Raise on integer labels outside [0, C) when they are concrete (not traced by jit).

    The check runs in NumPy: concrete labels closed over by a jitted function would otherwise
    become tracers inside `jnp` ops, and `bool()` of a tracer fails.
    """
    if isinstance(labels, jax.core.Tracer):
        return
    labels = np.asarray(labels)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise DataError(
            f"integer labels must lie in [0, {num_classes}) for logits "
            f"with {num_classes} classes on the last axis, got label {int(labels[bad][0])} "
            f"({int(bad.sum())} out of range). Check the label encoding or the number of "
            "output units."
        )


@public("jnet.losses.softmax_cross_entropy")
def softmax_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    reduction: str = "mean",
    where: ArrayLike | None = None,
) -> jax.Array:
    """Cross-entropy between softmax(logits) and the labels, computed from logits.

    Integer labels (class indices), shape ``logits.shape[:-1]`` — (N,) for (N, C) logits,
    (N, H, W) for per-pixel logits (N, H, W, C):

        ℓ = −log softmax(logits)[label] = logsumexp(logits) − logits[label]

    Targets (one-hot or soft, e.g. label smoothing), same shape as `logits`, each row a
    distribution p:

        ℓ = −Σ_c p_c·log softmax(logits)_c

    Both forms agree for one-hot targets. ∂ℓ/∂logits = softmax(logits) − p. Classes are on the
    last axis. Stable for any finite logits (through `log_softmax`); a logit of −inf (masked
    class) is fine as long as its target probability is 0.

    Integer labels outside [0, C) raise a `jnet.DataError` when the labels are concrete. Under
    `jax.jit` they cannot be checked; the loss of such an example is NaN (not a silent 0), so
    the problem shows in the metrics. PyTorch's `CrossEntropyLoss` matches this with
    ``reduction="mean"``; optax splits it into `softmax_cross_entropy` (targets) and
    `..._with_integer_labels`.

    Args:
        logits: (..., C) unnormalised log-probabilities.
        labels: integer class indices of shape ``logits.shape[:-1]``, or targets of shape
            ``logits.shape`` (float, int or bool).
        reduction: "mean", "sum" or "none" (per-element losses, shape ``logits.shape[:-1]``).
        where: optional boolean mask over examples (module docstring).

    Raises:
        DataError: non-numeric logits or labels, logits that are not floating, labels of
            neither shape, concrete integer labels outside [0, C).
        ArgumentError: an unknown `reduction`, or a `where` that is not a boolean mask of the
            loss's leading shape.
    """
    _check_numeric("logits", logits)
    _check_numeric("labels", labels)
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if logits.ndim == 0 or not jnp.issubdtype(logits.dtype, jnp.floating):
        raise DataError(
            f"expected floating-point logits with classes on the last axis, got shape "
            f"{logits.shape} and dtype {logits.dtype}."
        )
    num_classes = logits.shape[-1]
    logp = log_softmax(logits, axis=-1)
    if labels.shape == logits.shape[:-1] and jnp.issubdtype(labels.dtype, jnp.integer):
        _check_labels_in_range(labels, num_classes)
        valid = (labels >= 0) & (labels < num_classes)
        index = jnp.clip(labels, 0, num_classes - 1)[..., None]
        picked = jnp.take_along_axis(logp, index, axis=-1)[..., 0]
        losses = jnp.where(valid, -picked, jnp.nan)
    elif labels.shape == logits.shape:
        targets = labels.astype(logits.dtype)
        # 0·(−inf) would be NaN for a masked class with zero target probability.
        logp = jnp.where(targets == 0, jnp.zeros_like(logp), logp)
        losses = -jnp.sum(targets * logp, axis=-1)
    else:
        kind = "integer" if jnp.issubdtype(labels.dtype, jnp.integer) else str(labels.dtype)
        raise DataError(
            f"expected integer labels of shape {logits.shape[:-1]} (class indices) or "
            f"targets of shape {logits.shape} (one-hot / probabilities) for logits of shape "
            f"{logits.shape}, got {kind} labels of shape {labels.shape}. Float labels of shape "
            f"{logits.shape[:-1]} must be cast to int; one-hot targets must match the logits."
        )
    return _reduce(losses, reduction, where)


@public("jnet.losses.sigmoid_binary_cross_entropy")
def sigmoid_binary_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    reduction: str = "mean",
    where: ArrayLike | None = None,
) -> jax.Array:
    """Binary cross-entropy between sigmoid(logits) and labels in [0, 1], from logits.

        ℓ = −[y·log σ(x) + (1 − y)·log(1 − σ(x))] = softplus(x) − x·y
          = max(x, 0) − x·y + log(1 + e^(−|x|))

    ∂ℓ/∂x = σ(x) − y. The last form never exponentiates a positive number, so it is finite for
    any finite logit (log(sigmoid(x)) is −inf for x ≲ −104 in float32). One independent binary
    decision per element (multi-label classification); same as PyTorch's
    `BCEWithLogitsLoss` and optax's `sigmoid_binary_cross_entropy`.

    Args:
        logits: any shape.
        labels: same shape as `logits`, values in [0, 1] (float, int or bool).
        reduction, where: see the module docstring; "none" keeps the shape of `logits`.

    Raises:
        DataError: shapes that differ, non-numeric inputs, or logits that are not floating.
    """
    _check_same_shape("logits", logits, "labels", labels)
    logits = jnp.asarray(logits)
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        # labels are cast to the logits' dtype: in an int dtype soft labels would truncate
        raise DataError(
            f"expected floating-point logits, got dtype {logits.dtype}. Cast them with "
            "`logits.astype(jnp.float32)`."
        )
    labels = jnp.asarray(labels).astype(logits.dtype)
    return _reduce(softplus(logits) - logits * labels, reduction, where)


def _residual_loss(pred: ArrayLike, target: ArrayLike,
                   of_residual: Callable[[jax.Array], jax.Array], reduction: str,
                   where: ArrayLike | None) -> jax.Array:
    """`of_residual(pred − target)` elementwise, then reduced: the shared body of mse/mae/huber."""
    _check_same_shape("pred", pred, "target", target)
    return _reduce(of_residual(jnp.asarray(pred) - jnp.asarray(target)), reduction, where)


@public("jnet.losses.mse")
def mse(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    reduction: str = "mean",
    where: ArrayLike | None = None,
) -> jax.Array:
    """Mean squared error: ℓ = (pred − target)², averaged over every element by default.

    ∂ℓ/∂pred = 2·(pred − target). The regression loss (`RegressionOutput`). PyTorch's
    `MSELoss` and Keras's `MeanSquaredError` give the same mean; optax's `l2_loss` is half of it.
    """
    return _residual_loss(pred, target, jnp.square, reduction, where)


@public("jnet.losses.mae")
def mae(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    reduction: str = "mean",
    where: ArrayLike | None = None,
) -> jax.Array:
    """Mean absolute error: ℓ = |pred − target|; ∂ℓ/∂pred = sign(pred − target) (0 at 0).

    Less sensitive to outliers than `mse`; PyTorch's `L1Loss`.
    """
    return _residual_loss(pred, target, _abs_zero_grad_at_zero, reduction, where)


def _abs_zero_grad_at_zero(d: jax.Array) -> jax.Array:
    """|d| with derivative sign(d), 0 at d = 0 (JAX's `jnp.abs` takes 1 there)."""
    return jnp.where(d == 0, jnp.zeros_like(d), jnp.abs(d))


@public("jnet.losses.huber")
def huber(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    delta: float = 1.0,
    reduction: str = "mean",
    where: ArrayLike | None = None,
) -> jax.Array:
    """Huber loss (Huber 1964): quadratic near 0, linear beyond `delta`.

        ℓ = ½d²                 for |d| ≤ δ,     d = pred − target
          = δ·(|d| − ½δ)        for |d| > δ
        ∂ℓ/∂pred = d for |d| ≤ δ, δ·sign(d) otherwise

    Same as PyTorch's `HuberLoss(delta)` and optax's `huber_loss`; PyTorch's `SmoothL1Loss`
    is this divided by δ.
    """
    if not isinstance(delta, jax.core.Tracer) and (
            isinstance(delta, bool) or not isinstance(delta, (int, float, np.number, jax.Array))
            or np.ndim(delta) != 0 or not 0 < float(delta) < np.inf):
        raise ArgumentError(f"expected delta > 0, got {delta!r}. Pass a positive finite "
                            "threshold such as 1.0.")

    def of_residual(d):
        abs_d = jnp.abs(d)
        return jnp.where(abs_d <= delta, 0.5 * jnp.square(d), delta * (abs_d - 0.5 * delta))

    return _residual_loss(pred, target, of_residual, reduction, where)
