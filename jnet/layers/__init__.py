"""Layers: pure `(init, apply)` pairs and the combinators that build models from them.

    out_shape, params, state = layer.init(key, in_shape)
    y, state = layer.apply(params, state, x, *, key=None, train=False)

One module per family; each layer's maths is in its constructor's docstring.
"""

from jnet.layers.base import Head, Layer, LayerError
from jnet.layers.combinators import (
    FanInConcat,
    FanInSum,
    FanOut,
    count_params,
    parallel,
    residual,
    serial,
)

__all__ = [
    "FanInConcat",
    "FanInSum",
    "FanOut",
    "Head",
    "Layer",
    "LayerError",
    "count_params",
    "parallel",
    "residual",
    "serial",
]
