"""Dropout (Srivastava et al. 2014), inverted: the scaling happens in training."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jnet._rng import draw
from jnet.layers.base import Layer, LayerError, check_float, parameter_free, require_key
from jnet.layers.checks import is_number


def Dropout(rate: float, name: str | None = None) -> Layer:
    """Zero each entry with probability `rate` in training, scaling the rest to keep the mean.

        training:   y = m ⊙ x / (1 - rate),   m ~ Bernoulli(1 - rate) per entry
        evaluation: y = x

    So E[y] = x in both modes and nothing changes at inference. `rate` is the probability to
    DROP, as in PyTorch, Keras and MATLAB (JAX's stax passes the probability to *keep*).
    Training needs an explicit PRNG key (``apply(..., key=k, train=True)``); a model passes each
    child its own split of the key, so draws never repeat across layers.

    Args:
        rate: drop probability, ``0 <= rate < 1``; 0 is the identity.
    """
    if not is_number(rate) or not 0.0 <= rate < 1.0:
        raise LayerError(
            "Dropout",
            f"rate is the probability to drop and must satisfy 0 <= rate < 1, got {rate!r}. "
            "(If you meant a keep probability p, pass rate = 1 - p.)",
        )
    rate = float(rate)  # weakly typed: a NumPy float32 rate keeps bfloat16 inputs bfloat16

    def drop(x, *, key, train, mask):
        if not train or rate == 0.0:
            return x
        check_float("Dropout", x)
        keep = draw(jax.random.bernoulli, require_key("Dropout", key), jnp.shape(x), p=1.0 - rate)
        return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))

    return parameter_free("Dropout", drop, config={"rate": rate}, name=name, with_context=True)
