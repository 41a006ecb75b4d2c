"""Window and padding arithmetic shared by convolution and pooling, for any number of axes.

Per spatial axis, for an input of size ``n``, window ``k``, stride ``s``, dilation ``d`` and
pads ``(lo, hi)``:

    k_eff = (k - 1) * d + 1
    out   = (n + lo + hi - k_eff) // s + 1

``padding`` is resolved to explicit pads before anything runs, so shape inference in `init` and
the computation in `apply` use the same numbers:

- ``"VALID"``: no padding.
- ``"SAME"``: ``out = ceil(n / s)``; the total pad ``max((out - 1) * s + k_eff - n, 0)`` is split
  with the odd extra one at the end (bottom / right; TensorFlow, Keras, JAX). PyTorch's
  ``padding="same"`` also puts the extra pad at the end but only supports stride 1.
- ``p`` (int): p on both sides of every axis.
- one int per axis, ``(ph, pw)``: ph at the top and the bottom, pw left and right.
- one ``(lo, hi)`` pair per axis, ``((top, bottom), (left, right))``: explicit.
- with one spatial axis, a bare pair ``(lo, hi)`` is that axis's pair.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from jnet.errors import ArgumentError
from jnet.layers.base import LayerError
from jnet.layers.checks import is_int

Pads = tuple[tuple[int, int], ...]
Padding = str | int | Sequence[int] | Sequence[Sequence[int]]

_AXES = {1: "(length,)", 2: "(height, width)", 3: "(depth, height, width)"}


def as_tuple(kind: str, what: str, value: int | Sequence[int], n: int) -> tuple[int, ...]:
    """``3`` -> ``(3,) * n``; a sequence of `n` positive ints stays; anything else raises.

    Raises:
        LayerError: not a positive int nor `n` of them.
    """
    values = (value,) * n if is_int(value) else tuple(value)
    if len(values) != n or not all(is_int(v) and v >= 1 for v in values):
        raise LayerError(
            kind,
            f"{what} must be a positive int or {n} positive ints {_AXES.get(n, '')}, "
            f"got {value!r}.",
        )
    return tuple(int(v) for v in values)


def normalize_padding(kind: str, padding: Padding, n: int) -> str | Pads:
    """Validate `padding` for `n` spatial axes at construction (forms: module docstring).

    Returns:
        ``"SAME"``, ``"VALID"`` or `n` ``(lo, hi)`` pairs of non-negative ints.

    Raises:
        LayerError: any other value.
    """
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise LayerError(kind, f"padding must be 'SAME', 'VALID' or ints, got {padding!r}.")
        return padding.upper()
    pads = _as_pairs(padding, n)
    if pads is None:
        pair_form = "(lo, hi)" if n == 1 else "((top, bottom), (left, right))"
        raise LayerError(
            kind,
            f"padding must be 'SAME', 'VALID', an int, {n} int(s) (one per axis) or "
            f"{pair_form} of non-negative ints, got {padding!r}.",
        )
    return pads


def _as_pairs(padding: object, n: int) -> Pads | None:
    """`padding` (not a string) as `n` (lo, hi) pairs, or None when it has no valid form."""
    if is_int(padding):
        padding = (padding,) * n
    if not isinstance(padding, Iterable):
        return None
    try:
        items: tuple[Any, ...] = tuple(padding)
        if all(is_int(p) for p in items):
            if len(items) == n:
                items = tuple((p, p) for p in items)
            elif n == 1 and len(items) == 2:
                items = (items,)
        pairs = tuple(tuple(p) for p in items)
    except TypeError:
        return None
    ok = len(pairs) == n and all(
        len(p) == 2 and all(is_int(v) and v >= 0 for v in p) for p in pairs
    )
    return tuple((int(lo), int(hi)) for lo, hi in pairs) if ok else None


def resolve_padding(padding: str | Pads, size: Sequence[int], window: Sequence[int],
                    strides: Sequence[int]) -> Pads:
    """Explicit ``(lo, hi)`` pads per axis for spatial `size`.

    Args:
        padding: as returned by `normalize_padding`.
        size, window, strides: one int per spatial axis; `window` is the effective (dilated)
            window ``k_eff``.
    """
    if padding == "VALID":
        return ((0, 0),) * len(size)
    if padding == "SAME":
        pads = []
        for n, k, s in zip(size, window, strides, strict=True):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    return explicit_pads(padding)


def explicit_pads(padding: str | Pads) -> Pads:
    """`padding` from `normalize_padding` once "SAME" and "VALID" are handled: the pairs.

    Raises:
        ArgumentError: a string (`normalize_padding` was skipped).
    """
    if isinstance(padding, str):
        raise ArgumentError(f"padding must be 'SAME', 'VALID' or (lo, hi) pairs from "
                            f"normalize_padding, got {padding!r}.")
    return padding


def window_output_size(kind: str, size: Sequence[int], window: Sequence[int],
                       strides: Sequence[int], pads: Pads) -> tuple[int, ...]:
    """Spatial output size per axis (``window`` effective).

    Raises:
        LayerError: the (padded) input is smaller than the window on some axis.
    """
    out = tuple(
        (n + lo + hi - k) // s + 1
        for n, k, s, (lo, hi) in zip(size, window, strides, pads, strict=True)
    )
    if min(out) < 1:
        raise LayerError(
            kind,
            f"the input's spatial size {tuple(size)} (padded by {pads}) is smaller than the "
            f"window {tuple(window)}, so there is no output. Use padding='SAME', a smaller "
            "window, or remove a downsampling layer before this one.",
        )
    return out


def real_counts(size: Sequence[int], window: Sequence[int], strides: Sequence[int],
                pads: Pads) -> np.ndarray:
    """How many real (unpadded) input positions each output window covers.

    Static shapes only, so this is NumPy at trace time: a constant, not work in the graph.

    Returns:
        An int array of the spatial output shape: the product over axes of each axis's count.
    """
    per_axis = []
    for n, k, s, (lo, hi) in zip(size, window, strides, pads, strict=True):
        start = np.arange((n + lo + hi - k) // s + 1) * s - lo
        per_axis.append(np.minimum(start + k, n) - np.maximum(start, 0))
    return functools.reduce(np.multiply.outer, per_axis)
