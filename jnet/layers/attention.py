"""Multi-head scaled dot-product self-attention (Vaswani et al. 2017, "Attention Is All You
Need")."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jnet import initializers
from jnet._rng import draw
from jnet.layers.base import (
    Layer,
    LayerError,
    check_float,
    check_in_shape_rank,
    check_last_dim,
    check_mask,
    check_rank,
    require_key,
)
from jnet.layers.checks import check_positive_int, is_number

KIND = "MultiHeadAttention"


def MultiHeadAttention(
    num_heads: int,
    causal: bool = False,
    dropout: float = 0.0,
    use_bias: bool = True,
    w_init: Any = "glorot_uniform",
    name: str | None = None,
) -> Layer:
    """Multi-head scaled dot-product self-attention over a sequence, (N, T, E) -> (N, T, E).

    With H = `num_heads` heads of size D = E / H, for each example:

        [Q | K | V] = x W_qkv + b_qkv                      (T, 3E), split in three (T, E)
        Q_h, K_h, V_h = columns h·D ... (h+1)·D − 1       (T, D) per head h
        A_h = softmax_j(Q_h K_hᵀ / sqrt(D) + M)            (T, T), rows sum to 1
        y = [A_1 V_1 | ... | A_H V_H] W_out + b_out        (T, E)

    where M[i, j] = −∞ (in practice the dtype's most negative number) where query i may not
    attend to key j, else 0: with ``causal=True`` when j > i (a step sees only itself and the
    past), and with ``mask=`` when key j is padding (``mask[n, j]`` False). A padded key is
    therefore never attended to, whatever its values. Outputs at padded queries are set to 0
    (as `LSTM` / `GRU` do), so they carry nothing into a pooling or a loss. Every real query
    attends at least to itself, so no real row is left without a key.

    In training with ``dropout > 0``, each attention weight A_h[i, j] is dropped with
    probability `dropout` and the kept ones scaled by 1 / (1 − dropout) (inverted dropout, as
    `Dropout` and PyTorch do); this needs ``apply(..., key=k, train=True)``. Evaluation, and
    ``dropout=0``, run `jax.nn.dot_product_attention`, which lets JAX pick a fused kernel on
    GPUs; training with dropout runs the same maths as einsums (that function has no dropout).
    Logits and the softmax are computed in float32 also for bfloat16 inputs.

    Params: ``{"w_qkv": (E, 3E), "b_qkv": (3E,), "w_out": (E, E), "b_out": (E,)}`` (no biases
    with ``use_bias=False``). W_qkv is drawn glorot-uniform as one (E, 3E) matrix, as PyTorch
    draws ``in_proj_weight``; W_out glorot-uniform; biases zeros (PyTorch's too).

    PyTorch: ``nn.MultiheadAttention(E, num_heads, dropout=dropout, bias=use_bias,
    batch_first=True)`` called as ``mha(x, x, x, key_padding_mask=~mask, attn_mask=causal)``
    with ``causal = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)``. Its
    ``in_proj_weight`` (3E, E) is ``w_qkv.T`` (same (q | k | v) order, heads contiguous), its
    ``out_proj.weight`` is ``w_out.T`` (`jnet.interop.multihead_attention_from_torch`). Its
    ``key_padding_mask`` is True on PADDED keys, the negation of jnet's ``mask``; and it
    returns values at padded queries where jnet returns 0.

    Args:
        num_heads: H, >= 1; the embedding size E (the last axis of the input) must be
            divisible by it.
        causal: forbid attending to later steps (decoder-style self-attention).
        dropout: probability to drop an attention weight in training, ``0 <= dropout < 1``.
        use_bias: learn ``b_qkv`` and ``b_out``.
        w_init: initializer (or its name) of ``w_qkv`` and ``w_out``.
        name: the layer's name inside a container.

    Returns:
        The `Layer`. `apply` takes ``mask=`` (N, T) bool, True on real steps.

    Raises:
        LayerError: bad constructor arguments; at init, an in_shape other than (T, E) or E not
            divisible by `num_heads`; at apply, non-float inputs, a wrong E, a mask that is not
            (N, T) bool, or ``train=True`` with dropout and no key.
    """
    num_heads = check_positive_int(KIND, "num_heads", num_heads)
    if not is_number(dropout) or not 0.0 <= dropout < 1.0:
        raise LayerError(
            KIND,
            f"dropout is the probability to drop an attention weight and must satisfy "
            f"0 <= dropout < 1, got {dropout!r}.",
        )
    dropout = float(dropout)  # weakly typed: keeps bfloat16 attention weights bfloat16
    w_fn = initializers.get(w_init, "w_init")

    def init_fn(key, in_shape):
        check_in_shape_rank(KIND, in_shape, 2, "(T, E)",
                            "Attention runs over sequences: per-example inputs (steps, features).")
        e = in_shape[-1]
        if e % num_heads:
            raise LayerError(
                KIND,
                f"the embedding size E = {e} (last axis of in_shape {in_shape}) must be divisible "
                f"by num_heads = {num_heads}, so that each head gets E / num_heads features. "
                f"Change num_heads to a divisor of {e}, or project to a multiple of {num_heads} "
                "first (e.g. with Dense).",
            )
        k_qkv, k_out = jax.random.split(key)
        params = {"w_qkv": w_fn(k_qkv, (e, 3 * e)), "w_out": w_fn(k_out, (e, e))}
        if use_bias:
            params["b_qkv"] = jnp.zeros((3 * e,), jnp.float32)
            params["b_out"] = jnp.zeros((e,), jnp.float32)
        return in_shape, params, {}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        rate = dropout if train else 0.0
        return _self_attention(params, x, mask, key, num_heads, causal, rate), state

    config = {"num_heads": num_heads, "causal": causal, "dropout": dropout,
              "use_bias": use_bias}
    return Layer(init_fn, apply_fn, kind=KIND, config=config, name=name)


def _with_causal(allowed: jax.Array | None, causal: bool, t: int) -> jax.Array | None:
    """The (N or 1, 1, T, T) boolean "query i may attend to key j" mask, or None for all."""
    if not causal:
        return allowed
    lower = jnp.tril(jnp.ones((t, t), jnp.bool_))[None, None]
    return lower if allowed is None else allowed & lower


def _attend(q, k, v, allowed, rate: float, key: jax.Array | None) -> jax.Array:
    """Softmax attention of (N, T, H, D) heads, with inverted dropout on the weights when
    ``rate > 0``.

    The same maths as `jax.nn.dot_product_attention`: logits and softmax in at least float32,
    masked logits set to the dtype's most negative number (a row with no allowed key then
    averages, never NaN; only padded queries have such rows and their outputs are zeroed).
    """
    dtype = jnp.promote_types(q.dtype, jnp.float32)
    logits = jnp.einsum("ntkd,nskd->nkts", q, k, preferred_element_type=dtype)
    logits = logits / math.sqrt(q.shape[-1])
    if allowed is not None:
        logits = jnp.where(allowed, logits, jnp.finfo(dtype).min)
    weights = jax.nn.softmax(logits, axis=-1)
    if rate > 0:
        keep = draw(jax.random.bernoulli, require_key(KIND, key), weights.shape, p=1.0 - rate)
        weights = jnp.where(keep, weights / (1.0 - rate), 0.0)
    return jnp.einsum("nkts,nskd->ntkd", weights.astype(v.dtype), v)


def _self_attention(params, x, mask, key, num_heads: int, causal: bool, rate: float):
    """The forward pass of `MultiHeadAttention` (see its docstring); `rate` > 0 only in
    training. Biases are used when params hold them (``use_bias`` made them)."""
    check_float(KIND, x)
    check_rank(KIND, x, 3, "(N, T, E)")
    e = params["w_out"].shape[0]
    check_last_dim(KIND, x, e)
    n, t, _ = x.shape
    mask = check_mask(KIND, mask, n, t)
    qkv = x @ params["w_qkv"].astype(x.dtype)
    if "b_qkv" in params:
        qkv = qkv + params["b_qkv"].astype(x.dtype)
    # (N, T, 3E) -> three (N, T, H, D): PyTorch's (q | k | v) order, heads contiguous.
    q, k, v = jnp.moveaxis(qkv.reshape(n, t, 3, num_heads, e // num_heads), 2, 0)
    allowed = None if mask is None else mask[:, None, None, :]  # (N, 1, 1, T): keys
    if rate > 0 or jax.default_backend() == "cpu":
        # XLA:CPU has no fused kernel: the plain einsums (what a hand-written step does)
        heads = _attend(q, k, v, _with_causal(allowed, causal, t), rate, key)
    else:  # lets JAX pick a fused kernel (cuDNN flash attention) on GPUs
        heads = jax.nn.dot_product_attention(q, k, v, mask=allowed, is_causal=causal)
    y = heads.reshape(n, t, e) @ params["w_out"].astype(x.dtype)
    if "b_out" in params:
        y = y + params["b_out"].astype(x.dtype)
    if mask is not None:
        y = jnp.where(mask[:, :, None], y, jnp.zeros((), y.dtype))
    return y
