"""Batching of in-memory arrays with an explicit shuffle key and fixed batch shapes.

The batch size picks the seed's three regimes of gradient descent:

    batch_size=None   full batch: one step per epoch on all N examples (GD)
    batch_size=1      one example per step, N steps per epoch (SGD)
    batch_size=k      mini-batches of k, ceil(N / k) steps per epoch (mini-batch GD)

Every batch of an epoch has the same shape, so a jitted step compiles once. When N is not a
multiple of k the last batch is either dropped (``drop_remainder=True``) or padded up to k with
examples taken again from the start of the epoch's permutation and a per-example ``weight`` of 0
for them. Weighted means make padded examples contribute nothing to the loss, the gradients or
the metrics. They are real examples rather than zeros so that layers which look at the whole
batch (BatchNorm statistics) see data from the right distribution; they do count there, with at
most k - 1 repeated examples in one batch per epoch. PyTorch's ``DataLoader`` and Keras instead
yield a smaller last batch, which costs a second compilation under ``jax.jit``.

A batch is a tuple ``(x, y, weight)``; ``weight`` has shape ``(batch,)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Batch = tuple[Any, Any, Any]


def check_arrays(x: Any, y: Any, *, where: str = "jnet.fit", check_finite: bool = True) -> int:
    """Check `x` / `y` before training; return the number of examples N.

    Raises ValueError when the leading axes differ or (with ``check_finite``) when a
    floating-point array holds NaN or inf: one pass over the data, done once, so that a bad
    value is reported where it is rather than as a NaN loss some epochs later.
    """
    if jnp.ndim(x) == 0:
        raise ValueError(f"{where}: x must have a leading batch axis, got a scalar.")
    n = int(jnp.shape(x)[0])
    if y is not None and (jnp.ndim(y) == 0 or int(jnp.shape(y)[0]) != n):
        raise ValueError(
            f"{where}: x and y must hold the same number of examples along axis 0, got "
            f"x.shape={tuple(jnp.shape(x))} and y.shape={tuple(jnp.shape(y))}. Pass matching "
            "arrays (one target per input example)."
        )
    if n == 0:
        raise ValueError(f"{where}: got an empty dataset (x.shape={tuple(jnp.shape(x))}).")
    if check_finite:
        for name, arr in (("x", x), ("y", y)):
            if arr is None or not jnp.issubdtype(jnp.result_type(arr), jnp.inexact):
                continue
            finite = np.isfinite(np.asarray(arr))
            if not finite.all():
                bad = np.argwhere(~finite)[0]
                raise ValueError(
                    f"{where}: {name} contains {int((~finite).sum())} NaN/inf value(s), the first "
                    f"at index {tuple(int(i) for i in bad)} (example {int(bad[0])}). Clean or "
                    "impute the data before training, or pass check_finite=False to skip this "
                    "check."
                )
    return n


def resolve_batch_size(batch_size: int | None, n: int, *, where: str = "jnet.fit") -> int:
    """The batch size used for N examples: None -> N; larger than N -> N, with a warning."""
    if batch_size is None:
        return n
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(
            f"{where}: batch_size must be a positive int or None (full batch), got {batch_size!r}."
        )
    if batch_size <= 0:
        raise ValueError(
            f"{where}: batch_size must be a positive int or None (full batch), got {batch_size}."
        )
    if batch_size > n:
        warnings.warn(
            f"{where}: batch_size={batch_size} is larger than the dataset ({n} examples); using "
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
    """
    order = jnp.arange(n) if key is None else jax.random.permutation(key, n)
    steps = steps_per_epoch(n, batch_size, drop_remainder)
    if steps == 0:
        raise ValueError(
            f"epoch_plan: drop_remainder=True with batch_size={batch_size} > {n} examples leaves "
            "no batch. Use a smaller batch_size or drop_remainder=False."
        )
    total = steps * batch_size
    weight = jnp.ones((total,), jnp.float32)
    if total > n:  # pad with the first examples of the permutation, weighted 0
        order = jnp.concatenate([order, order[: total - n]])
        weight = weight.at[n:].set(0.0)
    else:
        order = order[:total]
    return order.reshape(steps, batch_size), weight.reshape(steps, batch_size)


def batches(
    x: Any,
    y: Any,
    batch_size: int | None,
    *,
    key: jax.Array | None = None,
    drop_remainder: bool = False,
) -> Iterator[Batch]:
    """Yield ``(x_batch, y_batch, weight)`` over one epoch of in-memory arrays (NumPy or JAX).

    `key` shuffles (None keeps the order); every batch has `batch_size` rows (see the module
    docstring for the padded last batch). NumPy inputs give NumPy batches gathered on the host.

    Example:
        >>> for xb, yb, w in jnet.data.batches(x, y, 64, key=jax.random.key(0)):
        ...     params, state, opt_state, m = step(params, state, opt_state, (xb, yb, w), k)
    """
    n = check_arrays(x, y, where="jnet.data.batches", check_finite=False)
    size = resolve_batch_size(batch_size, n, where="jnet.data.batches")
    idx, weight = epoch_plan(key, n, size, drop_remainder=drop_remainder)
    on_host = isinstance(x, np.ndarray)
    if on_host:
        idx, weight = np.asarray(idx), np.asarray(weight)
    for i in range(idx.shape[0]):
        yield x[idx[i]], (None if y is None else y[idx[i]]), weight[i]


def as_batch(item: Any, *, where: str = "jnet.fit") -> Batch:
    """Normalise one item of a user's iterable, ``(x, y)`` or ``(x, y, weight)``, to a Batch."""
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise ValueError(
            f"{where}: each batch of an iterable dataset must be a tuple (x, y) or "
            f"(x, y, weight), got {type(item).__name__}"
            f"{f' of length {len(item)}' if isinstance(item, (tuple, list)) else ''}."
        )
    xb, yb = item[0], item[1]
    n = int(jnp.shape(xb)[0])
    if int(jnp.shape(yb)[0]) != n:
        raise ValueError(
            f"{where}: a batch has x.shape={tuple(jnp.shape(xb))} but y.shape="
            f"{tuple(jnp.shape(yb))}; they must agree on the batch axis."
        )
    weight = np.ones((n,), np.float32) if len(item) == 2 else item[2]
    return xb, yb, weight


def pad_batch(batch: Batch, size: int) -> Batch:
    """Pad a short batch up to `size` rows by repeating its rows with weight 0 (no recompile)."""
    xb, yb, w = batch
    n = int(jnp.shape(xb)[0])
    if n == size:
        return batch
    if n > size:
        raise ValueError(
            f"jnet.fit: a batch of the iterable dataset has {n} examples, more than the first "
            f"batch's {size}. Yield batches of one size (a shorter last batch is fine)."
        )
    rows = np.arange(size) % n
    w_pad = np.concatenate([np.asarray(w, np.float32), np.zeros((size - n,), np.float32)])
    return xb[rows], yb[rows], w_pad
