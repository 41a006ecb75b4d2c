"""Embedding: a learned lookup table from integer ids to vectors (PyTorch nn.Embedding)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet import initializers
from jnet.layers.base import Layer, LayerError
from jnet.layers.checks import check_positive_int


def Embedding(
    num_embeddings: int,
    features: int,
    embedding_init: Any = None,
    name: str | None = None,
) -> Layer:
    """Look up a row of a learned table per integer id: int (N, ...) -> (N, ..., features).

        y[n, ..., :] = table[x[n, ...], :]

    Params: ``{"embedding": (num_embeddings, features)}``, drawn from N(0, 1) by default as
    PyTorch's ``nn.Embedding`` does (Keras draws U(±0.05), Flax N(0, 1/features)). The
    gradient reaches only the rows that were looked up. ``mask=`` is ignored: a padded step
    still gets its row, and the layers after say what padding means (pad with any valid id,
    e.g. 0).

    Ids must satisfy ``0 <= id < num_embeddings``. With concrete inputs (eager calls,
    `jnet.predict` on host data before tracing) an id outside that range raises a `LayerError`.
    Under `jax.jit` the values are unknown while tracing, and a plain JAX gather would clamp a
    bad id to the nearest valid row (a silently wrong answer) or wrap a negative one: this
    layer instead returns a row of NaN for every out-of-range or negative id, so the mistake
    shows up as a NaN loss (`jnet.fit` stops with `TrainingDiverged`) rather than as a model
    quietly trained on the wrong rows. Any integer dtype works (uint8 ... int64): ids are
    compared in int32 (int64 with ``jax_enable_x64``), so a small dtype never wraps the bound.
    Without ``jax_enable_x64``, `jax.jit` itself converts int64 arguments to int32 before the
    layer sees them, so an id >= 2**31 passed to your own jitted function can land on a real
    row; `jnet.fit`, `jnet.evaluate` and `jnet.predict` check for such ids first (a
    `jnet.errors.DataError`), and eager calls raise the `LayerError` below.

    Args:
        num_embeddings: the number of ids (rows), >= 1.
        features: the size of each vector, >= 1.
        embedding_init: an initializer or its name (default ``jnet.initializers.normal(1.0)``).
        name: the layer's name inside a container.

    Returns:
        The `Layer`.

    Raises:
        LayerError: non-positive sizes; at apply, float or bool inputs, ids out of range
            (concrete inputs only), or a table of another shape than the one configured.
    """
    for what, value in (("num_embeddings", num_embeddings), ("features", features)):
        check_positive_int("Embedding", what, value)
    table_init = (initializers.normal(1.0) if embedding_init is None
                  else initializers.get(embedding_init, "embedding_init"))

    def init_fn(key, in_shape):
        return (*in_shape, features), {"embedding": table_init(key, (num_embeddings,
                                                                     features))}, {}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        table = params["embedding"]
        if jnp.shape(table) != (num_embeddings, features):
            raise LayerError(
                "Embedding",
                f"expected params['embedding'] of shape {(num_embeddings, features)}, got "
                f"{jnp.shape(table)}. Pass the params made by this layer's init.",
            )
        _check_ids(x, num_embeddings)
        # Compare in the widest int JAX computes in (int64 with jax_enable_x64, else int32,
        # read per call as the flag can change): in uint8 / int8 / int16 the bound
        # num_embeddings itself would wrap (300 -> 44 in uint8), and so would the fill index.
        # Unsigned ids beyond the wide range wrap to negatives and read the NaN row.
        x = jnp.asarray(x).astype(jax.dtypes.canonicalize_dtype(jnp.int64))
        # Out-of-range ids, negatives included (a gather would wrap those), read a NaN row.
        ids = jnp.where((x >= 0) & (x < num_embeddings), x, num_embeddings)
        y = jnp.take(table, ids, axis=0, mode="fill", fill_value=jnp.nan)
        return y, state

    config = {"num_embeddings": num_embeddings, "features": features}
    return Layer(init_fn, apply_fn, kind="Embedding", config=config, name=name)


def _check_ids(x: Any, num_embeddings: int) -> None:
    """Raise unless `x` holds integer ids, and, when its values are known (not traced), unless
    they all lie in ``[0, num_embeddings)``."""
    dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype  # strings too
    if not jnp.issubdtype(dtype, jnp.integer):
        raise LayerError(
            "Embedding",
            f"expected integer ids, got dtype {dtype}. Embedding looks rows up by index: cast "
            "ids held as floats with `x.astype(jnp.int32)`, or use Dense for real-valued "
            "features.",
        )
    if isinstance(x, jax.core.Tracer) or np.size(x) == 0:
        return
    values = np.asarray(x)
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= num_embeddings:
        bad = low if low < 0 else high
        raise LayerError(
            "Embedding",
            f"ids must lie in [0, {num_embeddings}) (num_embeddings={num_embeddings}), got "
            f"{bad} (inputs range over [{low}, {high}]). Build the layer with a larger "
            "num_embeddings, or map the ids into range (e.g. an 'unknown' id).",
        )
