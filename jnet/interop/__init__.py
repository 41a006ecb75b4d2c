"""PyTorch weights into jnet params: converters for `state_dict()` entries.

torch is never imported: pass ``module.state_dict()`` itself (tensors are detached and copied
to the host, also ones that require grad, live on a GPU or are bfloat16) or the state dict as
NumPy arrays (anything `np.asarray` takes). Every function
takes an optional `prefix`, so one call picks a submodule out of a whole model's state dict
(``prefix="encoder.lstm."``). Dtypes are kept: a float64 (``module.double()``) state dict gives
float64 params, a float32 one float32 params; cast with ``jax.tree.map`` to change them. Every
problem (a missing key, a wrong shape or dtype) is a `jnet.ArgumentError` naming the entry
(a `state_dict` that is not a mapping, e.g. the module itself: `jnet.ArgumentTypeError`).

=================  ======================================  ===================================
PyTorch            jnet                                    conversion
=================  ======================================  ===================================
nn.Linear          Dense {"w": (in, out), "b"}             weight.T
nn.Conv2d          Conv2D {"w": (kh, kw, I, O), "b"}       OIHW -> HWIO: transpose(2, 3, 1, 0)
nn.Conv1d          Conv1D {"w": (k, I, O), "b"}            OIW -> WIO: transpose(2, 1, 0)
nn.ConvTranspose2d ConvTranspose2D {"w": (kh, kw, I, O),   IOHW -> HWIO: transpose(2, 3, 0, 1)
                   "b"}
nn.BatchNorm2d     BatchNorm {"scale", "bias"},            weight, bias; running_mean,
                   state {"mean", "var"}                   running_var copied as stored
nn.LSTM            LSTM {"w_ih": (F, 4H), "w_hh": (H, 4H), weight_ih_l0.T, weight_hh_l0.T,
                   "b": (4H,)}                             b = bias_ih_l0 + bias_hh_l0
nn.GRU             GRU {"w_ih": (F, 3H), "w_hh": (H, 3H),  weight_ih_l0.T, weight_hh_l0.T,
                   "b_ih", "b_hh"} (reset_after=True)      both biases kept
nn.LayerNorm       LayerNorm {"scale", "bias"}             weight, bias
nn.Embedding       Embedding {"embedding": (num, F)}       weight
nn.Multihead-      MultiHeadAttention {"w_qkv": (E, 3E),   in_proj_weight.T, in_proj_bias,
Attention          "b_qkv", "w_out": (E, E), "b_out"}      out_proj.weight.T, out_proj.bias
nn.RMSNorm         RMSNorm {"scale"}                       weight
nn.GroupNorm,      GroupNorm / InstanceNorm {"scale",      weight, bias
nn.InstanceNorm2d  "bias"}
nn.Transformer-    TransformerEncoderLayer /               self_attn, linear1, linear2, norm1,
EncoderLayer       TransformerDecoderLayer                 norm2 converted as above
nn.Conv3d          Conv3D {"w": (kd, kh, kw, I, O), "b"}   transpose(2, 3, 4, 1, 0)
depthwise +        SeparableConv2D {"depthwise": (kh, kw,  reshape (C, M, kh, kw) ->
pointwise Conv2d   C, M), "pointwise", "b"}                (kh, kw, C, M); pointwise.T
=================  ======================================  ===================================

Gate orders need no permutation: jnet packs LSTM gates as (i, f, g, o) and GRU gates as
(r, z, n), PyTorch's orders. PyTorch's GRU is the reset-after GRU, so its weights load only into
``GRU(reset_after=True)`` (both biases are kept: b_hn sits inside r ⊙ (·) and cannot be merged).
For ``bidirectional=True`` modules, `direction="backward"` reads the ``*_reverse`` weights and
`bidirectional_from_torch` builds the params of a jnet `Bidirectional` layer.

BatchNorm's running variance: PyTorch stores the *unbiased* batch variance (× n/(n−1)) in
``running_var`` and normalises with it as stored in eval mode. jnet's `BatchNorm` does the same
(``unbiased_running_var=True``, its default), so the statistics copy unchanged and eval outputs
match; continuing training in jnet also updates them the same way. Only with a jnet BatchNorm
built with ``unbiased_running_var=False`` do the stored values mean something else: the running
average then lags PyTorch's by the factor (n−1)/n per update, and eval outputs still match
for the copied values. ``num_batches_tracked`` is not needed (jnet uses a fixed momentum).
"""


from __future__ import annotations

from jnet.interop.core import (
    batchnorm_from_torch,
    bidirectional_from_torch,
    conv1d_from_torch,
    conv2d_from_torch,
    conv_transpose2d_from_torch,
    dense_from_torch,
    gru_from_torch,
    lstm_from_torch,
)
from jnet.interop.sequence import (
    embedding_from_torch,
    layernorm_from_torch,
    multihead_attention_from_torch,
)
from jnet.interop.transformer import (
    conv3d_from_torch,
    groupnorm_from_torch,
    instancenorm_from_torch,
    rmsnorm_from_torch,
    separable_conv2d_from_torch,
    transformer_encoder_layer_from_torch,
)

__all__ = [
    "batchnorm_from_torch",
    "bidirectional_from_torch",
    "conv1d_from_torch",
    "conv2d_from_torch",
    "conv3d_from_torch",
    "conv_transpose2d_from_torch",
    "dense_from_torch",
    "embedding_from_torch",
    "groupnorm_from_torch",
    "gru_from_torch",
    "instancenorm_from_torch",
    "layernorm_from_torch",
    "lstm_from_torch",
    "multihead_attention_from_torch",
    "rmsnorm_from_torch",
    "separable_conv2d_from_torch",
    "transformer_encoder_layer_from_torch",
]
