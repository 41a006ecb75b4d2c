"""Convolutions, channels last: `Conv1D` over (N, L, C), `Conv2D` and `ConvTranspose2D` over
(N, H, W, C).

Each is one implementation over n spatial axes with kernels laid out ``(*window, I, O)``
(WIO, HWIO), I the layer's input channels. Output sizes and the padding forms:
`jnet.layers.windows`.
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
from jnet.layers.windows import (
    Padding,
    Pads,
    as_tuple,
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
LAYOUTS = {1: ("(L, C)", "(N, L, C)", RANK2_FIX), 2: ("(H, W, C)", "(N, H, W, C)", RANK3_FIX)}


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


def Conv1D(
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
    """1-D convolution (cross-correlation) over sequences: (N, L, C) -> (N, L', filters).

        y[n, i, f] = b[f] + sum_{u, c} x_pad[n, i*s + u*d, c] * w[u, c, f]

    Params: ``{"w": (k, C / groups, filters), "b": (filters,)}`` (WIO). Everything else, the
    arguments included, as `Conv2D` with one spatial axis (``padding=(lo, hi)`` is the one
    axis's pair). PyTorch's ``nn.Conv1d`` stores (O, I, k) and works on (N, C, L):
    ``w_jnet = w_torch.transpose(2, 1, 0)``, `jnet.interop.conv1d_from_torch`.
    """
    return _conv_layer("Conv1D", 1, filters, kernel_size, strides, padding, dilation,
                       feature_group_count, w_init, b_init, use_bias, fast_grad, name)


def Conv2D(
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
    """2-D convolution (cross-correlation, as in every DL library): (N, H, W, C) -> (N, H', W', F).

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
        fast_grad: for stride 1, no dilation and no groups, compute the backward pass with
            explicitly laid out convolutions (`_conv_s1`). Default (None): on when the default
            backend is the CPU, where XLA otherwise runs the weight gradient inside a
            `lax.scan` / loop body (as `jnet.fit` runs epochs) with a naive kernel, ~10x
            slower. Same values; its cost: no forward-mode autodiff (`jax.jvp`) through this
            layer, so pass False for that.

    Raises:
        LayerError: bad sizes, or C / filters not multiples of `feature_group_count`.

    PyTorch stores kernels OIHW and images NCHW: ``w_jnet = w_torch.transpose(2, 3, 1, 0)``.
    """
    return _conv_layer("Conv2D", 2, filters, kernel_size, strides, padding, dilation,
                       feature_group_count, w_init, b_init, use_bias, fast_grad, name)


def check_filters(kind: str, filters: Any, groups: Any) -> None:
    """Raise unless `filters` and `groups` are positive ints with groups dividing filters."""
    for what, value in (("filters", filters), ("feature_group_count", groups)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise LayerError(kind, f"{what} must be a positive int, got {value!r}.")
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
    w_fn, b_fn = initializers.get(w_init), initializers.get(b_init)
    effective = tuple((k - 1) * d + 1 for k, d in zip(kernel, dil, strict=True))
    if fast_grad is None:
        fast_grad = jax.default_backend() == "cpu"
    numbers = dimension_numbers(n)

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
        plain = stride == (1,) * n and dil == (1,) * n and groups == 1
        if fast_grad and plain and _fits_full_conv(pads, kernel):
            y = _conv_s1(x, w, pads)
        else:
            y = lax.conv_general_dilated(x, w, stride, pads, rhs_dilation=dil,
                                         dimension_numbers=numbers,
                                         feature_group_count=groups)
        if use_bias:
            y = y + params["b"].astype(x.dtype)
        return y, state

    config = {"filters": filters, "kernel_size": kernel, "strides": stride,
              "padding": pad_spec, "dilation": dil, "use_bias": use_bias}
    if groups != 1:
        config["feature_group_count"] = groups
    return Layer(init_fn, apply_fn, kind=kind, config=config, name=name)


def _fits_full_conv(pads: Pads, kernel: tuple[int, ...]) -> bool:
    """The input gradient is a full convolution with pads k-1-p, which must not be negative."""
    return all(0 <= p <= k - 1 for (lo, hi), k in zip(pads, kernel, strict=True) for p in (lo, hi))


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_s1(x: jax.Array, w: jax.Array, pads: Pads) -> jax.Array:
    """Stride-1 channels-last convolution whose backward pass lays its convolutions out itself.

    For y = x ⋆ w with pads (lo, hi) per axis and upstream gradient g = dL/dy:

        dL/dx = g ⋆ flip(w)ᵀ   with pads (k-1-lo, k-1-hi): a full convolution, (*k, F, C)
        dL/dw[u, c, f] = Σ_{n,i} x_pad[n, i+u, c] g[n, i, f]   (u, i multi-indices)
              = a convolution of x viewed as (C, *S, N) with g viewed as (*S_out, N, F)

    All are plain channels-last convolutions, which XLA:CPU runs with its fast kernel inside
    loop bodies too (autodiff's own weight gradient is not, there).
    """
    return lax.conv_general_dilated(x, w, (1,) * len(pads), pads,
                                    dimension_numbers=dimension_numbers(len(pads)))


def _conv_s1_fwd(x, w, pads):
    return _conv_s1(x, w, pads), (x, w)


def _conv_s1_bwd(pads, residuals, g):
    x, w = residuals
    n = len(pads)
    spatial = tuple(range(1, n + 1))
    numbers = dimension_numbers(n)
    full = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(w.shape[:n], pads, strict=True))
    w_t = jnp.flip(w, tuple(range(n))).swapaxes(n, n + 1)
    dx = lax.conv_general_dilated(g, w_t, (1,) * n, full, dimension_numbers=numbers)
    dw = lax.conv_general_dilated(
        jnp.transpose(x, (n + 1, *spatial, 0)), jnp.transpose(g, (*spatial, 0, n + 1)),
        (1,) * n, pads, dimension_numbers=numbers,
    )
    return dx, jnp.transpose(dw, (*spatial, 0, n + 1))


_conv_s1.defvjp(_conv_s1_fwd, _conv_s1_bwd)


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

    Raises:
        LayerError: bad sizes or output_padding, or crops leaving no output.
    """
    return _conv_transpose_layer("ConvTranspose2D", 2, filters, kernel_size, strides, padding,
                                 output_padding, dilation, w_init, b_init, use_bias, name)


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
        crops = pad_spec
    return tuple((lo, hi - op) for (lo, hi), op in zip(crops, output_padding, strict=True))


def _conv_transpose_layer(kind, n, filters, kernel_size, strides, padding, output_padding,
                          dilation, w_init, b_init, use_bias, name) -> Layer:
    """A transposed convolution over `n` spatial axes (the body of `ConvTranspose2D`)."""
    check_filters(kind, filters, 1)
    kernel = as_tuple(kind, "kernel_size", kernel_size, n)
    stride = as_tuple(kind, "strides", strides, n)
    dil = as_tuple(kind, "dilation", dilation, n)
    pad_spec = normalize_padding(kind, padding, n)
    out_pad = (output_padding,) * n if isinstance(output_padding, int) else output_padding
    if len(tuple(out_pad)) != n or not all(
        isinstance(op, int) and 0 <= op < max(s, d)
        for op, s, d in zip(out_pad, stride, dil, strict=False)
    ):
        raise LayerError(
            kind,
            f"output_padding must be {n} non-negative int(s), each smaller than the stride "
            f"{stride} or the dilation {dil} on its axis, got {output_padding!r}.",
        )
    out_pad = tuple(out_pad)
    w_fn, b_fn = initializers.get(w_init), initializers.get(b_init)
    effective = tuple((k - 1) * d + 1 for k, d in zip(kernel, dil, strict=True))
    numbers = dimension_numbers(n)

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
        # The full output is a stride-1 convolution of the s-dilated input, zero padded by
        # k_eff - 1, with the flipped kernel; cropping is padding less (negative pads crop).
        pads = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(effective, crops,
                                                                      strict=True))
        w = jnp.flip(params["w"].astype(x.dtype), tuple(range(n)))
        y = lax.conv_general_dilated(x, w, (1,) * n, pads, lhs_dilation=stride,
                                     rhs_dilation=dil, dimension_numbers=numbers)
        if use_bias:
            y = y + params["b"].astype(x.dtype)
        return y, state

    config = {"filters": filters, "kernel_size": kernel, "strides": stride,
              "padding": pad_spec, "output_padding": out_pad, "dilation": dil,
              "use_bias": use_bias}
    return Layer(init_fn, apply_fn, kind=kind, config=config, name=name)
