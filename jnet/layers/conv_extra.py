"""Convolutions beyond `jnet.layers.conv`: `Conv3D` over volumes (N, D, H, W, C), the 3-D
case of `jnet.layers.conv.spatial_conv`, and the depthwise-separable `SeparableConv2D`
(Chollet 2017, Keras semantics), which reuses `jnet.layers.conv.conv` and the window
arithmetic of `jnet.layers.windows`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jnet import initializers
from jnet.layers.base import (
    Layer,
    check_float,
    check_in_shape_rank,
    check_last_dim,
    check_rank,
)
from jnet.layers.checks import check_positive_int
from jnet.layers.conv import check_filters, conv, spatial_conv
from jnet.layers.windows import (
    Padding,
    as_tuple,
    normalize_padding,
    resolve_padding,
    window_output_size,
)


class _Window:
    """A convolution window's static arithmetic: kernel, strides, dilation and padding."""

    def __init__(self, kind: str, n: int, kernel_size: Any, strides: Any, padding: Padding,
                 dilation: Any):
        self.kind = kind
        self.kernel = as_tuple(kind, "kernel_size", kernel_size, n)
        self.strides = as_tuple(kind, "strides", strides, n)
        self.dilation = as_tuple(kind, "dilation", dilation, n)
        self.padding = normalize_padding(kind, padding, n)
        self.effective = tuple((k - 1) * d + 1
                               for k, d in zip(self.kernel, self.dilation, strict=True))

    def pads(self, size: Sequence[int]):
        return resolve_padding(self.padding, size, self.effective, self.strides)

    def out_size(self, size: Sequence[int]) -> tuple[int, ...]:
        return tuple(window_output_size(self.kind, size, self.effective, self.strides,
                                        self.pads(size)))

    def config(self) -> dict:
        return {"kernel_size": self.kernel, "strides": self.strides, "padding": self.padding,
                "dilation": self.dilation}


Conv3D = spatial_conv("Conv3D", 3, """
3-D convolution (cross-correlation) over volumes, channels last:
(N, D, H, W, C) -> (N, D', H', W', filters).

    y[n, i, j, l, f] = b[f] + Σ_{u, v, r, c} x_pad[n, i·sd + u·dd, j·sh + v·dh,
                                                   l·sw + r·dw, c] · w[u, v, r, c, f]

Params: ``{"w": (kd, kh, kw, C / groups, filters), "b": (filters,)}`` (DHWIO). Arguments,
padding forms and initializers as `Conv2D` with three spatial axes (``padding=p``, one int
per axis, or one (lo, hi) pair per axis; SAME puts the odd extra pad at the end).

PyTorch: ``nn.Conv3d`` on (N, C, D, H, W) with weight (O, I, kd, kh, kw):
``w = weight.transpose(2, 3, 4, 1, 0)`` (`jnet.interop.conv3d_from_torch`); inputs
``x.permute(0, 2, 3, 4, 1)``.

Args:
    filters: output channels F.
    kernel_size, strides, dilation: an int or three (depth, height, width).
    padding: ``"VALID"`` (default), ``"SAME"`` or explicit pads.
    feature_group_count: channel groups, as in `Conv2D`.
    w_init, b_init: initializers (default glorot_uniform / zeros; ``"torch"`` PyTorch's).
    use_bias: add a bias per filter.
    fast_grad: as for `Conv2D`, but off by default (None) for 3-D, where it was not measured;
        True computes the backward pass with `jnet.layers.conv.conv_fast` (same values).
    name: the layer's name inside a container.

Returns:
    The `Layer`.

Raises:
    LayerError: bad sizes or groups; at init / apply, inputs that are not (D, H, W, C)
        volumes, or a wrong C.
""")


def SeparableConv2D(
    filters: int,
    kernel_size: int | Sequence[int],
    strides: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    depth_multiplier: int = 1,
    dilation: int | Sequence[int] = 1,
    depthwise_init: Any = "glorot_uniform",
    pointwise_init: Any = "glorot_uniform",
    b_init: Any = "zeros",
    use_bias: bool = True,
    name: str | None = None,
) -> Layer:
    """Depthwise-separable 2-D convolution (Keras ``SeparableConv2D``):
    (N, H, W, C) -> (N, H', W', filters).

    A depthwise convolution (each input channel c convolved with its own M =
    `depth_multiplier` kernels; strides, padding and dilation apply here) followed by a 1 x 1
    pointwise convolution mixing the C·M channels:

        z[n, i, j, c·M + m] = Σ_{u, v} x_pad[n, i·sh + u·dh, j·sw + v·dw, c] · dw[u, v, c, m]
        y[n, i, j, f] = b[f] + Σ_k z[n, i, j, k] · pw[0, 0, k, f]

    Params: ``{"depthwise": (kh, kw, C, M), "pointwise": (1, 1, C·M, filters),
    "b": (filters,)}`` (Keras's names and shapes); no bias between the two steps.

    PyTorch: ``nn.Conv2d(C, C·M, k, stride, padding, dilation, groups=C, bias=False)``
    followed by ``nn.Conv2d(C·M, filters, 1)``; `jnet.interop.separable_conv2d_from_torch`
    converts the pair (a depthwise bias, if any, is folded into ``b``).

    Args:
        filters: output channels F.
        kernel_size, strides, dilation: an int or (h, w), of the depthwise step.
        padding: ``"VALID"`` (default, Keras's), ``"SAME"`` or explicit pads.
        depth_multiplier: M >= 1, depthwise outputs per input channel.
        depthwise_init, pointwise_init, b_init: initializers (Keras's defaults).
        use_bias: add ``b``.
        name: the layer's name inside a container.

    Returns:
        The `Layer`.

    Raises:
        LayerError: bad sizes; at init / apply, inputs that are not (H, W, C) images, or a
            wrong C.
    """
    kind = "SeparableConv2D"
    check_filters(kind, filters, 1)
    depth_multiplier = check_positive_int(kind, "depth_multiplier", depth_multiplier)
    window = _Window(kind, 2, kernel_size, strides, padding, dilation)
    dw_fn, pw_fn = (initializers.get(depthwise_init, "depthwise_init"),
                    initializers.get(pointwise_init, "pointwise_init"))
    b_fn = initializers.get(b_init, "b_init")
    m = depth_multiplier

    def init_fn(key, in_shape):
        check_in_shape_rank(kind, in_shape, 3, "(H, W, C)")
        *size, c = in_shape
        out = window.out_size(size)
        k_dw, k_pw, k_b = jax.random.split(key, 3)
        dw_shape, pw_shape = (*window.kernel, c, m), (1, 1, c * m, filters)
        params = {"depthwise": dw_fn(k_dw, dw_shape, fan_in=window.kernel[0] * window.kernel[1]),
                  "pointwise": pw_fn(k_pw, pw_shape, fan_in=c * m)}
        if use_bias:
            params["b"] = b_fn(k_b, (filters,), fan_in=c * m)
        return (*out, filters), params, {}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        check_rank(kind, x, 4, "(N, H, W, C)")
        check_float(kind, x)
        kh, kw, c, _ = params["depthwise"].shape
        check_last_dim(kind, x, c, "channels")
        # (kh, kw, C, M) -> (kh, kw, 1, C·M): output channel c·M + m reads input channel c
        dw = params["depthwise"].astype(x.dtype).reshape(kh, kw, 1, c * m)
        z = conv(x, dw, window.strides, window.pads(x.shape[1:-1]), window.dilation, c)
        y = jnp.einsum("nhwk,kf->nhwf", z, params["pointwise"][0, 0].astype(x.dtype))
        if use_bias:
            y = y + params["b"].astype(x.dtype)
        return y, state

    config = {"filters": filters, **window.config(), "depth_multiplier": m,
              "use_bias": use_bias}
    return Layer(init_fn, apply_fn, kind=kind, config=config, name=name)
