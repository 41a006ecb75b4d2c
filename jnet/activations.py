"""Activation functions: pure, elementwise (softmax: along one axis), numerically stable.

Every function takes an array and returns one of the same shape. Each docstring gives the
formula, its derivative f'(x), its range, and when to reach for it. The matching layers live in
`jnet.layers` under CamelCase names (`relu` -> `ReLU`, `leaky_relu` -> `LeakyReLU`, ...).

Stability: no function overflows to inf or NaN, in its value or its gradient, where the maths is
finite (checked at x = ±1e4 in the tests). Where one branch of a piecewise formula would
overflow on the other side (e.g. e^x in ELU for large positive x), that branch is evaluated on a
clamped input, so `jax.grad` never multiplies a zero by an inf.

Two formulas in the textbook this project starts from are wrong; jnet uses the right ones:

- Swish is x·σ(βx) = x / (1 + e^(−βx)). The text writes x / (1 − e^(−x)), which is 0/0 at 0 and
  positive for negative x (−2 would give 0.313; the right value is −0.238).
- ELU's derivative is 1 for x > 0 (the text says x) and α·eˣ = f(x) + α for x ≤ 0.

`ALL` maps each name to its function and `get(name_or_fn)` looks one up, so layers and plots can
take an activation by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet.errors import ArgumentError, ArgumentTypeError

ArrayLike = Any


def _non_numeric_dtype(value: Any) -> Any:
    """The dtype of `value` when it is not an array of numbers or bools (object for what
    NumPy cannot read as an array), else None; shared with `jnet.losses`' input checks."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(value).dtype
        except (TypeError, ValueError):
            dtype = np.dtype(object)
    if jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_):
        return None
    return dtype


def _array(x: ArrayLike) -> jax.Array:
    """`x` as a JAX array.

    Raises:
        ArgumentTypeError: `x` does not hold numbers (strings, objects, None).
    """
    dtype = _non_numeric_dtype(x)
    if dtype is not None:
        raise ArgumentTypeError(
            f"x must be an array of numbers, got {type(x).__name__} of dtype {dtype}. Pass a "
            "NumPy or JAX array (e.g. `np.asarray(x, np.float32)`)."
        )
    return jnp.asarray(x)


def _check_parameter(fn: str, name: str, value: Any) -> None:
    """Raise unless the parameter `name` of `fn` (a slope, α, β) holds numbers.

    Raises:
        ArgumentTypeError: a string, None or another non-numeric value.
    """
    if _non_numeric_dtype(value) is not None:
        raise ArgumentTypeError(
            f"{name} must be a number (or an array of numbers), got "
            f"{type(value).__name__} {value!r:.60}.", where=f"jnet.activations.{fn}")


def _float(x: ArrayLike) -> jax.Array:
    """`x` as an array, cast to float32 if it is not floating already (bf16/f64 kept)."""
    x = _array(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def binary_step(x: ArrayLike, *, straight_through: bool = False) -> jax.Array:
    """Heaviside step: 1 where x ≥ 0, else 0.

        f(x) = 1 if x ≥ 0 else 0          range {0, 1}
        f'(x) = 0 for x ≠ 0 (undefined at 0); jnet defines the gradient as 0 everywhere.

    A zero gradient means nothing before this function learns by gradient descent; the step is
    for thresholding outputs and for the perceptron-style models of the textbook. With
    ``straight_through=True`` the forward value is the same but the gradient is passed through
    unchanged (f' := 1, the straight-through estimator of Bengio et al. 2013, arXiv:1308.3432),
    which lets a network with hard binary units train.

    The output has the dtype of `x` when it is floating, else float32 (as for every function
    here that computes exponentials).
    """
    x = _float(x)
    # NaN in, NaN out: a NaN must not become a silent 0 (it would hide broken inputs).
    step = jnp.where(jnp.isnan(x), x, (x >= 0).astype(x.dtype))
    if straight_through:
        # Value: step. Gradient: that of the identity.
        return x + jax.lax.stop_gradient(step - x)
    return step


def linear(x: ArrayLike, a: float = 1.0) -> jax.Array:
    """Linear (identity when a = 1): f(x) = a·x.

        f'(x) = a          range (−∞, ∞) for a ≠ 0

    The activation of regression outputs; stacking layers with it collapses them into one
    linear map, so hidden layers need a non-linearity instead.
    """
    _check_parameter("linear", "a", a)
    return a * _array(x)


def sigmoid(x: ArrayLike) -> jax.Array:
    """Logistic sigmoid: σ(x) = 1 / (1 + e^(−x)).

        σ'(x) = σ(x)·(1 − σ(x))          range (0, 1) (0 and 1 reached by rounding for |x| ≳ 17
                                          in float32)

    For binary probabilities and gates (LSTM, GRU). Saturates for large |x| (gradient → 0), so
    prefer ReLU-like functions in deep hidden stacks. Computed with z = e^(−|x|) ≤ 1 on both
    sides (σ = 1/(1+z) for x ≥ 0, z/(1+z) for x < 0), so neither value nor gradient overflows.
    """
    x = _float(x)
    positive = x >= 0
    # exp of a non-positive number only: no overflow for x = ±1e4, and the `where` below
    # differentiates the right branch (d|x|/dx at 0 would be 0 under jnp.abs).
    z = jnp.exp(-jnp.where(positive, x, -x))
    return jnp.where(positive, 1 / (1 + z), z / (1 + z))


def tanh(x: ArrayLike) -> jax.Array:
    """Hyperbolic tangent: tanh(x) = (eˣ − e^(−x)) / (eˣ + e^(−x)) = 2σ(2x) − 1.

        tanh'(x) = 1 − tanh(x)²          range (−1, 1)

    Zero-centred sigmoid; the candidate activation of LSTM / GRU cells. Saturates like σ.
    """
    return jnp.tanh(_array(x))


def relu(x: ArrayLike) -> jax.Array:
    """Rectified linear unit: f(x) = max(0, x).

        f'(x) = 1 for x > 0, 0 for x ≤ 0 (jnet, PyTorch and JAX take 0 at x = 0)
        range [0, ∞)

    NaN propagates (NaN in, NaN out), as for every function here.

    The default hidden activation: cheap, no saturation for x > 0. Units stuck at x < 0 stop
    learning ("dying ReLU"); `leaky_relu`, `prelu` and `elu` keep a gradient there.
    """
    x = _array(x)
    # `x <= 0` is False for NaN, so NaN propagates (as in `jax.nn.relu` and PyTorch); the
    # zero branch at x = 0 gives the gradient 0 there.
    return jnp.where(x <= 0, jnp.zeros_like(x), x)


def leaky_relu(x: ArrayLike, negative_slope: float = 0.01) -> jax.Array:
    """Leaky ReLU: f(x) = x for x > 0, negative_slope·x for x ≤ 0.

        f'(x) = 1 for x > 0, negative_slope for x ≤ 0 (as PyTorch at x = 0)
        range (−∞, ∞) for a positive slope

    ReLU that keeps a small gradient for negative inputs. Default slope 0.01 as in JAX,
    PyTorch and MATLAB; Keras's `LeakyReLU` defaults to 0.3 (`leaky_relu` op: 0.2).
    """
    _check_parameter("leaky_relu", "negative_slope", negative_slope)
    x = _array(x)
    return jnp.where(x > 0, x, negative_slope * x)


def prelu(x: ArrayLike, alpha: ArrayLike) -> jax.Array:
    """Parametric ReLU (He et al. 2015, arXiv:1502.01852): leaky ReLU with a learned slope.

        f(x) = x for x > 0, α·x for x ≤ 0
        ∂f/∂x = 1 for x > 0, α for x ≤ 0;   ∂f/∂α = 0 for x > 0, x for x ≤ 0
        range (−∞, ∞) for α > 0

    `alpha` broadcasts against `x` (a scalar, or one slope per channel on the last axis). The
    layer `PReLU` owns and learns `alpha` (initialised to 0.25 as in the paper and PyTorch).
    """
    _check_parameter("prelu", "alpha", alpha)
    x = _array(x)
    return jnp.where(x > 0, x, alpha * x)


def elu(x: ArrayLike, alpha: float = 1.0) -> jax.Array:
    """Exponential linear unit (Clevert et al. 2015, arXiv:1511.07289).

        f(x) = x for x > 0, α·(eˣ − 1) for x ≤ 0
        f'(x) = 1 for x > 0, α·eˣ = f(x) + α for x ≤ 0
        range (−α, ∞)

    Textbook erratum: the derivative for x > 0 is 1, not x. Smooth at 0 when α = 1; negative
    outputs push mean activations toward 0, which can speed learning. The exponential branch
    sees min(x, 0), so for x = 1000 neither the value nor the gradient meets e^1000 = inf.
    """
    _check_parameter("elu", "alpha", alpha)
    x = _array(x)
    positive = x > 0
    safe = jnp.where(positive, jnp.zeros_like(x), x)
    return jnp.where(positive, x, alpha * jnp.expm1(safe))


def swish(x: ArrayLike, beta: float = 1.0) -> jax.Array:
    """Swish (Ramachandran et al. 2017, arXiv:1710.05941); SiLU when β = 1.

        f(x) = x·σ(βx) = x / (1 + e^(−βx))
        f'(x) = σ(βx) + βx·σ(βx)·(1 − σ(βx)) = β·f(x) + σ(βx)·(1 − β·f(x))
        range ≈ [−0.278/β, ∞) for β > 0 (minimum at βx ≈ −1.278)

    Textbook erratum: the text writes x / (1 − e^(−x)); that is 0/0 at x = 0 and positive for
    x < 0 (0.313 at x = −2, where swish is −0.238). A smooth, non-monotonic ReLU alternative
    used in EfficientNet-style networks. Stable for large |x| through the stable `sigmoid`.
    """
    _check_parameter("swish", "beta", beta)
    x = _array(x)
    return x * sigmoid(beta * x)


def _check_axis(x: jax.Array, axis: Any) -> None:
    """Raise unless `axis` is an int axis of `x` (negatives count from the end)."""
    if not isinstance(axis, int) or isinstance(axis, bool) or not -x.ndim <= axis < x.ndim:
        raise ArgumentError(
            f"axis must be an int in [{-x.ndim}, {x.ndim - 1}] for an input of shape "
            f"{x.shape}, got {axis!r}. Classes are usually on the last axis: axis=-1.")


def _shift_by_max(x: ArrayLike, axis: int) -> jax.Array:
    """x − max(x) along `axis`, the max held constant (softmax is shift-invariant).

    A slice whose entries are all −inf has no finite max; it is shifted by 0 instead of −inf, so
    the result is −inf there rather than NaN from (−inf) − (−inf).
    """
    x = _float(x)
    _check_axis(x, axis)
    peak = jnp.max(x, axis=axis, keepdims=True)
    peak = jnp.where(jnp.isfinite(peak), peak, jnp.zeros_like(peak))
    return x - jax.lax.stop_gradient(peak)


def softmax(x: ArrayLike, axis: int = -1) -> jax.Array:
    """Softmax along `axis`: softmax(x)_i = e^(x_i) / Σ_j e^(x_j).

        ∂softmax_i/∂x_j = softmax_i·(δ_ij − softmax_j)
        range (0, 1), summing to 1 along `axis`

    Turns logits into class probabilities (the `ClassificationOutput` link). Computed as
    e^(x − max x) / Σ e^(x − max x), so large logits do not overflow. Entries set to −inf (a
    mask) get probability 0 and gradient 0; a slice that is −inf everywhere has no distribution
    and gives NaN, as in PyTorch. For a loss, use `log_softmax` (or
    `jnet.losses.softmax_cross_entropy`), never log(softmax(x)), which underflows to −inf.
    """
    shifted = _shift_by_max(x, axis)
    unnormalised = jnp.exp(shifted)
    return unnormalised / jnp.sum(unnormalised, axis=axis, keepdims=True)


def log_softmax(x: ArrayLike, axis: int = -1) -> jax.Array:
    """Log of softmax along `axis`: log_softmax(x)_i = x_i − log Σ_j e^(x_j).

        ∂log_softmax_i/∂x_j = δ_ij − softmax_j
        range (−∞, 0]

    The stable way to get log-probabilities for cross-entropy: computed as
    (x − m) − log Σ e^(x − m) with m = max x, so it is finite wherever x is, even where
    softmax itself underflows to 0. Entries set to −inf stay −inf.
    """
    shifted = _shift_by_max(x, axis)
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=axis, keepdims=True))


def softplus(x: ArrayLike) -> jax.Array:
    """Softplus: f(x) = log(1 + eˣ), a smooth ReLU.

        f'(x) = σ(x)          range (0, ∞)

    Computed as logaddexp(0, x) = max(x, 0) + log1p(e^(−|x|)), stable for any x. Used by
    `jnet.losses.sigmoid_binary_cross_entropy`.
    """
    return jnp.logaddexp(_float(x), 0.0)


def log_sigmoid(x: ArrayLike) -> jax.Array:
    """log σ(x) = −softplus(−x), finite for any finite x (log(sigmoid(x)) is −inf for x ≲ −104).

        f'(x) = 1 − σ(x) = σ(−x)          range (−∞, 0)
    """
    return -softplus(-_array(x))


ALL: dict[str, Callable[..., jax.Array]] = {
    "binary_step": binary_step,
    "linear": linear,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "prelu": prelu,
    "elu": elu,
    "swish": swish,
    "softmax": softmax,
    "log_softmax": log_softmax,
    "softplus": softplus,
    "log_sigmoid": log_sigmoid,
}
"""Every activation by name. All but `prelu` (which needs `alpha`) work as ``fn(x)``."""


def get(name_or_fn: str | Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """The activation named `name_or_fn` (case-insensitive, ``-`` or ``_``), or the callable.

    Raises:
        jnet.ArgumentError: the name is unknown; the message lists the valid names.
        jnet.ArgumentTypeError: `name_or_fn` is neither a string nor a callable.
    """
    if callable(name_or_fn):
        return name_or_fn
    if not isinstance(name_or_fn, str):
        raise ArgumentTypeError(
            f"expected an activation name or a callable, got "
            f"{type(name_or_fn).__name__} {name_or_fn!r}.", where="jnet.activations.get"
        )
    key = name_or_fn.strip().lower().replace("-", "_")
    if key not in ALL:
        raise ArgumentError(
            f"unknown activation {name_or_fn!r}. Valid names: "
            f"{', '.join(sorted(ALL))}; or pass any elementwise function.",
            where="jnet.activations.get",
        )
    return ALL[key]
