"""Normalisation layers: batch normalization (Ioffe & Szegedy 2015), with running statistics
kept in `state`, and layer normalization (Ba, Kiros & Hinton 2016)."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jnet.layers.base import Layer, LayerError, check_float, check_last_dim
from jnet.layers.checks import is_number


def BatchNorm(
    momentum: float = 0.9,
    eps: float = 1e-5,
    axis: int = -1,
    scale: bool = True,
    center: bool = True,
    unbiased_running_var: bool = True,
    name: str | None = None,
) -> Layer:
    """Normalise each channel with batch statistics in training, running statistics in eval.

    Training, with μ_B, σ²_B the mean and *biased* variance over every axis but `axis`
    (batch and spatial) of the *real* values, and n the number of real values per channel:

        y = γ (x − μ_B) / sqrt(σ²_B + eps) + β
        mean ← momentum · mean + (1 − momentum) · μ_B
        var  ← momentum · var  + (1 − momentum) · σ²_B · n / (n − 1)

    Evaluation: ``y = γ (x − mean) / sqrt(var + eps) + β``, state unchanged.

    Real values (docs/conventions.md, "Sequence masks"): all without ``mask=``; with a boolean
    ``(N,)`` mask the real examples (`jnet.fit` passes one for a padded last batch); with
    ``(N, T)`` the real steps of ``(N, T, C)`` inputs, or on ``(N, C)`` inputs the examples
    with a real step. Every position is normalised; a batch without a real value leaves the
    running statistics unchanged.

    Params: ``{"scale": γ (C,), "bias": β (C,)}`` (ones / zeros; dropped when
    ``scale=False`` / ``center=False``). State: ``{"mean": (C,), "var": (C,)}`` (zeros / ones).
    Works on (N, C), (N, T, C) and (N, H, W, C). `apply` returns the new state in training; the
    running statistics carry no gradient. Statistics are computed in at least float32 (for
    bfloat16 / float16 inputs too); the output keeps the input's dtype.

    Conventions (docs/conventions.md):

    - `momentum` is the Keras / Flax weight on the *old* value: jnet 0.9 = PyTorch
      ``momentum=0.1`` = MATLAB ``MeanDecay=0.1``. Keras's default is 0.99.
    - The running variance stores the *unbiased* batch variance (× n/(n−1)), as PyTorch does, so
      PyTorch running stats port unchanged. ``unbiased_running_var=False`` stores the biased one
      (Keras, Flax). Normalisation in training always uses the biased variance.
    - `eps` 1e-5 as PyTorch (Keras 1e-3).

    Args:
        momentum: running-average decay, ``0 <= momentum < 1``.
        eps: added to the variance inside the square root.
        axis: the channel axis of the batch (default: last, NHWC). Must not be the batch axis.
        scale, center: learn γ, β.
        unbiased_running_var: store σ²_B · n/(n−1) (PyTorch) instead of σ²_B.
        name: the layer's name inside a container.

    Returns:
        The `Layer`; `apply` takes ``mask=`` (N,) or (N, T) bool, see above.

    Raises:
        LayerError: a bad momentum or eps; at apply, a channel axis that is the batch axis,
            non-float inputs, state of another model, a mask of another shape or dtype, or
            a training batch with one value per channel.
    """
    if not is_number(momentum) or not 0.0 <= momentum < 1.0:
        raise LayerError("BatchNorm",
                         f"momentum must satisfy 0 <= momentum < 1 (a number), got {momentum!r}.")
    if not is_number(eps) or not eps > 0:
        raise LayerError("BatchNorm", f"eps must be a positive number, got {eps!r}.")

    def init_fn(key, in_shape):
        c = in_shape[_channel_axis(axis, len(in_shape) + 1) - 1]
        params = {}
        if scale:
            params["scale"] = jnp.ones((c,), jnp.float32)
        if center:
            params["bias"] = jnp.zeros((c,), jnp.float32)
        state = {"mean": jnp.zeros((c,), jnp.float32), "var": jnp.ones((c,), jnp.float32)}
        return in_shape, params, state

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        check_float("BatchNorm", x)
        ax = _channel_axis(axis, jnp.ndim(x))
        c = _channels(params, state)
        # The checks read the last axis; move the channel axis there once, compute, move back.
        x = jnp.moveaxis(x, ax, -1)
        check_last_dim("BatchNorm", x, c, "channels")
        out_dtype = x.dtype
        # Statistics of bfloat16 / float16 activations lose too much in their own precision.
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        real = _real_values("BatchNorm", mask, x)
        if train:
            mean, var, new_state = _batch_statistics(x, real, state, momentum,
                                                     unbiased_running_var)
        else:
            mean, var, new_state = state["mean"], state["var"], state
        y = (x - mean) * jax.lax.rsqrt(var + eps)
        if scale:
            y = y * params["scale"]
        if center:
            y = y + params["bias"]
        return jnp.moveaxis(y.astype(out_dtype), -1, ax), new_state

    config = {"momentum": momentum, "eps": eps, "axis": axis, "scale": scale, "center": center,
              "unbiased_running_var": unbiased_running_var}
    return Layer(init_fn, apply_fn, kind="BatchNorm", config=config, name=name,
                 keeps_float32=True)


def _channel_axis(axis: int, rank: int) -> int:
    """`axis` of a rank-`rank` batch as a non-negative axis; a `LayerError` for the batch axis
    or one out of range."""
    ax = axis % rank if -rank <= axis < rank else None
    if ax is None or ax == 0:
        raise LayerError(
            "BatchNorm",
            f"axis={axis} must name a channel axis of the rank-{rank} batch other than the "
            "batch axis 0 (default -1: channels last).",
        )
    return ax


def _channels(params: dict, state: dict) -> int:
    """C, the channels of the running statistics; a `LayerError` when the params are for
    another C (the state of another model)."""
    c = state["mean"].shape[0]
    made_for = {params[k].shape[0] for k in ("scale", "bias") if k in params}
    if made_for and made_for != {c}:
        raise LayerError(
            "BatchNorm",
            f"state holds running statistics for {c} channels but params are for "
            f"{made_for.pop()}: the state comes from another model. Pass the state this "
            "model's init (or its last training step) returned.",
        )
    return c


def _real_values(kind: str, mask: Any, x: jax.Array) -> jax.Array | None:
    """Which values of the channels-last batch `x` (N, ..., C) count in batch statistics, as
    a boolean array broadcastable to ``x.shape[:-1] + (1,)``; None when all of them do.

    A ``(N,)`` mask marks the real examples (`jnet.fit` passes one for a padded last batch).
    A ``(N, T)`` mask marks real time steps on axis 1 of ``(N, T, ..., C)`` inputs; on ``(N, C)``
    inputs (after a sequence-to-vector layer) it says which examples have any real step.

    Raises:
        LayerError: a mask that is not boolean, or of another shape than those.
    """
    if mask is None:
        return None
    n = x.shape[0]
    shape, dtype = tuple(jnp.shape(mask)), jnp.result_type(mask)
    expected: tuple[int, ...]
    if len(shape) != 2:
        expected, meaning = (n,), "True on real examples"
    else:  # (N, C) inputs have no time axis left: any T
        expected, meaning = (n, shape[1] if x.ndim == 2 else x.shape[1]), "True on real steps"
    if dtype != jnp.bool_ or shape != expected:
        raise LayerError(
            kind,
            f"expected mask= as a boolean array of shape {expected} ({meaning}; (N,) marks "
            f"real examples, (N, T) real time steps), got shape {shape} dtype {dtype}. Build a "
            "step mask with `jnet.data.mask_from_lengths(lengths, T)`.",
        )
    mask = jnp.asarray(mask)
    if mask.ndim == 2 and x.ndim == 2:
        mask = jnp.any(mask, axis=1)  # an example counts if any of its steps does
    return mask.reshape(*mask.shape, *(1,) * (x.ndim - mask.ndim))


def _batch_statistics(x: jax.Array, real: jax.Array | None, state: dict, momentum: float,
                      unbiased_running_var: bool) -> tuple[jax.Array, jax.Array, dict]:
    """Batch mean and biased variance of channels-last `x` over every other axis, counting
    only the values `real` marks (all when None), and the updated running statistics (no
    gradient flows into them)."""
    reduce = tuple(range(x.ndim - 1))
    n = math.prod(x.shape[:-1])
    correction: float | jax.Array
    keep: float | jax.Array
    if n < 2:
        raise LayerError(
            "BatchNorm",
            f"training needs more than one value per channel to estimate a variance, got "
            f"a batch of shape {x.shape}. Use a batch size > 1 or train=False.",
        )
    if real is None:  # the unmasked program, unchanged by the masked path below
        mean = jnp.mean(x, axis=reduce)
        var = jnp.mean(jnp.square(x - mean), axis=reduce)
        correction, keep = n / (n - 1), momentum
    else:  # traced counts: the correction and the decay become arrays
        count = jnp.sum(jnp.broadcast_to(real, (*x.shape[:-1], 1)), dtype=x.dtype)
        # where, not a product: a padded value may be inf / NaN and must not reach the sums
        mean = jnp.sum(jnp.where(real, x, 0), axis=reduce) / jnp.maximum(count, 1)
        var = jnp.sum(jnp.where(real, jnp.square(x - mean), 0),
                      axis=reduce) / jnp.maximum(count, 1)
        correction = jnp.where(count > 1, count / jnp.maximum(count - 1, 1), 1)
        # A batch without a real value (all padding) leaves the running statistics alone.
        keep = jnp.where(count > 0, momentum, 1.0)
    stored_var = var * correction if unbiased_running_var else var
    new_state = jax.lax.stop_gradient({
        "mean": keep * state["mean"] + (1 - keep) * mean,
        "var": keep * state["var"] + (1 - keep) * stored_var,
    })
    return mean, var, new_state


def LayerNorm(
    eps: float = 1e-5,
    scale: bool = True,
    center: bool = True,
    name: str | None = None,
) -> Layer:
    """Normalise each position over its last axis (Ba, Kiros & Hinton 2016), (N, ..., C) -> same.

    With μ and σ² the mean and *biased* variance of the C values of the last axis, per example
    and per position (no batch statistics, so training and evaluation compute the same thing):

        y = γ (x − μ) / sqrt(σ² + eps) + β

    Params: ``{"scale": γ (C,), "bias": β (C,)}`` (ones / zeros; dropped when ``scale=False`` /
    ``center=False``). No state. Statistics are computed in at least float32 and the layer sets
    ``keeps_float32``, so under `jnet.precision.mixed` it runs in float32; the output keeps the
    input's dtype. ``mask=`` is ignored: each position is normalised on its own, so padded steps
    never mix into real ones.

    PyTorch: ``nn.LayerNorm(C)`` (weight = γ, bias = β, the same eps 1e-5 and biased variance;
    ``elementwise_affine=False`` is ``scale=False, center=False``); Keras ``LayerNormalization``
    uses eps 1e-3.

    Args:
        eps: added to the variance inside the square root, > 0.
        scale, center: learn γ, β.
        name: the layer's name inside a container.

    Returns:
        The `Layer`.

    Raises:
        LayerError: ``eps <= 0``; at init, per-example inputs without a feature axis; at apply,
            non-floating inputs or a last axis other than the C the params were made for.
    """
    if not is_number(eps) or eps <= 0:
        raise LayerError("LayerNorm", f"eps must be a positive number, got {eps!r}.")

    def init_fn(key, in_shape):
        if len(in_shape) < 1:
            raise LayerError(
                "LayerNorm",
                f"expected per-example inputs with a feature axis to normalise, got in_shape "
                f"{in_shape}. Reshape scalars per example to (N, 1), or drop the LayerNorm.",
            )
        c = in_shape[-1]
        params = {}
        if scale:
            params["scale"] = jnp.ones((c,), jnp.float32)
        if center:
            params["bias"] = jnp.zeros((c,), jnp.float32)
        return in_shape, params, {}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        check_float("LayerNorm", x)
        for p in params.values():  # without params any C normalises; with them, theirs
            check_last_dim("LayerNorm", x, p.shape[0])
        out_dtype = x.dtype
        # Statistics of bfloat16 / float16 activations lose too much in their own precision.
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + eps)
        if scale:
            y = y * params["scale"]
        if center:
            y = y + params["bias"]
        return y.astype(out_dtype), state

    config = {"eps": eps, "scale": scale, "center": center}
    return Layer(init_fn, apply_fn, kind="LayerNorm", config=config, name=name,
                 keeps_float32=True)
