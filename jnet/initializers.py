"""Weight initializers: factories that return ``init(key, shape, dtype=jnp.float32) -> array``.

One style throughout: **every public name is a factory**. Call it (with options, or none) to
get an init function, the way `jax.nn.initializers.he_normal()` works:

    w_init = jnet.initializers.he_normal()          # an init
    w = w_init(jax.random.key(0), (3, 3, 16, 32))   # HWIO kernel
    L.Dense(10, w_init="he_normal")                  # layers also take a name ...
    L.Dense(10, w_init=jnet.initializers.constant(0.1))   # ... or any init callable

`get(spec)` turns what a layer received (a name, a factory of this module, or an init) into an
init. Everything is built from jax ops only, so inits are traceable and cost nothing under
`jax.eval_shape`.

Fans (as in `jax.nn.initializers` and Keras) for a weight of shape ``(..., in, out)``:

    receptive = prod(shape[:-2])            # kh * kw for an HWIO kernel, 1 for a (in, out) matrix
    fan_in    = shape[-2] * receptive
    fan_out   = shape[-1] * receptive

A 1-D shape ``(n,)`` has fan_in = fan_out = n; a scalar has 1 and 1.

Variance scaling draws with variance ``scale / n`` where ``n`` is fan_in, fan_out or their mean:

| name            | scale | n        | paper                              |
|-----------------|-------|----------|------------------------------------|
| glorot_* / xavier_* | 1 | (fan_in + fan_out) / 2 | Glorot & Bengio 2010     |
| he_* / kaiming_*    | 2 | fan_in   | He et al. 2015 (ReLU)              |
| lecun_*         | 1     | fan_in   | LeCun et al. 1998 (SELU)           |

``*_uniform`` draws from U(-a, a) with a = sqrt(3 * scale / n). ``*_normal`` draws from a normal
**truncated at two standard deviations** and rescaled (by 1 / 0.8796...) so the variance is
still exactly ``scale / n``, as JAX, Keras and TensorFlow do. PyTorch's ``kaiming_normal_`` /
``xavier_normal_`` are *not* truncated: pass ``truncated=False`` for those.

Defaults differ between libraries: PyTorch initialises ``nn.Linear`` / ``nn.Conv2d`` with
``kaiming_uniform_(a=sqrt(5))`` (= U(±1/sqrt(fan_in))) and its transposed ``(out, in)`` layout;
Keras uses glorot_uniform for Dense and Conv2D, as jnet does.

**The layer's context.** A bias init cannot see its weight, yet PyTorch draws every bias from
U(±1/sqrt(fan_in)) with the *weight's* fan_in. So layers call each of their inits with two
keyword arguments describing the layer, the same ones for the weight and the bias:

- ``fan_in``: the fan_in PyTorch's default init uses for this layer: ``in`` for `Dense`,
  ``prod(kernel) * C / groups`` for `Conv1D` / `Conv2D`, ``prod(kernel) * filters / groups``
  for `ConvTranspose2D` (PyTorch and Keras count a transposed kernel from its output side),
  ``hidden`` for every weight and bias of `LSTM` / `GRU` (PyTorch's 1/sqrt(hidden) rule).
- ``summands``: how many PyTorch parameters one jnet parameter is the sum of: 2 for the `LSTM`
  bias ``b`` (PyTorch's ``b_ih + b_hh``), else 1.

Only `torch_default` (the name ``"torch"``) reads them: with ``w_init="torch", b_init="torch"``
a layer is initialised as its PyTorch counterpart, distribution for distribution, without
closures. Every other init here computes its fans from the shape it is given and ignores the
context. `get` makes any init accept the context: a callable whose signature has neither
``**kwargs`` nor those names is called without it, so ``init(key, shape, dtype)`` callables
keep working; write ``def init(key, shape, dtype=jnp.float32, *, fan_in=None, **context)`` to
read it.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from jnet._rng import draw
from jnet.activations import _non_numeric_dtype
from jnet.errors import ArgumentError, ArgumentTypeError

Init = Callable[..., jax.Array]
"""``init(key, shape, dtype=jnp.float32) -> array``."""

# Std of a standard normal truncated to [-2, 2]; dividing by it restores unit variance.
_TRUNCATED_STD = 0.87962566103423978


def _number(fn: str, name: str, value: Any) -> None:
    """Raise unless the factory argument `name` of `fn` is a real number (or array of them)."""
    if isinstance(value, bool) or _non_numeric_dtype(value) is not None:
        raise ArgumentTypeError(f"{fn}: {name} must be a number, got {type(value).__name__} "
                                f"{value!r:.40}.")


def _checked(fn: str) -> Callable[[Callable[..., jax.Array]], Init]:
    """Decorate the init a factory returns: the key and shape a user passes are checked
    before JAX sees them.

    Raises:
        ArgumentTypeError: a key that is not a PRNG key, or a shape that is not a sequence of
            non-negative ints.
    """

    def decorate(init: Callable[..., jax.Array]) -> Init:
        @functools.wraps(init)
        def checked(key: Any, shape: Any, *args: Any, **kwargs: Any) -> jax.Array:
            dims = tuple(shape) if isinstance(shape, (tuple, list, np.ndarray)) else None
            if dims is None or not all(isinstance(d, (int, np.integer))
                                       and not isinstance(d, bool) and d >= 0 for d in dims):
                raise ArgumentTypeError(f"{fn}: shape must be a tuple of non-negative ints such "
                                        f"as (784, 128), got {shape!r:.40}.")
            if not hasattr(key, "dtype"):
                raise ArgumentTypeError(f"{fn}: key must be a PRNG key (jax.random.key(0)), "
                                        f"got {type(key).__name__} {key!r:.40}.")
            return init(key, dims, *args, **kwargs)

        return checked

    return decorate


def compute_fans(shape: Sequence[int]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight shaped ``(*receptive_field, in, out)``."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def variance_scaling(
    scale: float,
    mode: Literal["fan_in", "fan_out", "fan_avg"],
    distribution: Literal["uniform", "normal"],
    truncated: bool = True,
) -> Init:
    """Draw with mean 0 and variance ``scale / n``, n from `mode` (see the module docstring).

    Args:
        scale: the variance numerator (2 for He, 1 for Glorot / LeCun).
        mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"`` ((fan_in + fan_out) / 2).
        distribution: ``"uniform"`` (U(±sqrt(3 scale / n))) or ``"normal"``.
        truncated: for ``"normal"``, truncate at ±2 std and rescale to keep the variance
            (JAX / Keras); False draws an untruncated normal (PyTorch).
    """
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ArgumentError(
            f"variance_scaling: mode must be fan_in, fan_out or fan_avg, got {mode!r}."
        )
    if distribution not in ("uniform", "normal"):
        raise ArgumentError(
            f"variance_scaling: distribution must be 'uniform' or 'normal', got {distribution!r}."
        )
    _number("variance_scaling", "scale", scale)

    @_checked("variance_scaling")
    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        std = math.sqrt(scale / max(n, 1))
        if distribution == "uniform":
            limit = math.sqrt(3.0) * std
            return draw(jax.random.uniform, key, shape, dtype=dtype, minval=-limit, maxval=limit)
        if truncated:
            z = draw(jax.random.truncated_normal, key, shape, lower=-2.0, upper=2.0, dtype=dtype)
            return z * jnp.asarray(std / _TRUNCATED_STD, dtype)
        return draw(jax.random.normal, key, shape, dtype=dtype) * jnp.asarray(std, dtype)

    return init


def glorot_uniform() -> Init:
    """U(±sqrt(6 / (fan_in + fan_out))) (Glorot & Bengio 2010). Keras's default for Dense/Conv."""
    return variance_scaling(1.0, "fan_avg", "uniform")


def glorot_normal(truncated: bool = True) -> Init:
    """Normal with variance 2 / (fan_in + fan_out), truncated at ±2 std by default."""
    return variance_scaling(1.0, "fan_avg", "normal", truncated)


def he_uniform() -> Init:
    """U(±sqrt(6 / fan_in)) (He et al. 2015), for ReLU networks."""
    return variance_scaling(2.0, "fan_in", "uniform")


def he_normal(truncated: bool = True) -> Init:
    """Normal with variance 2 / fan_in (He et al. 2015), truncated at ±2 std by default."""
    return variance_scaling(2.0, "fan_in", "normal", truncated)


def lecun_uniform() -> Init:
    """U(±sqrt(3 / fan_in)) (LeCun et al. 1998)."""
    return variance_scaling(1.0, "fan_in", "uniform")


def lecun_normal(truncated: bool = True) -> Init:
    """Normal with variance 1 / fan_in (LeCun et al. 1998; the SELU init), truncated by default."""
    return variance_scaling(1.0, "fan_in", "normal", truncated)


xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
kaiming_uniform = he_uniform
kaiming_normal = he_normal


def orthogonal(scale: float = 1.0) -> Init:
    """A (scaled) random orthogonal matrix (Saxe et al. 2014), e.g. for recurrent kernels.

    The weight is viewed as a matrix of shape ``(prod(shape[:-1]), shape[-1])``. A Gaussian
    matrix is QR-factorised and Q's columns are sign-corrected by ``sign(diag(R))`` so the result
    is uniformly (Haar) distributed. With rows >= columns the columns are orthonormal
    (``Q.T @ Q = I``), otherwise the rows are (``Q @ Q.T = I``); then everything is multiplied
    by `scale`. Same as `jax.nn.initializers.orthogonal`, PyTorch's ``orthogonal_`` and Keras.
    """
    _number("orthogonal", "scale", scale)

    @_checked("orthogonal")
    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        shape = tuple(shape)
        if len(shape) < 2:
            raise ArgumentError(
                f"orthogonal: needs a shape with at least 2 dims, got {shape}. "
                "Use it for matrices or kernels, not biases."
            )
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = jax.random.normal(key, (max(rows, cols), min(rows, cols)), jnp.float32)
        q, r = jnp.linalg.qr(a)
        q = q * jnp.sign(jnp.diagonal(r))
        if rows < cols:
            q = q.T
        return (scale * q).reshape(shape).astype(dtype)

    return init


def constant(value: float) -> Init:
    """Every entry equal to `value` (e.g. a small positive bias before ReLU)."""
    _number("constant", "value", value)

    @_checked("constant")
    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        del key  # deterministic
        return jnp.full(shape, value, dtype)

    return init


def zeros() -> Init:
    """All zeros (the default bias init everywhere)."""
    return constant(0.0)


def ones() -> Init:
    """All ones (BatchNorm's scale)."""
    return constant(1.0)


def uniform(minval: float = -0.05, maxval: float = 0.05) -> Init:
    """U(minval, maxval) (Keras ``RandomUniform`` defaults). PyTorch's LSTM uses ±1/sqrt(hidden)."""
    _number("uniform", "minval", minval)
    _number("uniform", "maxval", maxval)

    @_checked("uniform")
    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return draw(jax.random.uniform, key, shape, dtype=dtype, minval=minval, maxval=maxval)

    return init


def normal(stddev: float = 0.05, mean: float = 0.0) -> Init:
    """N(mean, stddev²), untruncated (Keras ``RandomNormal`` defaults)."""
    _number("normal", "stddev", stddev)
    _number("normal", "mean", mean)

    @_checked("normal")
    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return mean + stddev * draw(jax.random.normal, key, shape, dtype=dtype)

    return init


def torch_default() -> Init:
    """PyTorch's default init of Linear, Conv*d, ConvTranspose*d, LSTM and GRU parameters.

    Draws U(±1/sqrt(fan_in)), with `fan_in` from the layer's context (see the module
    docstring); for the weights of Linear and Conv*d this is ``kaiming_uniform_(a=sqrt(5))``,
    for their biases and for every recurrent parameter PyTorch's explicit uniform. With
    ``summands=k`` it draws the sum of k independent such uniforms (the LSTM's merged bias).
    Called without a context (directly on a shape), fan_in is the shape's (`compute_fans`).
    """

    @_checked("torch_default")
    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32, *,
             fan_in: int | None = None, summands: int = 1) -> jax.Array:
        n = compute_fans(shape)[0] if fan_in is None else fan_in
        bound = 1.0 / math.sqrt(n) if n > 0 else 0.0  # PyTorch: no inputs, zero bias
        parts = draw(jax.random.uniform, key, (summands, *shape), dtype=dtype,
                     minval=-bound, maxval=bound)
        return jnp.sum(parts, axis=0)

    return init


_FACTORIES: dict[str, Callable[[], Init]] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "kaiming_uniform": kaiming_uniform,
    "kaiming_normal": kaiming_normal,
    "lecun_uniform": lecun_uniform,
    "lecun_normal": lecun_normal,
    "orthogonal": orthogonal,
    "zeros": zeros,
    "ones": ones,
    "uniform": uniform,
    "normal": normal,
    "torch": torch_default,
}

_CONTEXT = ("fan_in", "summands")


def get(spec: str | Callable, argument: str = "spec") -> Init:
    """Resolve what a layer was given as an initializer into an
    ``init(key, shape, dtype, *, fan_in=None, summands=1)``.

    Accepts a name (``"he_normal"``, ``"torch"``, ...; the factory's defaults are used), one of
    this module's factories, called or not (``he_normal`` and ``he_normal()`` both work), or any
    other callable with the init signature. The result takes the layer's context keywords
    (module docstring) and passes on those the init declares.

    Args:
        spec: the name or callable.
        argument: the name of the argument it came in (``"w_init"``), for error messages.

    Raises:
        ArgumentError: an unknown name.
        ArgumentTypeError: neither a name nor a callable, or a callable that cannot be called
            as ``init(key, shape)`` or ``init(key, shape, dtype)`` (a required dtype is given
            float32).
    """
    if isinstance(spec, str):
        if spec not in _FACTORIES:
            raise ArgumentError(
                f"{argument}: unknown initializer {spec!r}. Known names: "
                f"{', '.join(sorted(_FACTORIES))}; or pass a callable init(key, shape, dtype)."
            )
        return _with_context(_FACTORIES[spec]())
    if not callable(spec):
        raise ArgumentTypeError(
            f"{argument} must be an initializer name or a callable init(key, shape, dtype), got "
            f"{type(spec).__name__}. For a fixed value use jnet.initializers.constant(value)."
        )
    # Forgetting the call (`w_init=he_normal`) is the common slip; the factory has defaults.
    if any(spec is factory for factory in _FACTORIES.values()):
        return _with_context(spec())
    return _with_context(spec, argument)


def _with_context(init: Callable, argument: str = "init") -> Init:
    """`init` taking the context keywords, passing on only those its signature declares.

    Layers call ``init(key, shape, **context)``: an init whose signature requires a dtype
    (``def init(key, shape, dtype)``) is given float32, the dtype of jnet's params.

    Raises:
        ArgumentTypeError: an init that cannot be called as ``init(key, shape)`` or
            ``init(key, shape, dtype)``.
    """
    try:
        signature: inspect.Signature | None = inspect.signature(init)
    except (TypeError, ValueError):  # no signature to read (some builtins): pass nothing
        signature = None
    params = tuple(signature.parameters.values()) if signature else ()
    passes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    needs_dtype = signature is not None and not _binds(signature, 2)
    if signature is not None and needs_dtype and not _binds(signature, 3):
        raise ArgumentTypeError(
            f"{argument} must be callable as init(key, shape, dtype=jnp.float32), got "
            f"{getattr(init, '__qualname__', type(init).__name__)}{signature}. Give it those "
            "parameters, or use a jnet.initializers factory.")
    if passes_all and not needs_dtype:
        return init
    takes = tuple(p.name for p in params if p.name in _CONTEXT)
    default_dtype = (jnp.float32,) if needs_dtype else ()

    @functools.wraps(init)
    def with_context(key, shape, *dtype, **context):
        return init(key, shape, *(dtype or default_dtype),
                    **{k: v for k, v in context.items() if passes_all or k in takes})

    return with_context


def _binds(signature: inspect.Signature, positional: int) -> bool:
    try:
        signature.bind(*range(positional))
    except TypeError:
        return False
    return True


__all__ = [
    "Init",
    "compute_fans",
    "constant",
    "get",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "ones",
    "orthogonal",
    "torch_default",
    "uniform",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]
