"""Random draws that compile fast on every backend."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax


def draw(sample: Callable[..., jax.Array], key: jax.Array, shape: Sequence[int],
         **kwargs: Any) -> jax.Array:
    """``sample(key, shape=shape, **kwargs)`` drawn as one flat vector, then reshaped to `shape`.

    Under JAX's default (partitionable) threefry the values equal the shaped draw's. The reason
    to flatten: XLA:CPU (jax 0.10) compiles shaped draws of small rank-3/4 shapes very slowly,
    e.g. a (3, 3, 4, 9) uniform took 20 s to compile against 1 s flat, which made `init` of a
    small CNN and every Dropout-after-Conv training step slow to start.
    """
    shape = tuple(shape)
    return sample(key, shape=(math.prod(shape),), **kwargs).reshape(shape)
