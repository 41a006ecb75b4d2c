"""Convolutions, channels last: `Conv1D` over (N, L, C), `Conv2D` and `ConvTranspose2D` over
(N, H, W, C).

Each is one implementation over n spatial axes with kernels laid out ``(*window, I, O)``
(WIO, HWIO), I the layer's input channels. Output sizes and the padding forms:
`jnet.layers.windows`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from jnet import initializers
from jnet._transpose import linear_call
from jnet.layers.base import (
    Layer,
    LayerError,
    check_float,
    check_in_shape_rank,
    check_last_dim,
    check_rank,
)
from jnet.layers.checks import check_positive_int, is_int
from jnet.layers.windows import (
    Padding,
    Pads,
    as_tuple,
    explicit_pads,
    normalize_padding,
    resolve_padding,
    window_output_size,
)

RANK3_FIX = (
    "For single-channel images of shape (N, H, W), add a channel axis: `x[..., None]`."
)
RANK2_FIX = (
    "For single-channel sequences of shape (N, L), add a channel axis: `x[..., None]`."
)
# Per number of spatial axes: the per-example layout, the batch layout, the rank fix.
LAYOUTS = {1: ("(L, C)", "(N, L, C)", RANK2_FIX), 2: ("(H, W, C)", "(N, H, W, C)", RANK3_FIX),
           3: ("(D, H, W, C)", "(N, D, H, W, C)", "")}


def dimension_numbers(n: int) -> tuple[str, str, str]:
    """`lax.conv_general_dilated` layouts for n spatial axes: NWC x WIO, NHWC x HWIO, ..."""
    spatial = "DHW"[3 - n:]
    return f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"


def check_spatial_input(kind: str, n: int, x: Any) -> None:
    """Raise unless `x` is a floating batch with `n` spatial axes and channels last."""
    _, layout, fix = LAYOUTS[n]
    check_rank(kind, x, n + 2, layout, fix if jnp.ndim(x) == n + 1 else "")
    check_float(kind, x)


def check_spatial_in_shape(kind: str, n: int, in_shape: Any) -> None:
    """Raise unless the per-example `in_shape` has `n` spatial axes plus channels."""
    layout, _, fix = LAYOUTS[n]
    check_in_shape_rank(kind, in_shape, n + 1, layout, fix)


def spatial_conv(kind: str, n: int, doc: str) -> Callable[..., Layer]:
    """The public constructor of the convolution over `n` spatial axes called `kind` (`Conv1D`,
    `Conv2D`, `Conv3D`): one signature for the three, documented by `doc`."""

    def constructor(
        filters: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: Padding = "VALID",
        dilation: int | Sequence[int] = 1,
        feature_group_count: int = 1,
        w_init: Any = "glorot_uniform",
        b_init: Any = "zeros",
        use_bias: bool = True,
        fast_grad: bool | None = None,
        name: str | None = None,
    ) -> Layer:
        return _conv_layer(kind, n, filters, kernel_size, strides, padding, dilation,
                           feature_group_count, w_init, b_init, use_bias, fast_grad, name)

    constructor.__name__ = constructor.__qualname__ = kind
    constructor.__doc__ = doc
    return constructor


Conv1D = spatial_conv("Conv1D", 1, """
1-D convolution (cross-correlation) over sequences: (N, L, C) -> (N, L', filters).

    y[n, i, f] = b[f] + sum_{u, c} x_pad[n, i*s + u*d, c] * w[u, c, f]

Params: ``{"w": (k, C / groups, filters), "b": (filters,)}`` (WIO). Everything else, the
arguments included, as `Conv2D` with one spatial axis (``padding=(lo, hi)`` is the one
axis's pair). PyTorch's ``nn.Conv1d`` stores (O, I, k) and works on (N, C, L):
``w_jnet = w_torch.transpose(2, 1, 0)``, `jnet.interop.conv1d_from_torch`.
""")

Conv2D = spatial_conv("Conv2D", 2, """
2-D convolution (cross-correlation, as in every DL library): (N, H, W, C) -> (N, H', W', F).

    y[n, i, j, f] = b[f] + sum_{u, v, c} x_pad[n, i*sh + u*dh, j*sw + v*dw, c] * w[u, v, c, f]

(sum over the input channels of f's group; all C when ungrouped). Params:
``{"w": (kh, kw, C / groups, filters), "b": (filters,)}`` (HWIO; no ``"b"`` when
``use_bias=False``). Output size per axis: `jnet.layers.windows`; SAME puts the odd extra pad
at the bottom / right.

Args:
    filters: output channels F.
    kernel_size: ``k`` or ``(kh, kw)``.
    strides: ``s`` or ``(sh, sw)``; default 1.
    padding: ``"VALID"`` (default, as Keras and PyTorch), ``"SAME"``, ``p``, ``(ph, pw)`` or
        ``((top, bottom), (left, right))``.
    dilation: ``d`` or ``(dh, dw)``: gaps between kernel taps (atrous convolution).
    feature_group_count: G groups (PyTorch's and Keras's ``groups``): the channels split
        into G consecutive blocks, filter block g sees input block g only. C and filters
        must be multiples of G; ``G = C`` is a depthwise convolution.
    w_init: kernel init, default glorot_uniform (Keras's default); ``"torch"`` is PyTorch's
        U(±1/sqrt(fan_in)), fan_in = kh * kw * C / G. Prefer ``"he_normal"`` for deep ReLU
        stacks.
    b_init: bias init, default zeros; ``"torch"`` draws U(±1/sqrt(fan_in)) with the
        kernel's fan_in (see `jnet.initializers`).
    use_bias: add a bias per filter (turn off before BatchNorm, which has its own).
    fast_grad: compute the backward pass with explicitly laid out convolutions
        (`conv_fast`). Default (None): on when the default backend is the CPU, where XLA
        otherwise runs autodiff's weight gradient inside a `lax.scan` / loop body (as
        `jnet.fit` runs epochs) with a naive kernel: an SGD step of a CNN with two
        stride-2 convolutions (28x28x1, batch 128) took 36 ms inside `lax.scan` instead
        of 4.7 ms (4.6 ms jitted step by step). Same values, and every transformation
        works as without it (forward mode, `jax.hessian`, vmap: see docs/layers.md,
        Transformations); False uses autodiff's backward pass.

Raises:
    LayerError: bad sizes, or C / filters not multiples of `feature_group_count`.

Returns:
    The `Layer`.

PyTorch stores kernels OIHW and images NCHW: ``w_jnet = w_torch.transpose(2, 3, 1, 0)``.
""")


def check_filters(kind: str, filters: Any, groups: Any) -> None:
    """Raise unless `filters` and `groups` are positive ints with groups dividing filters."""
    for what, value in (("filters", filters), ("feature_group_count", groups)):
        check_positive_int(kind, what, value)
    if filters % groups:
        raise LayerError(
            kind,
            f"filters ({filters}) must be a multiple of feature_group_count ({groups}): each "
            "group makes filters / groups outputs. Change one of the two.",
        )


def check_groups(kind: str, channels: int, groups: int) -> None:
    """Raise unless the input's `channels` split into `groups` equal blocks."""
    if channels % groups:
        raise LayerError(
            kind,
            f"the input's {channels} channels must be a multiple of feature_group_count "
            f"({groups}), each group sees channels / groups of them. Change the groups or the "
            "layer before this one.",
        )


def _conv_layer(kind, n, filters, kernel_size, strides, padding, dilation, groups, w_init,
                b_init, use_bias, fast_grad, name) -> Layer:
    """A convolution over `n` spatial axes (the body of `Conv1D` and `Conv2D`)."""
    check_filters(kind, filters, groups)
    kernel = as_tuple(kind, "kernel_size", kernel_size, n)
    stride = as_tuple(kind, "strides", strides, n)
    dil = as_tuple(kind, "dilation", dilation, n)
    pad_spec = normalize_padding(kind, padding, n)
    w_fn, b_fn = initializers.get(w_init, "w_init"), initializers.get(b_init, "b_init")
    effective = tuple((k - 1) * d + 1 for k, d in zip(kernel, dil, strict=True))
    fast_grad = _default_fast_grad(fast_grad, n)

    def init_fn(key, in_shape):
        check_spatial_in_shape(kind, n, in_shape)
        *size, c = in_shape
        check_groups(kind, c, groups)
        pads = resolve_padding(pad_spec, size, effective, stride)
        out = window_output_size(kind, size, effective, stride, pads)
        k_w, k_b = jax.random.split(key)
        shape = (*kernel, c // groups, filters)
        fan_in = initializers.compute_fans(shape)[0]
        params = {"w": w_fn(k_w, shape, fan_in=fan_in)}
        if use_bias:
            params["b"] = b_fn(k_b, (filters,), fan_in=fan_in)
        return (*out, filters), params, {}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        check_spatial_input(kind, n, x)
        check_last_dim(kind, x, params["w"].shape[-2] * groups, "channels")
        pads = resolve_padding(pad_spec, x.shape[1:-1], effective, stride)
        w = params["w"].astype(x.dtype)
        if fast_grad:
            y = conv_fast(x, w, stride, pads, dil, groups)
        else:
            y = conv(x, w, stride, pads, dil, groups)
        if use_bias:
            y = y + params["b"].astype(x.dtype)
        return y, state

    config = {"filters": filters, "kernel_size": kernel, "strides": stride,
              "padding": pad_spec, "dilation": dil, "use_bias": use_bias}
    if groups != 1:
        config["feature_group_count"] = groups
    return Layer(init_fn, apply_fn, kind=kind, config=config, name=name)


def ConvTranspose2D(
    filters: int,
    kernel_size: int | Sequence[int],
    strides: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    output_padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    w_init: Any = "glorot_uniform",
    b_init: Any = "zeros",
    use_bias: bool = True,
    fast_grad: bool | None = None,
    name: str | None = None,
) -> Layer:
    """Transposed 2-D convolution (upsampling): (N, H, W, C) -> (N, H', W', filters).

    Every input pixel scatters its kernel-weighted copy onto a grid `s` times finer, then the
    border is cropped by the padding:

        full[n, i*sh + u*dh, j*sw + v*dw, f] += x[n, i, j, c] * w[u, v, c, f]
        y = full[:, top : -bottom, left : -right, :] + b

    It is the transpose (the input gradient) of a `Conv2D` with the same kernel size, strides,
    dilation and padding, which maps (H', W') back to (H, W). Per axis, with k_eff = (k-1)d + 1,
    crops (lo, hi) and output padding op: ``H' = (H - 1) s + k_eff - lo - hi + op``.

    - ``"VALID"``: no crop, ``H' = (H - 1) s + k_eff``.
    - ``"SAME"``: ``H' = H s`` (Keras ``Conv2DTranspose``, TensorFlow): crop k_eff - s in all,
      the odd one at the bottom / right (when k_eff < s: ``s - k_eff`` zero rows added there).
    - ``p``, ``(ph, pw)`` or ``((top, bottom), (left, right))``: explicit crops, ``p`` as
      PyTorch's ``padding=p`` (p from both sides).

    PyTorch's ``nn.ConvTranspose2d(C, F, k, stride=s, padding=p, output_padding=op,
    dilation=d)`` is ``ConvTranspose2D(F, k, s, padding=p, output_padding=op, dilation=d)``.
    jnet's "VALID" is PyTorch's ``padding=0``; jnet's "SAME" is ``padding=(k_eff - s) / 2``
    when k_eff - s is even and >= 0, ``padding=0, output_padding=s - k_eff`` when
    k_eff < s; with k_eff - s odd PyTorch cannot crop one more at the end than at the start
    (its output_padding extends the end), so use explicit pairs to match either side exactly.

    Params: ``{"w": (kh, kw, C, filters), "b": (filters,)}``: HWIO with I the *input* channels
    C, as `Conv2D` and `Dense` read their weights (in, out). Conversions: PyTorch's weight
    (C, F, kh, kw) -> ``w.transpose(2, 3, 0, 1)`` (`jnet.interop.conv_transpose2d_from_torch`);
    Keras's kernel (kh, kw, F, C) -> ``w.swapaxes(2, 3)``.

    Args:
        filters: output channels F.
        kernel_size, strides, dilation: ``k`` or ``(kh, kw)``, as for `Conv2D`.
        padding: ``"VALID"`` (default), ``"SAME"`` or explicit crops, above.
        output_padding: ``op`` or ``(oph, opw)``, added at the bottom / right (PyTorch's and
            Keras's argument): picks among the sizes a strided `Conv2D` maps to the same
            size. Each must be smaller than the stride or the dilation on its axis.
        w_init: default glorot_uniform (fans from the (kh, kw, C, F) shape; glorot is
            symmetric in them, so it equals Keras's); ``"torch"``: PyTorch's
            U(±1/sqrt(kh kw F)) (PyTorch counts a transposed kernel's fan_in on its output
            side).
        b_init: default zeros; ``"torch"``: U(±1/sqrt(kh kw F)), PyTorch's.
        use_bias: add a bias per filter.
        fast_grad: as for `Conv2D` (`conv_transpose_fast`): default on with the CPU backend.

    Raises:
        LayerError: bad sizes or output_padding, or crops leaving no output.
    """
    return _conv_transpose_layer("ConvTranspose2D", 2, filters, kernel_size, strides, padding,
                                 output_padding, dilation, w_init, b_init, use_bias, fast_grad,
                                 name)


def transpose_crops(pad_spec: str | Pads, window: Sequence[int], strides: Sequence[int],
                    output_padding: Sequence[int]) -> Pads:
    """The (lo, hi) crops of a transposed convolution's full output per axis; a negative hi
    adds zeros at the end (output_padding beyond the full output, or SAME with k_eff < s)."""
    if pad_spec == "VALID":
        crops = ((0, 0),) * len(window)
    elif pad_spec == "SAME":  # crop k_eff - s in all, the odd one at the end
        crops = tuple((max(k - s, 0) // 2, k - s - max(k - s, 0) // 2)
                      for k, s in zip(window, strides, strict=True))
    else:
        crops = explicit_pads(pad_spec)
    return tuple((lo, hi - op) for (lo, hi), op in zip(crops, output_padding, strict=True))


def _conv_transpose_layer(kind, n, filters, kernel_size, strides, padding, output_padding,
                          dilation, w_init, b_init, use_bias, fast_grad, name) -> Layer:
    """A transposed convolution over `n` spatial axes (the body of `ConvTranspose2D`)."""
    check_filters(kind, filters, 1)
    kernel = as_tuple(kind, "kernel_size", kernel_size, n)
    stride = as_tuple(kind, "strides", strides, n)
    dil = as_tuple(kind, "dilation", dilation, n)
    pad_spec = normalize_padding(kind, padding, n)
    out_pad = (output_padding,) * n if is_int(output_padding) else output_padding
    if len(tuple(out_pad)) != n or not all(
        is_int(op) and 0 <= op < max(s, d)
        for op, s, d in zip(out_pad, stride, dil, strict=False)
    ):
        raise LayerError(
            kind,
            f"output_padding must be {n} non-negative int(s), each smaller than the stride "
            f"{stride} or the dilation {dil} on its axis, got {output_padding!r}.",
        )
    out_pad = tuple(out_pad)
    w_fn, b_fn = initializers.get(w_init, "w_init"), initializers.get(b_init, "b_init")
    effective = tuple((k - 1) * d + 1 for k, d in zip(kernel, dil, strict=True))
    fast_grad = _default_fast_grad(fast_grad)

    def out_size(size):
        crops = transpose_crops(pad_spec, effective, stride, out_pad)
        out = tuple((m - 1) * s + k - lo - hi
                    for m, s, k, (lo, hi) in zip(size, stride, effective, crops, strict=True))
        if min(out) < 1:
            raise LayerError(
                kind,
                f"cropping {crops} from the full output of the input's spatial size "
                f"{tuple(size)} leaves nothing. Use smaller padding, or 'VALID' / 'SAME'.",
            )
        return crops, out

    def init_fn(key, in_shape):
        check_spatial_in_shape(kind, n, in_shape)
        *size, c = in_shape
        _, out = out_size(size)
        k_w, k_b = jax.random.split(key)
        fan_in = math.prod(kernel) * filters  # PyTorch's count (see jnet.initializers)
        params = {"w": w_fn(k_w, (*kernel, c, filters), fan_in=fan_in)}
        if use_bias:
            params["b"] = b_fn(k_b, (filters,), fan_in=fan_in)
        return (*out, filters), params, {}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        check_spatial_input(kind, n, x)
        check_last_dim(kind, x, params["w"].shape[-2], "channels")
        crops, _ = out_size(x.shape[1:-1])
        w = params["w"].astype(x.dtype)
        transpose = conv_transpose_fast if fast_grad else conv_transpose
        y = transpose(x, w, stride, crops, dil)
        if use_bias:
            y = y + params["b"].astype(x.dtype)
        return y, state

    config = {"filters": filters, "kernel_size": kernel, "strides": stride,
              "padding": pad_spec, "output_padding": out_pad, "dilation": dil,
              "use_bias": use_bias}
    return Layer(init_fn, apply_fn, kind=kind, config=config, name=name)


# ----------------------------------------------------------------------------------------
# The convolutions themselves, and backward passes that XLA:CPU runs fast inside loops.


def _default_fast_grad(fast_grad: bool | None, n: int = 2) -> bool:
    """None: on with the CPU backend for 1-D and 2-D convolutions (where it was measured)."""
    if fast_grad is None:
        return n <= 2 and jax.default_backend() == "cpu"
    return bool(fast_grad)


def _crop(x: jax.Array, pads: Pads) -> tuple[jax.Array, Pads]:
    """`x` with the negative parts of `pads` cropped off its spatial axes, and the pads left.

    Negative convolution padding would crop too, but JAX 0.10 differentiates a convolution
    with negative padding wrongly (its weight gradient counts the cropped rows), so crops are
    slices here and convolutions only ever pad.
    """
    index = tuple(slice(max(-lo, 0), size - max(-hi, 0))
                  for size, (lo, hi) in zip(x.shape[1:-1], pads, strict=True))
    return x[(slice(None), *index)], tuple((max(lo, 0), max(hi, 0)) for lo, hi in pads)


def conv(x: jax.Array, w: jax.Array, strides: Sequence[int], pads: Pads,
         dilation: Sequence[int], groups: int = 1) -> jax.Array:
    """y[n, i, f] = Σ_{u, c} x_pad[n, i*s + u*d, c] w[u, c, f] (i, u multi-indices; c over f's
    group), channels last, w (*k, C / groups, F), a negative pad crops; autodiff's backward."""
    x, pads = _crop(x, pads)
    return lax.conv_general_dilated(x, w, tuple(strides), pads, rhs_dilation=tuple(dilation),
                                    dimension_numbers=dimension_numbers(len(pads)),
                                    feature_group_count=groups)


def conv_transpose(x: jax.Array, w: jax.Array, strides: Sequence[int], crops: Pads,
                   dilation: Sequence[int], groups: int = 1) -> jax.Array:
    """full[n, i*s + u*d, f] += x[n, i, c] w[u, c, f], cropped by (lo, hi) per axis (a negative
    hi appends zeros; c over f's group, w (*k, C / groups, F)); autodiff's backward pass.

    The full output is a stride-1 convolution of the s-dilated input, zero padded by k_eff - 1,
    with the flipped kernel; a crop is that much less padding, or a slice past the padding."""
    n = len(crops)
    pads = tuple(((k - 1) * d - lo, (k - 1) * d - hi)
                 for k, d, (lo, hi) in zip(w.shape[:n], dilation, crops, strict=True))
    y = lax.conv_general_dilated(x, jnp.flip(w, tuple(range(n))), (1,) * n,
                                 tuple((max(lo, 0), max(hi, 0)) for lo, hi in pads),
                                 lhs_dilation=tuple(strides), rhs_dilation=tuple(dilation),
                                 dimension_numbers=dimension_numbers(n),
                                 feature_group_count=groups)
    return _crop(y, pads)[0]


# `_weight_grad` takes the patch-matrix product when the 2-D input has at most this many
# channels and the patch matrix (k·P rows, N·out columns) fits in this many bytes; see there.
PATCHES_MAX_CHANNELS = 3
PATCHES_MAX_BYTES = 64 * 2**20


def _weight_grad(a: jax.Array, b: jax.Array, strides: Sequence[int], pads: Pads,
                 dilation: Sequence[int], groups: int = 1) -> jax.Array:
    """out[u, p, q] = Σ_{n, i} a_pad[n, u*d + i*s, p] b[n, i, q]: both weight gradients, with p
    over q's group only when grouped (out (*k, P / groups, Q)).

    One plain channels-last convolution: a viewed as (P, *S, N) (batch P, features N) with b
    viewed as a (*S_b, N, Q) kernel dilated by s, window strides d; (P, *k, Q) -> (*k, P, Q).
    Groups split the batch P and the features Q alike (``batch_group_count``).

    2-D inputs with few channels (P <= `PATCHES_MAX_CHANNELS`, ungrouped: a network's first
    layer on grey or RGB images) take `_weight_grad_patches` instead while its patch matrix
    fits in `PATCHES_MAX_BYTES` (64 MiB; larger falls back here): XLA:CPU hands 2-D
    convolutions to YNNPACK, which runs this one with its P rows as the batch, and with P <= 3
    that convolution is 3-4x slower than the patch product (docs/speed.md, "Where the CNN's
    time goes"). With 8 or more channels the convolution is the faster one.
    """
    n = len(pads)
    spatial = tuple(range(1, n + 1))
    a, pads = _crop(a, pads)
    if _patches_pay(a, b, strides, pads, dilation, groups):
        return _weight_grad_patches(a, b, strides, pads, dilation)
    out = lax.conv_general_dilated(
        jnp.transpose(a, (n + 1, *spatial, 0)), jnp.transpose(b, (*spatial, 0, n + 1)),
        tuple(dilation), pads, rhs_dilation=tuple(strides),
        dimension_numbers=dimension_numbers(n), batch_group_count=groups,
    )
    return jnp.transpose(out, (*spatial, 0, n + 1))


def _window(a: jax.Array, b: jax.Array, strides: Sequence[int], pads: Pads,
            dilation: Sequence[int]) -> tuple[int, ...]:
    """The kernel size k of `_weight_grad`'s output: the taps u with u*d + (out - 1)*s inside
    the padded input, per axis."""
    return tuple((m + lo + hi - (o - 1) * s - 1) // d + 1
                 for m, o, s, d, (lo, hi) in zip(a.shape[1:-1], b.shape[1:-1], strides,
                                                 dilation, pads, strict=True))


def _patches_pay(a: jax.Array, b: jax.Array, strides: Sequence[int], pads: Pads,
                 dilation: Sequence[int], groups: int) -> bool:
    """Whether `_weight_grad` takes the patch product (see there)."""
    channels = a.shape[-1]
    if len(pads) != 2 or groups != 1 or channels > PATCHES_MAX_CHANNELS:
        return False
    taps = math.prod(_window(a, b, strides, pads, dilation))
    return taps * channels * math.prod(b.shape[:-1]) * a.dtype.itemsize <= PATCHES_MAX_BYTES


def _weight_grad_patches(a: jax.Array, b: jax.Array, strides: Sequence[int], pads: Pads,
                         dilation: Sequence[int]) -> jax.Array:
    """`_weight_grad` (ungrouped, pads >= 0) as one matrix product (im2col):

        out[u, p, q] = Σ_r patches[(u, p), r] b[r, q]
        patches[(u, p), (n, i)] = a_pad[n, u*d + i*s, p]

    r running over the N·out rows of b; row (u, p) of the patch matrix is a strided slice of
    the padded input, so the matrix is k·P times the size of b's rows (see `PATCHES_MAX_BYTES`).
    """
    kernel = _window(a, b, strides, pads, dilation)
    out = b.shape[1:-1]
    a = jnp.moveaxis(jnp.pad(a, ((0, 0), *pads, (0, 0))), -1, 0)  # (P, N, *S_pad)
    rows = [a[(slice(None), slice(None),
               *(slice(u * d, u * d + (o - 1) * s + 1, s)
                 for u, d, s, o in zip(tap, dilation, strides, out, strict=True)))]
            for tap in itertools.product(*map(range, kernel))]
    patches = jnp.stack(rows).reshape(len(rows) * a.shape[0], -1)
    return (patches @ b.reshape(-1, b.shape[-1])).reshape(*kernel, a.shape[0], b.shape[-1])


def _swap_io(w: jax.Array, groups: int) -> jax.Array:
    """A (*k, C / G, F) kernel as the (*k, F / G, C) kernel of its transpose: within each of
    the G groups, the input and output channels trade places."""
    *k, i, f = w.shape
    w = w.reshape(*k, i, groups, f // groups)
    return jnp.swapaxes(w, -3, -1).reshape(*k, f // groups, i * groups)


def _end_pads(x_size, y_size, kernel, strides, pads, dilation) -> Pads:
    """(lo, hi') per axis with hi' = (out - 1) s + k_eff - in - lo: the pads that make the
    convolution of an `x_size` input cover exactly the `y_size` output (a strided convolution
    may leave the last rows of its input unused; hi' then crops them)."""
    return tuple((lo, (o - 1) * s + (k - 1) * d + 1 - i - lo)
                 for i, o, k, s, d, (lo, _) in zip(x_size, y_size, kernel, strides, dilation,
                                                   pads, strict=True))


def _bilinear_tangent(tangents: tuple[Any, Any], primals: tuple[jax.Array, jax.Array],
                      by_x: tuple[Callable, Callable], by_w: tuple[Callable, Callable]) -> Any:
    """The tangent of a bilinear y = B(x, w): B(dx, w) + B(x, dw), each a `linear_call` of
    ``(map, transpose)`` so that reverse mode runs the hand-written transposes. A symbolic
    zero tangent (an input that is not differentiated) costs nothing."""
    (x, w), (dx, dw) = primals, tangents
    terms = [linear_call(*maps, residual, t)
             for maps, residual, t in ((by_x, w, dx), (by_w, x, dw))
             if not isinstance(t, SymbolicZero)]
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


@partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def conv_fast(x: jax.Array, w: jax.Array, strides: tuple[int, ...], pads: Pads,
              dilation: tuple[int, ...], groups: int = 1) -> jax.Array:
    """`conv` with a backward pass that lays its convolutions out itself.

    For y = conv(x, w) and upstream gradient g = dL/dy (k_eff = (k-1)d + 1 per axis):

        dL/dx = conv_transpose(g, wᵀ) with crops (lo, hi'), wᵀ = w with C and F swapped per
                group: the s-dilated g convolved with the flipped kernel
        dL/dw[u, c, f] = Σ_{n,i} x_pad[n, u*d + i*s, c] g[n, i, f]   (`_weight_grad`)

    with hi' from `_end_pads`. Each is one plain channels-last convolution, which XLA:CPU runs
    with its fast kernel inside loop bodies too; autodiff's weight gradient is a convolution
    laid out feature-major that it runs with a naive kernel there (7.5x slower in a strided CNN).

    It is a `jax.custom_jvp` whose tangent conv(dx, w) + conv(x, dw) is a pair of
    `jnet._transpose.linear_call` with the two formulas above as transposes: forward mode
    (jvp, jacfwd, hessian) works as for `conv`, and reverse mode, which transposes the
    tangent, runs them. Values equal autodiff's to float rounding (tests/test_conv_fast_grad.py).
    """
    return conv(x, w, strides, pads, dilation, groups)


@partial(conv_fast.defjvp, symbolic_zeros=True)
def _conv_fast_jvp(strides, pads, dilation, groups, primals, tangents):
    x, w = primals
    y = conv(x, w, strides, pads, dilation, groups)
    n = len(pads)
    exact = _end_pads(x.shape[1:-1], y.shape[1:-1], w.shape[:n], strides, pads, dilation)
    by_x = (lambda w, dx: conv(dx, w, strides, pads, dilation, groups),
            lambda w, g: conv_transpose(g, _swap_io(w, groups), strides, exact, dilation,
                                        groups))
    by_w = (lambda x, dw: conv(x, dw, strides, pads, dilation, groups),
            lambda x, g: _weight_grad(x, g, strides, exact, dilation, groups))
    return y, _bilinear_tangent(tangents, primals, by_x, by_w)


@partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def conv_transpose_fast(x: jax.Array, w: jax.Array, strides: tuple[int, ...], crops: Pads,
                        dilation: tuple[int, ...]) -> jax.Array:
    """`conv_transpose` with a backward pass of plain convolutions (the mirror of `conv_fast`,
    a `jax.custom_jvp` in the same way):

        dL/dx = conv(g, wᵀ) with pads = crops (a strided convolution of g)
        dL/dw[u, c, f] = Σ_{n,i} g_pad[n, u*d + i*s, f] x[n, i, c]   (`_weight_grad`, swapped)
    """
    return conv_transpose(x, w, strides, crops, dilation)


@partial(conv_transpose_fast.defjvp, symbolic_zeros=True)
def _conv_transpose_fast_jvp(strides, crops, dilation, primals, tangents):
    x, w = primals
    n = len(crops)
    by_x = (lambda w, dx: conv_transpose(dx, w, strides, crops, dilation),
            lambda w, g: conv(g, w.swapaxes(n, n + 1), strides, crops, dilation))
    by_w = (lambda x, dw: conv_transpose(x, dw, strides, crops, dilation),
            lambda x, g: _weight_grad(g, x, strides, crops, dilation).swapaxes(n, n + 1))
    y = conv_transpose(x, w, strides, crops, dilation)
    return y, _bilinear_tangent(tangents, primals, by_x, by_w)
