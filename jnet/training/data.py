"""Batching of in-memory arrays with an explicit shuffle key and fixed batch shapes.

The batch size picks the three regimes of gradient descent:

    batch_size=None   full batch: one step per epoch on all N examples (GD)
    batch_size=1      one example per step, N steps per epoch (SGD)
    batch_size=k      mini-batches of k, ceil(N / k) steps per epoch (mini-batch GD)

Every batch of an epoch has the same shape, so a jitted step compiles once. When N is not a
multiple of k the last batch is either dropped (``drop_remainder=True``) or padded up to k with
examples taken again from the start of the epoch's permutation and a per-example ``weight`` of 0
for them. Weighted means make padded examples contribute nothing to the loss, the gradients or
the metrics, and the training step tells the model which examples are real (``mask=`` the
boolean ``(batch,)`` array ``weight > 0``, see `jnet.training.step`), so that layers which
look at the whole batch (BatchNorm statistics) leave them out too. PyTorch's ``DataLoader``
and Keras instead yield a smaller last batch, which costs a second compilation under
``jax.jit``.

A batch is a `Batch` ``(x, y, weight, mask)``: ``weight`` has shape ``(batch,)`` (None inside
`jnet.fit` when the batch size divides N: no padding, every weight 1); ``mask`` is None or a
boolean ``(batch, T)`` array, True on the real time steps of padded sequences
(`mask_from_lengths` builds one). The mask travels with x: every gather, shuffle and pad
applies the same rows to both.

`prepare` checks in-memory training data once (shapes, mask, NaN / inf) and returns the
`Arrays` both epoch paths of `jnet.fit` read.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jnet.errors import ArgumentError, ArgumentTypeError, DataError, entry_point


class Batch(NamedTuple):
    """One batch: inputs, targets, per-example weights ``(batch,)`` and an optional boolean
    ``(batch, T)`` sequence mask (None: every step is real)."""

    x: Any
    y: Any
    weight: Any = None
    mask: Any = None


def as_array(a: Any, name: str) -> Any:
    """`a` unchanged when it is an array; a Python list / tuple converted with `np.asarray`.

    Raises:
        DataError: a ragged list (no rectangular array), or something that is not data.
    """
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return a
    if isinstance(a, (list, tuple)):
        try:
            return np.asarray(a)
        except ValueError as e:  # ragged nesting
            raise DataError(
                f"{name} is a Python {type(a).__name__} that is not rectangular ({e}). Pass a "
                "NumPy or JAX array of shape (N, ...), e.g. `np.asarray(x, np.float32)`, "
                "padding sequences to one length and passing mask=."
            ) from None
    raise DataError(
        f"{name} must be an array (NumPy or JAX) with examples on axis 0, got "
        f"{type(a).__name__}. Convert it with `np.asarray`."
    )


def mask_from_lengths(lengths: Any, max_len: int) -> jax.Array:
    """Boolean ``(N, max_len)`` mask, True where ``t < lengths[n]`` (the real steps).

    Args:
        lengths: ``(N,)`` integer lengths of the sequences, each in ``[0, max_len]``.
        max_len: T, the padded length.

    Returns:
        A boolean array of shape ``(N, max_len)``.

    Raises:
        DataError: concrete lengths outside ``[0, max_len]`` or not of shape ``(N,)``.
        ArgumentError: `max_len` is not a non-negative int.
    """
    with entry_point("jnet.data.mask_from_lengths"):
        if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 0:
            raise ArgumentError(f"max_len must be a non-negative int (T), got {max_len!r}.")
        if jnp.ndim(lengths) != 1:
            raise DataError(f"lengths must have shape (N,), got shape {jnp.shape(lengths)}.")
        if not isinstance(lengths, jax.core.Tracer):
            values = np.asarray(lengths)
            if values.size and (values.min() < 0 or values.max() > max_len):
                raise DataError(
                    f"lengths must lie in [0, {max_len}] (the padded length T), got values "
                    f"from {values.min()} to {values.max()}. Pad the sequences to the longest "
                    "length, or pass that length as max_len."
                )
        return jnp.arange(max_len)[None, :] < jnp.asarray(lengths)[:, None]


def check_mask(mask: Any, x: Any, name: str = "mask") -> None:
    """Raise `DataError` unless `mask` is a boolean ``(N, T)`` array matching ``x.shape[:2]``."""
    if mask is None:
        return
    shape, x_shape = tuple(jnp.shape(mask)), tuple(jnp.shape(x))
    if jnp.result_type(mask) != jnp.bool_:
        raise DataError(
            f"{name} must be boolean (True on real time steps), got dtype "
            f"{jnp.result_type(mask)}. Build it with `jnet.data.mask_from_lengths(lengths, T)` "
            "or compare, e.g. `mask = tokens != pad_id`."
        )
    if len(shape) != 2 or shape != x_shape[:2]:
        raise DataError(
            f"{name} must have shape (N, T) = x.shape[:2] = {x_shape[:2]}, got {shape}. One "
            "row per example, one entry per time step."
        )


def check_dtype(name: str, arr: Any) -> None:
    """Raise `DataError` unless `arr` holds numbers that survive the conversion to the dtype
    JAX computes in.

    Without ``jax_enable_x64`` JAX turns float64 into float32 and int64 into int32 when the data
    reaches the device: 1e39 becomes inf and the id 2**32 + 3 becomes 3, a real row of an
    Embedding. Both are caught here, on the host, once.
    """
    dtype = np.dtype(arr.dtype if hasattr(arr, "dtype") else np.result_type(arr))
    if dtype.kind in "USO" or not (jnp.issubdtype(dtype, jnp.number) or dtype == np.bool_):
        what = "strings" if dtype.kind in "US" else f"values of dtype {dtype}"
        raise DataError(
            f"{name} must hold numbers, got {what} (dtype {dtype}). Encode text before "
            "training: class names as integer labels with `np.unique(y, return_inverse=True)[1]`, "
            "tokens as integer ids, numbers read as text with `x.astype(np.float32)`."
        )
    if isinstance(arr, jax.Array) or np.size(arr) == 0:
        return  # already on the device in its compute dtype
    compute = jax.dtypes.canonicalize_dtype(dtype)
    if compute == dtype or dtype == np.bool_:
        return
    values = np.asarray(arr)
    info = np.finfo(compute) if np.issubdtype(compute, np.inexact) else np.iinfo(compute)
    with np.errstate(invalid="ignore"):
        finite = values[np.isfinite(values)] if dtype.kind in "fc" else values
    low, high = (finite.min(), finite.max()) if finite.size else (0, 0)
    if low < info.min or high > info.max:
        fix = ("Rescale the data (e.g. standardise the features)" if compute.kind == "f" else
               "Map the ids / labels into that range (e.g. `np.unique(a, return_inverse=True)`)")
        raise DataError(
            f"{name} has dtype {dtype} and values from {low} to {high}, outside the range of "
            f"{compute} ([{info.min}, {info.max}]), the dtype JAX computes in: converting it "
            f"would turn them into {'inf' if compute.kind == 'f' else 'other, wrapped values'}. "
            f"{fix}, or enable 64-bit computation with "
            "`jax.config.update('jax_enable_x64', True)`."
        )


def check_arrays(x: Any, y: Any, mask: Any = None, *, check_finite: bool = True,
                 prefix: str = "") -> int:
    """Check `x` / `y` / `mask` before training; return the number of examples N.

    One pass over the data, done once, so that a bad value is reported where it is rather than
    as a NaN loss some epochs later. `prefix` names the arrays in messages (``"validation "``).

    Raises:
        DataError: no batch axis, lengths that differ on axis 0, an empty dataset, a mask that
            is not boolean (N, T), strings or values beyond the compute dtype's range (see
            `check_dtype`), or (with ``check_finite``) NaN / inf in a float array.
    """
    if jnp.ndim(x) == 0:
        raise DataError(f"{prefix}x must have a leading batch axis, got a scalar.")
    n = int(jnp.shape(x)[0])
    if y is not None and (jnp.ndim(y) == 0 or int(jnp.shape(y)[0]) != n):
        raise DataError(
            f"{prefix}x and y must hold the same number of examples along axis 0, got "
            f"x.shape={tuple(jnp.shape(x))} and y.shape={tuple(jnp.shape(y))}. Pass matching "
            "arrays (one target per input example)."
        )
    if n == 0:
        raise DataError(f"got an empty {prefix}dataset (x.shape={tuple(jnp.shape(x))}).")
    check_mask(mask, x, f"{prefix}mask")
    for name, arr in (("x", x), ("y", y)):
        if arr is not None:
            check_dtype(f"{prefix}{name}", arr)
    if check_finite:
        for name, arr in (("x", x), ("y", y)):
            if arr is None or not jnp.issubdtype(jnp.result_type(arr), jnp.inexact):
                continue
            finite = np.isfinite(np.asarray(arr))
            if not finite.all():
                bad = np.argwhere(~finite)[0]
                raise DataError(
                    f"{prefix}{name} contains {int((~finite).sum())} NaN/inf value(s), the "
                    f"first at index {tuple(int(i) for i in bad)} (example {int(bad[0])}). Clean "
                    "or impute the data before training, or pass check_finite=False to skip "
                    "this check."
                )
    return n


def resolve_batch_size(batch_size: int | None, n: int) -> int:
    """The batch size used for N examples: None -> N; larger than N -> N, with a warning.

    Raises:
        ArgumentTypeError / ArgumentError: not an int, or not positive.
    """
    if batch_size is None:
        return n
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ArgumentTypeError(
            f"batch_size must be a positive int or None (full batch), got {batch_size!r}."
        )
    if batch_size <= 0:
        raise ArgumentError(
            f"batch_size must be a positive int or None (full batch), got {batch_size}."
        )
    if batch_size > n:
        warnings.warn(
            f"batch_size={batch_size} is larger than the dataset ({n} examples); using "
            f"batch_size={n} (full-batch gradient descent). Pass batch_size=None to say so.",
            stacklevel=3,
        )
        return n
    return int(batch_size)


def steps_per_epoch(n: int, batch_size: int, drop_remainder: bool = False) -> int:
    """Steps in an epoch of N examples: ``N // k`` dropping the remainder, else ``ceil(N / k)``."""
    return n // batch_size if drop_remainder else math.ceil(n / batch_size)


def epoch_plan(
    key: jax.Array | None,
    n: int,
    batch_size: int,
    *,
    drop_remainder: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Indices and weights of one epoch's batches, shapes ``(steps, batch_size)``.

    ``key=None`` keeps the data order. Pure and jit-able for static `n` / `batch_size`: the
    epoch's shuffle is one `jax.random.permutation`, so a given key always gives the same batches.

    Raises:
        ArgumentError: ``drop_remainder`` leaves no batch.
    """
    order = jnp.arange(n) if key is None else jax.random.permutation(key, n)
    steps = steps_per_epoch(n, batch_size, drop_remainder)
    if steps == 0:
        raise ArgumentError(
            f"drop_remainder=True with batch_size={batch_size} > {n} examples leaves no batch. "
            "Use a smaller batch_size or drop_remainder=False."
        )
    total = steps * batch_size
    weight = jnp.ones((total,), jnp.float32)
    if total > n:  # pad with the first examples of the permutation, weighted 0
        order = jnp.concatenate([order, order[: total - n]])
        weight = weight.at[n:].set(0.0)
    else:
        order = order[:total]
    return order.reshape(steps, batch_size), weight.reshape(steps, batch_size)


class Arrays(NamedTuple):
    """In-memory data checked once by `prepare`; both epoch paths of `fit` read it.

    Attributes:
        x, y, mask: ``(N, ...)``, ``(N, ...)`` or None, boolean ``(N, T)`` or None; device
            arrays for the scan path, as given (NumPy stays on the host) for the per-step path.
    """

    x: Any
    y: Any
    mask: Any

    @property
    def n(self) -> int:
        """N, the number of examples."""
        return int(jnp.shape(self.x)[0])

    def take(self, idx: Any, weight: Any) -> Batch:
        """The batch of rows `idx` (batch axis last) with `weight`; x, y and mask together.

        The weight is None when the batch size divides N: no batch of an epoch can then be
        padded, and a training step given no weight passes the model the user's mask
        unchanged (`jnet.training.step.model_mask`), so the compiled program of a model
        without padding is the one it always was.
        """
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        padded = self.n % int(jnp.shape(idx)[-1]) != 0
        return Batch(self.x[idx], pick(self.y), weight if padded else None, pick(self.mask))

    def on_device(self) -> Arrays:
        """The same data as device arrays (copied once)."""
        put = lambda a: None if a is None else jnp.asarray(a)  # noqa: E731
        return Arrays(jnp.asarray(self.x), put(self.y), put(self.mask))


def prepare(x: Any, y: Any, mask: Any = None, *, check_finite: bool = True,
            prefix: str = "") -> Arrays:
    """`Arrays` from the user's ``x, y, mask`` (lists converted), checked once.

    Raises:
        DataError: see `check_arrays`.
    """
    x = as_array(x, f"{prefix}x")
    y = None if y is None else as_array(y, f"{prefix}y")
    mask = None if mask is None else as_array(mask, f"{prefix}mask")
    check_arrays(x, y, mask, check_finite=check_finite, prefix=prefix)
    return Arrays(x, y, mask)


def batches(
    x: Any,
    y: Any,
    batch_size: int | None,
    *,
    key: jax.Array | None = None,
    drop_remainder: bool = False,
    mask: Any = None,
) -> Iterator[Batch]:
    """Yield one epoch of `Batch` ``(x, y, weight, mask)`` over in-memory arrays.

    `key` shuffles (None keeps the order); every batch has `batch_size` rows (see the module
    docstring for the padded last batch). NumPy inputs give NumPy batches gathered on the host.
    `mask` (boolean ``(N, T)``) is gathered with x; the batch's mask is None without one.

    Example:
        >>> for batch in jnet.data.batches(x, y, 64, key=jax.random.key(0)):
        ...     params, state, opt_state, m = step(params, state, opt_state, batch, k)

    Raises:
        DataError / ArgumentError: see `check_arrays` and `resolve_batch_size`.
    """
    idx: jax.Array | np.ndarray
    weight: jax.Array | np.ndarray
    with entry_point("jnet.data.batches"):
        data = prepare(x, y, mask, check_finite=False)
        size = resolve_batch_size(batch_size, data.n)
        idx, weight = epoch_plan(key, data.n, size, drop_remainder=drop_remainder)
    if isinstance(data.x, np.ndarray):
        idx, weight = np.asarray(idx), np.asarray(weight)
    for i in range(idx.shape[0]):
        yield data.take(idx[i], weight[i])._replace(weight=weight[i])


def as_batch(item: Any) -> Batch:
    """One item of a user's iterable, ``(x, y)``, ``(x, y, weight)``, ``(x, y, weight, mask)``
    or a `Batch`, as a `Batch` (weight None when absent: every example is real).

    Raises:
        DataError: not such a tuple, parts that disagree on the batch axis, or x / y that
            `check_dtype` refuses (strings, values beyond the compute dtype).
    """
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3, 4):
        length = f" of length {len(item)}" if isinstance(item, (tuple, list)) else ""
        raise DataError(
            "each batch must be a tuple (x, y), (x, y, weight), (x, y, weight, mask) or a "
            f"jnet.data.Batch, got {type(item).__name__}{length}."
        )
    xb, yb, weight, mask = (*item, None, None)[:4]
    for name, arr in (("a batch's x", xb), ("a batch's y", yb)):
        if arr is not None:
            check_dtype(name, arr)
    n = int(jnp.shape(xb)[0])
    if yb is not None and int(jnp.shape(yb)[0]) != n:
        raise DataError(
            f"a batch has x.shape={tuple(jnp.shape(xb))} but y.shape={tuple(jnp.shape(yb))}; "
            "they must agree on the batch axis."
        )
    check_mask(mask, xb, "a batch's mask")
    return Batch(xb, yb, weight, mask)


def pad_batch(batch: Batch, size: int) -> Batch:
    """Pad a short batch up to `size` rows by repeating its rows with weight 0 (no recompile).

    Every batch comes back with a weight (ones when it had none), so that the full batches of
    an iterable and its padded last one share one compiled step; the step then marks the
    padding rows as not real (`jnet.training.step.model_mask`).

    Raises:
        DataError: the batch is larger than `size`.
    """
    n = int(jnp.shape(batch.x)[0])
    if batch.weight is None:
        batch = batch._replace(weight=np.ones((n,), np.float32))
    if n == size:
        return batch
    if n > size:
        raise DataError(
            f"a batch of the iterable dataset has {n} examples, more than the first batch's "
            f"{size}. Yield batches of one size (a shorter last batch is fine)."
        )
    rows = np.arange(size) % n
    weight = np.concatenate([np.asarray(batch.weight, np.float32),
                             np.zeros((size - n,), np.float32)])
    pick = lambda a: None if a is None else a[rows]  # noqa: E731
    return Batch(batch.x[rows], pick(batch.y), weight, pick(batch.mask))
