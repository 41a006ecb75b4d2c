"""Normalisation layers: batch normalization (Ioffe & Szegedy 2015), with running statistics
kept in `state`, and layer normalization (Ba, Kiros & Hinton 2016)."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jnet.layers.base import Layer, LayerError, check_float, check_last_dim, check_mask
from jnet.layers.checks import check_positive_int, is_number


def _affine_params(c: int, scale: bool, center: bool) -> dict:
    """``{"scale": ones (C,), "bias": zeros (C,)}``, each only when asked for."""
    params = {}
    if scale:
        params["scale"] = jnp.ones((c,), jnp.float32)
    if center:
        params["bias"] = jnp.zeros((c,), jnp.float32)
    return params


def _scale_shift(y: jax.Array, params: dict, scale: bool, center: bool) -> jax.Array:
    """``y * scale + bias`` with the learned (C,) params, each only when the layer has it."""
    if scale:
        y = y * params["scale"]
    if center:
        y = y + params["bias"]
    return y


def _check_eps(kind: str, eps: Any) -> None:
    if not is_number(eps) or not eps > 0:  # `not > 0`: NaN fails too
        raise LayerError(kind, f"eps must be a positive number, got {eps!r}.")


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
    _check_eps("BatchNorm", eps)

    def init_fn(key, in_shape):
        c = in_shape[_channel_axis(axis, len(in_shape) + 1) - 1]
        params = _affine_params(c, scale, center)
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
        y = _scale_shift(y, params, scale, center)
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
    _check_eps("LayerNorm", eps)

    def init_fn(key, in_shape):
        if len(in_shape) < 1:
            raise LayerError(
                "LayerNorm",
                f"expected per-example inputs with a feature axis to normalise, got in_shape "
                f"{in_shape}. Reshape scalars per example to (N, 1), or drop the LayerNorm.",
            )
        return in_shape, _affine_params(in_shape[-1], scale, center), {}

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
        y = _scale_shift(y, params, scale, center)
        return y.astype(out_dtype), state

    config = {"eps": eps, "scale": scale, "center": center}
    return Layer(init_fn, apply_fn, kind="LayerNorm", config=config, name=name,
                 keeps_float32=True)


# ----------------------------------------------------------------------------------------
# Per-example normalisations of the transformer era: RMSNorm, GroupNorm, InstanceNorm.


def RMSNorm(
    eps: float = 1e-6,
    scale: bool = True,
    name: str | None = None,
) -> Layer:
    """Root-mean-square normalisation of the last axis (Zhang & Sennrich 2019), (N, ..., C) ->
    same.

    Per example and position, with the mean taken over the C values of the last axis (no
    centring, no batch statistics):

        y = γ ⊙ x / sqrt(mean(x²) + eps)

    Params: ``{"scale": γ (C,)}`` (ones; none with ``scale=False``). No state. Statistics in
    at least float32 (``keeps_float32``); the output keeps the input's dtype. ``mask=`` is
    ignored: each position is normalised on its own.

    PyTorch: ``nn.RMSNorm(C, eps=eps)`` (weight = γ; PyTorch's default ``eps=None`` means the
    dtype's machine epsilon, so pass eps explicitly for equal outputs). Llama uses eps 1e-6,
    jnet's default. `jnet.interop.rmsnorm_from_torch` converts the weight.

    Args:
        eps: added to the mean square inside the square root, > 0.
        scale: learn γ.
        name: the layer's name inside a container.

    Returns:
        The `Layer`.

    Raises:
        LayerError: ``eps <= 0``; at init, inputs without a feature axis; at apply, non-float
            inputs or a last axis other than the C the params were made for.
    """
    _check_eps("RMSNorm", eps)

    def init_fn(key, in_shape):
        if len(in_shape) < 1:
            raise LayerError("RMSNorm", f"expected per-example inputs with a feature axis, got "
                                        f"in_shape {in_shape}. Reshape scalars to (N, 1).")
        return in_shape, _affine_params(in_shape[-1], scale, False), {}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        check_float("RMSNorm", x)
        if scale:
            check_last_dim("RMSNorm", x, params["scale"].shape[0])
        out_dtype = x.dtype
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        y = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)
        return _scale_shift(y, params, scale, False).astype(out_dtype), state

    return Layer(init_fn, apply_fn, kind="RMSNorm", config={"eps": eps, "scale": scale},
                 name=name, keeps_float32=True)


def GroupNorm(
    num_groups: int,
    eps: float = 1e-5,
    scale: bool = True,
    center: bool = True,
    name: str | None = None,
) -> Layer:
    """Group normalisation (Wu & He 2018), channels last: (N, ..., C) -> same.

    The C channels split into G = `num_groups` consecutive blocks of C / G. Per example and
    group g, with μ_g and σ²_g the mean and *biased* variance over every non-batch axis except
    the channels, and over the C / G channels of the group:

        y[n, ..., c] = γ[c] (x[n, ..., c] − μ_g) / sqrt(σ²_g + eps) + β[c],   g = c // (C / G)

    No batch statistics: training and evaluation compute the same thing. ``G = 1`` normalises
    each example over everything (LayerNorm over all axes, per-channel affine); ``G = C`` is
    `InstanceNorm`. With ``mask=`` (N, T) on (N, T, C) sequences, only real steps enter the
    statistics (padded steps are normalised with them but never shift them).

    Params: ``{"scale": γ (C,), "bias": β (C,)}`` (ones / zeros). No state. Statistics in at
    least float32 (``keeps_float32``); the output keeps the input's dtype.

    PyTorch: ``nn.GroupNorm(G, C, eps=eps)`` on channels-first inputs (same grouping: group g
    holds channels g·C/G ... (g+1)·C/G − 1; weight = γ, bias = β), after
    ``x.permute(0, 2, 3, 1)`` to channels last. `jnet.interop.groupnorm_from_torch`.

    Args:
        num_groups: G >= 1; must divide the channel count C.
        eps: added to the variance, > 0 (PyTorch's 1e-5).
        scale, center: learn γ, β.
        name: the layer's name inside a container.

    Returns:
        The `Layer`.

    Raises:
        LayerError: bad arguments; at init, C not divisible by G or no axis besides the
            channels; at apply, non-float inputs, a wrong C, or a bad mask.
    """
    num_groups = check_positive_int("GroupNorm", "num_groups", num_groups)
    _check_eps("GroupNorm", eps)
    return _group_layer("GroupNorm", num_groups, eps, scale, center, name)


def InstanceNorm(
    eps: float = 1e-5,
    scale: bool = True,
    center: bool = True,
    name: str | None = None,
) -> Layer:
    """Instance normalisation (Ulyanov et al. 2016), channels last: (N, ..., C) -> same.

    Each channel of each example is normalised over its spatial (or time) axes, with μ and σ²
    the mean and *biased* variance of those values:

        y[n, ..., c] = γ[c] (x[n, ..., c] − μ[n, c]) / sqrt(σ²[n, c] + eps) + β[c]

    `GroupNorm` with one channel per group. No running statistics: training and evaluation
    agree. With ``mask=`` (N, T) on (N, T, C), only real steps enter the statistics.

    Params: ``{"scale": γ (C,), "bias": β (C,)}`` (ones / zeros). No state.

    PyTorch: ``nn.InstanceNorm2d(C, eps=eps, affine=True)`` (``InstanceNorm1d`` for
    sequences) on channels-first inputs; PyTorch's default ``affine=False`` is
    ``InstanceNorm(scale=False, center=False)``; its ``track_running_stats=True`` has no jnet
    counterpart. `jnet.interop.instancenorm_from_torch`.

    Args:
        eps: added to the variance, > 0.
        scale, center: learn γ, β.
        name: the layer's name inside a container.

    Returns:
        The `Layer`.

    Raises:
        LayerError: ``eps <= 0``; at init, inputs without a spatial axis; at apply, non-float
            inputs, a wrong C, or a bad mask.
    """
    _check_eps("InstanceNorm", eps)
    return _group_layer("InstanceNorm", None, eps, scale, center, name)


def _group_layer(kind: str, num_groups: int | None, eps: float, scale: bool, center: bool,
                 name: str | None) -> Layer:
    """GroupNorm with `num_groups` groups; None: one group per channel (InstanceNorm)."""

    def init_fn(key, in_shape):
        if len(in_shape) < 2:
            raise LayerError(kind, f"expected per-example inputs (..., C) with at least one "
                                   f"axis besides the channels, got in_shape {in_shape}. Use "
                                   "LayerNorm for (N, C) features.")
        c = in_shape[-1]
        if num_groups is not None and c % num_groups:
            raise LayerError(kind, f"the {c} channels must split into num_groups = "
                                   f"{num_groups} equal groups. Pick a divisor of {c}.")
        return in_shape, _affine_params(c, scale, center), {}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        check_float(kind, x)
        if jnp.ndim(x) < 3:
            raise LayerError(kind, f"expected a batch (N, ..., C) of rank >= 3, got shape "
                                   f"{jnp.shape(x)}.")
        for p in params.values():
            check_last_dim(kind, x, p.shape[0], "channels")
        c = x.shape[-1]
        groups = c if num_groups is None else num_groups
        if c % groups:
            raise LayerError(kind, f"the {c} channels must split into num_groups = {groups} "
                                   "equal groups.")
        out_dtype = x.dtype
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        xg = x.reshape(*x.shape[:-1], groups, c // groups)
        weight = _step_weights(kind, mask, x)
        axes = (*range(1, x.ndim - 1), x.ndim)  # everything but the batch and the group axes
        # an example without a real step would divide by zero: its (unused) outputs stay finite
        count = jnp.maximum(jnp.sum(jnp.broadcast_to(weight, xg.shape), axis=axes,
                                    keepdims=True), 1.0)
        mean = jnp.sum(xg * weight, axis=axes, keepdims=True) / count
        var = jnp.sum(jnp.square(xg - mean) * weight, axis=axes, keepdims=True) / count
        y = ((xg - mean) * jax.lax.rsqrt(var + eps)).reshape(x.shape)
        y = _scale_shift(y, params, scale, center)
        return y.astype(out_dtype), state

    config = {"eps": eps, "scale": scale, "center": center}
    if num_groups is not None:
        config = {"num_groups": num_groups, **config}
    return Layer(init_fn, apply_fn, kind=kind, config=config, name=name, keeps_float32=True)


def _step_weights(kind: str, mask, x: jax.Array) -> jax.Array:
    """1 on the values that enter the statistics, broadcastable to x grouped (N, ..., G, C/G):
    all of them, or the real steps of a masked (N, T, C) sequence batch."""
    if mask is None or jnp.ndim(mask) == 1:  # no mask, or a per-example one: no time mask
        return jnp.ones((), x.dtype)
    if x.ndim != 3:
        raise LayerError(kind, f"mask= applies to (N, T, C) sequences, got inputs of shape "
                               f"{x.shape}. Drop the mask for images.")
    mask = check_mask(kind, mask, x.shape[0], x.shape[1])
    return mask.astype(x.dtype)[:, :, None, None]
