"""The types jnet's signatures share, in one place.

    from jnet.typing import PyTree, Shape, Loss, Metric, OptimizerLike

- `PyTree`: any nested structure of arrays (dicts, lists, tuples, NamedTuples) that
  `jax.tree` functions traverse: params, state, optimizer state, batches.
- `Shape`: a per-example shape, a tuple of ints without the batch axis, ``(28, 28, 1)``.
- `Loss` / `Metric`: ``fn(outputs, targets) -> per-example values`` of shape ``(batch,)`` (or
  ``(batch, T)`` for per-step targets).
- `Schedule`: ``step -> learning rate``, the step counted from 0.
- `OptimizerLike`: what the training step needs of an optimizer (`jnet.optim.Optimizer` is
  one): ``init(params) -> state`` and ``update(grads, state, params) -> (params, state)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

import jax

__all__ = ["Loss", "Metric", "OptimizerLike", "PyTree", "Schedule", "Shape"]

PyTree: TypeAlias = Any
"""A nested structure of arrays; `Any` because JAX's pytrees are open-ended."""

Shape: TypeAlias = tuple[int, ...]
"""A per-example shape (no batch axis)."""

Loss: TypeAlias = Callable[[jax.Array, jax.Array], jax.Array]
"""``fn(outputs, targets) -> per-example losses``."""

Metric: TypeAlias = Callable[[jax.Array, jax.Array], jax.Array]
"""``fn(outputs, targets) -> per-example values``."""

Schedule: TypeAlias = Callable[[jax.Array], jax.Array]
"""``step -> learning rate`` (the number of updates already applied, from 0)."""


class OptimizerLike(Protocol):
    """What `jnet.make_train_step` and `jnet.fit` need of an optimizer."""

    @property
    def init(self) -> Callable[[PyTree], PyTree]: ...

    @property
    def update(self) -> Callable[[PyTree, PyTree, PyTree], tuple[PyTree, PyTree]]: ...
