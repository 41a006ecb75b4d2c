"""Layers: pure `(init, apply)` pairs and the combinators that build models from them.

    out_shape, params, state = layer.init(key, in_shape)
    y, state = layer.apply(params, state, x, *, key=None, train=False, mask=None)

One module per family; each layer's maths is in its constructor's docstring. `base.py` holds
the `Layer` type, its container protocol and the toolkit for writing containers
(`container`, `init_child`, `apply_child`, `check_children`, `split_key`, `map_layers`);
`checks.py` the checks every layer shares; `summary.py` the model summary table.
"""

from jnet.layers.activations import (
    ELU,
    Activation,
    BinaryStep,
    LeakyReLU,
    Linear,
    PReLU,
    ReLU,
    Sigmoid,
    Softmax,
    Swish,
    Tanh,
)
from jnet.layers.attention import DecodingLayer, MultiHeadAttention
from jnet.layers.base import (
    Head,
    Layer,
    LayerError,
    abstract_init,
    apply_child,
    check_children,
    container,
    init_child,
    map_layers,
    output_shape,
    parameter_free,
    split_key,
)
from jnet.layers.combinators import (
    Bidirectional,
    FanInConcat,
    FanInSum,
    FanOut,
    count_params,
    parallel,
    residual,
    serial,
)
from jnet.layers.conv import Conv1D, Conv2D, ConvTranspose2D
from jnet.layers.conv_extra import Conv3D, SeparableConv2D
from jnet.layers.dense import Dense
from jnet.layers.depth import remat, repeat, tied_embedding
from jnet.layers.dropout import Dropout
from jnet.layers.embedding import Embedding
from jnet.layers.heads import ClassificationOutput, RegressionOutput
from jnet.layers.input import Input
from jnet.layers.norm import BatchNorm, GroupNorm, InstanceNorm, LayerNorm, RMSNorm
from jnet.layers.pooling import (
    AvgPool1D,
    AvgPool2D,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalMaxPool1D,
    MaxPool1D,
    MaxPool2D,
)
from jnet.layers.recurrent import GRU, LSTM, GRUCell, LSTMCell
from jnet.layers.reshape import Flatten, Reshape
from jnet.layers.transformer import TransformerDecoderLayer, TransformerEncoderLayer
from jnet.layers.upsampling import UpSampling2D

__all__ = [
    "ELU",
    "GRU",
    "LSTM",
    "Activation",
    "AvgPool1D",
    "AvgPool2D",
    "BatchNorm",
    "Bidirectional",
    "BinaryStep",
    "ClassificationOutput",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "ConvTranspose2D",
    "DecodingLayer",
    "Dense",
    "Dropout",
    "Embedding",
    "FanInConcat",
    "FanInSum",
    "FanOut",
    "Flatten",
    "GRUCell",
    "GlobalAvgPool1D",
    "GlobalAvgPool2D",
    "GlobalMaxPool1D",
    "GroupNorm",
    "Head",
    "Input",
    "InstanceNorm",
    "LSTMCell",
    "Layer",
    "LayerError",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "MaxPool1D",
    "MaxPool2D",
    "MultiHeadAttention",
    "PReLU",
    "RMSNorm",
    "ReLU",
    "RegressionOutput",
    "Reshape",
    "SeparableConv2D",
    "Sigmoid",
    "Softmax",
    "Swish",
    "Tanh",
    "TransformerDecoderLayer",
    "TransformerEncoderLayer",
    "UpSampling2D",
    "abstract_init",
    "apply_child",
    "check_children",
    "container",
    "count_params",
    "init_child",
    "map_layers",
    "output_shape",
    "parallel",
    "parameter_free",
    "remat",
    "repeat",
    "residual",
    "serial",
    "split_key",
    "tied_embedding",
]
