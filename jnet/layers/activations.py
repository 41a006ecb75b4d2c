"""Activation layers: one layer per function of `jnet.activations`, named in CamelCase.

All keep the shape of their input, have no params or state (except `PReLU`'s learned slope)
and accept floating-point inputs only. The maths of each is in the docstring of its function:

    BinaryStep  -> activations.binary_step      Sigmoid -> activations.sigmoid
    Linear      -> activations.linear           Tanh    -> activations.tanh
    ReLU        -> activations.relu             ELU     -> activations.elu
    LeakyReLU   -> activations.leaky_relu       Swish   -> activations.swish
    PReLU       -> activations.prelu            Softmax -> activations.softmax
    Activation(fn_or_name) wraps any other elementwise function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet import activations
from jnet.errors import Error
from jnet.layers.base import Layer, LayerError, Shape, check_float, parameter_free
from jnet.layers.checks import is_int


def elementwise_layer(
    kind: str,
    fn: Callable[[jax.Array], jax.Array],
    *,
    name: str | None,
    config: dict | None = None,
    slug: str = "",
    check_shape: Callable[[Shape], None] | None = None,
) -> Layer:
    """A parameter-free layer computing `fn(x)` on float inputs, keeping the shape of `x`.

    `jnet.layers.parameter_free` specialised to activations (and the output heads): float
    inputs only; `check_shape(in_shape)` may raise a `LayerError` at init.
    """

    def out_shape(in_shape):
        if check_shape is not None:
            check_shape(in_shape)
        return in_shape

    return parameter_free(kind, fn, out_shape=out_shape, name=name, config=config, slug=slug,
                          float_only=True)


def _check_number(kind: str, what: str, value: Any) -> float:
    """`value` as a Python float, or raise unless it is a real number (checked at construction,
    not deep in a trace). A Python float is weakly typed, so a NumPy float32 hyperparameter
    does not promote bfloat16 activations to float32."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or (
            not np.isfinite(value)):
        raise LayerError(kind, f"{what} must be a finite real number, got "
                               f"{type(value).__name__} {value!r}.")
    return float(value)


def BinaryStep(straight_through: bool = False, name: str | None = None) -> Layer:
    """y = 1 where x ≥ 0, else 0; gradient 0 (or 1 with ``straight_through=True``).

    See `jnet.activations.binary_step`.
    """
    if not isinstance(straight_through, (bool, np.bool_)):
        raise LayerError("BinaryStep", f"straight_through must be True or False, got "
                                       f"{straight_through!r}.")
    fn = functools.partial(activations.binary_step, straight_through=straight_through)
    return elementwise_layer("BinaryStep", fn, name=name,
                             config={"straight_through": straight_through})


def Linear(a: float = 1.0, name: str | None = None) -> Layer:
    """y = a·x (the identity by default). See `jnet.activations.linear`."""
    a = _check_number("Linear", "a", a)
    return elementwise_layer("Linear", functools.partial(activations.linear, a=a), name=name,
                             config={"a": a})


def Sigmoid(name: str | None = None) -> Layer:
    """y = 1 / (1 + e^(−x)). See `jnet.activations.sigmoid`."""
    return elementwise_layer("Sigmoid", activations.sigmoid, name=name)


def Tanh(name: str | None = None) -> Layer:
    """y = tanh(x). See `jnet.activations.tanh`."""
    return elementwise_layer("Tanh", activations.tanh, name=name)


def ReLU(name: str | None = None) -> Layer:
    """y = max(0, x). See `jnet.activations.relu`."""
    return elementwise_layer("ReLU", activations.relu, name=name, slug="relu")


def LeakyReLU(negative_slope: float = 0.01, name: str | None = None) -> Layer:
    """y = x for x > 0, negative_slope·x otherwise (default 0.01; Keras: 0.3).

    See `jnet.activations.leaky_relu`.
    """
    negative_slope = _check_number("LeakyReLU", "negative_slope", negative_slope)
    fn = functools.partial(activations.leaky_relu, negative_slope=negative_slope)
    return elementwise_layer("LeakyReLU", fn, name=name, config={"negative_slope": negative_slope},
                             slug="leaky_relu")


def ELU(alpha: float = 1.0, name: str | None = None) -> Layer:
    """y = x for x > 0, α·(eˣ − 1) otherwise. See `jnet.activations.elu`."""
    alpha = _check_number("ELU", "alpha", alpha)
    return elementwise_layer("ELU", functools.partial(activations.elu, alpha=alpha), name=name,
                             config={"alpha": alpha}, slug="elu")


def Swish(beta: float = 1.0, name: str | None = None) -> Layer:
    """y = x·σ(βx) (SiLU for β = 1). See `jnet.activations.swish`."""
    beta = _check_number("Swish", "beta", beta)
    return elementwise_layer("Swish", functools.partial(activations.swish, beta=beta), name=name,
                             config={"beta": beta})


def Softmax(axis: int = -1, name: str | None = None) -> Layer:
    """Softmax along the per-example `axis` (default: the last, the classes).

    `axis` counts per-example axes like `in_shape` (0 is the first axis after the batch);
    negative values count from the end. See `jnet.activations.softmax`. To train a classifier
    end the model in `ClassificationOutput` instead: it applies the softmax only for
    prediction and computes the loss from logits, which is stable.
    """
    if not is_int(axis):
        raise LayerError("Softmax", f"axis must be an int (a per-example axis), got {axis!r}.")
    axis = int(axis)
    # Per-example axis -> batch axis: shift non-negative axes past the batch dimension.
    batch_axis = axis if axis < 0 else axis + 1

    def check_shape(in_shape):
        if not -len(in_shape) <= axis < len(in_shape):
            raise LayerError(
                "Softmax",
                f"axis {axis} is out of range for per-example inputs of shape {in_shape} "
                f"(valid: {-len(in_shape)} to {len(in_shape) - 1}). The batch axis is not "
                "counted.",
            )

    return elementwise_layer("Softmax", functools.partial(activations.softmax, axis=batch_axis),
                             name=name, config={"axis": axis}, check_shape=check_shape)


def Activation(fn_or_name: str | Callable[..., jax.Array], name: str | None = None,
               **kwargs: Any) -> Layer:
    """Any elementwise function as a layer, e.g. ``Activation("elu", alpha=0.5)``.

    `fn_or_name` is a name from `jnet.activations.ALL` or a callable (``Activation(jnp.sin)``);
    `kwargs` are passed to it.
    `init` traces the function once on the input shape (no arrays allocated) and raises if it
    fails or changes the shape, so mistakes show at init rather than inside training.
    """
    try:
        fn = activations.get(fn_or_name)
    except Error as e:
        raise LayerError("Activation", f"fn_or_name: {e.message}") from None
    label = fn_or_name if isinstance(fn_or_name, str) else getattr(fn, "__name__", repr(fn))
    call = functools.partial(fn, **kwargs) if kwargs else fn

    def check_shape(in_shape):
        probe = jax.ShapeDtypeStruct((1, *in_shape), jnp.float32)
        try:
            out = jax.eval_shape(call, probe)
        except TypeError as e:
            raise LayerError(
                "Activation",
                f"calling {label}(x{''.join(f', {k}=...' for k in kwargs)}) failed: {e}. "
                "Pass the function's extra arguments as keywords, e.g. "
                "`Activation('leaky_relu', negative_slope=0.1)`; for a learned slope use PReLU().",
            ) from None
        if getattr(out, "shape", None) != probe.shape:
            raise LayerError(
                "Activation",
                f"{label} must keep the shape of its input, but maps {probe.shape} to "
                f"{getattr(out, 'shape', type(out).__name__)}. Use a reshape or pooling layer "
                "for shape changes.",
            )

    return elementwise_layer("Activation", call, name=name, config={"fn": label, **kwargs},
                             check_shape=check_shape)


def PReLU(alpha_init: float = 0.25, shared_axes: Sequence[int] | str | None = None,
          name: str | None = None) -> Layer:
    """Parametric ReLU with a learned slope: y = x for x > 0, α·x otherwise (He et al. 2015).

    Params: ``{"alpha": shape}``, initialised to `alpha_init` (0.25 as in the paper, PyTorch
    and MATLAB). By default there is one α per channel (the last axis): shape (C,) for inputs
    (..., C), like PyTorch's ``PReLU(num_parameters=C)`` and the paper's channel-wise variant.

    `shared_axes` lists the per-example axes (0 = first axis after the batch, negatives allowed)
    along which one α is shared:

    - ``None`` (default): all but the last -> α of shape (C,).
    - ``()``: none -> one α per element, shape `in_shape` (Keras's default).
    - ``"all"`` or every axis -> one scalar α, shape () (PyTorch's default ``num_parameters=1``).

    α's shape is `in_shape` with the shared axes set to 1 and leading 1s dropped, so it
    broadcasts against the (N, ...) batch. Derivatives: ∂y/∂x = 1 or α, ∂y/∂α = 0 or x. See
    `jnet.activations.prelu`.
    """
    kind = "PReLU"
    _check_number(kind, "alpha_init", alpha_init)
    if isinstance(shared_axes, str) and shared_axes != "all":
        raise LayerError(
            kind,
            f"shared_axes must be None, 'all' or a sequence of per-example axes, got "
            f"{shared_axes!r}.",
        )

    def alpha_shape(in_shape: Shape) -> Shape:
        rank = len(in_shape)
        if isinstance(shared_axes, str):  # "all", the one string the check above lets in
            shared = set(range(rank))
        elif shared_axes is None:
            shared = set(range(rank - 1))
        else:
            bad = [a for a in shared_axes if not -rank <= a < rank]
            if bad:
                raise LayerError(
                    kind,
                    f"shared_axes {tuple(shared_axes)} has axes {bad} out of range for "
                    f"per-example inputs of shape {in_shape} (valid: {-rank} to {rank - 1}; "
                    "the batch axis is not counted).",
                )
            shared = {a % rank for a in shared_axes}
        shape = [1 if i in shared else d for i, d in enumerate(in_shape)]
        while shape and shape[0] == 1:
            shape.pop(0)
        return tuple(shape)

    def init_fn(key, in_shape):
        alpha = jnp.full(alpha_shape(in_shape), alpha_init, dtype=jnp.float32)
        return in_shape, {"alpha": alpha}, {}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        check_float(kind, x)
        alpha = params["alpha"]
        features = jnp.shape(x)[1:]
        fits = alpha.ndim <= len(features) and all(
            a in (1, d) for a, d in zip(alpha.shape[::-1], features[::-1], strict=False)
        )
        if not fits:
            raise LayerError(
                kind,
                f"alpha of shape {alpha.shape} does not fit inputs of shape "
                f"{tuple(jnp.shape(x))} (per-example {tuple(features)}). Re-run init with the "
                "right in_shape, or fix the layer before this one.",
            )
        return activations.prelu(x, alpha.astype(x.dtype)), state

    return Layer(init_fn, apply_fn, kind=kind, name=name,
                 config={"alpha_init": alpha_init, "shared_axes": shared_axes}, slug="prelu")
