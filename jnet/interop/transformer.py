"""Converters for the transformer-era blocks: RMSNorm, GroupNorm, InstanceNorm, encoder
layers, Conv3d, separable convolutions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from jnet.errors import ArgumentError, ArgumentTypeError
from jnet.interop._common import _affine, _check_shape, _converter, _get, _weight_and_bias
from jnet.interop.core import dense_from_torch
from jnet.interop.sequence import layernorm_from_torch, multihead_attention_from_torch


@_converter
def rmsnorm_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.RMSNorm(C, eps=eps)`` -> `RMSNorm(eps)` params ``{"scale": weight (C,)}``.

    Pass eps explicitly on both sides: PyTorch's default ``eps=None`` is the dtype's machine
    epsilon, jnet's default 1e-6. ``elementwise_affine=False`` has nothing to convert:
    ``RMSNorm(scale=False)``.

    Raises:
        ArgumentError: no ``weight`` under `prefix`, or a weight that is not one vector.
    """
    return _affine(state_dict, prefix, "rmsnorm_from_torch", bias=False)


@_converter
def groupnorm_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.GroupNorm(G, C)`` -> `GroupNorm(G)` params ``{"scale": weight, "bias": bias}``.

    The grouping of channels agrees (consecutive blocks of C / G), so no permutation; inputs
    go from NCHW to NHWC. ``affine=False`` has nothing to convert:
    ``GroupNorm(G, scale=False, center=False)``.

    Raises:
        ArgumentError: no ``weight`` under `prefix`, or weight / bias not one vector of C.
    """
    return _affine(state_dict, prefix, "groupnorm_from_torch", bias=True)


@_converter
def instancenorm_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.InstanceNorm2d(C, affine=True)`` (or 1d / 3d) -> `InstanceNorm` params
    ``{"scale": weight, "bias": bias}``.

    Raises:
        ArgumentError: running statistics in the state dict (``track_running_stats=True``,
            which jnet's InstanceNorm does not keep), no ``weight`` (``affine=False`` needs
            no conversion: ``InstanceNorm(scale=False, center=False)``), or bad shapes.
    """
    what = "instancenorm_from_torch"
    if prefix + "running_mean" in state_dict:
        raise ArgumentError(
            f"{what}: the module keeps running statistics (track_running_stats=True); jnet's "
            "InstanceNorm always normalises with each example's own statistics. Build the "
            "PyTorch module with track_running_stats=False, or use BatchNorm semantics.")
    return _affine(state_dict, prefix, what, bias=True)


@_converter
def transformer_encoder_layer_from_torch(state_dict: Mapping[str, Any],
                                         prefix: str = "") -> dict:
    """``nn.TransformerEncoderLayer(E, H, F, batch_first=True)`` -> `TransformerEncoderLayer`
    params (and `TransformerDecoderLayer`'s, for a PyTorch encoder layer run with a causal
    mask).

    ``{"self_attn": multihead_attention_from_torch(prefix + "self_attn."), "linear1":
    dense_from_torch(prefix + "linear1."), "linear2": ..., "norm1":
    layernorm_from_torch(prefix + "norm1."), "norm2": ...}``. Build the jnet block with the
    module's ``num_heads``, ``dim_feedforward``, ``activation``, ``norm_first`` and
    ``layer_norm_eps`` (the state dict holds none of them). For a stack
    (``nn.TransformerEncoder``) call it once per layer with ``prefix="layers.{i}."``.

    Raises:
        ArgumentError: a missing or misshapen entry (named), or a feed-forward network that
            does not fit E.
    """
    what = "transformer_encoder_layer_from_torch"
    params = {"self_attn": multihead_attention_from_torch(state_dict, prefix + "self_attn."),
              "linear1": dense_from_torch(state_dict, prefix + "linear1."),
              "linear2": dense_from_torch(state_dict, prefix + "linear2."),
              "norm1": layernorm_from_torch(state_dict, prefix + "norm1."),
              "norm2": layernorm_from_torch(state_dict, prefix + "norm2.")}
    e = params["self_attn"]["w_out"].shape[0]
    f = params["linear1"]["w"].shape[1]
    _check_shape(what, "linear1.weight.T", params["linear1"]["w"], (e, f))
    _check_shape(what, "linear2.weight.T", params["linear2"]["w"], (f, e))
    return params


@_converter
def conv3d_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.Conv3d`` -> `Conv3D` params: (O, I, kd, kh, kw) weight to DHWIO,
    ``{"w": (kd, kh, kw, I, O), "b"}``; no kernel flip, inputs (N, C, D, H, W) ->
    (N, D, H, W, C) with ``x.permute(0, 2, 3, 4, 1)``, ``groups=G`` is
    ``feature_group_count=G``.

    Raises:
        ArgumentError: no ``weight`` under `prefix`, a weight that is not 5-D, or a bias not
            of its O entries.
    """
    return _weight_and_bias(state_dict, prefix, "conv3d_from_torch", "(O, I, kd, kh, kw)",
                            (2, 3, 4, 1, 0), 0)


def separable_conv2d_from_torch(state_dict: Mapping[str, Any], depth_multiplier: int = 1,
                                depthwise: str = "depthwise.",
                                pointwise: str = "pointwise.") -> dict:
    """A depthwise ``nn.Conv2d(C, C·M, k, groups=C)`` followed by a pointwise
    ``nn.Conv2d(C·M, F, 1)`` -> `SeparableConv2D(F, k, depth_multiplier=M)` params
    ``{"depthwise": (kh, kw, C, M), "pointwise": (1, 1, C·M, F), "b": (F,)}``.

    PyTorch's depthwise output channel c·M + m reads input channel c, as jnet's (and
    Keras's) depthwise kernel ``[:, :, c, m]``. A depthwise bias b_d, which Keras's layer does
    not have, passes linearly through the pointwise step and is folded into the bias:
    ``b = b_p + b_d @ W_p``.

    Args:
        state_dict: the model's ``state_dict()`` as arrays.
        depth_multiplier: M (the state dict does not say how C·M splits).
        depthwise, pointwise: the two modules' key prefixes (default ``"depthwise."``,
            ``"pointwise."``; e.g. ``"block.0."`` and ``"block.1."`` in a Sequential).

    Returns:
        The params dict (no ``"b"`` when neither convolution has a bias).

    Raises:
        ArgumentError: missing weights, shapes that are not a depthwise / 1 x 1 pair with C·M
            divisible by M, or a depth_multiplier that is not a positive int.
        ArgumentTypeError: a `state_dict` that is not a mapping, or prefixes that are not
            strings.
    """
    what = "separable_conv2d_from_torch"
    for name, prefix in (("depthwise", depthwise), ("pointwise", pointwise)):
        if not isinstance(prefix, str):
            raise ArgumentTypeError(f"{what}: {name} must be the module's key prefix, a string "
                                    f"such as '{name}.', got {type(prefix).__name__} "
                                    f"{prefix!r}.")
    if isinstance(depth_multiplier, bool) or not isinstance(depth_multiplier, (int, np.integer)) \
            or depth_multiplier < 1:
        raise ArgumentError(f"{what}: depth_multiplier must be a positive int (the M of the "
                            f"depthwise Conv2d(C, C·M, k, groups=C)), got {depth_multiplier!r}.")
    dw = _get(state_dict, depthwise + "weight", what)
    pw = _get(state_dict, pointwise + "weight", what)
    m = depth_multiplier
    if dw.ndim != 4 or dw.shape[1] != 1 or dw.shape[0] % m or pw.ndim != 4 \
            or pw.shape[1:] != (dw.shape[0], 1, 1):
        raise ArgumentError(
            f"{what}: expected a depthwise weight (C·M, 1, kh, kw) with M = "
            f"depth_multiplier = {m} dividing C·M, and a pointwise weight (F, C·M, 1, 1), got "
            f"{dw.shape} and {pw.shape}.")
    cm, kh, kw = dw.shape[0], dw.shape[2], dw.shape[3]
    w_p = pw[:, :, 0, 0].T  # (C·M, F)
    params = {"depthwise": np.ascontiguousarray(
                  dw.reshape(cm // m, m, kh, kw).transpose(2, 3, 0, 1)),
              "pointwise": np.ascontiguousarray(w_p[None, None])}
    b_d = _get(state_dict, depthwise + "bias", what, optional=True)
    b_p = _get(state_dict, pointwise + "bias", what, optional=True)
    if b_d is not None or b_p is not None:
        params["b"] = (np.zeros(pw.shape[0], pw.dtype) if b_p is None else b_p) + (
            0.0 if b_d is None else b_d @ w_p)
    return params
