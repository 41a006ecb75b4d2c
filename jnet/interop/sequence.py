"""Converters for the sequence layers: LayerNorm, Embedding, MultiheadAttention."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jnet.errors import ArgumentError
from jnet.interop._common import _affine, _check_shape, _converter, _get


@_converter
def layernorm_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.LayerNorm(C)`` -> `LayerNorm` params ``{"scale": weight (C,), "bias": bias (C,)}``.

    eps (1e-5) and the biased variance match. A module built with ``bias=False`` gives
    ``{"scale"}``: use ``LayerNorm(center=False)``. One with ``elementwise_affine=False`` has an
    empty state dict and needs no conversion: ``LayerNorm(scale=False, center=False)``, params
    ``{}``. jnet normalises the last axis only, so ``normalized_shape`` must be one int.

    Args:
        state_dict: the module's (or a model's) ``state_dict()`` as arrays.
        prefix: the module's key prefix inside a model's state dict, e.g. ``"encoder.norm1."``.

    Returns:
        The params dict, NumPy arrays in the state dict's dtype.

    Raises:
        ArgumentError: no ``weight`` under `prefix`; a weight or bias that is not one vector of C
            values.
    """
    return _affine(state_dict, prefix, "layernorm_from_torch",
                   axis_note=" (LayerNorm over the last axis)",
                   fix="jnet's LayerNorm normalises the last axis only: build the PyTorch "
                       "module with normalized_shape=C.")


@_converter
def embedding_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.Embedding(num_embeddings, features)`` -> `Embedding` params
    ``{"embedding": weight (num_embeddings, features)}``, copied as stored.

    PyTorch's ``padding_idx`` keeps that row's gradient at zero; jnet has no such row (padding
    is said with ``mask=``), so the row is copied like any other and trains if used.

    Args:
        state_dict: the module's (or a model's) ``state_dict()`` as arrays.
        prefix: the module's key prefix inside a model's state dict, e.g. ``"embed."``.

    Returns:
        The params dict, a NumPy array in the state dict's dtype.

    Raises:
        ArgumentError: no ``weight`` under `prefix`; a weight that is not 2-D.
    """
    weight = _get(state_dict, prefix + "weight", "embedding_from_torch")
    if weight.ndim != 2:
        raise ArgumentError(
            f"embedding_from_torch: expected a 2-D weight (num_embeddings, features), got "
            f"{weight.shape}."
        )
    return {"embedding": weight}


@_converter
def multihead_attention_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.MultiheadAttention(E, num_heads, batch_first=True)`` -> `MultiHeadAttention` params.

    ``{"w_qkv": in_proj_weight.T (E, 3E), "b_qkv": in_proj_bias (3E,), "w_out":
    out_proj.weight.T (E, E), "b_out": out_proj.bias (E,)}``. Both sides pack the fused
    projection as (q | k | v) with heads contiguous inside each, so no permutation is needed.
    The state dict does not hold the number of heads: build ``MultiHeadAttention(num_heads)``
    with the module's. ``bias=False`` gives no ``b_qkv`` / ``b_out``: use
    ``MultiHeadAttention(num_heads, use_bias=False)``. jnet's layer is self-attention
    (query = key = value = x): call the PyTorch module as ``mha(x, x, x,
    key_padding_mask=~mask)``; jnet's ``mask`` is True on real steps, PyTorch's
    ``key_padding_mask`` True on padded ones.

    Args:
        state_dict: the module's (or a model's) ``state_dict()`` as arrays.
        prefix: the module's key prefix inside a model's state dict, e.g. ``"layers.0.attn."``.

    Returns:
        The params dict, NumPy arrays in the state dict's dtype.

    Raises:
        ArgumentError: no ``in_proj_weight`` / ``out_proj.weight`` under `prefix`; separate q/k/v
            projections (``kdim`` / ``vdim`` != E), ``add_bias_kv=True``,
            or shapes that do not fit one embedding size E.
    """
    what = "multihead_attention_from_torch"
    for key, why in (("q_proj_weight", "separate q/k/v projections (kdim or vdim != embed_dim)"),
                     ("bias_k", "add_bias_kv=True")):
        if prefix + key in state_dict:
            raise ArgumentError(
                f"{what}: the module has {why} ({key!r}), which jnet's self-attention "
                "MultiHeadAttention does not implement. Build it with kdim = vdim = embed_dim "
                "and add_bias_kv=False."
            )
    w_in = _get(state_dict, prefix + "in_proj_weight", what)
    e = w_in.shape[-1]
    _check_shape(what, "in_proj_weight", w_in, (3 * e, e))
    w_out = _get(state_dict, prefix + "out_proj.weight", what)
    _check_shape(what, "out_proj.weight", w_out, (e, e))
    params = {"w_qkv": w_in.T.copy(), "w_out": w_out.T.copy()}
    b_in = _get(state_dict, prefix + "in_proj_bias", what, optional=True)
    b_out = _get(state_dict, prefix + "out_proj.bias", what, optional=True)
    if (b_in is None) != (b_out is None):
        raise ArgumentError(
            f"{what}: expected both in_proj_bias and out_proj.bias (bias=True) or neither "
            f"(bias=False), got only {'in_proj_bias' if b_out is None else 'out_proj.bias'}."
        )
    if b_in is not None:
        _check_shape(what, "in_proj_bias", b_in, (3 * e,))
        _check_shape(what, "out_proj.bias", b_out, (e,))
        params.update(b_qkv=b_in, b_out=b_out)
    return params
