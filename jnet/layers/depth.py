"""Tools for deep stacks: rematerialisation (`remat`), one block repeated with stacked params
under `lax.scan` (`repeat`), and an output projection tied to an embedding table
(`tied_embedding`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jnet.layers.attention import DecodingLayer
from jnet.layers.base import (
    Layer,
    LayerError,
    apply_child,
    check_children,
    container,
    init_child,
    output_shape,
    split_key,
)
from jnet.layers.checks import check_positive_int
from jnet.typing import PyTree


def _check_layer(kind: str, block: Any) -> None:
    if not isinstance(block, Layer):
        raise LayerError(kind, f"expected a Layer to wrap, got {type(block).__name__} "
                               f"{block!r}. Call the constructor, e.g. "
                               "`TransformerDecoderLayer(4, 256)`.")


def _policy(policy: Any) -> tuple[Callable[..., bool] | None, str | None]:
    """The checkpoint policy function and its display name, from None, a name in
    `jax.checkpoint_policies` or a policy function."""
    if policy is None or callable(policy):
        return policy, None if policy is None else getattr(policy, "__name__", "custom")
    known = getattr(jax.checkpoint_policies, policy, None) if isinstance(policy, str) else None
    if known is None or (isinstance(policy, str) and policy.startswith("_")):
        raise LayerError("Remat", f"policy must be None, a jax.checkpoint_policies function or "
                                  f"its name (e.g. 'dots_saveable'), got {policy!r}.")
    return known, policy


def remat(block: Layer, policy: Any = None, name: str | None = None) -> Layer:
    """`block` with its activations recomputed in the backward pass (`jax.checkpoint`).

    Same params, state, outputs and gradients as `block`; in the backward pass the block's
    intermediate values are recomputed from its input instead of being stored, trading about
    one extra forward pass of compute for memory that no longer grows with the block's
    internals. `policy` chooses what is still saved, e.g.
    ``jax.checkpoint_policies.dots_saveable`` (or its name ``"dots_saveable"``); None
    saves nothing but the inputs.

    Args:
        block: any layer (a transformer block, a `serial` stage).
        policy: None, a function from `jax.checkpoint_policies`, or its name.
        name: the layer's name inside a container.

    Returns:
        A `Layer` of kind ``Remat`` with the block's params and state (not nested: a trained
        block's params load unchanged), its side inputs and its ``keeps_float32``.

    Raises:
        LayerError: `block` not a Layer, or an unknown policy.
    """
    _check_layer("Remat", block)
    fn, policy_name = _policy(policy)

    def apply_fn(params, state, x, *, key=None, train=False, mask=None, **side_inputs):
        def run(params, state, x, key, mask, side_inputs):
            return block.apply(params, state, x, key=key, train=train, mask=mask,
                               **side_inputs)

        return jax.checkpoint(run, policy=fn)(params, state, x, key, mask, side_inputs)

    config = {"block": block.kind, "policy": policy_name}
    return Layer(block.init_fn, apply_fn, kind="Remat", config=config, name=name,
                 keeps_float32=block.keeps_float32, side_inputs=block.side_inputs)


def repeat(block: Layer, n: int, name: str | None = None) -> Layer:
    """`n` copies of `block` in sequence, each with its own params, run by one `lax.scan`.

        y = block_{n−1}( ... block_1(block_0(x)))

    The copies' params (and state) are stacked along a new leading axis of size n, so the
    compiled program holds the block once: compile time and program size do not grow with
    n (unlike a `serial` of n blocks, which XLA compiles n times over). The block must map
    its input shape to itself (a transformer block, a residual stage). Each copy is
    initialised with its own key and, in training, gets its own dropout key.

    When `block` is a `DecodingLayer` (`TransformerDecoderLayer`), so is the result: its
    cache stacks the n blocks' caches and `decode_step` scans over them.

    Args:
        block: the layer to repeat; out_shape must equal in_shape.
        n: the number of copies, >= 1.
        name: the layer's name inside a container.

    Returns:
        A `Layer` (or `DecodingLayer`) of kind ``Repeat``; params ``block's params`` with
        every leaf stacked to (n, ...).

    Raises:
        LayerError: `block` not a Layer, n not a positive int, or a block that changes the
            shape.
    """
    _check_layer("Repeat", block)
    n = check_positive_int("Repeat", "n", n)

    def init_fn(key, in_shape):
        out = output_shape(block, in_shape)
        if out != in_shape:
            raise LayerError("Repeat", f"the repeated {block.kind} maps in_shape {in_shape} "
                                       f"to {out}; repeat needs a block that keeps the shape "
                                       "(its output feeds the next copy).")
        params, state = jax.vmap(lambda k: block.init(k, in_shape)[1:])(
            jax.random.split(key, n))
        return in_shape, params, state

    def apply_fn(params, state, x, *, key=None, train=False, mask=None, **side_inputs):
        keys = None if key is None else jax.random.split(key, n)

        def body(x, inputs):
            p, s, k = inputs
            y, s = block.apply(p, s, x, key=k, train=train, mask=mask, **side_inputs)
            return y.astype(x.dtype), s

        return jax.lax.scan(body, x, (params, state, keys))

    config = {"block": block.kind, "n": n}
    kwargs: dict[str, Any] = dict(kind="Repeat", config=config, name=name,
                                  keeps_float32=block.keeps_float32,
                                  side_inputs=block.side_inputs)
    if isinstance(block, DecodingLayer) and block.step_fn is not None:
        return DecodingLayer(init_fn, apply_fn, cache_fn=_stacked_cache(block),
                             step_fn=_stacked_step(block), **kwargs)
    return Layer(init_fn, apply_fn, **kwargs)


def _stacked_cache(block: DecodingLayer) -> Callable[..., PyTree]:
    def cache_fn(params, batch_size, max_len, dtype):
        return jax.vmap(lambda p: block.init_cache(p, batch_size, max_len, dtype))(params)
    return cache_fn


def _stacked_step(block: DecodingLayer) -> Callable[..., Any]:
    def step_fn(params, cache, x_t, position):
        def body(x, inputs):
            p, c = inputs
            y, c = block.decode_step(p, c, x, position)
            return y.astype(x.dtype), c
        return jax.lax.scan(body, x_t, (params, cache))
    return step_fn


def tied_embedding(embedding: Layer, body: Layer, name: str | None = None) -> Layer:
    """A language-model skeleton whose output projection reuses the embedding table (weight
    tying, Press & Wolf 2017): int ids (N, ...) -> logits (N, ..., V).

        h = body(embedding(ids))                 (N, ..., E)
        logits = h @ tableᵀ                      (N, ..., V), table = the embedding's (V, E)

    One (V, E) matrix serves as input embedding and output projection, so it gets gradients
    from both ends and the model saves V·E parameters. A container (children ``"embedding"``
    and ``"body"``, params keyed by those names) built from the container toolkit: `summary`,
    mixed precision and `map_layers` see both children. Add a final norm inside `body`.

    Args:
        embedding: the `Embedding(V, E)` layer (any layer whose params hold the table as
            ``"embedding"`` (V, E)).
        body: the layers between embedding and output, (N, ..., E) -> (N, ..., E); the mask
            and dropout keys reach it.
        name: the layer's name inside a container.

    Returns:
        The container `Layer` (kind ``TiedEmbedding``).

    Raises:
        LayerError: arguments that are not layers; at init, a body that does not end in E
            features or an embedding without an ``"embedding"`` table.
    """
    for layer in (embedding, body):
        _check_layer("TiedEmbedding", layer)
    return container(_tied, {"embedding": embedding, "body": body}, name=name)


def _tied(children: dict[str, Layer]) -> Layer:
    """The definition of `tied_embedding` (the container toolkit rebuilds it from this)."""
    kind, names = "TiedEmbedding", ("embedding", "body")
    embedding, body = children["embedding"], children["body"]

    def init_fn(key, in_shape):
        k_emb, k_body = split_key(key, 2)
        emb_shape, p_emb, s_emb = init_child("embedding", embedding, k_emb, in_shape)
        out, p_body, s_body = init_child("body", body, k_body, emb_shape)
        table = p_emb.get("embedding") if isinstance(p_emb, dict) else None
        if table is None or out[-1:] != (table.shape[1],):
            raise LayerError(kind, f"the body must map the embedding's E features to E "
                                   f"(the tied table is {getattr(table, 'shape', None)}), got "
                                   f"body output {out}. End the body with E features.")
        return (*out[:-1], table.shape[0]), {"embedding": p_emb, "body": p_body}, {
            "embedding": s_emb, "body": s_body}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        check_children(kind, "params", params, names)
        check_children(kind, "state", state, names)
        k_emb, k_body = split_key(key, 2)
        h, s_emb = apply_child("embedding", embedding, params, state, x, key=k_emb,
                               train=train, mask=mask)
        h, s_body = apply_child("body", body, params, state, h, key=k_body, train=train,
                                mask=mask)
        table = params["embedding"]["embedding"]
        logits = jnp.einsum("...e,ve->...v", h, table.astype(h.dtype))
        return logits, {"embedding": s_emb, "body": s_body}

    return Layer(init_fn, apply_fn, kind=kind)
