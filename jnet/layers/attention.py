"""Multi-head scaled dot-product self-attention (Vaswani et al. 2017, "Attention Is All You
Need"), with grouped-query attention (Ainslie et al. 2023), rotary position embeddings
(Su et al. 2021) and autoregressive decoding with a key / value cache."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
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
from jnet.typing import PyTree

KIND = "MultiHeadAttention"
IMPLEMENTATIONS = (None, "einsum", "xla", "cudnn")


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class DecodingLayer(Layer):
    """A `Layer` that also runs autoregressively, one step at a time, with a cache.

    ``cache = layer.init_cache(params, batch_size, max_len)`` makes an empty cache;
    ``y_t, cache = layer.decode_step(params, cache, x_t, position)`` runs step `position`
    (0, 1, 2, ...) of every sequence in the batch and returns the updated cache. Both are pure
    functions of arrays, so they jit, and feeding a sequence step by step gives the full causal
    forward pass's outputs. `MultiHeadAttention(causal=True)` and `TransformerDecoderLayer`
    are decoding layers.

    Attributes:
        cache_fn: ``(params, batch_size, max_len, dtype) -> cache``.
        step_fn: ``(params, cache, x_t, position) -> (y_t, cache)``.
    """

    cache_fn: Callable[..., PyTree] | None = None
    step_fn: Callable[..., tuple[jax.Array, PyTree]] | None = None

    def init_cache(self, params: PyTree, batch_size: int, max_len: int,
                   dtype: Any = None) -> PyTree:
        """An empty cache for `batch_size` sequences of up to `max_len` steps.

        Args:
            params: the layer's params (they fix the cache's head sizes).
            batch_size: N, the number of sequences decoded together.
            max_len: the most steps that will be decoded (positions 0 ... max_len − 1).
            dtype: the cache's dtype (default: that of the params).

        Returns:
            The cache pytree, zeros (keys and values of shape (N, max_len, heads, D)).

        Raises:
            LayerError: a non-causal layer, or sizes that are not positive ints.
        """
        for what, value in (("batch_size", batch_size), ("max_len", max_len)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise LayerError(self.kind, f"init_cache: {what} must be a positive int, "
                                            f"got {value!r}.")
        if self.cache_fn is None or self.step_fn is None:
            raise LayerError(self.kind, "init_cache: decoding step by step needs a causal "
                                        "layer (a later step must not change an earlier "
                                        "output). Use a causal=True attention or a "
                                        "TransformerDecoderLayer.")
        return self.cache_fn(params, batch_size, max_len, dtype)

    def decode_step(self, params: PyTree, cache: PyTree, x_t: jax.Array,
                    position: Any) -> tuple[jax.Array, PyTree]:
        """Step `position` of the batch: x_t (N, E) -> (y_t (N, E), the updated cache).

        Args:
            params: the layer's params.
            cache: from `init_cache` or the previous step.
            x_t: (N, E), the inputs at step `position` (the same step for every sequence).
            position: int (a traced int32 scalar under `jax.jit` / `lax.scan` too), the
                step's index; steps 0 ... position − 1 must already be in the cache.

        Raises:
            LayerError: a wrong x_t shape, or a concrete position outside the cache.
        """
        if self.step_fn is None:
            raise LayerError(self.kind, "decode_step: decoding needs a causal layer. Use a "
                                        "causal=True attention or a TransformerDecoderLayer.")
        # every cache leaf ends in (max_len, heads, D), stacked caches (`repeat`) included
        max_len = jax.tree.leaves(cache)[0].shape[-3]
        if not isinstance(position, jax.core.Tracer) and not 0 <= int(position) < max_len:
            raise LayerError(self.kind, f"decode_step: position must lie in [0, {max_len}) "
                                        f"(the cache's max_len), got {position}. Make the "
                                        "cache longer with init_cache(..., max_len=).")
        return self.step_fn(params, cache, x_t, jnp.asarray(position, jnp.int32))


def MultiHeadAttention(
    num_heads: int,
    causal: bool = False,
    dropout: float = 0.0,
    use_bias: bool = True,
    w_init: Any = "glorot_uniform",
    num_kv_heads: int | None = None,
    rope: bool | float = False,
    implementation: str | None = None,
    name: str | None = None,
) -> DecodingLayer:
    """Multi-head scaled dot-product self-attention over a sequence, (N, T, E) -> (N, T, E).

    With H = `num_heads` query heads of size D = E / H and K = `num_kv_heads` key / value
    heads (K divides H; K = H is classic multi-head attention, K = 1 multi-query attention),
    for each example:

        [Q | K | V] = x W_qkv + b_qkv             Q (T, H·D), K and V (T, K·D)
        Q_h, K_g, V_g = their columns per head     query head h uses key / value head
                                                   g = h // (H / K)  (grouped-query)
        A_h = softmax_j(R(Q_h) R(K_g)ᵀ / sqrt(D) + M)            (T, T), rows sum to 1
        y = [A_1 V_g(1) | ... | A_H V_g(H)] W_out + b_out          (T, E)

    R is the identity, or with ``rope`` the rotary position embedding (RoPE, Su et al. 2021)
    in the *half-split* convention of GPT-NeoX and Llama (Hugging Face ``rotate_half``): for
    the vector u of a head at position p, with i < D / 2 and θ_i = base^(−2i / D),

        R(u)[i]         = u[i] cos(p θ_i) − u[i + D/2] sin(p θ_i)
        R(u)[i + D/2]   = u[i + D/2] cos(p θ_i) + u[i] sin(p θ_i)

    (the interleaved pairs (2i, 2i+1) of the original paper and GPT-J are a permutation of
    the columns of W_q and W_k away). Positions are 0 ... T − 1 in `apply`.

    M[i, j] = −∞ (the dtype's most negative number) where query i may not attend to key j,
    else 0: with ``causal=True`` when j > i, and with ``mask=`` (N, T) when key j is padding
    (``mask[n, j]`` False). Outputs at padded queries are 0 (as `LSTM` / `GRU` do). A 1-D
    mask (N,) is a per-example mask, not a time mask, and is ignored here.

    In training with ``dropout > 0`` each attention weight is dropped with probability
    `dropout` and the kept ones scaled by 1 / (1 − dropout) (needs ``key=``).

    ``implementation=None`` runs einsums on the CPU and elsewhere
    `jax.nn.dot_product_attention` with cuDNN's flash kernel where it applies (16-bit, D a
    multiple of 8 up to 128, no padding mask), else its XLA one; "einsum", "xla", "cudnn"
    force one. Dropout and decoding run the einsums, which keep float64 in float64.

    Decoding (``causal=True``): `DecodingLayer.init_cache` / `decode_step`; the cache is
    ``{"k", "v"}``, each (N, max_len, K, D), keys stored after RoPE.

    Params: ``{"w_qkv": (E, (H + 2K)·D), "b_qkv": ((H + 2K)·D,), "w_out": (E, E),
    "b_out": (E,)}`` (no biases with ``use_bias=False``), (q | k | v) columns, heads
    contiguous. Drawn glorot-uniform as one matrix, as PyTorch draws ``in_proj_weight``;
    biases zeros.

    PyTorch: with K = H and no RoPE, ``nn.MultiheadAttention(E, H, dropout=dropout,
    bias=use_bias, batch_first=True)`` called as ``mha(x, x, x, key_padding_mask=~mask,
    attn_mask=causal_mask)``; ``in_proj_weight`` is ``w_qkv.T``
    (`jnet.interop.multihead_attention_from_torch`). Its key_padding_mask is True on padded
    keys, the negation of jnet's mask, and it returns values at padded queries. Grouped
    queries: ``F.scaled_dot_product_attention(q, k, v, enable_gqa=True)``.

    Args:
        num_heads: H >= 1; E must be divisible by it.
        causal: forbid attending to later steps (decoder-style); enables decoding.
        dropout: probability to drop an attention weight in training, ``0 <= dropout < 1``.
        use_bias: learn ``b_qkv`` and ``b_out``.
        w_init: initializer (or its name) of ``w_qkv`` and ``w_out``.
        num_kv_heads: K, a divisor of H (default H).
        rope: False (no rotary embedding), True (base 10000) or the base θ as a float > 0.
        implementation: None, "einsum", "xla" or "cudnn", above.
        name: the layer's name inside a container.

    Returns:
        The `DecodingLayer`. `apply` takes ``mask=`` (N, T) bool, True on real steps.

    Raises:
        LayerError: bad constructor arguments; at init, an in_shape other than (T, E), E not
            divisible by H, or an odd D with RoPE; at apply, non-float inputs, a wrong E, a
            bad mask, or ``train=True`` with dropout and no key.
    """
    heads = _check_heads(num_heads, num_kv_heads)
    base = _rope_base(rope)
    dropout = _check_options(dropout, implementation)

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        rate = dropout if train else 0.0
        return _self_attention(params, x, mask, key, heads, causal, base, rate,
                               implementation), state

    config: dict[str, Any] = {"num_heads": num_heads, "causal": causal, "dropout": dropout,
                              "use_bias": use_bias}
    optional = (("num_kv_heads", heads[1], heads[1] != heads[0]), ("rope", base, base),
                ("implementation", implementation, implementation))
    config.update({k: v for k, v, shown in optional if shown})
    step = (lambda p, c, x, pos: _decode(p, c, x, pos, heads, base, implementation)) \
        if causal else None
    return DecodingLayer(_init_fn(heads, base, use_bias, initializers.get(w_init, "w_init")),
                         apply_fn, kind=KIND, config=config, name=name,
                         cache_fn=_cache_fn(heads, causal), step_fn=step)


def _init_fn(heads: tuple[int, int], base: float | None, use_bias: bool,
             w_fn: Callable[..., jax.Array]) -> Callable[..., Any]:
    """`MultiHeadAttention`'s init: the fused (E, (H + 2K)·D) and (E, E) projections."""

    def init_fn(key, in_shape):
        check_in_shape_rank(KIND, in_shape, 2, "(T, E)",
                            "Attention runs over sequences: per-example inputs (steps, features).")
        e = in_shape[-1]
        width = (heads[0] + 2 * heads[1]) * _head_size(e, heads, base)
        k_qkv, k_out = jax.random.split(key)
        params = {"w_qkv": w_fn(k_qkv, (e, width)), "w_out": w_fn(k_out, (e, e))}
        if use_bias:
            params["b_qkv"] = jnp.zeros((width,), jnp.float32)
            params["b_out"] = jnp.zeros((e,), jnp.float32)
        return in_shape, params, {}

    return init_fn


def _check_options(dropout: Any, implementation: Any) -> float:
    """`dropout` as a Python float, after checking both options."""
    if not is_number(dropout) or not 0.0 <= dropout < 1.0:
        raise LayerError(
            KIND,
            f"dropout is the probability to drop an attention weight and must satisfy "
            f"0 <= dropout < 1, got {dropout!r}.",
        )
    if implementation not in IMPLEMENTATIONS:
        raise LayerError(KIND, f"implementation must be one of {IMPLEMENTATIONS}, got "
                               f"{implementation!r}.")
    return float(dropout)  # weakly typed: keeps bfloat16 attention weights bfloat16


def _check_heads(num_heads: Any, num_kv_heads: Any) -> tuple[int, int]:
    """(H, K) after checking both are positive ints with K dividing H."""
    h = check_positive_int(KIND, "num_heads", num_heads)
    kv = h if num_kv_heads is None else check_positive_int(KIND, "num_kv_heads", num_kv_heads)
    if h % kv:
        raise LayerError(KIND, f"num_kv_heads = {kv} must divide num_heads = {h}: "
                               "each key / value head serves num_heads / num_kv_heads query "
                               "heads. Pick a divisor.")
    return h, kv


def _rope_base(rope: Any) -> float | None:
    """The RoPE base θ (None: no rotary embedding)."""
    if rope is False or rope is None:
        return None
    if rope is True:
        return 10000.0
    if is_number(rope) and rope > 0:
        return float(rope)
    raise LayerError(KIND, f"rope must be False, True (base 10000) or a base > 0 such as "
                           f"10000.0, got {rope!r}.")


def _head_size(e: int, heads: tuple[int, int], base: float | None) -> int:
    if e % heads[0]:
        raise LayerError(
            KIND,
            f"the embedding size E = {e} (last axis of the input) must be divisible by "
            f"num_heads = {heads[0]}, so that each head gets E / num_heads features. Change "
            f"num_heads to a divisor of {e}, or project to a multiple of {heads[0]} first "
            "(e.g. with Dense).",
        )
    d = e // heads[0]
    if base is not None and d % 2:
        raise LayerError(KIND, f"rope rotates pairs of features, so the head size D = E / "
                               f"num_heads = {d} must be even. Change E or num_heads.")
    return d


def apply_rope(x: jax.Array, positions: jax.Array, base: float) -> jax.Array:
    """Rotary position embedding, half-split convention: x (..., T, heads, D), positions (T,)
    (see `MultiHeadAttention` for the formula). Angles in at least float32."""
    d = x.shape[-1]
    dtype = jnp.promote_types(x.dtype, jnp.float32)
    inv_freq = base ** (-jnp.arange(0, d // 2, dtype=dtype) * 2 / d)
    angles = positions.astype(dtype)[:, None] * inv_freq  # (T, D/2)
    cos, sin = jnp.cos(angles)[:, None, :], jnp.sin(angles)[:, None, :]  # (T, 1, D/2)
    x1, x2 = jnp.split(x.astype(dtype), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).astype(x.dtype)


def _project(params, x, heads: tuple[int, int]):
    """x (N, T, E) -> q (N, T, H, D), k and v (N, T, K, D)."""
    qkv = x @ params["w_qkv"].astype(x.dtype)
    if "b_qkv" in params:
        qkv = qkv + params["b_qkv"].astype(x.dtype)
    h, kv = heads
    d = params["w_out"].shape[0] // h
    q, k, v = jnp.split(qkv, [h * d, (h + kv) * d], axis=-1)
    n, t = x.shape[:2]
    return q.reshape(n, t, h, d), k.reshape(n, t, kv, d), v.reshape(n, t, kv, d)


def _output(params, heads_out: jax.Array) -> jax.Array:
    """(N, T, H, D) -> (N, T, E) through W_out, b_out."""
    n, t = heads_out.shape[:2]
    y = heads_out.reshape(n, t, -1) @ params["w_out"].astype(heads_out.dtype)
    if "b_out" in params:
        y = y + params["b_out"].astype(y.dtype)
    return y


def _attend(q, k, v, allowed, rate: float, key: jax.Array | None) -> jax.Array:
    """Softmax attention of q (N, T, H, D) over k, v (N, S, K, D), query head h reading
    key / value head h // (H / K); `allowed` (N or 1, T or 1, S) bool or None; inverted
    dropout on the weights when ``rate > 0``.

    Logits and softmax in at least float32; masked logits are the dtype's most negative
    number, so a row without an allowed key averages (only padded queries have such rows,
    and their outputs are zeroed), never NaN.
    """
    n, t, h, d = q.shape
    kv = k.shape[2]
    dtype = jnp.promote_types(q.dtype, jnp.float32)
    if kv == h:  # one query head per key head: (N, H, T, S) weights
        qs, ks, ws, heads_axes = "nthd", "nshd", "nhts", 1
    else:  # query heads grouped per key / value head: (N, K, H / K, T, S) weights
        # (with K = H this layout costs XLA:CPU ~5% more bytes per training step)
        q = q.reshape(n, t, kv, h // kv, d)
        qs, ks, ws, heads_axes = "ntkgd", "nskd", "nkgts", 2
    logits = jnp.einsum(f"{qs},{ks}->{ws}", q, k, preferred_element_type=dtype)
    logits = logits / math.sqrt(d)
    if allowed is not None:
        allowed = allowed.reshape(allowed.shape[:1] + (1,) * heads_axes + allowed.shape[1:])
        logits = jnp.where(allowed, logits, jnp.finfo(dtype).min)
    weights = jax.nn.softmax(logits, axis=-1)
    if rate > 0:
        keep = draw(jax.random.bernoulli, require_key(KIND, key), weights.shape, p=1.0 - rate)
        weights = jnp.where(keep, weights / (1.0 - rate), 0.0)
    out = jnp.einsum(f"{ws},{ks}->{qs}", weights.astype(v.dtype), v)
    return out.reshape(n, t, h, d)


def _use_einsum(implementation: str | None, rate: float) -> bool:
    if rate > 0 or implementation == "einsum":
        return True
    return implementation is None and jax.default_backend() == "cpu"


def _fused(q, k, v, allowed, implementation: str | None) -> jax.Array:
    """`jax.nn.dot_product_attention` (grouped heads natively), `allowed` as in `_attend`."""
    mask = None if allowed is None else allowed[:, None]
    return jax.nn.dot_product_attention(q, k, v, mask=mask,
                                        implementation=implementation)  # type: ignore[arg-type]


def _cudnn_or_xla(q, k, v, allowed, causal: bool, padded: bool) -> jax.Array:
    """The default off the CPU: cuDNN's fused kernel where it applies, else XLA's.

    `jax.nn.dot_product_attention` picks XLA unless asked (jax 0.10), so jnet asks for cuDNN
    when its kernel takes the case: 16-bit inputs, a head size that is a multiple of 8 up to
    128, a causal or no mask (no padding mask). cuDNN's checks run while tracing; when they
    refuse (no GPU, an old cuDNN, an unsupported shape) the XLA implementation runs instead.
    """
    d = q.shape[-1]
    if not padded and q.dtype in (jnp.bfloat16, jnp.float16) and d % 8 == 0 and d <= 128:
        try:
            return jax.nn.dot_product_attention(q, k, v, is_causal=causal,
                                                implementation="cudnn")
        except (ValueError, NotImplementedError, RuntimeError, TypeError):
            pass
    return _fused(q, k, v, allowed, "xla")


def _time_mask(mask: Any, n: int, t: int) -> jax.Array | None:
    """The (N, T) key-padding mask, or None (none given, or a per-example (N,) mask)."""
    if mask is not None and jnp.ndim(mask) == 1 and jnp.shape(mask) == (n,):
        return None
    return check_mask(KIND, mask, n, t)


def _self_attention(params, x, mask, key, heads, causal: bool, base, rate: float,
                    implementation):
    """The forward pass of `MultiHeadAttention` (see its docstring); `rate` > 0 only in
    training. Biases are used when params hold them (``use_bias`` made them)."""
    check_float(KIND, x)
    check_rank(KIND, x, 3, "(N, T, E)")
    e = params["w_out"].shape[0]
    check_last_dim(KIND, x, e)
    n, t, _ = x.shape
    mask = _time_mask(mask, n, t)
    q, k, v = _project(params, x, heads)
    if base is not None:
        positions = jnp.arange(t)
        q, k = apply_rope(q, positions, base), apply_rope(k, positions, base)
    allowed = None if mask is None else mask[:, None, :]  # (N, 1, S): keys
    if causal:
        lower = jnp.tril(jnp.ones((t, t), jnp.bool_))[None]
        allowed = lower if allowed is None else allowed & lower
    if _use_einsum(implementation, rate):
        out = _attend(q, k, v, allowed, rate, key)
    elif implementation is None:  # cuDNN flash attention on GPUs where it applies
        out = _cudnn_or_xla(q, k, v, allowed, causal, mask is not None)
    else:
        out = _fused(q, k, v, allowed, implementation)
    y = _output(params, out)
    if mask is not None:
        y = jnp.where(mask[:, :, None], y, jnp.zeros((), y.dtype))
    return y


def _cache_fn(heads: tuple[int, int], causal: bool):
    def cache_fn(params, batch_size, max_len, dtype):
        if not causal:
            raise LayerError(KIND, "init_cache: decoding step by step needs a causal layer "
                                   "(a later step must not change an earlier output). Build "
                                   "it with causal=True.")
        d = params["w_out"].shape[0] // heads[0]
        dtype = params["w_out"].dtype if dtype is None else dtype
        zeros = jnp.zeros((batch_size, max_len, heads[1], d), dtype)
        return {"k": zeros, "v": zeros}

    return cache_fn


def _decode(params, cache, x_t, position, heads, base, implementation):
    """One decoding step (see `DecodingLayer.decode_step`)."""
    check_float(KIND, x_t)
    check_rank(KIND, x_t, 2, "(N, E) (one step of each sequence)")
    check_last_dim(KIND, x_t, params["w_out"].shape[0])
    q, k, v = _project(params, x_t[:, None, :], heads)
    if base is not None:
        q, k = apply_rope(q, position[None], base), apply_rope(k, position[None], base)
    cache = {name: jax.lax.dynamic_update_slice_in_dim(cache[name], new.astype(
        cache[name].dtype), position, axis=1) for name, new in (("k", k), ("v", v))}
    allowed = (jnp.arange(cache["k"].shape[1]) <= position)[None, None, :]  # (1, 1, S)
    k_all, v_all = cache["k"].astype(q.dtype), cache["v"].astype(q.dtype)
    if implementation in ("xla", "cudnn"):
        out = _fused(q, k_all, v_all, allowed, implementation)
    else:  # one query against the cache: memory-bound, the einsums do as well as a kernel
        out = _attend(q, k_all, v_all, allowed, 0.0, None)
    return _output(params, out)[:, 0], cache

