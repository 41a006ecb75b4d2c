"""Fully connected layer (MATLAB fullyConnectedLayer, Keras Dense, PyTorch nn.Linear)."""

from __future__ import annotations

from typing import Any

import jax

from jnet import initializers
from jnet.layers.base import Layer, LayerError, check_float, check_last_dim
from jnet.layers.checks import check_positive_int


def Dense(
    units: int,
    w_init: Any = "glorot_uniform",
    b_init: Any = "zeros",
    use_bias: bool = True,
    name: str | None = None,
) -> Layer:
    """Affine map of the last axis: ``y = x @ w + b``, (N, ..., in) -> (N, ..., units).

    Params: ``{"w": (in, units), "b": (units,)}`` (no ``"b"`` when ``use_bias=False``). Leading
    axes pass through, so it also applies per time step to (N, T, in) sequences.

    Args:
        units: output features.
        w_init: default glorot_uniform, U(±sqrt(6 / (in + units))) (Keras's default).
            ``"torch"``: PyTorch's U(±1/sqrt(in)). PyTorch stores the weight transposed,
            (units, in): ``w_jnet = w_torch.T``.
        b_init: default zeros; ``"torch"``: PyTorch's U(±1/sqrt(in)) (the weight's fan_in,
            passed as the init's context, see `jnet.initializers`).
        use_bias: add ``b``.

    Raises:
        LayerError: `units` not a positive int; inputs without a feature axis.
    """
    units = check_positive_int("Dense", "units", units)
    w_fn, b_fn = initializers.get(w_init, "w_init"), initializers.get(b_init, "b_init")

    def init_fn(key, in_shape):
        if len(in_shape) < 1:
            raise LayerError(
                "Dense",
                f"expected per-example inputs with a feature axis, got in_shape {in_shape}. "
                "Scalars per example need a feature axis: reshape to (N, 1).",
            )
        k_w, k_b = jax.random.split(key)
        fan_in = in_shape[-1]
        params = {"w": w_fn(k_w, (fan_in, units), fan_in=fan_in)}
        if use_bias:
            params["b"] = b_fn(k_b, (units,), fan_in=fan_in)
        return (*in_shape[:-1], units), params, {}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        check_float("Dense", x)
        check_last_dim("Dense", x, params["w"].shape[0])
        y = x @ params["w"].astype(x.dtype)
        if use_bias:
            y = y + params["b"].astype(x.dtype)
        return y, state

    config = {"units": units, "use_bias": use_bias}
    return Layer(init_fn, apply_fn, kind="Dense", config=config, name=name)
