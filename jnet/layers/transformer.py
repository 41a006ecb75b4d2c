"""Transformer blocks (Vaswani et al. 2017): self-attention and a position-wise feed-forward
network, each in a residual branch with layer normalisation, after (post-norm, the paper's
and PyTorch's default) or before it (pre-norm, GPT-2 and most LLMs; Xiong et al. 2020)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jnet._rng import draw
from jnet.layers.attention import DecodingLayer, MultiHeadAttention
from jnet.layers.base import LayerError, check_in_shape_rank, require_key, split_key
from jnet.layers.checks import check_positive_int, is_number
from jnet.layers.dense import Dense
from jnet.layers.norm import LayerNorm

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # PyTorch's "gelu": the exact erf
}


def _public_block(causal: bool) -> Callable[[Callable[[], None]], Callable[..., DecodingLayer]]:
    """A decorator: the public constructor of a transformer block from a stub that carries
    its name and docstring. Both blocks take the same arguments (the signature below) and
    differ only in `causal`."""

    def make(stub: Callable[[], None]) -> Callable[..., DecodingLayer]:
        kind = stub.__name__

        def block(
            num_heads: int,
            dim_feedforward: int = 2048,
            dropout: float = 0.1,
            activation: str | Callable[[jax.Array], jax.Array] = "relu",
            norm_first: bool = False,
            layer_norm_eps: float = 1e-5,
            num_kv_heads: int | None = None,
            rope: bool | float = False,
            name: str | None = None,
        ) -> DecodingLayer:
            return _block(kind, causal, num_heads, dim_feedforward, dropout, activation,
                          norm_first, layer_norm_eps, num_kv_heads, rope, name)

        block.__name__, block.__qualname__, block.__doc__ = kind, kind, stub.__doc__
        block.__module__ = stub.__module__
        return block

    return make


@_public_block(causal=False)
def TransformerEncoderLayer() -> None:
    """A transformer encoder block, (N, T, E) -> (N, T, E).

    With SA the `MultiHeadAttention` (bidirectional), FF(x) = W_2 f(W_1 x + b_1) + b_2 the
    feed-forward network (F = `dim_feedforward` hidden units, f the activation) and LN1, LN2
    `LayerNorm`:

        post-norm (norm_first=False):   x = LN1(x + SA(x));   y = LN2(x + FF(x))
        pre-norm  (norm_first=True):    x = x + SA(LN1(x));   y = x + FF(LN2(x))

    In training, dropout (rate `dropout`) hits the attention weights, the hidden activations
    of FF, and each branch's output before the residual sum, as PyTorch places it (needs
    ``key=``). ``mask=`` (N, T) keeps padded keys out of the attention; outputs at padded
    steps are computed but carry no information from real steps' point of view (ignore them,
    as masked losses and poolings do).

    Params: ``{"self_attn": MultiHeadAttention's, "linear1": {"w": (E, F), "b"},
    "linear2": {"w": (F, E), "b"}, "norm1": {"scale", "bias"}, "norm2": {...}}``, PyTorch's
    names.

    PyTorch: ``nn.TransformerEncoderLayer(E, num_heads, dim_feedforward, dropout, activation,
    layer_norm_eps, batch_first=True, norm_first=norm_first)`` called as
    ``layer(x, src_key_padding_mask=~mask)``; `jnet.interop.transformer_encoder_layer_from_torch`
    converts its state dict (with ``num_kv_heads`` / ``rope`` there is no PyTorch module).

    Args:
        num_heads: attention heads; E must be divisible by it.
        dim_feedforward: F, the feed-forward hidden size (PyTorch's default 2048).
        dropout: the drop probability of all four dropouts, ``0 <= dropout < 1``.
        activation: ``"relu"`` (default), ``"gelu"`` (exact, erf-based, as PyTorch's) or a
            function of an array.
        norm_first: pre-norm instead of post-norm.
        layer_norm_eps: eps of both LayerNorms.
        num_kv_heads, rope: grouped-query attention and rotary embeddings, as in
            `MultiHeadAttention`.
        name: the layer's name inside a container.

    Returns:
        The `Layer`.

    Raises:
        LayerError: bad arguments; at init, an in_shape other than (T, E); at apply, what the
            sub-layers reject, or ``train=True`` with dropout and no key.
    """


@_public_block(causal=True)
def TransformerDecoderLayer() -> None:
    """A decoder-only (GPT-style) transformer block: causal self-attention and a feed-forward
    network, (N, T, E) -> (N, T, E). It has **no cross-attention** (no encoder memory input).

    The maths of `TransformerEncoderLayer` (same arguments, params and dropouts) with a causal
    `MultiHeadAttention`: step t sees steps 0 ... t only. It is a `DecodingLayer`:

        cache = block.init_cache(params, batch_size, max_len)
        y_t, cache = block.decode_step(params, cache, x_t, position)    # x_t (N, E)

    runs one step with the attention's key / value cache; step by step it reproduces `apply`.

    Params: ``{"self_attn", "linear1", "linear2", "norm1", "norm2"}`` (as
    `TransformerEncoderLayer`'s).

    PyTorch: ``nn.TransformerEncoderLayer(..., batch_first=True)`` called with a causal mask,
    ``layer(x, src_mask=torch.triu(torch.ones(T, T, dtype=torch.bool), 1),
    src_key_padding_mask=~mask)`` (its state dict converts with
    `jnet.interop.transformer_encoder_layer_from_torch`). PyTorch's
    ``nn.TransformerDecoderLayer`` is the encoder-decoder block with cross-attention over a
    memory, which this layer is not.

    Args:
        num_heads: attention heads; E must be divisible by it.
        dim_feedforward: F, the feed-forward hidden size.
        dropout: the drop probability of all four dropouts (as `TransformerEncoderLayer`).
        activation: ``"relu"``, ``"gelu"`` (exact) or a function.
        norm_first: pre-norm instead of post-norm.
        layer_norm_eps: eps of both LayerNorms.
        num_kv_heads, rope: grouped-query attention and rotary embeddings.
        name: the layer's name inside a container.

    Returns:
        The `DecodingLayer`.

    Raises:
        LayerError: as `TransformerEncoderLayer`.
    """


def _check_args(kind: str, dim_feedforward: Any, dropout: Any, activation: Any,
                norm_first: Any) -> Callable[[jax.Array], jax.Array]:
    """The activation function, after checking the block's own arguments."""
    check_positive_int(kind, "dim_feedforward", dim_feedforward)
    if not is_number(dropout) or not 0.0 <= dropout < 1.0:
        raise LayerError(kind, f"dropout must satisfy 0 <= dropout < 1, got {dropout!r}.")
    if not isinstance(norm_first, bool):
        raise LayerError(kind, f"norm_first must be True or False, got {norm_first!r}.")
    if callable(activation):
        return activation
    if activation not in ACTIVATIONS:
        raise LayerError(kind, f"activation must be one of {sorted(ACTIVATIONS)} or a "
                               f"function, got {activation!r}.")
    return ACTIVATIONS[activation]


def _block(kind, causal, num_heads, dim_feedforward, dropout, activation, norm_first, eps,
           num_kv_heads, rope, name) -> DecodingLayer:
    """The body of both transformer blocks (`causal` makes the decoder)."""
    act = _check_args(kind, dim_feedforward, dropout, activation, norm_first)
    dim_feedforward, dropout = int(dim_feedforward), float(dropout)
    try:
        attn = MultiHeadAttention(num_heads, causal=causal, dropout=dropout,
                                  num_kv_heads=num_kv_heads, rope=rope)
        norm = LayerNorm(eps=eps)
    except LayerError as e:
        raise LayerError(kind, e.message) from None

    def init_fn(key, in_shape):
        check_in_shape_rank(kind, in_shape, 2, "(T, E)", "Transformer blocks run over "
                                                         "sequences (steps, features).")
        e = in_shape[-1]
        keys = jax.random.split(key, 3)
        params = {
            "self_attn": _sub(kind, attn.init, keys[0], in_shape)[1],
            "linear1": Dense(dim_feedforward).init(keys[1], in_shape)[1],
            "linear2": Dense(e).init(keys[2], (*in_shape[:-1], dim_feedforward))[1],
            "norm1": norm.init(key, in_shape)[1],
            "norm2": norm.init(key, in_shape)[1],
        }
        return in_shape, params, {}

    def feed_forward(params, x, keys, rate):
        h = _dropout(kind, act(_affine(params["linear1"], x)), keys[0], rate)
        return _dropout(kind, _affine(params["linear2"], h), keys[1], rate)

    def residuals(params, x, attend, keys, rate):
        """Both residual branches around `attend` (the self-attention of LN1(x) or x)."""
        ln = lambda which, h: norm.apply(params[which], {}, h)[0]  # noqa: E731
        if norm_first:
            x = x + _dropout(kind, attend(ln("norm1", x)), keys[0], rate)
            return x + feed_forward(params, ln("norm2", x), keys[1:], rate)
        x = ln("norm1", x + _dropout(kind, attend(x), keys[0], rate))
        return ln("norm2", x + feed_forward(params, x, keys[1:], rate))

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        rate = dropout if train else 0.0
        keys = split_key(key if rate > 0 else None, 4)
        attend = lambda h: _sub(kind, attn.apply, params["self_attn"], {}, h,  # noqa: E731
                                key=keys[3], train=train, mask=mask)[0]
        return residuals(params, x, attend, keys[:3], rate), state

    def step_fn(params, cache, x_t, position):
        box = {}

        def attend(h):
            y, box["cache"] = attn.decode_step(params["self_attn"], cache, h, position)
            return y

        y = residuals(params, x_t, attend, [None] * 3, 0.0)
        return y, box["cache"]

    config = {"num_heads": num_heads, "dim_feedforward": dim_feedforward, "dropout": dropout,
              "activation": activation if isinstance(activation, str) else "custom",
              "norm_first": norm_first, **{k: v for k, v in attn.config.items()
                                           if k in ("num_kv_heads", "rope")}}
    return DecodingLayer(init_fn, apply_fn, kind=kind, config=config, name=name,
                         cache_fn=_nested_cache(attn) if causal else None,
                         step_fn=step_fn if causal else None)


def _nested_cache(attn: DecodingLayer) -> Callable[..., Any]:
    """The block's cache: its self-attention's, made from ``params["self_attn"]``."""
    def cache_fn(params, batch_size, max_len, dtype):
        return attn.init_cache(params["self_attn"], batch_size, max_len, dtype)
    return cache_fn


def _sub(kind: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)` of the self-attention, its errors reported as this block's."""
    try:
        return fn(*args, **kwargs)
    except LayerError as e:
        raise LayerError(kind, f"self_attn: {e.message}") from None


def _affine(params: dict, x: jax.Array) -> jax.Array:
    """x @ w + b of a feed-forward linear map (params as `Dense` makes them)."""
    return x @ params["w"].astype(x.dtype) + params["b"].astype(x.dtype)


def _dropout(kind: str, x: jax.Array, key: jax.Array | None, rate: float) -> jax.Array:
    """Inverted dropout (as `Dropout`); the identity at rate 0."""
    if rate == 0:
        return x
    keep = draw(jax.random.bernoulli, require_key(kind, key), x.shape, p=1.0 - rate)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))
