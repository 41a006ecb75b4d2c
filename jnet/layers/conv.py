"""2-D convolution over NHWC images with HWIO kernels, and the window arithmetic pools share.

Window arithmetic (convolution and pooling), per spatial axis, for an input of size ``n``,
window ``k``, stride ``s``, dilation ``d`` and pads ``(lo, hi)``:

    k_eff = (k - 1) * d + 1
    out   = (n + lo + hi - k_eff) // s + 1

``padding`` is resolved to explicit pads before anything runs, so shape inference in `init` and
the computation in `apply` use the same numbers:

- ``"VALID"``: no padding.
- ``"SAME"``: ``out = ceil(n / s)``; the total pad ``max((out - 1) * s + k_eff - n, 0)`` is split
  with the odd extra one at the bottom / right (TensorFlow, Keras, JAX). PyTorch's
  ``padding="same"`` also puts the extra pad at the end but only supports stride 1.
- ``p`` (int): p on every side. ``(ph, pw)``: ph on top and bottom, pw left and right.
- ``((top, bottom), (left, right))``: explicit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jnet import initializers
from jnet.layers.base import (
    Layer,
    LayerError,
    check_float,
    check_in_shape_rank,
    check_last_dim,
    check_rank,
)

Pads = tuple[tuple[int, int], tuple[int, int]]
Padding = str | int | Sequence[int] | Sequence[Sequence[int]]

RANK3_FIX = (
    "For single-channel images of shape (N, H, W), add a channel axis: `x[..., None]`."
)
_NHWC = ("NHWC", "HWIO", "NHWC")


def as_pair(kind: str, what: str, value: int | Sequence[int]) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; ``(2, 3)`` stays; anything else is a LayerError."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise LayerError(
            kind,
            f"{what} must be a positive int or a pair of positive ints (height, width), "
            f"got {value!r}.",
        )
    return pair


def normalize_padding(kind: str, padding: Padding) -> str | Pads:
    """Validate `padding` at construction: ``"SAME"`` / ``"VALID"`` or explicit pads."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise LayerError(kind, f"padding must be 'SAME', 'VALID' or ints, got {padding!r}.")
        return padding.upper()
    if isinstance(padding, int):
        padding = (padding, padding)
    padding = tuple(padding)
    if len(padding) == 2 and all(isinstance(p, int) for p in padding):
        padding = ((padding[0], padding[0]), (padding[1], padding[1]))
    ok = len(padding) == 2 and all(
        len(tuple(p)) == 2 and all(isinstance(v, int) and v >= 0 for v in p) for p in padding
    )
    if not ok:
        raise LayerError(
            kind,
            f"padding must be 'SAME', 'VALID', an int, (ph, pw) or ((top, bottom), (left, right)) "
            f"of non-negative ints, got {padding!r}.",
        )
    return tuple(tuple(p) for p in padding)


def resolve_padding(
    padding: str | Pads, size: Sequence[int], window: Sequence[int], strides: Sequence[int]
) -> Pads:
    """Explicit ``((top, bottom), (left, right))`` pads for spatial `size` (after dilation)."""
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if padding == "SAME":
        pads = []
        for n, k, s in zip(size, window, strides, strict=True):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    return padding


def window_output_size(
    kind: str, size: Sequence[int], window: Sequence[int], strides: Sequence[int], pads: Pads
) -> tuple[int, int]:
    """Spatial output size; a LayerError when the (padded) input is smaller than the window."""
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


def Conv2D(
    filters: int,
    kernel_size: int | Sequence[int],
    strides: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    w_init: Any = "glorot_uniform",
    b_init: Any = "zeros",
    use_bias: bool = True,
    fast_grad: bool | None = None,
    name: str | None = None,
) -> Layer:
    """2-D convolution (cross-correlation, as in every DL library): (N, H, W, C) -> (N, H', W', F).

        y[n, i, j, f] = b[f] + sum_{u, v, c} x_pad[n, i*sh + u*dh, j*sw + v*dw, c] * w[u, v, c, f]

    Params: ``{"w": (kh, kw, C, filters), "b": (filters,)}`` (HWIO; no ``"b"`` when
    ``use_bias=False``). Output size per axis: see the module docstring; SAME puts the odd extra
    pad at the bottom / right.

    Args:
        filters: output channels F.
        kernel_size: ``k`` or ``(kh, kw)``.
        strides: ``s`` or ``(sh, sw)``; default 1.
        padding: ``"VALID"`` (default, as Keras and PyTorch), ``"SAME"``, ``p``, ``(ph, pw)`` or
            ``((top, bottom), (left, right))``.
        dilation: ``d`` or ``(dh, dw)``: gaps between kernel taps (atrous convolution).
        w_init: kernel init, default glorot_uniform (Keras's default; PyTorch uses
            U(±1/sqrt(fan_in))). Prefer ``"he_normal"`` for deep ReLU stacks.
        b_init: bias init, default zeros.
        use_bias: add a bias per filter (turn off before BatchNorm, which has its own).
        fast_grad: for stride 1 and no dilation, compute the backward pass with explicitly laid
            out convolutions (`_conv_s1`). Default (None): on when the default backend is the
            CPU, where XLA otherwise runs the weight gradient inside a `lax.scan` / loop body
            (as `jnet.fit` runs epochs) with a naive kernel, ~10x slower. Same values; its cost:
            no forward-mode autodiff (`jax.jvp`) through this layer, so pass False for that.

    PyTorch stores kernels OIHW and images NCHW: ``w_jnet = w_torch.transpose(2, 3, 1, 0)``.
    """
    kernel = as_pair("Conv2D", "kernel_size", kernel_size)
    stride = as_pair("Conv2D", "strides", strides)
    dil = as_pair("Conv2D", "dilation", dilation)
    pad_spec = normalize_padding("Conv2D", padding)
    w_fn, b_fn = initializers.get(w_init), initializers.get(b_init)
    effective = tuple((k - 1) * d + 1 for k, d in zip(kernel, dil, strict=True))
    if fast_grad is None:
        fast_grad = jax.default_backend() == "cpu"

    def init_fn(key, in_shape):
        check_in_shape_rank("Conv2D", in_shape, 3, "(H, W, C)", RANK3_FIX)
        h, w, c = in_shape
        pads = resolve_padding(pad_spec, (h, w), effective, stride)
        out_hw = window_output_size("Conv2D", (h, w), effective, stride, pads)
        k_w, k_b = jax.random.split(key)
        params = {"w": w_fn(k_w, (*kernel, c, filters))}
        if use_bias:
            params["b"] = b_fn(k_b, (filters,))
        return (*out_hw, filters), params, {}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        check_rank("Conv2D", x, 4, "(N, H, W, C)", RANK3_FIX if jnp.ndim(x) == 3 else "")
        check_float("Conv2D", x)
        check_last_dim("Conv2D", x, params["w"].shape[2], "channels")
        pads = resolve_padding(pad_spec, x.shape[1:3], effective, stride)
        w = params["w"].astype(x.dtype)
        if fast_grad and stride == (1, 1) and dil == (1, 1) and _fits_full_conv(pads, kernel):
            y = _conv_s1(x, w, pads)
        else:
            y = lax.conv_general_dilated(x, w, stride, pads, rhs_dilation=dil,
                                         dimension_numbers=_NHWC)
        if use_bias:
            y = y + params["b"].astype(x.dtype)
        return y, state

    config = {"filters": filters, "kernel_size": kernel, "strides": stride,
              "padding": pad_spec, "dilation": dil, "use_bias": use_bias}
    return Layer(init_fn, apply_fn, kind="Conv2D", config=config, name=name)


def _fits_full_conv(pads: Pads, kernel: tuple[int, int]) -> bool:
    """The input gradient is a full convolution with pads k-1-p, which must not be negative."""
    return all(0 <= p <= k - 1 for (lo, hi), k in zip(pads, kernel, strict=True) for p in (lo, hi))


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_s1(x: jax.Array, w: jax.Array, pads: Pads) -> jax.Array:
    """Stride-1 NHWC x HWIO convolution whose backward pass lays its convolutions out itself.

    For y = x ⋆ w with pads (lo, hi) per axis and upstream gradient g = dL/dy:

        dL/dx = g ⋆ flip(w)ᵀ   with pads (k-1-lo, k-1-hi): a full convolution, (kh, kw, F, C)
        dL/dw[u, v, c, f] = Σ_{n,i,j} x_pad[n, i+u, j+v, c] g[n, i, j, f]
              = a convolution of x viewed as (C, H, W, N) with g viewed as (Ho, Wo, N, F)

    Both are plain NHWC x HWIO convolutions, which XLA:CPU runs with its fast kernel inside
    loop bodies too (autodiff's own weight gradient is not, there).
    """
    return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=_NHWC)


def _conv_s1_fwd(x, w, pads):
    return _conv_s1(x, w, pads), (x, w)


def _conv_s1_bwd(pads, residuals, g):
    x, w = residuals
    (kh, kw), ((top, bottom), (left, right)) = w.shape[:2], pads
    full = ((kh - 1 - top, kh - 1 - bottom), (kw - 1 - left, kw - 1 - right))
    w_t = jnp.flip(w, (0, 1)).swapaxes(2, 3)
    dx = lax.conv_general_dilated(g, w_t, (1, 1), full, dimension_numbers=_NHWC)
    dw = lax.conv_general_dilated(
        jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3)), (1, 1), pads,
        dimension_numbers=_NHWC,
    )
    return dx, jnp.transpose(dw, (1, 2, 0, 3))


_conv_s1.defvjp(_conv_s1_fwd, _conv_s1_bwd)
