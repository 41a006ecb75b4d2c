"""Mixed precision: compute in bfloat16 while parameters and optimizer state stay float32.

    model16 = jnet.precision.mixed(model)                 # compute_dtype=jnp.bfloat16
    out_shape, params, state = model16.init(key)          # float32, exactly model.init's
    logits, state = model16.apply(params, state, x, key=key, train=True)   # logits float32

`mixed` returns a `Layer` with the same `init`, the same parameter names and the same `state`
as the model it wraps, so checkpoints, optimizers and `jnet.make_train_step` work unchanged. Only
`apply` differs: each leaf layer casts its floating-point parameters and its input to
`compute_dtype` before running, so matmuls and convolutions run in bfloat16, and the model's
outputs are cast back to float32. The loss is therefore computed in float32, and because a cast
is differentiable (its transpose casts back), gradients arrive in float32, matching the float32
master parameters the optimizer updates.

Which layers stay in float32: `BatchNorm` by default (`keep_float32=("BatchNorm",)`). Batch mean
and variance are reductions over thousands of values; in bfloat16's 8-bit mantissa they lose
precision, and the running statistics (state) must accumulate small updates that bfloat16 would
round away. Such layers get float32 inputs and parameters and return float32; the next layer
casts back down. `state` always keeps the dtypes `init` gave it, so a jitted step never
recompiles because a carry changed dtype.

Containers built by `serial`, `parallel` and `residual` are rebuilt with each child wrapped, so
the policy reaches every leaf layer; any other layer is treated as a leaf and runs entirely in
`compute_dtype`.

Only bfloat16 (and float32, which makes `mixed` a no-op) are offered. float16's 5-bit exponent
underflows small gradients to zero unless the loss is scaled (Micikevicius et al. 2018, "Mixed
Precision Training"); bfloat16 has float32's exponent range, so it needs no loss scaling.
PyTorch's `torch.autocast` and Keras's `mixed_float16` / `mixed_bfloat16` policies make the same
choice of float32 master weights and float32 normalisation statistics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jnet.layers.base import Layer, PyTree
from jnet.layers.combinators import parallel, residual, serial

__all__ = ["cast_floating", "mixed"]

_OFFERED = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32))


def cast_floating(tree: PyTree, dtype: Any) -> PyTree:
    """Cast every floating-point array leaf of `tree` to `dtype`; other leaves are left alone.

    Integer arrays (labels, step counters) and PRNG keys are not floating point, so they pass
    through unchanged. A leaf already of `dtype` is returned as is (no copy).
    """

    def cast(leaf):
        leaf_dtype = getattr(leaf, "dtype", None)
        if leaf_dtype is not None and jnp.issubdtype(leaf_dtype, jnp.floating):
            return jnp.asarray(leaf).astype(dtype)
        return leaf

    return jax.tree.map(cast, tree)


def _like(tree: PyTree, reference: PyTree) -> PyTree:
    """Cast the leaves of `tree` to the dtypes of the matching leaves of `reference`."""
    return jax.tree.map(lambda x, ref: jnp.asarray(x).astype(jnp.result_type(ref)), tree,
                        reference)


def _leaf(layer: Layer, dtype: Any) -> Layer:
    """`layer` running in `dtype`: params and input are cast, its state keeps its dtypes."""

    def apply_fn(params, state, x, *, key=None, train=False):
        y, new_state = layer.apply(cast_floating(params, dtype), state, cast_floating(x, dtype),
                                   key=key, train=train)
        return y, _like(new_state, state)

    return dataclasses.replace(layer, apply_fn=apply_fn)


def _with_policy(layer: Layer, dtype: Any, keep_float32: Sequence[str]) -> Layer:
    """Rebuild `layer` so every leaf runs in `dtype`, or float32 if its kind is kept."""
    if layer.kind in keep_float32:
        return _leaf(layer, jnp.float32)
    rebuild = {"Serial": serial, "Parallel": parallel}
    if layer.kind in rebuild:
        children = [_with_policy(child, dtype, keep_float32).named(name)
                    for name, child in layer.children]
        return dataclasses.replace(rebuild[layer.kind](*children, name=layer.name),
                                   config=layer.config)
    if layer.kind == "Residual":
        (name, child), = layer.children
        return residual(_with_policy(child, dtype, keep_float32).named(name), name=layer.name)
    return _leaf(layer, dtype)


def mixed(
    model: Layer,
    compute_dtype: Any = jnp.bfloat16,
    *,
    keep_float32: Sequence[str] = ("BatchNorm",),
    output_dtype: Any = jnp.float32,
) -> Layer:
    """Run `model` in `compute_dtype` with float32 parameters, state and outputs.

    Args:
        model: any jnet `Layer` (usually a `serial` model).
        compute_dtype: the dtype of activations, matmuls and convolutions: `jnp.bfloat16`
            (default) or `jnp.float32` (no-op, handy to toggle the policy from a flag).
        keep_float32: kinds of layers that compute in float32 anyway (default: `BatchNorm`,
            whose batch statistics and running averages need float32's mantissa).
        output_dtype: dtype of the model's outputs (default float32, so the loss is float32).

    Returns:
        A `Layer` with `model`'s `init`, parameter names, `head` and metadata, whose `apply`
        follows the policy above. Gradients with respect to its float32 parameters are float32.

    Raises:
        ValueError: for a `compute_dtype` other than bfloat16 or float32 (float16 would need
            loss scaling, which jnet does not offer).
    """
    if not isinstance(model, Layer):
        raise ValueError(
            f"jnet.precision.mixed: expected a jnet Layer (e.g. a `serial` model), got "
            f"{type(model).__name__}."
        )
    dtype = jnp.dtype(compute_dtype)
    if dtype not in _OFFERED:
        raise ValueError(
            f"jnet.precision.mixed: compute_dtype must be bfloat16 or float32, got {dtype}. "
            "float16 needs loss scaling to keep small gradients from underflowing, which jnet "
            "does not offer; bfloat16 has float32's range and needs none: use jnp.bfloat16."
        )
    inner = _with_policy(model, dtype, tuple(keep_float32))

    def apply_fn(params, state, x, *, key=None, train=False):
        y, new_state = inner.apply(params, state, x, key=key, train=train)
        return cast_floating(y, output_dtype), new_state

    return dataclasses.replace(
        inner, apply_fn=apply_fn,
        config={**model.config, "compute_dtype": dtype.name},
    )
