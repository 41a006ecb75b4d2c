"""Mixed precision: compute in bfloat16 while parameters and optimizer state stay float32.

    model16 = jnet.precision.mixed(model)                 # compute_dtype=jnp.bfloat16
    out_shape, params, state = model16.init(key)          # float32, exactly model.init's
    logits, state = model16.apply(params, state, x, key=key, train=True)   # logits float32

`mixed` returns a `Mixed` container whose one child is the model itself: the same `init`, the
same parameter names and the same `state`, so checkpoints, optimizers and
`jnet.make_train_step` work unchanged. Only `apply` differs: each leaf layer casts its
floating-point parameters and its input to `compute_dtype` before running, so matmuls and
convolutions run in bfloat16, and the model's outputs are cast back to float32. The loss is
therefore computed in float32, and because a cast is differentiable (its transpose casts back),
gradients arrive in float32, matching the float32 master parameters the optimizer updates.

Which layers stay in float32: those whose `keeps_float32` is set (`BatchNorm`, `LayerNorm`), or
any predicate given as ``keep_float32=fn(layer) -> bool``. Batch mean
and variance are reductions over thousands of values; in bfloat16's 8-bit mantissa they lose
precision, and the running statistics (state) must accumulate small updates that bfloat16 would
round away. Such layers get float32 inputs and parameters and return float32; the next layer
casts back down. `state` always keeps the dtypes `init` gave it, so a jitted step never
recompiles because a carry changed dtype.

The policy reaches every leaf through the container protocol (`serial`, `parallel`,
`residual`, `Bidirectional` or your own container is rebuilt around cast leaves for `apply`).
Because the model is kept as `Mixed`'s child, `jnet.layers.map_layers` over a mixed model sees
the original layers, and whatever it changes runs under the same policy.

Only bfloat16 (and float32, which makes `mixed` a no-op) are offered. float16's 5-bit exponent
underflows small gradients to zero unless the loss is scaled (Micikevicius et al. 2018, "Mixed
Precision Training"); bfloat16 has float32's exponent range, so it needs no loss scaling.
PyTorch's `torch.autocast` and Keras's `mixed_float16` / `mixed_bfloat16` policies make the same
choice of float32 master weights and float32 normalisation statistics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jnet.errors import ArgumentError, ArgumentTypeError
from jnet.layers.base import Layer, container, map_layers
from jnet.typing import PyTree

__all__ = ["cast_floating", "mixed"]

_OFFERED = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32))


def cast_floating(tree: PyTree, dtype: Any) -> PyTree:
    """Cast every floating-point array leaf of `tree` to `dtype`; other leaves are left alone.

    Integer arrays (labels, step counters) and PRNG keys are not floating point, so they pass
    through unchanged. A leaf already of `dtype` is returned as is (no copy).

    Raises:
        ArgumentError: `dtype` is not a dtype.
    """
    dtype = _dtype("dtype", dtype, "jnet.precision.cast_floating")

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


def _cast(layer: Layer, dtype: Any) -> Layer:
    """`layer` running in `dtype`: params and input are cast, its state keeps its dtypes.

    A leaf standing in for `layer` inside `Mixed`'s apply only: the model `Mixed` holds as its
    child is never replaced, so mapping a mixed model reads the original layers back."""

    def apply_fn(params, state, x, *, key=None, train=False, mask=None, **side_inputs):
        y, new_state = layer.apply(cast_floating(params, dtype), state, cast_floating(x, dtype),
                                   key=key, train=train, mask=mask,
                                   **cast_floating(side_inputs, dtype))
        return y, _like(new_state, state)

    return Layer(layer.init, apply_fn, kind=layer.kind, name=layer.name,
                 side_inputs=layer.side_inputs)


def _mixed(children: dict[str, Layer], *, dtype: Any, keep: Callable[[Layer], bool],
           output_dtype: Any) -> Layer:
    """The definition of the `Mixed` container around its one child, the model.

    Its init is the model's; its apply runs a copy of the model rebuilt (through the container
    protocol, so users' own containers get the policy too) with every leaf cast to `dtype`, or
    to float32 where `keep(layer)` says so, and casts the outputs to `output_dtype`."""
    (model,) = children.values()

    def policy(node: Layer) -> Layer | None:
        if keep(node):
            return _cast(node, jnp.float32)
        return None if node.children else _cast(node, dtype)

    compute = map_layers(policy, model)

    def apply_fn(params, state, x, *, key=None, train=False, mask=None, **side_inputs):
        y, new_state = compute.apply(params, state, x, key=key, train=train, mask=mask,
                                     **side_inputs)
        return cast_floating(y, output_dtype), new_state

    return Layer(lambda key, in_shape: model.init(key, in_shape), apply_fn, kind="Mixed",
                 input_shape=model.input_shape, head=model.head,
                 config={"compute_dtype": jnp.dtype(dtype).name,
                         "output_dtype": jnp.dtype(output_dtype).name},
                 side_inputs=model.side_inputs)


def _dtype(what: str, value: Any, where: str = "jnet.precision.mixed") -> jnp.dtype:
    """`value` as a NumPy dtype, or an `ArgumentError` naming `what`."""
    try:
        return jnp.dtype(value)
    except TypeError:
        raise ArgumentError(
            f"{what} must be a dtype such as jnp.bfloat16 or 'float32', got {value!r}.",
            where=where,
        ) from None


def mixed(
    model: Layer,
    compute_dtype: Any = jnp.bfloat16,
    *,
    keep_float32: Callable[[Layer], bool] | None = None,
    output_dtype: Any = jnp.float32,
) -> Layer:
    """Run `model` in `compute_dtype` with float32 parameters, state and outputs.

    Args:
        model: any jnet `Layer` (usually a `serial` model).
        compute_dtype: the dtype of activations, matmuls and convolutions: `jnp.bfloat16`
            (default) or `jnp.float32` (no-op, handy to toggle the policy from a flag).
        keep_float32: ``fn(layer) -> bool``, the layers that compute in float32 anyway.
            Default: those that ask for it (``layer.keeps_float32``: `BatchNorm`, `LayerNorm`),
            whose statistics need float32's mantissa.
        output_dtype: dtype of the model's outputs (default float32, so the loss is float32).

    Returns:
        A `Mixed` container (kind ``"Mixed"``, config ``compute_dtype`` / ``output_dtype``)
        whose child is `model`, named ``model.name or model.slug``: `model`'s `init`,
        parameter names, `head` and `input_shape`, with an `apply` that follows the policy
        above. Gradients with respect to its float32 parameters are float32.

    Raises:
        jnet.ArgumentError: for a `compute_dtype` other than bfloat16 or float32 (float16 would
            need loss scaling, which jnet does not offer).
        jnet.ArgumentTypeError: `model` is not a Layer.
    """
    if not isinstance(model, Layer):
        raise ArgumentTypeError(
            f"expected a jnet Layer (e.g. a `serial` model), got {type(model).__name__}.",
            where="jnet.precision.mixed",
        )
    dtype = _dtype("compute_dtype", compute_dtype)
    if dtype not in _OFFERED:
        raise ArgumentError(
            f"compute_dtype must be bfloat16 or float32, got {dtype}. "
            "float16 needs loss scaling to keep small gradients from underflowing, which jnet "
            "does not offer; bfloat16 has float32's range and needs none: use jnp.bfloat16.",
            where="jnet.precision.mixed",
        )
    if keep_float32 is not None and not callable(keep_float32):
        raise ArgumentTypeError(
            f"keep_float32 must be a function layer -> bool, got {keep_float32!r}. To keep "
            "layers of your choice: `keep_float32=lambda layer: layer.keeps_float32 or ...`.",
            where="jnet.precision.mixed",
        )
    if not jnp.issubdtype(_dtype("output_dtype", output_dtype), jnp.floating):
        raise ArgumentError(
            f"output_dtype must be a floating-point dtype, got {jnp.dtype(output_dtype)}: the "
            "outputs feed the loss and its gradient. Keep the default float32.",
            where="jnet.precision.mixed",
        )
    keep = (lambda layer: layer.keeps_float32) if keep_float32 is None else keep_float32
    define = functools.partial(_mixed, dtype=dtype, keep=keep,
                               output_dtype=jnp.dtype(output_dtype))
    return container(define, {model.name or model.slug: model})
