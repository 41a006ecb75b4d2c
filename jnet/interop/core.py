"""Converters for the seed's layers: Linear, Conv1d / Conv2d / ConvTranspose2d, BatchNorm,
LSTM, GRU and bidirectional modules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from jnet.errors import ArgumentError
from jnet.interop._common import _check_shape, _converter, _get, _weight_and_bias


@_converter
def dense_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.Linear`` -> `Dense` params: ``{"w": weight.T, "b": bias}``.

    A Linear built with ``bias=False`` gives ``{"w"}`` only: use ``Dense(..., use_bias=False)``.
    """
    return _weight_and_bias(state_dict, prefix, "dense_from_torch", "(out, in)", (1, 0), 0)


@_converter
def conv2d_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.Conv2d`` -> `Conv2D` params: OIHW weight to HWIO, ``{"w": (kh, kw, I, O), "b"}``.

    Both compute cross-correlation, so no kernel flip. Strides, padding and dilation are
    constructor arguments on both sides (PyTorch's ``padding=p`` is jnet's ``padding=p``);
    inputs go from NCHW to NHWC with ``x.transpose(0, 2, 3, 1)``. Grouped convolutions
    (``groups=G``, weight (O, I / G, kh, kw)) convert the same way into
    ``Conv2D(..., feature_group_count=G)``.
    """
    return _weight_and_bias(state_dict, prefix, "conv2d_from_torch", "OIHW", (2, 3, 1, 0), 0)


@_converter
def batchnorm_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> tuple[dict, dict]:
    """``nn.BatchNorm2d`` (or 1d) -> `BatchNorm` ``(params, state)``.

    params ``{"scale": weight, "bias": bias}`` (absent with ``affine=False``: build
    ``BatchNorm(scale=False, center=False)``), state ``{"mean": running_mean, "var":
    running_var}``, copied as stored (see the module docstring on the unbiased variance).
    Momentum: PyTorch's ``momentum=0.1`` is jnet's ``BatchNorm(momentum=0.9)``; eps matches.
    """
    what = "batchnorm_from_torch"
    mean = _get(state_dict, prefix + "running_mean", what)
    var = _get(state_dict, prefix + "running_var", what)
    _check_shape(what, "running_var", var, mean.shape)
    params = {}
    for torch_name, jnet_name in (("weight", "scale"), ("bias", "bias")):
        value = _get(state_dict, prefix + torch_name, what, optional=True)
        if value is not None:
            _check_shape(what, torch_name, value, mean.shape)
            params[jnet_name] = value
    return params, {"mean": mean, "var": var}


def _rnn_weights(state_dict, prefix, layer, direction, gates, what):
    if direction not in ("forward", "backward"):
        raise ArgumentError(
            f"{what}: direction must be 'forward' or 'backward', got {direction!r}.")
    suffix = f"_l{layer}" + ("_reverse" if direction == "backward" else "")
    if prefix + "weight_hr" + suffix in state_dict:
        raise ArgumentError(
            f"{what}: the module has a projection (proj_size > 0, 'weight_hr{suffix}'), "
            "which jnet's LSTM does not implement."
        )
    w_ih = _get(state_dict, f"{prefix}weight_ih{suffix}", what)
    w_hh = _get(state_dict, f"{prefix}weight_hh{suffix}", what)
    hidden = w_hh.shape[-1]
    _check_shape(what, "weight_hh" + suffix, w_hh, (gates * hidden, hidden))
    _check_shape(what, "weight_ih" + suffix, w_ih, (gates * hidden, w_ih.shape[-1]))
    zeros = np.zeros(gates * hidden, w_ih.dtype)  # bias=False modules have no biases
    b_ih = _get(state_dict, f"{prefix}bias_ih{suffix}", what, optional=True)
    b_hh = _get(state_dict, f"{prefix}bias_hh{suffix}", what, optional=True)
    return (w_ih.T.copy(), w_hh.T.copy(), zeros if b_ih is None else b_ih,
            zeros if b_hh is None else b_hh)


@_converter
def lstm_from_torch(state_dict: Mapping[str, Any], prefix: str = "", layer: int = 0,
                    direction: str = "forward") -> dict:
    """``nn.LSTM`` layer `layer` -> `LSTM` params ``{"w_ih", "w_hh", "b"}``.

    ``w_ih = weight_ih_l{layer}.T`` (F, 4H), ``w_hh = weight_hh_l{layer}.T`` (H, 4H),
    ``b = bias_ih_l{layer} + bias_hh_l{layer}`` (the two biases only ever appear summed).
    Gate order (i, f, g, o) on both sides. A stacked ``num_layers=k`` module is k jnet LSTMs
    with ``return_sequences=True`` (all but the last), one call per layer. PyTorch's
    ``batch_first=True`` matches jnet's (N, T, F).
    """
    w_ih, w_hh, b_ih, b_hh = _rnn_weights(state_dict, prefix, layer, direction, 4,
                                          "lstm_from_torch")
    return {"w_ih": w_ih, "w_hh": w_hh, "b": b_ih + b_hh}


@_converter
def gru_from_torch(state_dict: Mapping[str, Any], prefix: str = "", layer: int = 0,
                   direction: str = "forward") -> dict:
    """``nn.GRU`` layer `layer` -> `GRU(reset_after=True)` params
    ``{"w_ih": (F, 3H), "w_hh": (H, 3H), "b_ih": (3H,), "b_hh": (3H,)}``, gates (r, z, n)."""
    w_ih, w_hh, b_ih, b_hh = _rnn_weights(state_dict, prefix, layer, direction, 3,
                                          "gru_from_torch")
    return {"w_ih": w_ih, "w_hh": w_hh, "b_ih": b_ih, "b_hh": b_hh}


def bidirectional_from_torch(state_dict: Mapping[str, Any], kind: str, prefix: str = "",
                             layer: int = 0) -> dict:
    """A ``bidirectional=True`` ``nn.LSTM`` / ``nn.GRU`` layer -> `Bidirectional` params
    ``{"forward": ..., "backward": ...}``; `kind` is ``"LSTM"`` or ``"GRU"``."""
    convert = {"LSTM": lstm_from_torch, "GRU": gru_from_torch}.get(kind)
    if convert is None:
        raise ArgumentError(
            f"bidirectional_from_torch: kind must be 'LSTM' or 'GRU', got {kind!r}.")
    return {d: convert(state_dict, prefix, layer, d) for d in ("forward", "backward")}


@_converter
def conv1d_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.Conv1d`` -> `Conv1D` params: (O, I, k) weight to WIO, ``{"w": (k, I, O), "b"}``.

    As `conv2d_from_torch` with one spatial axis: no kernel flip, the constructor arguments
    carry over (``groups=G`` is ``feature_group_count=G``), inputs go from (N, C, L) to
    (N, L, C) with ``x.transpose(0, 2, 1)``.

    Args:
        state_dict: the module's (or a model's) ``state_dict()`` as arrays.
        prefix: the module's key prefix inside a model's state dict, e.g. ``"features.0."``.

    Returns:
        The params dict, NumPy arrays in the state dict's dtype (no ``"b"`` for ``bias=False``).

    Raises:
        ArgumentError: no ``weight`` under `prefix`; a weight that is not 3-D, or a bias not of its
            O entries.
    """
    return _weight_and_bias(state_dict, prefix, "conv1d_from_torch", "(O, I, k)", (2, 1, 0), 0,
                            " Pass an nn.Conv1d's state dict (for nn.Conv2d use "
                            "conv2d_from_torch).")


@_converter
def conv_transpose2d_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.ConvTranspose2d`` -> `ConvTranspose2D` params: ``{"w": (kh, kw, I, O), "b"}``.

    PyTorch stores a transposed convolution's weight input channels first, (I, O, kh, kw):
    ``w = weight.transpose(2, 3, 0, 1)``, no flip. ``ConvTranspose2d(I, O, k, stride=s,
    padding=p, output_padding=op, dilation=d)`` is ``ConvTranspose2D(O, k, s, padding=p,
    output_padding=op, dilation=d)`` (see `ConvTranspose2D` for how "SAME" maps).
    ``groups > 1`` has no jnet counterpart: a grouped module's weight is (I, O / G, kh, kw),
    and its bias (O entries) gives it away (an `ArgumentError`); without a bias the params
    hold O / G filters and do not fit ``ConvTranspose2D(O, ...)``.

    Args:
        state_dict: the module's (or a model's) ``state_dict()`` as arrays.
        prefix: the module's key prefix inside a model's state dict, e.g. ``"decoder.up1."``.

    Returns:
        The params dict, NumPy arrays in the state dict's dtype (no ``"b"`` for ``bias=False``).

    Raises:
        ArgumentError: no ``weight`` under `prefix`; a weight that is not 4-D, or a bias not of its
            O entries.
    """
    what = "conv_transpose2d_from_torch"
    w = _get(state_dict, prefix + "weight", what)
    b = _get(state_dict, prefix + "bias", what, optional=True)
    if w.ndim == 4 and b is not None and b.ndim == 1 and b.shape[0] != w.shape[1] \
            and b.shape[0] % w.shape[1] == 0:
        raise ArgumentError(
            f"{what}: the weight {w.shape} has {w.shape[1]} output channels per group but the "
            f"bias {b.shape[0]}: a grouped ConvTranspose2d (groups={b.shape[0] // w.shape[1]}), "
            "which jnet's ConvTranspose2D does not implement. Use groups=1, or split the "
            "module into one ConvTranspose2D per group."
        )
    return _weight_and_bias(state_dict, prefix, what, "(I, O, kh, kw)", (2, 3, 0, 1), 1,
                            " Pass an nn.ConvTranspose2d's state dict.")
